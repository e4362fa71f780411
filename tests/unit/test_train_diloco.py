"""DiLoCo's outer step on one process (no process group): the update rule and its state."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
import torch

from gpuhive.train.diloco import DiLoCo
from gpuhive.train.errors import TrainConfigError


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))


def _inner_steps(model: torch.nn.Module, opt: torch.optim.Optimizer, n: int, seed: int,
                 diloco: DiLoCo | None = None) -> None:
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x, y = torch.randn(16, 4, generator=g), torch.randn(16, 2, generator=g)
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        if diloco is not None:
            diloco.step()
        else:
            opt.step()


def _flat(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


@pytest.mark.parametrize("nesterov", [True, False])
def test_outer_step_is_torch_sgd_on_the_pseudo_gradient(nesterov: bool) -> None:
    """Same numbers as torch.optim.SGD(lr, momentum, nesterov) fed grad = global - local."""
    model = _model()
    diloco = DiLoCo(model, torch.optim.AdamW(model.parameters(), lr=1e-2), sync_every=5,
                    outer_lr=0.7, outer_momentum=0.9, nesterov=nesterov, comm_dtype="fp32")
    ref_global = [p.detach().clone().requires_grad_(True) for p in model.parameters()]
    ref_outer = torch.optim.SGD(ref_global, lr=0.7, momentum=0.9, nesterov=nesterov)
    for rnd in range(4):  # step() runs the outer step every 5 inner steps
        _inner_steps(model, diloco.inner_optimizer, 5, seed=rnd, diloco=diloco)
    # The reference: the same inner steps, then torch's SGD on a separate global copy.
    model2 = _model()
    inner2 = torch.optim.AdamW(model2.parameters(), lr=1e-2)
    for rnd in range(4):
        _inner_steps(model2, inner2, 5, seed=rnd)
        for g, p in zip(ref_global, model2.parameters(), strict=True):
            g.grad = (g.detach() - p.detach()).clone()
        ref_outer.step()
        with torch.no_grad():
            for g, p in zip(ref_global, model2.parameters(), strict=True):
                p.copy_(g)
    assert diloco.rounds == 4 and diloco.pending == 0
    assert torch.allclose(_flat(model), _flat(model2), atol=1e-6)
    assert torch.allclose(diloco.global_weights, torch.cat([g.detach().reshape(-1)
                                                            for g in ref_global]), atol=1e-6)


def test_lr_one_without_momentum_makes_global_the_local_weights() -> None:
    model = _model()
    diloco = DiLoCo(model, torch.optim.SGD(model.parameters(), lr=0.1), sync_every=3,
                    outer_lr=1.0, outer_momentum=0.0, comm_dtype="fp32")
    _inner_steps(model, diloco.inner_optimizer, 2, seed=1, diloco=diloco)
    local = _flat(model).clone()
    assert diloco.pending == 2
    diloco.sync()
    assert torch.allclose(diloco.global_weights, local, atol=1e-7)


def test_state_dict_round_trip_and_local_reset() -> None:
    model = _model()
    diloco = DiLoCo(model, torch.optim.SGD(model.parameters(), lr=0.1), sync_every=2)
    _inner_steps(model, diloco.inner_optimizer, 4, seed=2, diloco=diloco)
    state = diloco.state_dict()
    other = _model(seed=9)
    again = DiLoCo(other, torch.optim.SGD(other.parameters(), lr=0.1), sync_every=2)
    again.load_state_dict(state)
    assert torch.equal(_flat(other), diloco.global_weights)
    assert torch.equal(again.momentum, diloco.momentum)
    assert (again.inner_steps, again.rounds, again.pending) == (4, 2, 0)


def test_finish_syncs_only_pending_rounds() -> None:
    model = _model()
    diloco = DiLoCo(model, torch.optim.SGD(model.parameters(), lr=0.1), sync_every=10)
    assert diloco.finish() is False
    _inner_steps(model, diloco.inner_optimizer, 3, seed=3, diloco=diloco)
    assert diloco.finish() is True and diloco.pending == 0 and diloco.rounds == 1


def test_bad_settings_are_config_errors() -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(TrainConfigError):
        DiLoCo(model, opt, sync_every=0)
    with pytest.raises(TrainConfigError) as err:
        DiLoCo(model, opt, comm_dtype="int8")
    assert err.value.data["key"] == "comm_dtype"
