"""wrap_model on one process (no process group): what the training loop gets per mode."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
import torch

from gpuhive.train.compression import Trainable, wrap_model
from gpuhive.train.errors import TrainConfigError
from gpuhive.train.world import Compress, Mode


@pytest.fixture(autouse=True)
def _no_launcher_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("RANK", "WORLD_SIZE", "GPUHIVE_MODE", "GPUHIVE_COMPRESS", "GPUHIVE_SYNC_EVERY"):
        monkeypatch.delenv(key, raising=False)


def _model_and_opt(seed: int = 0) -> tuple[torch.nn.Linear, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 2)
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


def _train(t: Trainable, steps: int) -> None:
    for i in range(steps):
        t.optimizer.zero_grad()
        t.module(torch.full((4, 3), float(i))).sum().backward()
        t.step()


def test_single_process_ddp_is_the_bare_model() -> None:
    model, opt = _model_and_opt()
    t = wrap_model(model, opt)
    assert t.module is model and t.mode is Mode.DDP and t.compress is Compress.NONE
    assert t.diloco is None and t.synced and t.agree(True)
    _train(t, 3)
    assert t.steps == 3 and t.meter.total_bytes == 0


def test_environment_picks_mode_and_diloco_defaults_to_bf16(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUHIVE_MODE", "diloco")
    monkeypatch.setenv("GPUHIVE_SYNC_EVERY", "4")
    model, opt = _model_and_opt()
    t = wrap_model(model, opt)
    assert t.mode is Mode.DILOCO and t.compress is Compress.BF16
    assert t.diloco is not None and t.diloco.sync_every == 4
    assert t.diloco.comm_dtype is torch.bfloat16
    _train(t, 3)
    assert not t.synced
    t.finish()
    assert t.synced and t.diloco.rounds == 1


def test_diloco_none_means_fp32_and_powersgd_is_refused() -> None:
    model, opt = _model_and_opt()
    fp32 = wrap_model(model, opt, mode="diloco", compress="none").diloco
    assert fp32 is not None and fp32.comm_dtype is torch.float32
    with pytest.raises(TrainConfigError) as err:
        wrap_model(model, opt, mode="diloco", compress="powersgd")
    assert err.value.data["key"] == "compress" and "bf16" in err.value.hint


def test_a_ddp_checkpoint_seeds_diloco() -> None:
    model, opt = _model_and_opt()
    ddp = wrap_model(model, opt, mode="ddp")
    _train(ddp, 5)
    state = ddp.state_dict()
    other, other_opt = _model_and_opt(seed=1)
    dl = wrap_model(other, other_opt, mode="diloco", sync_every=5)
    dl.load_state_dict(state)
    assert dl.diloco is not None and dl.steps == 5
    assert (dl.diloco.inner_steps, dl.diloco.rounds, dl.diloco.pending) == (5, 1, 0)
    assert torch.equal(other.weight, model.weight)
    assert torch.equal(dl.diloco.global_weights[:6], model.weight.detach().reshape(-1))


def test_diloco_state_round_trips_through_trainable() -> None:
    model, opt = _model_and_opt()
    a = wrap_model(model, opt, mode="diloco", sync_every=2)
    _train(a, 4)
    state = a.state_dict()
    other, other_opt = _model_and_opt(seed=3)
    b = wrap_model(other, other_opt, mode="diloco", sync_every=2)
    b.load_state_dict(state)
    assert b.diloco is not None and a.diloco is not None
    assert torch.equal(b.diloco.momentum, a.diloco.momentum)
    assert torch.equal(other.weight, model.weight) and b.steps == 4
