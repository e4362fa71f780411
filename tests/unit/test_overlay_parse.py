"""`wg show IFACE dump` and route parsing on literal tool output."""

from __future__ import annotations

import pytest

from gpuhive.overlay.errors import OverlayError
from gpuhive.overlay.parse import has_net_admin, parse_dump, parse_host_routes

PRIV = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="
DUMP = (
    f"{PRIV}\tHIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=\t51820\toff\n"
    "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\t(none)\t198.18.0.11:51820\t10.77.0.2/32"
    "\t1717000000\t123456\t654321\toff\n"
    "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=\t(none)\t(none)\t(none)\t0\t0\t0\t25\n"
    "gN65BkIKy1eCE9pP1wdc8ROUtkHLF2PfAqYdyYBz6EA=\t(none)\t[fd00::2]:51820"
    "\t10.77.0.0/16,fd77::/64\t1717000100\t1\t2\t25\n"
)


def test_parse_dump_fields() -> None:
    d = parse_dump(DUMP)
    assert d.interface.public_key == "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="
    assert (d.interface.listen_port, d.interface.fwmark) == (51820, None)
    a, b, c = d.peers
    assert a.endpoint == "198.18.0.11:51820" and a.allowed_ips == ("10.77.0.2/32",)
    assert (a.latest_handshake, a.rx_bytes, a.tx_bytes, a.keepalive) == (1717000000, 123456,
                                                                         654321, None)
    assert b.endpoint is None and b.allowed_ips == () and b.latest_handshake is None
    assert b.keepalive == 25
    assert c.endpoint == "[fd00::2]:51820" and c.allowed_ips == ("10.77.0.0/16", "fd77::/64")
    assert d.peer(c.public_key) is c and d.peer("nope") is None
    assert a.handshake_age(1717000030) == 30 and b.handshake_age(1) is None


def test_private_key_is_not_kept() -> None:
    assert PRIV not in repr(parse_dump(DUMP))


def test_interface_without_peers() -> None:
    d = parse_dump(f"{PRIV}\tPUB=\t40000\t0x1234\n")
    assert d.peers == () and d.interface.fwmark == "0x1234"


@pytest.mark.parametrize("bad", ["", "a\tb\n", f"{PRIV}\tP\tx\toff\n",
                                 f"{PRIV}\tP\t1\toff\nonly\ttwo\n",
                                 f"{PRIV}\tP\t1\toff\nk\t(none)\t(none)\t(none)\tX\t0\t0\toff\n"])
def test_malformed_dump(bad: str) -> None:
    with pytest.raises(OverlayError):
        parse_dump(bad)


def test_host_routes() -> None:
    text = ("10.77.0.0/16 scope link\n10.77.0.3 scope link\n10.77.0.4/32 proto static\n"
            "default via 10.77.0.1\n")
    assert parse_host_routes(text) == {"10.77.0.3/32", "10.77.0.4/32"}


def test_cap_net_admin_bit() -> None:
    assert has_net_admin("Name:\tx\nCapEff:\t000001fffeffffff\n")
    assert has_net_admin("CapEff:\t0000000000001000\n")
    assert not has_net_admin("CapEff:\t0000000000000000\n")
    assert not has_net_admin("CapEff:\tzz\n") and not has_net_admin("")
