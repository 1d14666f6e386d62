"""The pods' identities per namespace (controller/identities.py), against a recording fake API client."""

from __future__ import annotations

from typing import Any

import pytest

from virtmigrate import errors
from virtmigrate.controller.identities import AGENT_IDENTITY, LAUNCHER_IDENTITY, Identities, identity_objects
from virtmigrate.controller.vm.pods import LAUNCHER_SERVICE_ACCOUNT


class RecordingClient:
    """Records creates as (plural, namespace, name); objects in `existing` answer AlreadyExists."""

    def __init__(self, *, existing: set[tuple[str, str, str]] | None = None,
                 refuse: type[errors.KubeError] | None = None) -> None:
        self.creates: list[tuple[str, str | None, str]] = []
        self.objects: dict[tuple[str, str | None, str], dict[str, Any]] = {}
        self.existing = existing or set()
        self.refuse = refuse

    def create(self, res: Any, obj: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        key = (res.plural, namespace, obj["metadata"]["name"])
        self.creates.append(key)
        if self.refuse is not None:
            raise self.refuse("rolebindings is forbidden: the controller may not bind that ClusterRole")
        if key in self.existing:
            raise errors.AlreadyExists(f"{key} already exists")
        self.objects[key] = obj
        return obj


ALL_IN_NS = [("serviceaccounts", "ns", "virtmigrate-launcher"), ("rolebindings", "ns", "virtmigrate-launcher"),
             ("serviceaccounts", "ns", "virtmigrate-agent"), ("rolebindings", "ns", "virtmigrate-agent")]


def test_the_launcher_pods_run_as_the_identity_made_for_them() -> None:
    assert LAUNCHER_SERVICE_ACCOUNT == LAUNCHER_IDENTITY


def test_ensure_creates_both_service_accounts_and_their_bindings() -> None:
    client = RecordingClient()
    Identities(client).ensure("ns")
    assert client.creates == ALL_IN_NS
    for name in (LAUNCHER_IDENTITY, AGENT_IDENTITY):
        rb = client.objects[("rolebindings", "ns", name)]
        assert rb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name}
        assert rb["subjects"] == [{"kind": "ServiceAccount", "name": name, "namespace": "ns"}]
        assert client.objects[("serviceaccounts", "ns", name)]["metadata"]["namespace"] == "ns"


def test_ensure_is_once_per_namespace() -> None:
    client = RecordingClient()
    ids = Identities(client)
    ids.ensure("ns")
    ids.ensure("ns")
    ids.ensure("other")
    assert client.creates == ALL_IN_NS + [(p, "other", n) for p, _, n in ALL_IN_NS]


def test_identities_made_earlier_or_by_an_admin_are_fine() -> None:
    client = RecordingClient(existing={("serviceaccounts", "ns", "virtmigrate-launcher"),
                                       ("rolebindings", "ns", "virtmigrate-agent")})
    ids = Identities(client)
    ids.ensure("ns")  # no error
    assert client.creates == ALL_IN_NS  # and the missing ones were made all the same
    ids.ensure("ns")
    assert len(client.creates) == 4


@pytest.mark.parametrize("refusal", [errors.Forbidden, errors.ServerError])
def test_a_refusal_reaches_the_caller_and_is_tried_again(refusal: type[errors.KubeError]) -> None:
    client = RecordingClient(refuse=refusal)
    ids = Identities(client)
    with pytest.raises(refusal):
        ids.ensure("ns")  # the caller's sync fails and is retried, rate-limited
    client.refuse = None
    ids.ensure("ns")
    assert client.creates[-4:] == ALL_IN_NS


def test_forget_makes_them_again() -> None:
    client = RecordingClient()
    ids = Identities(client)
    ids.ensure("ns")
    ids.forget("ns")  # e.g. a pod was refused for its ServiceAccount: someone deleted it
    ids.ensure("ns")
    assert client.creates == ALL_IN_NS + ALL_IN_NS


def test_identity_objects_are_labelled_as_ours() -> None:
    for _, obj in identity_objects("ns", AGENT_IDENTITY):
        assert obj["metadata"]["labels"] == {"app.kubernetes.io/part-of": "virtmigrate"}
