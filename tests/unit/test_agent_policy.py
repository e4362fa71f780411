from pathlib import Path

import pytest

from gpuhive.agent.policy import agent_state, load_policy, save_policy
from gpuhive.core.model import AgentState
from gpuhive.core.ranking import OwnerPolicy
from gpuhive.core.units import parse_size_mib
from gpuhive.errors import ConfigError


@pytest.mark.parametrize(
    ("paused", "running", "state"),
    [(False, 0, AgentState.AVAILABLE), (False, 2, AgentState.BUSY),
     (True, 1, AgentState.DRAINING), (True, 0, AgentState.PAUSED)],
)
def test_pause_drains_before_it_pauses(paused: bool, running: int, state: AgentState) -> None:
    assert agent_state(OwnerPolicy(paused=paused), running) == state


def test_policy_round_trip(tmp_path: Path) -> None:
    assert load_policy(tmp_path) == OwnerPolicy()
    p = OwnerPolicy(max_gpus=1, reserve_vram_mib=4096, schedule="22:00-08:00", paused=True)
    save_policy(tmp_path / "home", p)
    assert load_policy(tmp_path / "home") == p


@pytest.mark.parametrize("bad", [OwnerPolicy(schedule="25:00-03:00"), OwnerPolicy(max_gpus=-1),
                                 OwnerPolicy(reserve_vram_mib=-5)])
def test_bad_policy_is_refused_before_storing(tmp_path: Path, bad: OwnerPolicy) -> None:
    with pytest.raises(ConfigError):
        save_policy(tmp_path, bad)
    assert not (tmp_path / "policy.json").exists()


def test_corrupt_policy_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "policy.json").write_text("{nope")
    with pytest.raises(ConfigError, match=r"policy\.json"):
        load_policy(tmp_path)


@pytest.mark.parametrize(("text", "mib"), [("4G", 4096), ("512M", 512), ("1.5G", 1536),
                                           ("4096", 4096), ("2GiB", 2048), ("1t", 1048576)])
def test_sizes(text: str, mib: int) -> None:
    assert parse_size_mib(text) == mib


def test_bad_size() -> None:
    with pytest.raises(ValueError):
        parse_size_mib("lots")
