"""Nodes in a real (temporary) registry, for controller tests over ``FakeNodes``.

    reg = Registry(tmp_path / "registry.db")
    alice = enroll_agent(reg, "alice", hardware=machine(gpus=[("RTX 4090", 24564)]))
    box = add_ssh_node(reg, "box")
    nodes = FakeNodes(); nodes.add("alice"); nodes.add("box")

An agent enrolls through a real join token, as ``gpuhive enroll`` does, and by default is
online with one heartbeat at ``now``; an ssh node is added as ``gpuhive nodes add`` adds one.
"""

from __future__ import annotations

from collections.abc import Sequence

from gpuhive.controller.registry import Registry
from gpuhive.core.model import CpuInfo, GpuInfo, Hardware, NodeRecord, NodeStatus
from gpuhive.core.node_facts import OverlayFacts

NOW = 1_000_000.0
FORWARD_PORTS = (24000, 24999)


def machine(name: str = "box", *, gpus: Sequence[tuple[str, int]] = (), cores: int = 8,
            memory_mib: int = 32768) -> Hardware:
    """A hardware snapshot: ``gpus`` as (model, MiB of VRAM), e.g. ("RTX 4090", 24564)."""
    return Hardware(hostname=name, cpu=CpuInfo(cores=cores, flags=["avx2"]),
                    memory_total_mib=memory_mib, memory_available_mib=memory_mib * 3 // 4,
                    gpus=[GpuInfo(i, model, mib, uuid=f"GPU-{name}-{i}")
                          for i, (model, mib) in enumerate(gpus)],
                    probe_source="nvml" if gpus else "cpu")


def enroll_agent(registry: Registry, name: str, *, hardware: Hardware | None = None,
                 now: float = NOW, online: bool = True, wg_public_key: str = "",
                 overlay_subnet: str = "10.77.0.0/16") -> NodeRecord:
    """An enrolled agent node (its own token, node key and forward port); with
    ``wg_public_key`` it is an overlay spoke with an address from ``overlay_subnet``."""
    overlay = OverlayFacts.from_dict({"wg_public_key": wg_public_key, "lan": "",
                                      "listen_port": 51820}) if wg_public_key else None
    rec, secret = registry.create_token(name, 3600, 1, now)
    node = registry.enroll(token_id=rec.token_id, secret=secret, name=name, name_given=True,
                           hostname=name, public_key=f"ssh-ed25519 NODEKEY{name}",
                           host_key=f"ssh-ed25519 HOSTKEY{name}",
                           hardware=hardware or machine(name), public_addr="198.51.100.7:40000",
                           port_range=FORWARD_PORTS, now=now, overlay=overlay,
                           overlay_subnet=overlay_subnet if overlay else "")
    if online:
        registry.save_heartbeats([(node.id, now, "available", None, None)])
        registry.set_status(node.id, NodeStatus.ONLINE, "", now)
    return registry.get_node(node.id)


def add_ssh_node(registry: Registry, name: str, *, address: str = "",
                 hardware: Hardware | None = None, now: float = NOW) -> NodeRecord:
    """A machine with its own sshd, as `gpuhive nodes add` registers it (online)."""
    return registry.add_ssh_node(name=name, address=address or f"me@{name}:22",
                                 host_key=f"ssh-ed25519 HOSTKEY{name}", hostname=name,
                                 hardware=hardware or machine(name), now=now)
