"""Names the owner types: "did you mean …" for a name that is not there, and picking the one
join token a name stands for. Pure: records and the time come in, a value or an error out."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

from gpuhive.core.tokens import TokenRecord
from gpuhive.errors import AmbiguousName, InviteNotFound


def edit_distance(a: str, b: str) -> int:
    """Edits (insert, delete, change, swap two neighbours) that turn ``a`` into ``b``."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cur[j] = min(cur[j], prev2[j - 2] + 1)  # "tset" → "test": one swap
        prev2, prev = prev, cur
    return prev[-1]


def close_names(name: str, known: Iterable[str], limit: int = 3) -> list[str]:
    """The known names closest to ``name`` (a typo, a swap, another case), best first."""
    wanted = name.lower()
    allowed = 1 if len(wanted) < 4 else 2
    scored = []
    for k in sorted({k for k in known if k and k != name}):
        d = edit_distance(wanted, k.lower())
        similar = difflib.SequenceMatcher(None, wanted, k.lower()).ratio() >= 0.75
        if d <= allowed or similar:
            scored.append((d, k))
    return [k for _, k in sorted(scored)[:limit]]


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
