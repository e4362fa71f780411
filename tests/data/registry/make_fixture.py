"""Write the databases a controller of one release holds, through that release's own code.

Run it with the release's checkout first on the path, e.g. for 0.1.0 (commit 360d32e):

    git worktree add /tmp/v010 360d32e
    PYTHONPATH=/tmp/v010 python tests/data/registry/make_fixture.py tests/data/registry/0.1.0
    git worktree remove /tmp/v010

What it writes (registry.db, apikeys.db) is committed; the upgrade tests open it with the
current code. Only the public API of that release is used: what a real controller did.
"""

from __future__ import annotations

import sys
from pathlib import Path

import gpuhive
from gpuhive.controller.job_store import JobRecord, JobStore
from gpuhive.controller.registry import Registry
from gpuhive.core.model import CpuInfo, GpuInfo, Hardware, NodeStatus
from gpuhive.serve.gateway.apikeys import ApiKeyStore

T0 = 1_763_800_000.0  # 2025-11-22, a fixed clock so the fixture is reproducible in shape


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for f in out.glob("*.db*"):
        f.unlink()
    reg = Registry(out / "registry.db")
    gpu = GpuInfo(index=0, name="NVIDIA GeForce RTX 3090", memory_total_mib=24576,
                  memory_used_mib=512, vendor="nvidia", compute_capability="8.6",
                  driver_version="550.54.14", cuda_version="12.4")
    hw = Hardware(hostname="alice-box", cpu=CpuInfo(cores=16, model="Ryzen 9"),
                  memory_total_mib=65536, gpus=[gpu])
    nodes = []
    for i, name in enumerate(("alice", "bob", "carol")):
        rec, secret = reg.create_token(name, 86400, 1, now=T0 + i)
        node = reg.enroll(token_id=rec.token_id, secret=secret, name=name, name_given=True,
                          hostname=f"{name}-box", public_key=f"ssh-ed25519 AAAAfake{name}",
                          host_key=f"ssh-ed25519 AAAAhost{name}", hardware=hw,
                          public_addr=f"203.0.113.{10 + i}", port_range=(40000, 40099),
                          now=T0 + 10 + i,
                          facts={"software": {"python": "3.11.7", "torch": "2.13.0+cpu"}},
                          overlay={"public_key": f"wgkey{name}=", "lan": "", "port": 51820},
                          overlay_subnet="10.77.0.0/16")
        nodes.append(node)
    reg.set_status(nodes[0].id, NodeStatus.ONLINE, "", T0 + 20)
    reg.set_facts(nodes[0].id, reliability={"score": 0.6, "updated_at": T0 + 30},
                  link={"rtt_ms": 21.5, "down_mbps": 90.0, "up_mbps": 20.0},
                  tasks={"finished": [T0 + 40], "failed": []})
    reg.set_status(nodes[1].id, NodeStatus.OFFLINE, "missed 3 heartbeats", T0 + 50)
    reg.remove_node("carol", T0 + 60)
    reg.create_token("dave", 86400, 2, now=T0 + 70)  # valid, unused
    gone, _ = reg.create_token("erin", 86400, 1, now=T0 + 71)
    reg.revoke_token(gone.token_id, T0 + 72)
    store = JobStore(reg.connection)
    job = JobRecord("j-0a0b0c", "llm", "succeeded", {"script": "llm.py", "args": ["--steps",
                    "30"], "nodes": "2"}, T0 + 80, nodes=["alice", "bob"], started_at=T0 + 85,
                    ended_at=T0 + 185, events=[{"at": T0 + 80, "event": "queued",
                                                "detail": "llm.py on 2 node(s)"}])
    store.create(job)
    store.save(job)
    reg.close()
    keys = ApiKeyStore(out / "apikeys.db")
    keys.create("ci", now=T0 + 90, models=("llama-7b",), rpm=60)
    _, old = keys.create("old", now=T0 + 91)
    keys.revoke(old.key_id, now=T0 + 92)
    keys.close()
    print(f"wrote {out} with gpuhive {gpuhive.__version__} from {Path(gpuhive.__file__).parent}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
