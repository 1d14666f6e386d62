"""The network namespace a node runner cluster's controller serves /metrics in (virtmigrate.local.metricsnet):
its names and addresses, derived from the cluster's first loopback address, and the `ip` commands that make
and remove it. Nothing here runs them (the e2e tier does: Prometheus scrapes the controller there)."""

from __future__ import annotations

import ipaddress

import pytest

from virtmigrate.local import metricsnet


def test_a_cluster_gets_its_own_namespace_and_a_private_30() -> None:
    net = metricsnet.metrics_net(40)
    assert (net.netns, net.link, net.peer) == ("virtmigrate-40", "vmig40", "eth0")
    assert (net.host_ip, net.address, net.prefix) == ("10.255.40.1", "10.255.40.2", 30)
    assert str(net.path) == "/run/netns/virtmigrate-40"
    subnet = ipaddress.ip_network(f"{net.host_ip}/{net.prefix}", strict=False)
    inside = ipaddress.ip_address(net.address)
    assert inside in subnet and subnet.is_private
    # What the API server accepts in an EndpointSlice, and never this machine's loopback.
    assert not (inside.is_loopback or inside.is_link_local or inside.is_unspecified)
    assert len(net.link) <= 15  # IFNAMSIZ
    assert metricsnet.metrics_net(30).address != net.address  # clusters of one machine do not collide


@pytest.mark.parametrize("index", [-1, 256])
def test_a_first_address_outside_a_byte_is_refused(index: int) -> None:
    with pytest.raises(ValueError, match=r"0\.\.255"):
        metricsnet.metrics_net(index)


def test_up_makes_the_namespace_then_the_veth_into_it_then_the_addresses() -> None:
    net = metricsnet.metrics_net(40)
    assert metricsnet.up_commands(net) == [
        ["ip", "netns", "add", "virtmigrate-40"],
        ["ip", "link", "add", "vmig40", "type", "veth", "peer", "name", "eth0", "netns", "virtmigrate-40"],
        ["ip", "addr", "add", "10.255.40.1/30", "dev", "vmig40"],
        ["ip", "-n", "virtmigrate-40", "addr", "add", "10.255.40.2/30", "dev", "eth0"],
        ["ip", "-n", "virtmigrate-40", "link", "set", "lo", "up"],
        ["ip", "-n", "virtmigrate-40", "link", "set", "eth0", "up"],
        ["ip", "link", "set", "vmig40", "up"]]


@pytest.mark.parametrize(("present", "commands"), [
    pytest.param(["netns virtmigrate-40", "link vmig40"],
                 [["ip", "link", "del", "vmig40"], ["ip", "netns", "del", "virtmigrate-40"]], id="both"),
    pytest.param(["netns virtmigrate-40"], [["ip", "netns", "del", "virtmigrate-40"]], id="namespace-only"),
    pytest.param(["link vmig40"], [["ip", "link", "del", "vmig40"]], id="veth-only"),
    pytest.param([], [], id="nothing"),
])
def test_down_removes_exactly_what_is_there(present: list[str], commands: list[list[str]]) -> None:
    assert metricsnet.down_commands(metricsnet.metrics_net(40), present) == commands
