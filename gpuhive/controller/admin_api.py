"""The admin contract: every method of the admin API, its typed request and its response.

One frozen dataclass per method, shared by the controller (which decodes each request line
into one, `admin_codec.decode`, and hands it to the handler bound to its class) and the CLI
(which builds one and sends it, `admin_client.request`). A renamed field is then a mypy error
on both sides instead of a KeyError at run time.

A request class declares, as class variables:

* ``method``: its name on the wire (``nodes.remove``);
* ``scope``: ``read`` or ``write``, for the remote clients with scopes to come (the unix
  socket authenticates by file permissions and checks no scope);
* ``events``: the kinds of event lines it streams before its answer (``()``: none).

Its type argument is the response: JSON-shaped (``Json``/``JsonRows``) where the answer is
what ``--json`` prints verbatim. To add a method: a class here, listed in ``REQUESTS``, and a
handler bound with ``TheClass.handled_by(fn)`` in `admin_handlers`.

This module imports nothing of the controller, so the CLI can import it cheaply.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

# one request line at most; the server reads no further, the client sends no more
MAX_REQUEST = 1024 * 1024

Json = dict[str, Any]
JsonRows = list[dict[str, Any]]
Emit = Callable[[dict[str, Any]], None]

R = TypeVar("R")
Q = TypeVar("Q", bound="Request[Any]")


class Scope(enum.Enum):
    READ = "read"
    WRITE = "write"


READ, WRITE = Scope.READ, Scope.WRITE


@dataclass(frozen=True)
class Handler:
    """A handler bound to its request class; made only by ``Request.handled_by``, which is
    where mypy checks that the two (and the response type) agree."""

    kind: type[Request[Any]]
    fn: Callable[[Any, Emit], Awaitable[Any]]


class Request(Generic[R]):
    """Base of every request; ``R`` is what the method answers."""

    method: ClassVar[str]
    scope: ClassVar[Scope]
    events: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def streams(cls) -> bool:
        return bool(cls.events)

    @classmethod
    def handled_by(cls: type[Q], fn: Callable[[Q, Emit], Awaitable[R]]) -> Handler:
        # cls fixes R through the class's base (Request[Json]…), so a handler written for
        # another request, or answering another shape, does not type-check
        return Handler(cls, fn)


# ---- controller ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Status(Request[Json]):
    method: ClassVar[str] = "status"
    scope: ClassVar[Scope] = READ


@dataclass(frozen=True)
class Overview(Request[Json]):
    """What the dashboard and `gpuhive status` show: status, nodes, events, jobs, replicas."""

    method: ClassVar[str] = "overview"
    scope: ClassVar[Scope] = READ


# ---- invites ------------------------------------------------------------------------------


@dataclass(frozen=True)
class InviteCreate(Request[Json]):
    method: ClassVar[str] = "invite.create"
    scope: ClassVar[Scope] = WRITE
    name: str = ""          # "" is a token for anyone
    ttl: str = "24h"
    uses: int = 1


@dataclass(frozen=True)
class InviteList(Request[JsonRows]):
    method: ClassVar[str] = "invite.list"
    scope: ClassVar[Scope] = READ


@dataclass(frozen=True)
class InviteRevoke(Request[Json]):
    method: ClassVar[str] = "invite.revoke"
    scope: ClassVar[Scope] = WRITE
    token: str = ""         # its id, or the name of its one valid token
    token_id: str = ""      # what 0.1.0 clients send instead of token


# ---- nodes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodesList(Request[JsonRows]):
    method: ClassVar[str] = "nodes.list"
    scope: ClassVar[Scope] = READ
    include_removed: bool = False


@dataclass(frozen=True)
class NodesShow(Request[Json]):
    method: ClassVar[str] = "nodes.show"
    scope: ClassVar[Scope] = READ
    name: str


@dataclass(frozen=True)
class NodesRemove(Request[Json]):
    method: ClassVar[str] = "nodes.remove"
    scope: ClassVar[Scope] = WRITE
    name: str


@dataclass(frozen=True)
class NodesAdd(Request[Json]):
    method: ClassVar[str] = "nodes.add"
    scope: ClassVar[Scope] = WRITE
    address: str            # user@host[:port]
    name: str = ""          # "" names it after its hostname


@dataclass(frozen=True)
class NodesExec(Request[JsonRows]):
    method: ClassVar[str] = "nodes.exec"
    scope: ClassVar[Scope] = WRITE
    events: ClassVar[tuple[str, ...]] = ("line",)
    target: str             # a node, comma-separated nodes, or all
    argv: tuple[str, ...]
    fresh: bool = False     # new sessions instead of the cached ones


@dataclass(frozen=True)
class NodesRank(Request[Json]):
    method: ClassVar[str] = "nodes.rank"
    scope: ClassVar[Scope] = READ
    gpus: int | str | None = None   # None or "auto": as train/serve choose
    min_vram_mib: int = 0
    purpose: str = "train"
    precision: str = "fp16"
    nodes: str | int = 1            # N or MIN:MAX
    backend: str = "auto"


@dataclass(frozen=True)
class NodesProbe(Request[JsonRows]):
    method: ClassVar[str] = "nodes.probe"
    scope: ClassVar[Scope] = WRITE
    target: str = "all"


@dataclass(frozen=True)
class NodesBench(Request[JsonRows]):
    method: ClassVar[str] = "nodes.bench"
    scope: ClassVar[Scope] = WRITE
    target: str = "all"
    gpu: bool = True


# ---- jobs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainSpec:
    """A job as job.yaml keys. None leaves a key to the job spec's own default
    (`train.spec.build_spec`, which also checks the values)."""

    script: str
    args: tuple[str, ...] = ()
    workdir: str | None = None
    nodes: str | int | None = None
    gpus_per_node: int | str | None = None
    min_vram: str | None = None
    backend: str | None = None
    requirements: str | None = None
    max_restarts: int | None = None
    name: str | None = None
    mode: str | None = None
    sync_every: int | None = None
    compress: str | None = None
    env: dict[str, str] | None = None
    wait: bool | None = None
    queue_timeout: str | int | None = None
    priority: int | None = None
    requeue: bool | None = None
    grace: int | None = None


@dataclass(frozen=True)
class JobsSubmit(Request[Json]):
    method: ClassVar[str] = "jobs.submit"
    scope: ClassVar[Scope] = WRITE
    spec: TrainSpec


@dataclass(frozen=True)
class JobsList(Request[JsonRows]):
    method: ClassVar[str] = "jobs.list"
    scope: ClassVar[Scope] = READ


@dataclass(frozen=True)
class JobsShow(Request[Json]):
    method: ClassVar[str] = "jobs.show"
    scope: ClassVar[Scope] = READ
    job: str


@dataclass(frozen=True)
class JobsCancel(Request[Json]):
    method: ClassVar[str] = "jobs.cancel"
    scope: ClassVar[Scope] = WRITE
    job: str


@dataclass(frozen=True)
class JobsLogs(Request[Json]):
    """The kept output, then with ``follow`` the live one; answers the job at its end."""

    method: ClassVar[str] = "jobs.logs"
    scope: ClassVar[Scope] = READ
    events: ClassVar[tuple[str, ...]] = ("log", "progress", "job")
    job: str
    follow: bool = False
    tail: int | None = None
    node: str | None = None
    rank: int | None = None


# ---- overlay ------------------------------------------------------------------------------


@dataclass(frozen=True)
class OverlayStatus(Request[Json]):
    method: ClassVar[str] = "overlay.status"
    scope: ClassVar[Scope] = READ


@dataclass(frozen=True)
class OverlayCheck(Request[Json]):
    method: ClassVar[str] = "overlay.check"
    scope: ClassVar[Scope] = WRITE
    events: ClassVar[tuple[str, ...]] = ("pair",)
    target: str = "all"
    nbytes: int = 50_000_000


# ---- serving and gateway keys -------------------------------------------------------------


@dataclass(frozen=True)
class ServeStart(Request[Json]):
    method: ClassVar[str] = "serve.start"
    scope: ClassVar[Scope] = WRITE
    model: str
    replicas: int = 1
    ctx: int | None = None
    wait: bool = True       # answer once the replicas are ready (or failed)


@dataclass(frozen=True)
class ServeList(Request[JsonRows]):
    method: ClassVar[str] = "serve.list"
    scope: ClassVar[Scope] = READ


@dataclass(frozen=True)
class ServeStop(Request[Json]):
    method: ClassVar[str] = "serve.stop"
    scope: ClassVar[Scope] = WRITE
    model: str


@dataclass(frozen=True)
class KeysCreate(Request[Json]):
    method: ClassVar[str] = "keys.create"
    scope: ClassVar[Scope] = WRITE
    name: str
    models: tuple[str, ...] | None = None   # None: every model
    rpm: int | None = None
    tokens_per_day: int | None = None


@dataclass(frozen=True)
class KeysList(Request[JsonRows]):
    method: ClassVar[str] = "keys.list"
    scope: ClassVar[Scope] = READ


@dataclass(frozen=True)
class KeysRevoke(Request[Json]):
    method: ClassVar[str] = "keys.revoke"
    scope: ClassVar[Scope] = WRITE
    key: str                # its id or name


REQUESTS: tuple[type[Request[Any]], ...] = (
    Status, Overview,
    InviteCreate, InviteList, InviteRevoke,
    NodesList, NodesShow, NodesRemove, NodesAdd, NodesExec, NodesRank, NodesProbe, NodesBench,
    JobsSubmit, JobsList, JobsShow, JobsCancel, JobsLogs,
    OverlayStatus, OverlayCheck,
    ServeStart, ServeList, ServeStop,
    KeysCreate, KeysList, KeysRevoke,
)

METHODS: dict[str, type[Request[Any]]] = {r.method: r for r in REQUESTS}
