"""`gpuhive nodes rank` agrees with the scheduler, in the lab: the friends here have no
GPU, and `train` runs on them (CPU nodes, gloo), so `nodes rank` with its defaults and
`nodes rank --for train` must rank them the same way, and say plainly (exit 1) when a
request cannot be met, which is also where `train`'s own refusal points."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpuhive.lab.hive import Lab, LabOptions
from tests.integration.labs import running_lab

DATA = Path(__file__).resolve().parents[1] / "data" / "train"
pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    yield from running_lab(tmp_path_factory, LabOptions(friends=3, heartbeat_interval=0.5))


def _train(lab: Lab, workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gpuhive", "train", *args], cwd=workdir,
                          env=lab.env(lab.controller_home), capture_output=True, text=True,
                          timeout=300)


def test_rank_defaults_answer_for_cpu_nodes_like_train(lab: Lab) -> None:
    plain = lab.cli("nodes", "rank")
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert "no node can take this request" not in plain.stdout
    assert "CPU nodes (gloo)" in plain.stdout
    for name in ("friend1", "friend2", "friend3"):
        assert f"{name} " in plain.stdout
    serve = lab.cli("nodes", "rank", "--for", "serve", "--min-vram", "1G")
    assert serve.returncode == 0 and "CPU nodes:" in serve.stdout, serve.stdout


def test_rank_for_train_chooses_what_train_runs_on(lab: Lab, tmp_path: Path) -> None:
    shutil.copy(DATA / "allreduce.py", tmp_path / "train.py")
    r = json.loads(lab.cli("nodes", "rank", "--for", "train", "--json", check=True).stdout)
    assert r["fits"] and r["cpu_fallback"] and len(r["chosen"]) == 1
    job = _train(lab, tmp_path, "train.py", "--nodes", "1", "--", "2")
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr
    ran = json.loads(lab.cli("jobs", "--json", check=True).stdout)[0]
    assert ran["nodes"] == r["chosen"]


def test_too_many_nodes_exits_1_and_train_points_at_the_same_command(lab: Lab,
                                                                     tmp_path: Path) -> None:
    shutil.copy(DATA / "allreduce.py", tmp_path / "train.py")
    shown = lab.cli("nodes", "rank", "--for", "train", "--nodes", "5", "--json")
    assert shown.returncode == 1
    r = json.loads(shown.stdout)  # --json still prints the ranking
    assert not r["fits"] and r["need"] == 5 and len(r["ranked"]) == 3
    text = lab.cli("nodes", "rank", "--for", "train", "--nodes", "5")
    assert text.returncode == 1 and "only 3 node(s) can take this request; it needs 5" in \
        text.stderr
    refused = _train(lab, tmp_path, "train.py", "--nodes", "5", "--", "2")
    said = refused.stdout + refused.stderr
    assert refused.returncode != 0 and "needs 5 node(s) but only 3 could ever take it" in said
    assert "gpuhive nodes rank --for train --nodes 5" in said
    bad = lab.cli("nodes", "rank", "--gpus", "many")
    assert bad.returncode == 2 and "--gpus must be a number of GPUs or auto" in bad.stderr
