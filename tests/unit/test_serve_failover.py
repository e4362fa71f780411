from gpuhive.serve.api import Replica
from gpuhive.serve.gateway.failover import (
    FinishLength,
    GiveUp,
    Progress,
    TryContinue,
    TryFresh,
    is_continuable,
    is_replica_fault,
    plan_next,
)

A = Replica("a", "m", "n1", "http://127.0.0.1:1")
B = Replica("b", "m", "n2", "http://127.0.0.1:2")


def plan(cands: list[Replica], progress: Progress, attempts: int = 1, *,
         continuable: bool = True, max_tokens: int | None = 100) -> object:
    return plan_next(cands, progress, attempts=attempts, max_attempts=3,
                     continuable=continuable, max_tokens=max_tokens)


def test_before_any_text_the_next_replica_gets_the_same_request() -> None:
    assert plan([A, B], Progress(), attempts=0) == TryFresh(A)
    assert plan([B], Progress(started=True), attempts=1) == TryFresh(B)  # role chunk only


def test_no_replica_at_all_and_too_many_attempts() -> None:
    step = plan([], Progress(), attempts=0)
    assert isinstance(step, GiveUp) and "no replica" in step.reason
    step = plan([A], Progress(), attempts=3)
    assert isinstance(step, GiveUp) and "3 replicas failed" in step.reason


def test_mid_stream_continues_with_what_is_left_of_the_budget() -> None:
    assert plan([B], Progress(text="abc", tokens=3)) == TryContinue(B, 97)
    assert plan([B], Progress(text="abc", tokens=3), max_tokens=None) == TryContinue(B, None)


def test_budget_used_up_finishes_normally() -> None:
    assert plan([B], Progress(text="x" * 100, tokens=100)) == FinishLength()
    assert plan([], Progress(tokens=120), continuable=False) == FinishLength()


def test_mid_stream_gives_up_when_it_cannot_continue() -> None:
    for step in (plan([B], Progress(tokens=3), continuable=False),
                 plan([], Progress(tokens=3)),
                 plan([B], Progress(tokens=3), attempts=3)):
        assert isinstance(step, GiveUp)


def test_what_can_be_continued() -> None:
    chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert is_continuable(chat, chat=True, has_template=True)
    assert not is_continuable(chat, chat=True, has_template=False)
    assert not is_continuable({**chat, "tools": [{}]}, chat=True, has_template=True)
    assert not is_continuable({**chat, "n": 2}, chat=True, has_template=True)
    assert is_continuable({"prompt": "x"}, chat=False, has_template=False)
    assert not is_continuable({"prompt": "x", "logprobs": 2}, chat=False, has_template=False)
    assert not is_continuable({"prompt": ["x", "y"]}, chat=False, has_template=False)


def test_which_statuses_blame_the_replica() -> None:
    assert [s for s in (400, 401, 404, 408, 413, 422, 429, 500, 502, 503)
            if is_replica_fault(s)] == [408, 429, 500, 502, 503]
