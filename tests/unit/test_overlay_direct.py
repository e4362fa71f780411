"""Which pairs try a direct path: same router, declared endpoint, optional punch; else hub."""

from __future__ import annotations

from gpuhive.overlay.direct import DirectCandidate, NodeNet, pair_routes, plan_direct


def node(name: str, ip: str, public: str, lan: str, **kw: object) -> NodeNet:
    return NodeNet(name, f"{name}-pub", ip, public, lan, 51820, **kw)  # type: ignore[arg-type]


A = node("a", "10.77.0.2", "198.18.0.11", "192.168.1.2")
B = node("b", "10.77.0.3", "198.18.0.11", "192.168.1.3")  # same router as a
C = node("c", "10.77.0.4", "198.18.0.12", "192.168.2.2",
         observed_endpoint="198.18.0.12:51820")
D = node("d", "10.77.0.5", "198.18.0.13", "192.168.3.2",
         observed_endpoint="198.18.0.13:1024")
E = node("e", "10.77.0.6", "203.0.113.7", "10.0.0.5", declared_endpoint="203.0.113.7:51820")


def test_same_public_ip_gets_each_others_lan_address() -> None:
    plan = plan_direct([A, B])
    assert plan["a"] == [DirectCandidate("a", "b", "b-pub", "10.77.0.3", "192.168.1.3:51820",
                                         "same-lan")]
    assert plan["b"] == [DirectCandidate("b", "a", "a-pub", "10.77.0.2", "192.168.1.2:51820",
                                         "same-lan")]


def test_declared_endpoint_is_dialled_and_dialler_is_learned() -> None:
    plan = plan_direct([C, E])
    (to_e,) = plan["c"]
    (to_c,) = plan["e"]
    assert (to_e.endpoint, to_e.reason) == ("203.0.113.7:51820", "declared-endpoint")
    # e cannot reach c behind its NAT: it waits for c's packets (endpoint learned by roaming).
    assert (to_c.endpoint, to_c.reason) == (None, "declared-endpoint")


def test_two_nats_stay_on_the_hub_unless_punching() -> None:
    assert plan_direct([C, D]) == {"c": [], "d": []}
    punched = plan_direct([C, D], punch=True)
    assert punched["c"][0].endpoint == "198.18.0.13:1024"
    assert punched["d"][0].endpoint == "198.18.0.12:51820"
    assert punched["c"][0].reason == "nat-punch"


def test_same_public_ip_without_lan_info_stays_on_hub() -> None:
    blind = NodeNet("x", "x-pub", "10.77.0.9", "198.18.0.11", None, None)
    assert plan_direct([A, blind]) == {"a": [], "x": []}


def test_pair_routes_for_status() -> None:
    assert pair_routes([E, C, B, A]) == {
        ("a", "b"): "same-lan", ("a", "c"): "hub", ("a", "e"): "declared-endpoint",
        ("b", "c"): "hub", ("b", "e"): "declared-endpoint", ("c", "e"): "declared-endpoint"}
