"""Names the owner types: "did you mean …" for a name that is not there, and picking the one
join token a name stands for. Pure: records and the time come in, a value or an error out."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

from gpuhive.core.tokens import TokenRecord
from gpuhive.errors import AmbiguousName, InviteNotFound


def close_names(name: str, known: Iterable[str], limit: int = 3) -> list[str]:
    """The known names closest to ``name`` (a typo, another case), best first."""
    known = sorted({k for k in known if k})
    by_lower = {k.lower(): k for k in known}
    same_case = by_lower.get(name.lower())
    matches = difflib.get_close_matches(name.lower(), list(by_lower), n=limit, cutoff=0.6)
    found = [by_lower[m] for m in matches]
    if same_case and same_case not in found:
        found.insert(0, same_case)
    return [f for f in found if f != name][:limit]


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``"did you mean alice? "`` (with its trailing space), or ``""`` when nothing is close."""
    close = close_names(name, known)
    if not close:
        return ""
    return "did you mean " + " or ".join(close) + "? "


def pick_token(records: Sequence[TokenRecord], id_or_name: str, now: float) -> TokenRecord:
    """The join token ``id_or_name`` stands for: the token with that id, else the one valid
    token with that name. Several valid ones with the name: ``AmbiguousName`` listing their
    ids. None: ``InviteNotFound``, saying what the name's tokens are if it has only spent
    ones, or which names and ids are close."""
    for rec in records:
        if rec.token_id == id_or_name:
            return rec
    named = [r for r in records if r.name and r.name == id_or_name]
    valid = [r for r in named if r.state(now) == "valid"]
    if len(valid) == 1:
        return valid[0]
    if valid:
        ids = ", ".join(r.token_id for r in valid)
        raise AmbiguousName(f"{len(valid)} valid join tokens are named {id_or_name!r}: {ids}",
                            hint="revoke one by its id: "
                                 f"`gpuhive invite revoke {valid[0].token_id}`",
                            name=id_or_name, ids=[r.token_id for r in valid])
    if named:
        states = ", ".join(f"{r.token_id} {r.state(now)}" for r in named)
        raise InviteNotFound(f"no valid join token named {id_or_name!r} ({states})",
                             hint="nothing to revoke: it can no longer be used; "
                                  "`gpuhive invite ls` shows every token",
                             name=id_or_name)
    known = [r.token_id for r in records] + [r.name for r in records
                                              if r.state(now) == "valid"]
    raise InviteNotFound(f"no join token with id or name {id_or_name!r}",
                         hint=did_you_mean(id_or_name, known)
                         + "`gpuhive invite ls` shows every token", name=id_or_name)
