"""Controller configuration: flags, VIRTMIGRATE_* variables, defaults, and errors naming the fix."""

from __future__ import annotations

import pytest

from virtmigrate.controller.config import parse_config
from virtmigrate.controller.migration.capacity import Limits
from virtmigrate.errors import ConfigError


def test_defaults_match_the_issue() -> None:
    c = parse_config([], {})
    assert c.limits == Limits(max_running=5, max_per_node=2)
    assert (c.timeouts.unschedulable_s, c.timeouts.pending_s) == (300, 900)
    assert c.policy.completion_timeout_per_gib_s == 150 and c.policy.allow_post_copy is False
    assert c.leader_elect and c.namespaces == ()


def test_flag_beats_environment_which_beats_default() -> None:
    env = {"VIRTMIGRATE_MAX_PARALLEL_MIGRATIONS": "7", "VIRTMIGRATE_MAX_OUTBOUND_PER_NODE": "3",
           "VIRTMIGRATE_NAMESPACES": "a, b", "VIRTMIGRATE_ALLOW_POST_COPY": "true",
           "VIRTMIGRATE_DEFAULT_NODE_SELECTOR": "arch=amd64", "POD_NAMESPACE": "virtmigrate-system",
           "POD_NAME": "ctrl-0"}
    c = parse_config(["--max-parallel-migrations=9", "--unschedulable-timeout=30"], env)
    assert c.limits == Limits(max_running=9, max_per_node=3)
    assert c.namespaces == ("a", "b") and c.policy.allow_post_copy
    assert c.default_node_selector == {"arch": "amd64"}
    assert (c.timeouts.unschedulable_s, c.lease_namespace, c.identity) == (30, "virtmigrate-system", "ctrl-0")


@pytest.mark.parametrize(("argv", "needle"), [
    pytest.param(["--workers=0"], "--workers", id="workers"),
    pytest.param(["--log-format=xml"], "--log-format", id="log-format"),
    pytest.param(["--max-parallel-migrations=many"], "--max-parallel-migrations", id="not-int"),
    pytest.param(["--bogus"], "unrecognized", id="unknown-flag"),
    pytest.param(["--metrics-fd=1"], "--metrics-fd", id="metrics-fd-stdout"),
])
def test_errors_name_the_flag(argv: list[str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        parse_config(argv, {})


def test_an_inherited_metrics_socket_is_optional() -> None:
    assert parse_config([], {}).metrics_fd == 0  # none: bind --metrics-address
    assert parse_config(["--metrics-fd=3"], {}).metrics_fd == 3
    assert parse_config([], {"VIRTMIGRATE_METRICS_FD": "4"}).metrics_fd == 4


def test_the_shipped_configmap_parses() -> None:
    from pathlib import Path

    env = {}
    path = Path(__file__).resolve().parents[2] / "manifests" / "controller.env"
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.partition("=")
            if v:
                env[k] = v
    c = parse_config([], env)
    assert c.limits.max_running == int(env["VIRTMIGRATE_MAX_PARALLEL_MIGRATIONS"])
