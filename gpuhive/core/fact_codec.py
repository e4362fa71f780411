"""How the typed node facts (``core/node_facts``, ``core/spoke_report``) read and write the
JSON they are stored and sent as. Pure.

The rules every fact type keeps, so that a record read from a 0.1.0 registry, an older
agent or a newer one and written back is the JSON it was:

* a missing key reads as the field's default;
* a key of the wrong type (a string RTT, a bool where a number goes) reads as missing and is
  not written back: typed code never sees it, and no consumer gets it again;
* a key the type does not know is kept as it was (``extra``) and written back: a newer
  controller's facts survive an older one rewriting the column;
* ``to_dict`` writes a field when the stored dict had it (even as ``null``: ``present``
  remembers) or when its value is not the default, so what was absent stays absent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

# meta fields every fact type has: not facts themselves
META = frozenset({"present", "extra"})


class WrongType(Exception):
    """A stored value that does not fit its field (internal: it reads as missing)."""


Reader = Callable[[Any], Any]


def read(d: Mapping[str, Any], readers: Mapping[str, Reader]
         ) -> tuple[dict[str, Any], frozenset[str], dict[str, Any]]:
    """(values of the known keys that read well, those keys, the unknown keys as stored)."""
    values: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, raw in d.items():
        reader = readers.get(key)
        if reader is None:
            extra[key] = raw
            continue
        try:
            values[key] = reader(raw)
        except WrongType:
            continue
    return values, frozenset(values), extra


def write(fact: Any) -> dict[str, Any]:
    """The JSON of a fact object under the rules above (unknown keys first, as stored)."""
    out: dict[str, Any] = dict(fact.extra)
    for f in dataclasses.fields(fact):
        if f.name in META:
            continue
        value = getattr(fact, f.name)
        if f.name in fact.present or value != _default(f):
            out[f.name] = _jsonable(value)
    return out


T = TypeVar("T")


def replace(fact: T, **changes: Any) -> T:
    """``dataclasses.replace`` for facts: a field the code sets is written only when it is
    not its default (setting ``status=None`` removes the key, it does not write null)."""
    present = frozenset(fact.present) - set(changes)  # type: ignore[attr-defined]
    return dataclasses.replace(fact, **changes, present=present)  # type: ignore[type-var]


def stored(from_dict: Callable[[Mapping[str, Any]], T], value: object) -> T | None:
    """A JSON column or answer field as a fact object; None for ``{}``, null or a non-object
    (what a node without the fact has)."""
    if not isinstance(value, Mapping) or not value:
        return None
    return from_dict(value)


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise TypeError(f"fact field {f.name} has no default")  # every fact may be missing


def _jsonable(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    return value


# ---- readers: the value as the field holds it, or WrongType ----------------------------

def text(v: Any) -> str:
    if not isinstance(v, str):
        raise WrongType
    return v


def opt_text(v: Any) -> str | None:
    return None if v is None else text(v)


def number(v: Any) -> float:
    # ints stay ints (21 is written back as 21, not 21.0); a bool is not a number
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise WrongType
    return v


def opt_number(v: Any) -> float | None:
    return None if v is None else number(v)


def opt_int(v: Any) -> int | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise WrongType
    return v


def flag(v: Any) -> bool:
    if not isinstance(v, bool):
        raise WrongType
    return v


def opt_flag(v: Any) -> bool | None:
    return None if v is None else flag(v)


def texts(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise WrongType
    return tuple(v)


def nested(from_dict: Callable[[Mapping[str, Any]], T]) -> Callable[[Any], T | None]:
    """A field holding another fact object (null stays null)."""
    def reader(v: Any) -> T | None:
        if v is None:
            return None
        if not isinstance(v, Mapping):
            raise WrongType
        return from_dict(v)
    return reader
