"""examples/llm.py under real torchrun: 2 gloo processes on loopback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[2]
LLM = ROOT / "examples" / "llm.py"
FINAL = re.compile(r"final loss (\d+\.\d{4}) weights_sha256 ([0-9a-f]{64})")
STEP = re.compile(r"step (\d+) loss (\d+\.\d+)")
STATS = re.compile(r"stats (.*)")
NUMEL = 347_424  # parameters of the example's GPT (tests/unit/test_train_synthlang.py)


def torchrun(ckpt: Path, *args: str, nproc: int = 2, timeout: float = 300) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUHIVE_")}
    env.update(GPUHIVE_CHECKPOINT_DIR=str(ckpt), GPUHIVE_NODE_NAME="local",
               PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc-per-node", str(nproc), str(LLM), "--batch-size", "16", *args]
    proc = subprocess.run(argv, env=env, cwd=ckpt.parent, capture_output=True, text=True,
                          timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    return out


def finals(out: str) -> list[tuple[float, str]]:
    return [(float(loss), sha) for loss, sha in FINAL.findall(out)]


def stats(out: str) -> dict[str, str]:
    m = STATS.search(out)
    assert m, out[-2000:]
    return dict(kv.split("=", 1) for kv in m.group(1).split())


def losses(out: str) -> list[float]:
    return [float(loss) for _, loss in STEP.findall(out)]


def test_ddp_two_ranks_end_identical_and_learn(tmp_path: Path) -> None:
    out = torchrun(tmp_path / "ck", "--steps", "80", "--eval-every", "20",
                   "--checkpoint-every", "0")
    (loss_a, sha_a), (loss_b, sha_b) = finals(out)
    assert sha_a == sha_b and loss_a == loss_b
    curve = losses(out)
    assert len(curve) == 4 and curve[-1] < curve[0] - 0.2
    s = stats(out)
    assert (s["mode"], s["compress"], s["world"], s["steps"]) == ("ddp", "none", "2", "80")
    assert int(s["train_bytes"]) == 80 * NUMEL * 4  # every gradient, fp32, every step
    assert float(s["bytes_per_sample"]) == pytest.approx(NUMEL * 4 / 16, abs=0.01)


def test_diloco_two_ranks_end_identical_and_learn(tmp_path: Path) -> None:
    out = torchrun(tmp_path / "ck", "--steps", "60", "--mode", "diloco", "--sync-every", "10",
                   "--eval-every", "20", "--checkpoint-every", "0", "--lr", "2e-3")
    (loss_a, sha_a), (loss_b, sha_b) = finals(out)
    assert sha_a == sha_b and loss_a == loss_b
    curve = losses(out)
    assert len(curve) == 3 and curve[-1] < curve[0]
    s = stats(out)
    assert (s["mode"], s["compress"]) == ("diloco", "bf16")
    assert int(s["train_bytes"]) == 6 * NUMEL * 2  # one bf16 pseudo-gradient per 10 steps


def test_resume_continues_exactly_where_it_stopped(tmp_path: Path) -> None:
    first = torchrun(tmp_path / "ck", "--steps", "20", "--checkpoint-every", "10",
                     "--eval-every", "10")
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == [
        "ckpt-00000010.pt", "ckpt-00000020.pt"]
    resumed = torchrun(tmp_path / "ck", "--steps", "30", "--checkpoint-every", "10",
                       "--eval-every", "10")
    assert "resumed from step 20 (checkpoint of local), held-out loss" in resumed
    assert stats(resumed)["steps"] == "10"
    straight = torchrun(tmp_path / "fresh", "--steps", "30", "--checkpoint-every", "0",
                        "--eval-every", "10")
    assert finals(resumed)[0] == finals(straight)[0]  # bit-identical weights
    assert losses(first) == losses(straight)[:2]
