"""Names the owner types and the hints that answer them: "did you mean", invite revoke by
name, one exit code for "not found", and hints that name the real next step."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpuhive.cli.common import not_a_controller_home
from gpuhive.cli.invite import until, usage_problem
from gpuhive.core.names import close_names, did_you_mean, edit_distance, pick_token
from gpuhive.core.tokens import TokenRecord
from gpuhive.errors import (
    AmbiguousName,
    InviteNotFound,
    KeyNotFound,
    ModelNotServed,
    NodeNotFound,
    NotFound,
    error_class,
    from_dict,
)
from gpuhive.serve.gateway.apikeys import ApiKeyStore

NOW = 1000.0


def _tok(token_id: str, name: str, *, uses: int = 0, expires: float = NOW + 3600,
         revoked: float | None = None) -> TokenRecord:
    return TokenRecord(token_id, name, "h", NOW - 10, expires, 1, uses, revoked)


def test_close_names_finds_typos_and_case_but_not_strangers() -> None:
    known = ["alice", "bob", "carol", "Alicia"]
    assert close_names("alcie", known)[0] == "alice"
    assert close_names("BOB", known) == ["bob"]
    assert close_names("zzz", known) == []
    assert did_you_mean("carl", known) == "did you mean carol? "
    assert did_you_mean("zzz", known) == ""
    assert close_names("alice", known) == ["Alicia"]  # the name itself is not a suggestion
    assert close_names("tset", ["tests", "prod"]) == ["tests"]  # a swap and a missing letter
    assert close_names("ab", ["xy", "abc"]) == ["abc"]  # short names: one edit at most
    assert edit_distance("tset", "test") == 1 and edit_distance("", "abc") == 3


def test_pick_token_by_id_then_by_the_one_valid_name() -> None:
    records = [_tok("aaaaaaaaaaaa", "alice", uses=1), _tok("bbbbbbbbbbbb", "alice"),
               _tok("cccccccccccc", "")]
    assert pick_token(records, "cccccccccccc", NOW).token_id == "cccccccccccc"
    assert pick_token(records, "aaaaaaaaaaaa", NOW).token_id == "aaaaaaaaaaaa"  # used: by id
    assert pick_token(records, "alice", NOW).token_id == "bbbbbbbbbbbb"  # the valid one


def test_pick_token_ambiguous_lists_the_ids() -> None:
    records = [_tok("aaaaaaaaaaaa", "bob"), _tok("bbbbbbbbbbbb", "bob")]
    with pytest.raises(AmbiguousName) as info:
        pick_token(records, "bob", NOW)
    assert "aaaaaaaaaaaa" in info.value.message and "bbbbbbbbbbbb" in info.value.message
    assert info.value.exit_code == 2 and "invite revoke aaaaaaaaaaaa" in info.value.hint


def test_pick_token_not_found_says_why_and_suggests() -> None:
    records = [_tok("aaaaaaaaaaaa", "carol", expires=NOW - 1), _tok("bbbbbbbbbbbb", "dave")]
    with pytest.raises(InviteNotFound, match=r"no valid join token named 'carol' "
                                             r"\(aaaaaaaaaaaa expired\)"):
        pick_token(records, "carol", NOW)
    with pytest.raises(InviteNotFound) as info:
        pick_token(records, "dav", NOW)
    assert info.value.hint.startswith("did you mean dave?") and "invite ls" in info.value.hint


def test_not_found_is_one_exit_code_for_every_kind_and_survives_the_wire() -> None:
    kinds = (NodeNotFound, KeyNotFound, InviteNotFound, ModelNotServed)
    assert {k.exit_code for k in kinds} == {NotFound.exit_code} == {5}
    for kind in kinds:
        again = from_dict(kind("x", hint="h").to_dict())
        assert type(again) is kind and again.exit_code == 5
    assert error_class("ambiguous_name") is AmbiguousName


def test_keys_revoke_unknown_name_suggests_and_already_revoked_says_so(tmp_path: Path) -> None:
    store = ApiKeyStore(tmp_path / "keys.db")
    store.create("tests", now=0.0)
    with pytest.raises(KeyNotFound) as info:
        store.revoke("test", now=1.0)
    assert info.value.hint.startswith("did you mean tests?")
    assert "`gpuhive keys ls`" in info.value.hint and "keys list" not in info.value.hint
    store.revoke("tests", now=2.0)
    with pytest.raises(KeyNotFound, match="already revoked"):
        store.revoke("tests", now=3.0)


def test_invite_needs_a_name_or_anyone() -> None:
    assert "--name FRIEND" in usage_problem("", False)
    assert "exclude each other" in usage_problem("alice", True)
    assert usage_problem("alice", False) == usage_problem("", True) == ""


@pytest.mark.parametrize(("seconds", "text"), [
    (7 * 86400, "in 7d"), (7 * 86400 - 5, "in 7d"), (24 * 3600, "in 24h"),
    (23 * 3600 + 100, "in 23h"), (45 * 60, "in 45m"), (20, "in 1m"), (0, "now"),
    (3 * 86400 + 3600, "in 3d"),
])
def test_invite_expiry_reads_like_a_person_says_it(seconds: float, text: str) -> None:
    assert until(seconds) == text


def test_no_controller_home_points_at_init_the_lab_or_the_agent(tmp_path: Path) -> None:
    fresh = not_a_controller_home(tmp_path, home_set=False, agent_home=False, labs=[])
    assert "gpuhive init" in fresh.hint and "gpuhive up`" not in fresh.hint.split(",")[0]
    assert "no GPUHIVE_HOME is set" in fresh.message
    lab = not_a_controller_home(tmp_path, home_set=False, agent_home=False,
                                labs=[Path("/tmp/gpuhive-lab/controller")])
    assert "export GPUHIVE_HOME=/tmp/gpuhive-lab/controller" in lab.hint
    agent = not_a_controller_home(tmp_path, home_set=True, agent_home=True, labs=[])
    assert "agent's home" in agent.message and "gpuhive agent status" in agent.hint
