"""The admin contract (controller/admin_api): every method named, typed, scoped and bound;
requests round-trip through the codec and every defect is a BadRequest naming its field;
a real admin server on a temporary unix socket answers the typed client; the CLI prints a
refused request in one line."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import typing
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from gpuhive.config import Settings
from gpuhive.controller import admin_api as api
from gpuhive.controller import admin_client
from gpuhive.controller.admin import serve_admin, start_admin_server
from gpuhive.controller.admin_api import Emit, Json
from gpuhive.controller.admin_codec import decode, describe, encode, parse_line
from gpuhive.controller.admin_handlers import controller_handlers, handler_table, job_values
from gpuhive.controller.hive import Hive
from gpuhive.controller.jobs import JobSupervisor
from gpuhive.controller.node_ops import NodeOps
from gpuhive.controller.overlay_ops import OverlayOps
from gpuhive.controller.registry import Registry
from gpuhive.controller.service import HiveService
from gpuhive.controller.serving import ServeManager
from gpuhive.core import tokens
from gpuhive.errors import BadRequest, ControllerUnavailable, NodeNotFound
from gpuhive.serve.gateway.apikeys import ApiKeyStore
from gpuhive.testing import FakeNodes, Script
from gpuhive.testing.registry import NOW, enroll_agent
from gpuhive.transport.keys import PublicKeyInfo

# the admin API of 0.1.0, which the contract must name completely (issue 11)
METHODS_OF_0_1_0 = {
    "status", "overview", "invite.create", "invite.list", "invite.revoke", "nodes.list",
    "nodes.show", "nodes.remove", "nodes.add", "nodes.exec", "nodes.rank", "nodes.probe",
    "nodes.bench", "jobs.submit", "jobs.list", "jobs.show", "jobs.cancel", "jobs.logs",
    "overlay.status", "overlay.check", "serve.start", "serve.list", "serve.stop",
    "keys.create", "keys.list", "keys.revoke",
}
READ_ONLY = {"status", "overview", "invite.list", "nodes.list", "nodes.show", "nodes.rank",
             "jobs.list", "jobs.show", "jobs.logs", "overlay.status", "serve.list",
             "keys.list"}


# ---- the contract as data ----------------------------------------------------------------


def test_the_contract_names_every_method_once_with_a_scope() -> None:
    names = [r.method for r in api.REQUESTS]
    assert len(names) == len(set(names)) and set(names) == METHODS_OF_0_1_0
    assert set(api.METHODS) == METHODS_OF_0_1_0
    for kind in api.REQUESTS:
        assert isinstance(kind.scope, api.Scope), kind
        assert dataclasses.is_dataclass(kind) and kind.__dataclass_params__.frozen  # type: ignore[attr-defined]
    assert {r.method for r in api.REQUESTS if r.scope is api.READ} == READ_ONLY
    assert {r.method for r in api.REQUESTS if r.scope is api.WRITE} == \
        METHODS_OF_0_1_0 - READ_ONLY


def test_exactly_the_streaming_methods_declare_their_events() -> None:
    streams = {r.method: r.events for r in api.REQUESTS if r.streams()}
    assert streams == {"nodes.exec": ("line",), "jobs.logs": ("log", "progress", "job"),
                       "overlay.check": ("pair",)}


def test_every_method_has_one_handler_and_every_handler_a_method() -> None:
    parts: Any = object()  # binding calls nothing yet
    table = controller_handlers(parts, parts, parts, parts, parts, parts)
    assert set(table) == set(api.METHODS)
    assert all(table[m].kind is api.METHODS[m] for m in table)


def test_a_handler_table_refuses_twice_foreign_and_missing_bindings() -> None:
    async def status(req: api.Status, emit: Emit) -> Json:
        return {}

    small = {"status": api.Status}
    assert set(handler_table([api.Status.handled_by(status)], small)) == {"status"}
    with pytest.raises(ValueError, match="bound twice"):
        handler_table([api.Status.handled_by(status)] * 2, small)
    with pytest.raises(ValueError, match="without a handler: status"):
        handler_table([], small)

    @dataclasses.dataclass(frozen=True)
    class Impostor(api.Request[Json]):
        method: ClassVar[str] = "status"
        scope: ClassVar[api.Scope] = api.READ

    async def impostor(req: Impostor, emit: Emit) -> Json:
        return {}
    with pytest.raises(ValueError, match=r"Impostor \(status\) is not in the contract"):
        handler_table([Impostor.handled_by(impostor)], small)



MISBOUND = """\
from gpuhive.controller import admin_api as api
from gpuhive.controller.admin_api import Emit, Json, JsonRows


async def show(req: api.NodesShow, emit: Emit) -> Json:
    return {"name": req.name}


async def rows(req: api.NodesRemove, emit: Emit) -> JsonRows:
    return []
api.NodesShow.handled_by(show)
api.NodesRemove.handled_by(show)  # another request's handler
api.NodesRemove.handled_by(rows)  # another response type
api.NodesShow(node="x")  # a renamed field, as a CLI call site would write it
"""


def test_mypy_refuses_a_handler_bound_to_the_wrong_request_or_response(tmp_path: Path) -> None:
    from mypy import api as mypy_api

    path = tmp_path / "misbound.py"
    path.write_text(MISBOUND)
    out, _err, status = mypy_api.run(["--no-incremental", "--cache-dir", os.devnull,
                                      "--follow-imports", "silent", str(path)])
    errors = {int(line.split(":")[1]) for line in out.splitlines() if ": error:" in line}
    assert status == 1 and errors == {12, 13, 14}, out

# ---- codec: round trips -----------------------------------------------------------------


def _sample(tp: Any, name: str) -> Any:
    """A value of ``tp`` unlike any default, so a field dropped on the way shows."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is not None and type(None) in args:  # X | None: the X
        return _sample(next(a for a in args if a is not type(None)), name)
    if origin is not None and origin is not tuple and origin is not dict:  # int | str
        return _sample(args[-1], name)
    if origin is tuple:
        return (f"{name}-1", f"{name}-2")
    if origin is dict:
        return {"GPUHIVE_X": f"{name}-v"}
    if dataclasses.is_dataclass(tp):
        return _instance(tp)
    return {str: f"{name}-value", int: 42, bool: True, float: 2.5}[tp]


def _instance(cls: Any) -> Any:
    hints = typing.get_type_hints(cls)
    return cls(**{f.name: _sample(hints[f.name], f.name) for f in dataclasses.fields(cls)})


@pytest.mark.parametrize("kind", api.REQUESTS, ids=lambda k: k.method)
def test_every_request_round_trips_through_its_line(kind: type[api.Request[Any]]) -> None:
    req = _instance(kind)
    line = encode(req)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line)["method"] == kind.method
    back = parse_line(line)
    assert back == req and type(back) is kind
    # the defaults alone (required fields given) round-trip too
    hints = typing.get_type_hints(kind)
    required = {f.name: _sample(hints[f.name], f.name) for f in dataclasses.fields(kind)
                if f.default is dataclasses.MISSING}
    assert parse_line(encode(kind(**required))) == kind(**required)


def test_bool_fields_that_are_true_by_default_round_trip_false() -> None:
    for req in (api.NodesBench(gpu=False), api.ServeStart(model="m", wait=False)):
        assert parse_line(encode(req)) == req


def test_params_may_be_left_out_or_null_when_no_field_is_required() -> None:
    assert parse_line(b'{"method": "nodes.list"}') == api.NodesList()
    assert parse_line(b'{"method": "status", "params": null}\n') == api.Status()
    assert decode("nodes.rank", {"gpus": 2, "nodes": "2:3"}) == \
        api.NodesRank(gpus=2, nodes="2:3")


def test_types_are_described_in_words() -> None:
    assert describe(tuple[str, ...] | None) == "a list of strings or null"
    assert describe(int | str | None) == "an integer or a string or null"
    assert describe(dict[str, str]) == "an object of strings"



@pytest.mark.parametrize("values", [
    {"script": "train.py"},
    {"script": "t.py", "args": ["--steps", "3"], "nodes": "2:3", "gpus_per_node": 2,
     "min_vram": "12G", "backend": "gloo", "requirements": "req.txt", "max_restarts": 5,
     "name": "run-1", "mode": "diloco", "sync_every": 10, "compress": "bf16",
     "env": {"SEED": "1"}, "workdir": "/src"},
])
def test_a_job_spec_crosses_the_socket_as_the_same_job(values: dict[str, Any]) -> None:
    from gpuhive.cli.train import _train_spec
    from gpuhive.train.spec import build_spec

    spec = build_spec({"workdir": "/w", **values})
    sent = parse_line(encode(api.JobsSubmit(spec=_train_spec(spec))))
    assert isinstance(sent, api.JobsSubmit)
    assert build_spec(job_values(sent.spec)) == spec
    # a key the CLI leaves unset stays unset: the job spec's own default applies
    assert job_values(api.TrainSpec(script="a.py")) == {"script": "a.py", "args": []}

# ---- codec: every defect names its field --------------------------------------------------


def _refusal(line: bytes) -> BadRequest:
    with pytest.raises(BadRequest) as info:
        parse_line(line)
    assert info.value.code == "bad_request" and info.value.exit_code == 2
    assert info.value.hint
    return info.value


def _line(method: str, params: Any) -> bytes:
    return json.dumps({"method": method, "params": params}).encode() + b"\n"


@pytest.mark.parametrize(("line", "message", "field"), [
    (_line("nodes.remove", {"node": "alice"}),
     "nodes.remove: unknown field 'node'", "node"),
    (_line("nodes.remove", {}), "nodes.remove: missing field 'name'", "name"),
    (_line("invite.create", {"uses": "2"}),
     "invite.create: uses must be an integer, not a string", "uses"),
    (_line("invite.create", {"uses": True}),  # bool is not an int
     "invite.create: uses must be an integer, not true", "uses"),
    (_line("nodes.list", {"include_removed": 1}),
     "nodes.list: include_removed must be true or false, not an integer", "include_removed"),
    (_line("nodes.exec", {"target": "all", "argv": ["uname", 3]}),
     "nodes.exec: argv[1] must be a string, not an integer", "argv[1]"),
    (_line("nodes.exec", {"target": "all", "argv": "uname -a"}),
     "nodes.exec: argv must be a list of strings, not a string", "argv"),
    (_line("keys.create", {"name": "k", "models": [None]}),
     "keys.create: models[0] must be a string, not null", "models[0]"),
    (_line("nodes.rank", {"gpus": 1.5}),
     "nodes.rank: gpus must be an integer or a string or null, not a number", "gpus"),
    (_line("jobs.submit", {"spec": {"script": "a.py", "max_restarts": "3"}}),
     "jobs.submit: spec.max_restarts must be an integer or null, not a string",
     "spec.max_restarts"),
    (_line("jobs.submit", {"spec": {"script": "a.py", "gpu": 1}}),
     "jobs.submit: unknown field 'spec.gpu'", "spec.gpu"),
    (_line("jobs.submit", {"spec": {"args": []}}),
     "jobs.submit: missing field 'spec.script'", "spec.script"),
    (_line("jobs.submit", {"spec": {"script": "a.py", "env": {"A": 1}}}),
     "jobs.submit: spec.env.A must be a string, not an integer", "spec.env.A"),
    (_line("jobs.logs", ["j-1"]), "jobs.logs: params must be an object, not a list", "params"),
])
def test_a_defect_in_the_params_names_the_method_and_the_field(line: bytes, message: str,
                                                               field: str) -> None:
    refused = _refusal(line)
    assert refused.message == message
    assert refused.data["method"] == json.loads(line)["method"]
    assert refused.data["field"] == field


def test_an_unknown_field_lists_the_fields_the_method_takes() -> None:
    assert "nodes.remove takes name;" in _refusal(_line("nodes.remove", {"node": "a"})).hint


def test_an_unknown_method_suggests_the_close_ones() -> None:
    refused = _refusal(_line("nodes.lst", {}))
    assert refused.message == "unknown admin method 'nodes.lst'"
    assert refused.data["method"] == "nodes.lst" and "nodes.list" in refused.hint
    assert "gpuhive down" in _refusal(_line("frobnicate", {})).hint  # nothing close


@pytest.mark.parametrize(("line", "message"), [
    (b"nodes.list\n", "admin request is not JSON: "),
    (b"\xff\xfe{}\n", "admin request is not JSON: "),
    (b"[1, 2]\n", "admin request is not a JSON object"),
    (b'{"params": {}}\n', "admin request names no method"),
    (b'{"method": 7}\n', "admin request names no method"),
    (b"", "admin request is not JSON: "),
])
def test_a_line_that_is_no_request_object_is_refused(line: bytes, message: str) -> None:
    assert _refusal(line).message.startswith(message)


def test_a_request_over_the_size_limit_is_refused_on_both_sides() -> None:
    big = _line("nodes.exec", {"target": "all", "argv": ["x" * api.MAX_REQUEST]})
    refused = _refusal(big)
    assert refused.message == f"admin request is over the limit of {api.MAX_REQUEST} bytes"
    assert refused.data["size"] == len(big)
    with pytest.raises(BadRequest, match="over the limit"):
        encode(api.NodesExec(target="all", argv=("x" * api.MAX_REQUEST,)))


def test_the_client_decodes_dict_params_before_it_connects(tmp_path: Path) -> None:
    nowhere = tmp_path / "admin.sock"  # no server: a refusal here was never sent
    with pytest.raises(BadRequest, match=r"nodes\.remove: unknown field 'node'"):
        admin_client.call(nowhere, "nodes.remove", {"node": "alice"})
    with pytest.raises(ControllerUnavailable):
        admin_client.call(nowhere, "nodes.remove", {"name": "alice"})
    with pytest.raises(TypeError, match=r"nodes\.remove streams no events"):
        admin_client.request(nowhere, api.NodesRemove(name="a"), on_event=print)


# ---- a real admin server on a temporary socket ----------------------------------------------

HOST_KEY = PublicKeyInfo("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyOfTheHive",
                         "SHA256:" + "A" * 43)


@contextlib.contextmanager
def _short_dir() -> Iterator[Path]:
    # unix socket paths are limited to ~107 bytes; pytest's tmp_path can be longer
    with tempfile.TemporaryDirectory(prefix="ghv-admin-", dir="/tmp") as d:
        yield Path(d)


class Controller:
    """The controller's parts over FakeNodes and a temporary registry, served on a socket."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sock = root / "admin.sock"
        self.registry = Registry(root / "registry.db")
        self.settings = Settings(endpoint="hive.example:2222")
        clock = lambda: NOW  # noqa: E731
        self.nodes = FakeNodes()
        hive = Hive(self.registry, self.settings, "ssh-ed25519 CLIENT", clock)
        self.ops = NodeOps(self.registry, self.nodes, self.settings, clock)
        self.jobs = JobSupervisor(self.registry, self.nodes, self.ops, root / "jobs", clock)
        self.serving = ServeManager(self.registry, self.nodes, self.ops, self.settings, root,
                                    clock, health={})
        self.keys = ApiKeyStore(root / "apikeys.db")
        self.service = HiveService(self.registry, hive, self.nodes, self.settings, HOST_KEY,
                                   clock, jobs=self.jobs, serving=self.serving)
        self.overlay = OverlayOps(self.registry, self.nodes, None)

    @contextlib.asynccontextmanager
    async def serving_socket(self) -> AsyncIterator[Path]:
        server = await start_admin_server(self.service, self.ops, self.jobs, self.overlay,
                                          self.serving, self.keys, self.sock)
        try:
            yield self.sock
        finally:
            server.close()
            await server.wait_closed()
            self.keys.close()


async def _raw(sock: Path, data: bytes) -> list[dict[str, Any]]:
    """Send bytes as they are; the lines the server answers."""
    reader, writer = await asyncio.open_unix_connection(str(sock), limit=4 * api.MAX_REQUEST)
    with contextlib.suppress(ConnectionError):
        writer.write(data)
        await writer.drain()
    lines = []
    while line := await reader.readline():
        lines.append(json.loads(line))
    writer.close()
    return lines


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_a_real_admin_server_answers_typed_client_calls() -> None:
    async def go(ctl: Controller) -> None:
        enroll_agent(ctl.registry, "alice")
        ctl.nodes.add("alice").on("^uname -a$", Script().out("Linux alice").err("warn"))
        async with ctl.serving_socket() as sock:
            made = await asyncio.to_thread(
                admin_client.request, sock, api.InviteCreate(name="bob", ttl="2h", uses=2))
            assert tokens.parse_token(made["token"]).fingerprint == HOST_KEY.fingerprint
            assert (made["name"], made["max_uses"]) == ("bob", 2)
            listed = await asyncio.to_thread(admin_client.request, sock, api.InviteList())
            assert [i["id"] for i in listed if i["name"] == "bob"] == [made["id"]]
            # the lab's form: method and dict, decoded through the same contract (0.1.0's
            # token_id included)
            revoked = await asyncio.to_thread(admin_client.call, sock, "invite.revoke",
                                              {"token_id": made["id"]})
            assert revoked["state"] == "revoked"
            events: list[dict[str, Any]] = []
            results = await asyncio.to_thread(
                admin_client.request, sock, api.NodesExec(target="alice", argv=("uname", "-a")),
                on_event=events.append)
            assert results == [{"node": "alice", "exit_status": 0, "error": ""}]
            assert sorted((e["stream"], e["line"]) for e in events) == \
                [("err", "warn"), ("out", "Linux alice")]
            assert [n["name"] for n in await asyncio.to_thread(
                admin_client.request, sock, api.NodesList())] == ["alice"]
            # a controller error crosses the socket as its own class
            with pytest.raises(NodeNotFound) as missing:
                await asyncio.to_thread(admin_client.request, sock, api.NodesShow(name="carol"))
            assert "carol" in missing.value.message and missing.value.exit_code == 5
            key = await asyncio.to_thread(admin_client.request, sock,
                                          api.KeysCreate(name="app", models=("tiny",)))
            assert key["models"] == ["tiny"] and key["token"]
    with _short_dir() as root:
        run(go(Controller(root)))


def test_the_server_refuses_bad_requests_in_one_structured_line() -> None:
    async def go(ctl: Controller) -> None:
        enroll_agent(ctl.registry, "alice")
        invites = ctl.service.invite_list()
        async with ctl.serving_socket() as sock:
            for data, field in [(_line("nodes.remove", {"node": "alice"}), "node"),
                                (_line("nodes.remove", {"name": ["alice"]}), "name"),
                                (_line("invite.create", {"uses": False}), "uses"),
                                (_line("nodes.lst", {}), None),
                                (b"not json\n", None)]:
                [answer] = await _raw(sock, data)
                assert answer["ok"] is False and answer["error"]["code"] == "bad_request"
                assert answer["error"]["data"].get("field") == field
                assert "KeyError" not in answer["error"]["message"]
            # nothing was done for any of them
            assert ctl.service.invite_list() == invites
            assert [n.name for n in ctl.registry.list_nodes()] == ["alice"]
            # no newline within the limit: refused, not read to the end
            [answer] = await _raw(sock, b"{" + b" " * (api.MAX_REQUEST + 10))
            assert answer["error"]["code"] == "bad_request"
            assert "over the limit" in answer["error"]["message"]
            # and the server still answers the next client
            assert (await _raw(sock, _line("status", {})))[0]["ok"] is True
    with _short_dir() as root:
        run(go(Controller(root)))


def test_a_handler_that_emits_for_a_method_without_events_is_a_controller_error() -> None:
    async def status(req: api.Status, emit: Emit) -> Json:
        emit({"event": "line", "line": "stray"})
        return {}

    async def go(sock: Path) -> None:
        server = await serve_admin({"status": api.Status.handled_by(status)}, sock)
        try:
            [answer] = await _raw(sock, _line("status", {}))
            assert answer["ok"] is False
            assert answer["error"]["message"] == \
                "controller error: status streams no events in the admin contract"
        finally:
            server.close()
    with _short_dir() as root:
        run(go(root / "admin.sock"))


# ---- the CLI against a controller of another contract ----------------------------------------


@dataclasses.dataclass(frozen=True)
class NodesRemoveByNode(api.Request[Json]):
    """nodes.remove as a controller with a renamed field would take it."""

    method: ClassVar[str] = "nodes.remove"
    scope: ClassVar[api.Scope] = api.WRITE
    node: str


def test_the_cli_prints_a_refused_request_in_one_line_and_a_hint() -> None:
    removed: list[str] = []

    async def remove(req: NodesRemoveByNode, emit: Emit) -> Json:
        removed.append(req.node)
        return {}

    async def go(root: Path) -> subprocess.CompletedProcess[str]:
        server = await serve_admin({"nodes.remove": NodesRemoveByNode.handled_by(remove)},
                                   root / "admin.sock")
        env = {**os.environ, "GPUHIVE_HOME": str(root), "COLUMNS": "200", "NO_COLOR": "1"}
        try:
            return await asyncio.to_thread(
                subprocess.run, [sys.executable, "-m", "gpuhive", "nodes", "rm", "alice"],
                capture_output=True, text=True, env=env, timeout=60)
        finally:
            server.close()
    with _short_dir() as root:
        done = run(go(root))
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert lines[0] == "error: nodes.remove: unknown field 'name'"
    assert len(lines) == 2 and lines[1].startswith("  hint: nodes.remove takes node;")
    assert "Traceback" not in done.stderr and done.stdout == "" and removed == []

