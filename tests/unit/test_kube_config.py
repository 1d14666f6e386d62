"""virtmigrate.kube.config: static kubeconfigs and the pod's service account are read without the official
client's loaders, and anything else is left to them (None)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from virtmigrate.clock import FakeClock
from virtmigrate.jsonlog import JsonLogger
from virtmigrate.kube.client import KubeClient
from virtmigrate.kube.config import TOKEN_REFRESH_S, compute_client_config, in_cluster_config, load_kubeconfig


def _doc(cluster: dict[str, Any], user: dict[str, Any] | None) -> dict[str, Any]:
    ctx: dict[str, Any] = {"cluster": "c"}
    if user is not None:
        ctx["user"] = "u"
    return {"apiVersion": "v1", "kind": "Config", "current-context": "x",
            "clusters": [{"name": "c", "cluster": cluster}],
            "users": [{"name": "u", "user": user or {}}],
            "contexts": [{"name": "x", "context": ctx}, {"name": "other", "context": {"cluster": "none"}}]}


def test_a_token_kubeconfig_authenticates_every_request_with_its_token(tmp_path: Path) -> None:
    (tmp_path / "ca.crt").write_text("pem")
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(_doc({"server": "https://127.0.0.1:6443/", "certificate-authority": "ca.crt"},
                                    {"token": "abc"})))
    cfg = load_kubeconfig(str(path))
    assert cfg is not None
    assert (cfg.host, cfg.ssl_ca_cert, cfg.verify_ssl) == ("https://127.0.0.1:6443", str(tmp_path / "ca.crt"), True)
    assert cfg.refresh_api_key_hook is None  # static: KubeClient computes its headers once
    assert cfg.get_api_key_with_prefix("authorization") == "Bearer abc"


def test_yaml_kubeconfigs_and_embedded_certificates_are_read(tmp_path: Path) -> None:
    import yaml

    data = {k: base64.b64encode(v.encode()).decode() for k, v in (("ca", "CA"), ("crt", "CRT"), ("key", "KEY"))}
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(_doc({"server": "https://h:1", "certificate-authority-data": data["ca"]},
                                        {"client-certificate-data": data["crt"], "client-key-data": data["key"]})))
    cfg = load_kubeconfig(str(path))
    assert cfg is not None and cfg.ssl_ca_cert and cfg.cert_file and cfg.key_file
    assert [Path(p).read_text() for p in (cfg.ssl_ca_cert, cfg.cert_file, cfg.key_file)] == ["CA", "CRT", "KEY"]
    assert cfg.get_api_key_with_prefix("authorization") is None


@pytest.mark.parametrize("cluster, user", [
    pytest.param({"server": "https://h"}, {"exec": {"command": "aws"}}, id="exec-plugin"),
    pytest.param({"server": "https://h"}, {"auth-provider": {"name": "oidc"}}, id="auth-provider"),
    pytest.param({"server": "https://h"}, {"username": "a", "password": "b"}, id="basic-auth"),
    pytest.param({"server": "https://h"}, {"token": "t", "as": "someone"}, id="impersonation"),
    pytest.param({"server": "https://h", "proxy-url": "http://p"}, {"token": "t"}, id="proxy"),
    pytest.param({"server": "https://h", "tls-server-name": "x"}, {"token": "t"}, id="tls-server-name"),
    pytest.param({}, {"token": "t"}, id="no-server"),
])
def test_what_only_the_official_loader_handles_is_left_to_it(cluster: dict[str, Any], user: dict[str, Any],
                                                             tmp_path: Path) -> None:
    assert compute_client_config(_doc(cluster, user), base=tmp_path) is None


def test_a_named_context_and_a_missing_one(tmp_path: Path) -> None:
    doc = _doc({"server": "https://h"}, {"token": "t"})
    assert compute_client_config(doc, base=tmp_path, context="nope") is None
    assert compute_client_config(doc, base=tmp_path, context="other") is None  # its cluster does not exist
    assert load_kubeconfig(str(tmp_path / "absent")) is None


def test_several_kubeconfig_files_are_merged_by_the_official_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", "/a:/b")
    assert load_kubeconfig() is None


def test_the_service_account_token_is_reread_as_it_rotates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    (tmp_path / "token").write_text("one\n")
    cfg = in_cluster_config(tmp_path)
    clock = FakeClock()
    cfg.clock, cfg._token_read_at = clock, clock.now()
    assert (cfg.host, cfg.ssl_ca_cert) == ("https://[fd00::1]:443", str(tmp_path / "ca.crt"))
    cfg.host = "http://127.0.0.1:1"  # KubeClient builds no TLS context for it: its headers are what we test
    client = KubeClient(cfg)
    assert client._headers(None)["Authorization"] == "Bearer one"
    (tmp_path / "token").write_text("two\n")
    assert client._headers(None)["Authorization"] == "Bearer one"  # read at most every TOKEN_REFRESH_S
    clock.step(TOKEN_REFRESH_S)
    assert client._headers(None)["Authorization"] == "Bearer two"


def test_outside_a_cluster_in_cluster_config_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from virtmigrate import errors

    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(errors.ConfigError, match="not in a cluster"):
        in_cluster_config(tmp_path)


def test_the_pods_json_log_lines_carry_event_level_time_and_bound_keys(capsys: pytest.CaptureFixture[str]) -> None:
    log = JsonLogger(level="info", clock=FakeClock()).bind(domain="vm1")
    log.debug("hidden", x=1)
    log.info("migration_started", destination="qemu+tcp://h/system")
    (line,) = capsys.readouterr().err.splitlines()
    rec = json.loads(line)
    assert rec["event"] == "migration_started" and rec["level"] == "info" and rec["domain"] == "vm1"
    assert rec["destination"] == "qemu+tcp://h/system" and rec["timestamp"].endswith("Z")
