"""Admin request lines <-> the contract's request objects (`admin_api`).

Decoding is strict, the way `core/messages` is for agent messages: a request line is one
JSON object ``{"method": str, "params": object}`` of at most ``MAX_REQUEST`` bytes, and its
params must be exactly the request class's fields with their types (bool is not an int, list
items are checked, no unknown field, every field without a default present). Anything else
is a ``BadRequest`` naming the method and the field, raised before a handler runs. Pure: no
I/O, so the server, the client and the tests share it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from typing import Any

from gpuhive.controller import admin_api as api
from gpuhive.core.names import close_names
from gpuhive.errors import BadRequest

VERSION_HINT = ("this client and the controller may be different gpuhive versions; after an "
                "upgrade restart the controller (`gpuhive down`, then `gpuhive up --detach`)")


def encode(req: api.Request[Any]) -> bytes:
    """The request line for ``req`` (newline included)."""
    params = dataclasses.asdict(req)  # type: ignore[call-overload]
    line = json.dumps({"method": req.method, "params": params}).encode() + b"\n"
    if len(line) > api.MAX_REQUEST:
        raise too_long(len(line))
    return line


def too_long(size: int | None = None) -> BadRequest:
    return BadRequest(f"admin request is over the limit of {api.MAX_REQUEST} bytes",
                      hint="send less in one request (a smaller job spec or command line)",
                      limit=api.MAX_REQUEST, size=size)


def parse_line(line: bytes,
               methods: typing.Mapping[str, type[api.Request[Any]]] = api.METHODS,
               ) -> api.Request[Any]:
    """One request line, decoded with the request classes of ``methods``."""
    if len(line) > api.MAX_REQUEST:
        raise too_long(len(line))
    try:
        msg = json.loads(line)
    except ValueError as exc:  # not UTF-8 either
        raise BadRequest(f"admin request is not JSON: {exc}", hint=VERSION_HINT) from exc
    if not isinstance(msg, dict):
        raise BadRequest("admin request is not a JSON object", hint=VERSION_HINT,
                         got=_kind(msg))
    return decode(msg.get("method"), msg.get("params"), methods)


def decode(method: object, params: object,
           methods: typing.Mapping[str, type[api.Request[Any]]] = api.METHODS,
           ) -> api.Request[Any]:
    """``params`` as the request object of ``method``; a missing or null params is {}."""
    if not isinstance(method, str):
        raise BadRequest("admin request names no method", hint=VERSION_HINT,
                         got=_kind(method))
    kind = methods.get(method)
    if kind is None:
        near = close_names(method, list(methods))
        raise BadRequest(f"unknown admin method {method!r}",
                         hint=f"did you mean {' or '.join(near)}?" if near else VERSION_HINT,
                         method=method)
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise BadRequest(f"{method}: params must be an object, not {_kind(params)}",
                         hint=VERSION_HINT, method=method, field="params")
    built: api.Request[Any] = _build(kind, params, method, "")
    return built


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _build(cls: type, obj: dict[str, Any], method: str, prefix: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(obj) - set(fields))
    if unknown:
        takes = ", ".join(fields) or "no fields"
        raise BadRequest(f"{method}: unknown field {prefix + unknown[0]!r}",
                         hint=f"{method} takes {takes}; {VERSION_HINT}",
                         method=method, field=prefix + unknown[0])
    for name, f in fields.items():
        required = f.default is dataclasses.MISSING and \
            f.default_factory is dataclasses.MISSING
        if required and name not in obj:
            raise BadRequest(f"{method}: missing field {prefix + name!r}", hint=VERSION_HINT,
                             method=method, field=prefix + name)
    hints = _hints(cls)
    return cls(**{name: _value(value, hints[name], method, prefix + name)
                  for name, value in obj.items()})


def _value(value: Any, tp: Any, method: str, where: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # X | None: an item deep in X keeps X's own error
            try:
                return _value(value, options[0], method, where)
            except BadRequest as exc:
                if exc.data.get("field") != where:
                    raise
                raise _wrong(value, tp, method, where) from None
        for option in options:
            try:
                return _value(value, option, method, where)
            except BadRequest:
                continue
        raise _wrong(value, tp, method, where)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        if not isinstance(value, list):
            raise _wrong(value, tp, method, where)
        return tuple(_value(v, args[0], method, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise _wrong(value, tp, method, where)
        return {k: _value(v, args[1], method, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            raise _wrong(value, tp, method, where)
        return _build(tp, value, method, where + ".")
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif tp is str:
        ok = isinstance(value, str)
    else:  # a type the contract should not use: caught by the round-trip test
        raise TypeError(f"the admin contract cannot decode {tp!r} ({method} {where})")
    if not ok:
        raise _wrong(value, tp, method, where)
    return value


def _wrong(value: Any, tp: Any, method: str, where: str) -> BadRequest:
    want = describe(tp)
    return BadRequest(f"{method}: {where} must be {want}, not {_kind(value)}",
                      hint=VERSION_HINT, method=method, field=where, expected=want,
                      got=_kind(value))


_NOUNS = {str: ("a string", "strings"), int: ("an integer", "integers"),
          float: ("a number", "numbers"), bool: ("true or false", "booleans"),
          type(None): ("null", "nulls")}


def describe(tp: Any, plural: bool = False) -> str:
    """A type of the contract in words: ``tuple[str, ...] | None`` → 'a list of strings or
    null'."""
    if tp in _NOUNS:
        return _NOUNS[tp][plural]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        return " or ".join(describe(a, plural) for a in args)
    if origin is tuple:
        return ("lists" if plural else "a list") + f" of {describe(args[0], True)}"
    if origin is dict:
        return ("objects" if plural else "an object") + f" of {describe(args[1], True)}"
    return "objects" if plural else "an object"


def _kind(value: Any) -> str:
    """A JSON value's kind, as the errors name it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    for tp, noun in ((int, "an integer"), (float, "a number"), (str, "a string"),
                     (list, "a list"), (dict, "an object")):
        if isinstance(value, tp):
            return noun
    return type(value).__name__
