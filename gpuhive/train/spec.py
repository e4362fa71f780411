"""A training job as data: from `gpuhive train` flags or a job.yaml. Pure.

job.yaml schema (every key optional except ``script``; flags override the file)::

    script: examples/llm.py        # path relative to the workdir
    args: ["--steps", "300"]       # passed to the script
    workdir: .                     # what is synced to the nodes; relative to the YAML's
                                   # folder, which is also the default (`--workdir` wins)
    nodes: 3                       # N, or "MIN:MAX" for an elastic job
    gpus_per_node: auto            # K or auto (processes per node; CPU nodes: 1)
    min_vram: 12G                  # per GPU
    backend: auto                  # nccl | gloo | auto (nccl when every node has a GPU)
    requirements: requirements.txt # a venv per requirements hash on each node
    max_restarts: 3                # torchrun --max-restarts
    name: my-run
    mode: ddp                      # ddp | diloco   (handed to scripts via GPUHIVE_MODE)
    sync_every: 50                 # DiLoCo H
    compress: bf16                 # none | bf16 | fp16 | powersgd (default: the mode's own)
    env: {KEY: value}              # extra environment for the script
    wait: true                     # queue until the nodes are free (false: fail at once)
    queue_timeout: 30m             # give up after this long in the queue (default: never)
    priority: 0                    # higher is placed first; FIFO within a priority
    requeue: false                 # back to the queue when a friend's window closes on it
    grace: 60                      # seconds between SIGTERM and SIGKILL when stopped early

Unknown keys and bad values raise ``ConfigError`` naming the key and, for a job.yaml,
where it is (``path:line:column``); so do YAML syntax errors and a key given twice.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpuhive.core.units import parse_size_mib
from gpuhive.errors import ConfigError

BACKENDS = ("auto", "nccl", "gloo")
MODES = ("ddp", "diloco")
COMPRESS = ("", "none", "bf16", "fp16", "powersgd")  # "": the mode's default
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


@dataclass(frozen=True)
class JobSpec:
    script: str
    args: list[str] = field(default_factory=list)
    workdir: str = "."
    min_nodes: int = 1
    max_nodes: int = 1
    gpus_per_node: int | None = None  # None: auto
    min_vram_mib: int = 0
    backend: str = "auto"
    requirements: str | None = None
    max_restarts: int = 3
    name: str = ""
    mode: str = "ddp"
    sync_every: int = 50
    compress: str = ""  # "": ddp sends fp32 gradients, diloco bf16 pseudo-gradients
    env: dict[str, str] = field(default_factory=dict)
    wait: bool = True
    queue_timeout_s: float | None = None  # None: wait as long as it takes
    priority: int = 0
    requeue: bool = False
    grace_s: int = 60

    @property
    def elastic(self) -> bool:
        return self.min_nodes != self.max_nodes

    @property
    def nodes_text(self) -> str:
        return str(self.max_nodes) if not self.elastic else f"{self.min_nodes}:{self.max_nodes}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JobSpec:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def parse_nodes(text: str | int) -> tuple[int, int]:
    """``3`` → (3, 3); ``"2:4"`` → (2, 4)."""
    s = str(text).strip()
    m = re.match(r"^(\d+)(?::(\d+))?$", s)
    if not m:
        raise ConfigError(f"nodes={s!r} is not N or MIN:MAX", hint="e.g. --nodes 3 or 2:4",
                          key="nodes")
    lo = int(m.group(1))
    hi = int(m.group(2)) if m.group(2) else lo
    if not 1 <= lo <= hi <= 1024:
        raise ConfigError(f"nodes={s!r} must satisfy 1 <= MIN <= MAX", key="nodes")
    return lo, hi


_KEYS = {"script", "args", "workdir", "nodes", "gpus_per_node", "min_vram", "backend",
         "requirements", "max_restarts", "name", "mode", "sync_every", "compress", "env",
         "wait", "queue_timeout", "priority", "requeue", "grace"}


def build_spec(values: dict[str, Any], source: str = "flags",
               locations: dict[str, str] | None = None) -> JobSpec:
    """Validate a mapping of job.yaml keys (or flags) into a ``JobSpec``.

    ``locations`` says where each key was written (``job.yaml:3:1``) for the errors;
    keys without one are named as coming from ``source``.
    """
    def where(key: str) -> str:
        return (locations or {}).get(key, source)

    unknown = set(values) - _KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(f"unknown key {key!r} in {where(key)}",
                          hint=f"valid keys: {', '.join(sorted(_KEYS))}", key=key)

    def bad(key: str, why: str) -> ConfigError:
        return ConfigError(f"{key}={values.get(key)!r} in {where(key)}: {why}", key=key)

    script = values.get("script")
    if not isinstance(script, str) or not script:
        raise bad("script", "a training script path is required")
    args = values.get("args") or []
    if not isinstance(args, list) or not all(isinstance(a, (str, int, float)) for a in args):
        raise bad("args", "must be a list of strings")
    try:
        lo, hi = parse_nodes(values.get("nodes", 1))
    except ConfigError as exc:
        if "nodes" not in (locations or {}):
            raise
        raise bad("nodes", "must be N or MIN:MAX with 1 <= MIN <= MAX <= 1024, e.g. 3 or "
                  "2:4") from exc
    gpn = values.get("gpus_per_node", "auto")
    if gpn in (None, "auto"):
        gpus_per_node = None
    elif isinstance(gpn, int) and not isinstance(gpn, bool) and 0 <= gpn <= 64:
        gpus_per_node = gpn
    elif isinstance(gpn, str) and gpn.isdigit():
        gpus_per_node = int(gpn)
    else:
        raise bad("gpus_per_node", "must be a number of GPUs or 'auto'")
    try:
        vram = parse_size_mib(str(values.get("min_vram", "0")))
    except ValueError as exc:
        raise bad("min_vram", "not a size like 12G") from exc
    choices = {"backend": BACKENDS, "mode": MODES, "compress": COMPRESS}
    picked = {}
    for key, allowed in choices.items():
        value = str(values.get(key, allowed[0] if key != "mode" else "ddp"))
        if value not in allowed:
            raise bad(key, f"must be one of {', '.join(allowed)}")
        picked[key] = value
    max_restarts = values.get("max_restarts", 3)
    if not isinstance(max_restarts, int) or isinstance(max_restarts, bool) or not \
            0 <= max_restarts <= 100:
        raise bad("max_restarts", "must be 0 to 100")
    sync_every = values.get("sync_every", 50)
    if not isinstance(sync_every, int) or isinstance(sync_every, bool) or sync_every < 1:
        raise bad("sync_every", "must be a positive number of steps")
    name = str(values.get("name") or "")
    if name and not _NAME_RE.match(name):
        raise bad("name", "use letters, digits, '-', '_' or '.'")
    env = values.get("env") or {}
    if not isinstance(env, dict) or not all(isinstance(k, str) and re.match(
            r"^[A-Za-z_][A-Za-z0-9_]*$", k) for k in env):
        raise bad("env", "must map variable names to values")
    requirements = values.get("requirements")
    if requirements is not None and not isinstance(requirements, str):
        raise bad("requirements", "must be a file path")
    queueing = _queueing(values, bad)
    return JobSpec(script=script, args=[str(a) for a in args],
                   workdir=str(values.get("workdir") or "."), min_nodes=lo, max_nodes=hi,
                   gpus_per_node=gpus_per_node, min_vram_mib=vram, backend=picked["backend"],
                   requirements=requirements, max_restarts=max_restarts, name=name,
                   mode=picked["mode"], sync_every=sync_every, compress=picked["compress"],
                   env={k: str(v) for k, v in env.items()}, **queueing)


def _queueing(values: dict[str, Any], bad: Any) -> dict[str, Any]:
    """The queue keys: wait, queue_timeout (seconds or 90s/10m/2h), priority, requeue,
    grace."""
    out: dict[str, Any] = {}
    for key in ("wait", "requeue"):
        v = values.get(key, key == "wait")
        if not isinstance(v, bool):
            raise bad(key, "must be true or false")
        out[key] = v
    timeout = values.get("queue_timeout")
    if timeout is not None:
        seconds = parse_seconds(timeout)
        if seconds is None or seconds <= 0:
            raise bad("queue_timeout", "must be a duration like 90, 90s, 10m or 2h")
        out["queue_timeout_s"] = seconds
    priority = values.get("priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool) or \
            not -1000 <= priority <= 1000:
        raise bad("priority", "must be a whole number from -1000 to 1000")
    out["priority"] = priority
    grace = values.get("grace", 60)
    grace_s = parse_seconds(grace)
    if grace_s is None or not 0 <= grace_s <= 3600:
        raise bad("grace", "must be 0 to 3600 seconds")
    out["grace_s"] = int(grace_s)
    return out


def parse_seconds(value: object) -> float | None:
    """90, "90", "90s", "10m", "2h" → seconds; anything else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    m = re.match(r"^\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*$", str(value))
    if not m:
        return None
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def load_job_file(path: Path, overrides: dict[str, Any]) -> JobSpec:
    """job.yaml plus flags; a relative workdir is resolved from the YAML's folder."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", key="job") from exc
    data, locations = parse_job_yaml(text, str(path))
    data.setdefault("workdir", str(path.parent))
    if "workdir" in data and not Path(str(data["workdir"])).is_absolute():
        # normalised, links kept: the script is then found below it the same way
        data["workdir"] = os.path.normpath(path.parent / str(data["workdir"]))
    given = {k: v for k, v in overrides.items() if v is not None}
    data.update(given)
    return build_spec(data, source=str(path),
                      locations={**locations, **{k: "flags" for k in given}})


def parse_job_yaml(text: str, name: str) -> tuple[dict[str, Any], dict[str, str]]:
    """A job file's mapping, and where each top-level key is (``name:line:column``)."""
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and context_mark is not None and context_mark is not mark:
            problem += f" ({context} at {context_mark.line + 1}:{context_mark.column + 1})"
        at = _mark(name, mark) if mark is not None else name
        raise ConfigError(f"{at}: not valid YAML: {problem}",
                          hint="fix the syntax at that line and column", key="job") from exc
    finally:
        loader.dispose()
    if not isinstance(data, dict) or not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"{name} must hold a mapping of job keys", key="job")
    locations: dict[str, str] = {}
    for key_node, _value in node.value:
        key = str(key_node.value)
        at = _mark(name, key_node.start_mark)
        if key in locations:
            raise ConfigError(f"{at}: key {key!r} is given twice (first at {locations[key]})",
                              hint="keep one of them", key=key)
        locations[key] = at
    return data, locations


def _mark(name: str, mark: Any) -> str:
    return f"{name}:{mark.line + 1}:{mark.column + 1}"
