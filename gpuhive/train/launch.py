"""What runs on each node for a training job: paths, environment, the torchrun line. Pure.

Every node runs the same torchrun with c10d rendezvous on the first node (``is_host=1``
there, ``0`` elsewhere; torch's own guess fails when hostnames are shared or
unresolvable), ``--local-addr`` set to the node's training address, and
``GLOO_SOCKET_IFNAME``/``NCCL_SOCKET_IFNAME`` set to the interface carrying that address.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from gpuhive.core.remote_probe import NODE_PYTHON
from gpuhive.train.spec import JobSpec

NODE_HOME = '"${GPUHIVE_HOME:-$HOME/.gpuhive}"'


@dataclass(frozen=True)
class Placement:
    node: str
    address: str  # where the other nodes reach this one (overlay IP, or 127.0.0.1 locally)
    iface: str  # the interface carrying ``address``


@dataclass(frozen=True)
class LaunchPlan:
    job_id: str
    spec: JobSpec
    code_digest: str
    env_digest: str | None  # requirements hash, or None for the node's own python
    placements: tuple[Placement, ...]  # the first one hosts the rendezvous
    nproc_per_node: int
    backend: str  # nccl | gloo
    rdzv_port: int
    last_call_s: int | None = None  # torch elastic's last call (``elastic_last_call_s``)

    @property
    def host(self) -> Placement:
        return self.placements[0]

    def command(self, node: str) -> str:
        """The shell line run on ``node`` over its SSH session."""
        me = next(p for p in self.placements if p.node == node)
        spec = self.spec
        env = {
            "GPUHIVE_JOB_ID": self.job_id,
            "GPUHIVE_NODE_NAME": node,
            "GPUHIVE_MODE": spec.mode,
            "GPUHIVE_SYNC_EVERY": str(spec.sync_every),
            "GPUHIVE_BACKEND": self.backend,
            "GLOO_SOCKET_IFNAME": me.iface,
            "NCCL_SOCKET_IFNAME": me.iface,
            "TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE": "[rank${rank}]:",
            # torch 2.13 caches the first round's rank-0 store address when the rendezvous
            # store is shared; after a node is lost the survivors' workers then wait on the
            # dead node's port for ever. Without sharing, each round publishes a fresh one.
            "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1",
            "PYTHONUNBUFFERED": "1",
            **({"GPUHIVE_COMPRESS": spec.compress} if spec.compress else {}),
            **spec.env,
        }
        python = env_python(self.env_digest)
        torchrun = [
            "-m", "torch.distributed.run",
            "--nnodes", f"{spec.min_nodes}:{spec.max_nodes}" if spec.elastic
            else str(spec.max_nodes),
            "--nproc-per-node", str(self.nproc_per_node),
            "--rdzv-backend", "c10d",
            "--rdzv-endpoint", f"{_host(self.host.address)}:{self.rdzv_port}",
            "--rdzv-id", self.job_id,
            "--rdzv-conf", f"is_host={1 if me == self.host else 0},join_timeout=120"
            + (f",last_call_timeout={self.last_call_s}" if self.last_call_s else ""),
            "--local-addr", me.address,
            "--max-restarts", str(spec.max_restarts),
            "--tee", "3",
            "--log-dir", "LOGDIR",
            spec.script, *spec.args,
        ]
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        args = " ".join(shlex.quote(a) for a in torchrun).replace(
            "LOGDIR", f'"$H/jobs/{self.job_id}/torchrun"')
        return (f"H={NODE_HOME}; cd \"$H/code/{self.code_digest}\" && "
                f"export GPUHIVE_CHECKPOINT_DIR=\"$H/jobs/{self.job_id}/checkpoints\" && "
                f"mkdir -p \"$GPUHIVE_CHECKPOINT_DIR\" && export {exports} && "
                f"exec {python} {args}")


# torch elastic (``--nnodes MIN:MAX``) completes a rendezvous round at MAX nodes, or a
# "last call" after MIN have joined: 30 s by default, waiting for nodes that may still come.
# Only the controller starts a job's nodes, so it knows who will come.
TORCH_LAST_CALL_S = 30
# Once MIN have joined, the rest of the placed nodes must still get in: this covers how much
# later one node's torchrun starts than another's (importing torch on a busy box).
START_SPREAD_S = 10


def elastic_last_call_s(spec: JobSpec, placed: int) -> int | None:
    """The last call for a job on ``placed`` nodes; None for a fixed-size job.

    With only MIN placed, the deadline starts when the last of them joins: nobody is left
    to wait for, so 1 s (torch wants a positive whole number). With more, the ones after
    the first MIN still need their start-up spread. The same value serves the rounds after
    a lost node, when the survivors regroup.
    """
    if not spec.elastic:
        return None
    return 1 if placed <= spec.min_nodes else START_SPREAD_S


def elastic_wait_text(spec: JobSpec, placed: int, last_call_s: int) -> str:
    """What an elastic job waits for before it starts, for the owner watching it."""
    not_default = f"not torch's default {TORCH_LAST_CALL_S} s: no other node will join"
    if placed >= spec.max_nodes:
        return (f"placed all {placed} nodes: torch elastic starts once they have joined; "
                f"after a lost node the others wait {last_call_s} s before they regroup")
    if placed <= spec.min_nodes:
        return (f"placed {placed} of up to {spec.max_nodes} nodes; torch elastic waits "
                f"{last_call_s} s for more before starting ({not_default})")
    return (f"placed {placed} of up to {spec.max_nodes} nodes; once {spec.min_nodes} have "
            f"joined, torch elastic waits {last_call_s} s for the rest before starting "
            f"({not_default})")


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def code_check_command(digest: str) -> str:
    return f'test -f {NODE_HOME}/code/{digest}/.complete && echo have || echo need'


def code_receive_command(digest: str, sha256: str) -> str:
    """Reads the bundle on stdin; unpacks it only when its sha256 matches."""
    d = f'"$H/code/{digest}"'
    return (f"set -e; H={NODE_HOME}; mkdir -p \"$H/code\"; t=$(mktemp -d \"$H/code/.in.XXXXXX\"); "
            f"trap 'rm -rf \"$t\"' EXIT; cat > \"$t/b.tgz\"; "
            f"echo \"{sha256}  $t/b.tgz\" | sha256sum -c --status || "
            f"{{ echo 'bundle corrupted in transit' >&2; exit 3; }}; "
            f"mkdir \"$t/x\"; tar -xzf \"$t/b.tgz\" -C \"$t/x\"; touch \"$t/x/.complete\"; "
            f"rm -rf {d}; mv \"$t/x\" {d}")


def env_python(env_digest: str | None) -> str:
    """The interpreter a job runs with on a node: its requirements venv, or the agent's."""
    return f'"$H/envs/{env_digest}/bin/python"' if env_digest else NODE_PYTHON


def env_command(digest: str, code_digest: str) -> str:
    """Build (once) a venv for a requirements hash; requirements text arrives on stdin.

    The venv is layered over the agent's environment (``train.jobenv``), and pip runs in
    the job's synced code folder so local paths in the requirements (``./wheels/x.whl``)
    mean the same as on the owner's machine.
    """
    d = f'"$H/envs/{digest}"'
    # stdin is read first on both paths: a command that exits (reused, or a failed step)
    # while the controller still writes it closes the channel under that write
    # ("Channel not open for sending"), hiding what really happened
    return (f"set -e; H={NODE_HOME}; if [ -x {d}/bin/python ]; then cat > /dev/null; "
            f"echo reused; exit 0; fi; "
            f"mkdir -p \"$H/envs\"; t=\"$H/envs/.{digest}.$$\"; rm -rf \"$t\" \"$t.req\"; "
            f"trap 'rm -rf \"$t\" \"$t.req\"' EXIT; cat > \"$t.req\"; "
            f"{NODE_PYTHON} -m gpuhive.train.jobenv create \"$t\" >/dev/null; "
            f"mv \"$t.req\" \"$t/requirements.txt\"; cd \"$H/code/{code_digest}\"; "
            f"PIP_DISABLE_PIP_VERSION_CHECK=1 \"$t/bin/python\" -m pip install -q "
            f"-r \"$t/requirements.txt\" >&2; "
            f"mv \"$t\" {d}; trap - EXIT; echo built")


# What a job's interpreter imports as torch, as one JSON line (run on the node).
TORCH_PROBE = ("import json, sys\n"
               "try:\n"
               "    import torch\n"
               "except Exception as exc:\n"
               "    print(json.dumps({'error': f'{type(exc).__name__}: {exc}'}))\n"
               "else:\n"
               "    print(json.dumps({'torch': torch.__version__}))\n")


def torch_check_command(env_digest: str | None) -> str:
    """Preflight: import torch with the interpreter the job will really use."""
    return f"H={NODE_HOME}; exec {env_python(env_digest)} -c {shlex.quote(TORCH_PROBE)}"


def disk_free_command() -> str:
    return f'mkdir -p {NODE_HOME}; df -Pk {NODE_HOME} | tail -1'


def listen_command(address: str, port: int, expect: int, seconds: int = 20) -> str:
    """Preflight: accept ``expect`` connections on the rendezvous port (host node), then exit.

    Exiting by itself matters: torchrun binds this same port next, and a listener that is
    still winding down when it does makes the rendezvous host fail with "address in use".
    """
    family = "AF_INET6" if ":" in address else "AF_INET"
    code = "\n".join([
        "import socket, time",
        f"s = socket.socket(socket.{family})",
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)",
        f"s.bind(({address!r}, {port}))",
        "s.listen(64)",
        "s.settimeout(1)",
        f"end, seen = time.time() + {seconds}, 0",
        f"while seen < {expect} and time.time() < end:",
        "    try:",
        "        c, _ = s.accept(); seen += 1; c.settimeout(5); c.recv(1); c.close()",
        "    except OSError:",
        "        pass",
        "s.close()",
    ])
    return f"exec {NODE_PYTHON} -c {shlex.quote(code)}"


def connect_command(address: str, port: int, patience_s: float = 8.0) -> str:
    """Preflight: reach the rendezvous port from another node (exit 0 = reachable).

    Retries while the host's listener starts, instead of a fixed wait before trying.
    """
    code = "\n".join([
        "import socket, sys, time",
        f"end = time.time() + {patience_s}",
        "while True:",
        "    try:",
        f"        socket.create_connection(({address!r}, {port}), 2).close()",
        "        sys.exit(0)",
        "    except OSError:",
        "        if time.time() > end:",
        "            raise",
        "        time.sleep(0.05)",
    ])
    return f"exec {NODE_PYTHON} -c {shlex.quote(code)}"


def sweep_command(job_id: str, grace_s: float = 20.0) -> str:
    """Wait for (then kill) every process of a job on a node; prints what it found."""
    return f"exec {NODE_PYTHON} -m gpuhive.agent.reaper GPUHIVE_JOB_ID={job_id} {grace_s}"
