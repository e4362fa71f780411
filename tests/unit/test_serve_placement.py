"""The serve scale decision: how many of N fit and why not the rest, and which replicas go
first when scaling down."""

from __future__ import annotations

import pytest

from gpuhive.serve.placement import ReplicaInfo, Unfit, plan_scale


def _r(rid: str, node: str, state: str = "ready", rel: float = 0.5, busy: int = 0) \
        -> ReplicaInfo:
    return ReplicaInfo(rid, node, state, rel, busy)


def test_new_model_on_the_best_nodes() -> None:
    plan = plan_scale("m", 2, [], ["f1", "f2", "f3"], [])
    assert plan.start_on == ("f1", "f2") and plan.unplaced == 0
    assert plan.summary() == "2 of 2 placed on f1, f2"


def test_two_of_three_placed_names_the_node_that_cannot_and_why() -> None:
    plan = plan_scale("m", 3, [], ["f1", "f2"], [Unfit("f3", "needs 900 MiB, 300 free")])
    assert plan.start_on == ("f1", "f2") and plan.placed == 2 and plan.unplaced == 1
    assert plan.summary() == ("2 of 3 placed (f3: needs 900 MiB, 300 free; f1 and f2: "
                              "already serving it (one replica per node))")


def test_short_with_no_other_node_at_all() -> None:
    plan = plan_scale("m", 3, [_r("a", "f1")], [], [])
    assert plan.placed == 1 and plan.start_on == ()
    assert plan.why_not() == "f1: already serving it (one replica per node)"
    assert plan_scale("m", 1, [], [], []).why_not() == "no other node in the hive"


def test_scale_up_keeps_what_runs_and_skips_nodes_that_hold_one() -> None:
    # f1 holds one (and the ranking now excludes it for the VRAM that replica uses)
    plan = plan_scale("m", 3, [_r("a", "f1")], ["f2", "f1", "f3"],
                      [Unfit("f1", "not enough VRAM")])
    assert plan.keep == ("a",) and plan.start_on == ("f2", "f3") and plan.unplaced == 0
    assert plan.summary() == "scaled 1 → 3: started on f2, f3"


def test_scale_down_stops_the_least_healthy_then_the_busiest() -> None:
    current = [_r("a", "f1", rel=0.9, busy=0), _r("b", "f2", rel=0.9, busy=4),
               _r("c", "f3", state="starting", rel=0.95), _r("d", "f4", rel=0.3)]
    plan = plan_scale("m", 1, current, ["f5"], [])
    assert plan.stop == ("c", "d", "b") and plan.keep == ("a",) and plan.start_on == ()
    assert plan.summary(["f3", "f4", "f2"]) == "scaled 4 → 1: stopped f3, f4, f2"


def test_ended_replicas_are_forgotten_and_their_node_may_serve_again() -> None:
    current = [_r("a", "f1", state="failed"), _r("b", "f2")]
    plan = plan_scale("m", 2, current, ["f1", "f2"], [])
    assert plan.forget == ("a",) and plan.keep == ("b",) and plan.start_on == ("f1",)
    same = plan_scale("m", 1, current, ["f1", "f2"], [])
    assert same.summary() == "already 1 replica(s): nothing to change" and same.forget == ("a",)


def test_at_least_one() -> None:
    with pytest.raises(ValueError):
        plan_scale("m", 0, [], ["f1"], [])
