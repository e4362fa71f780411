"""The torchrun line's elastic last call, what the owner is told about it, the sync event."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from gpuhive.train import launch, sync
from gpuhive.train.launch import LaunchPlan, Placement
from gpuhive.train.spec import JobSpec


def _spec(lo: int, hi: int) -> JobSpec:
    return JobSpec(script="train.py", min_nodes=lo, max_nodes=hi)


def _plan(spec: JobSpec, placed: int) -> LaunchPlan:
    places = tuple(Placement(f"friend{i}", f"10.77.0.{i + 1}", "ghv0")
                   for i in range(1, placed + 1))
    return LaunchPlan("j-1", spec, "c0de", None, places, 1, "gloo", 29500,
                      launch.elastic_last_call_s(spec, placed))


def _rdzv_conf(command: str) -> str:
    m = re.search(r"--rdzv-conf (\S+)", command)
    assert m, command
    return m.group(1)


def test_a_fixed_size_job_keeps_torchs_rendezvous() -> None:
    assert launch.elastic_last_call_s(_spec(2, 2), 2) is None
    assert _rdzv_conf(_plan(_spec(2, 2), 2).command("friend1")) == "is_host=1,join_timeout=120"


def test_an_elastic_job_on_its_minimum_waits_one_second_not_thirty() -> None:
    spec = _spec(2, 5)
    assert launch.elastic_last_call_s(spec, 2) == 1
    plan = _plan(spec, 2)
    assert _rdzv_conf(plan.command("friend2")) == \
        "is_host=0,join_timeout=120,last_call_timeout=1"
    assert "--nnodes 2:5" in plan.command("friend1")  # a lost node still leaves MIN
    text = launch.elastic_wait_text(spec, 2, 1)
    assert text.startswith("placed 2 of up to 5 nodes; torch elastic waits 1 s for more")
    assert "default 30 s" in text


def test_above_the_minimum_the_last_call_covers_the_start_up_spread() -> None:
    spec = _spec(2, 5)
    assert launch.elastic_last_call_s(spec, 3) == launch.START_SPREAD_S
    assert _rdzv_conf(_plan(spec, 3).command("friend3")).endswith(
        f"last_call_timeout={launch.START_SPREAD_S}")
    assert launch.elastic_wait_text(spec, 3, 10).startswith(
        "placed 3 of up to 5 nodes; once 2 have joined, torch elastic waits 10 s for the rest")
    # all MAX placed: the first round needs no last call, later rounds (a lost node) do
    assert launch.elastic_last_call_s(spec, 5) == launch.START_SPREAD_S
    assert launch.elastic_wait_text(spec, 5, 10).startswith("placed all 5 nodes")


def test_the_sync_event_reads_as_what_happened() -> None:
    assert sync.sync_summary("abc", 1948, [], ["friend1", "friend2"]) == \
        "code abc already on both nodes (nothing sent)"
    assert sync.sync_summary("abc", 1948, [], ["friend1"]) == \
        "code abc already on friend1 (nothing sent)"
    assert sync.sync_summary("abc", 1948, [], ["a", "b", "c"]) == \
        "code abc already on all 3 nodes (nothing sent)"
    assert sync.sync_summary("abc", 1948, ["friend1", "friend2"], []) == \
        "code abc: 1.9 KiB sent to 2 of 2 node(s)"
    assert sync.sync_summary("abc", 3 * 1024 * 1024, ["friend2"], ["friend1"]) == \
        "code abc: 3.0 MiB sent to 1 of 2 node(s); friend1 already had it"


def test_the_environment_command_reads_its_stdin_before_it_can_exit(tmp_path: Path) -> None:
    # a reused venv: the command exits at once; unread stdin made the controller's write
    # fail with "Channel not open for sending"
    digest = "0123456789abcdef"
    python = tmp_path / "envs" / digest / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\n")
    python.chmod(0o755)
    proc = subprocess.Popen(["/bin/sh", "-c", launch.env_command(digest, "c0de")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            env={**os.environ, "GPUHIVE_HOME": str(tmp_path)})
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(b"torch\n" * 200_000)  # beyond a pipe's buffer: EPIPE if never read
    proc.stdin.close()
    assert proc.stdout.read() == b"reused\n" and proc.wait(timeout=30) == 0
