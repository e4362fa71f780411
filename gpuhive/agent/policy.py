"""The friend's own rules for their machine: pause, GPU limit, reserved VRAM, schedule.

Stored in ``$GPUHIVE_HOME/policy.json`` by `gpuhive agent pause|resume|policy`; the running
agent re-reads it before every heartbeat, so a change reaches the controller within one
interval without restarting anything.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from gpuhive.core.model import AgentState
from gpuhive.core.ranking import OwnerPolicy
from gpuhive.core.schedule import parse_schedule
from gpuhive.errors import ConfigError
from gpuhive.fsutil import ensure_private_dir, write_json

FILE = "policy.json"


def policy_to_dict(p: OwnerPolicy) -> dict[str, Any]:
    return dataclasses.asdict(p)


def policy_from_dict(d: dict[str, Any]) -> OwnerPolicy:
    names = {f.name for f in dataclasses.fields(OwnerPolicy)}
    return OwnerPolicy(**{k: v for k, v in d.items() if k in names})


def load_policy(home: Path) -> OwnerPolicy:
    try:
        return policy_from_dict(json.loads((home / FILE).read_text()))
    except FileNotFoundError:
        return OwnerPolicy()
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"cannot read {home / FILE}: {exc}",
                          hint="fix it or set the policy again with `gpuhive agent policy`",
                          key="policy") from exc


def save_policy(home: Path, policy: OwnerPolicy) -> None:
    if policy.schedule:
        parse_schedule(policy.schedule)  # refuse a bad schedule before storing it
    if policy.max_gpus is not None and policy.max_gpus < 0:
        raise ConfigError("--max-gpus must be 0 or more", key="max_gpus")
    if policy.reserve_vram_mib < 0:
        raise ConfigError("--reserve-vram must be 0 or more", key="reserve_vram")
    ensure_private_dir(home)
    write_json(home / FILE, policy_to_dict(policy), private=False)


def agent_state(policy: OwnerPolicy, running_tasks: int) -> AgentState:
    """Paused with work still running is draining: it finishes or hands off, then pauses."""
    if policy.paused:
        return AgentState.DRAINING if running_tasks else AgentState.PAUSED
    return AgentState.BUSY if running_tasks else AgentState.AVAILABLE


def parse_max_gpus(text: str) -> int | None:
    """``--max-gpus``: a count, or ``all`` (None: no limit, what `agent policy` shows as all)."""
    value = text.strip().lower()
    if value == "all":
        return None
    if not value.isdigit():
        raise ConfigError(f"--max-gpus {text!r} is neither a number nor `all`",
                          hint="e.g. --max-gpus 1, or --max-gpus all to offer every GPU",
                          key="max_gpus")
    return int(value)


def describe_policy(p: OwnerPolicy) -> str:
    """One line for `gpuhive agent policy`."""
    sharing = "paused (no new work)" if p.paused else "on"
    gpus = "all" if p.max_gpus is None else str(p.max_gpus)
    return (f"sharing {sharing} · max GPUs {gpus} · reserved VRAM {p.reserve_vram_mib} MiB "
            f"per GPU · schedule {p.schedule or 'always'}")
