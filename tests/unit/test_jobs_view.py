"""`gpuhive jobs` and `jobs show` text, from job records as the controller sends them."""

from __future__ import annotations

from typing import Any

from gpuhive.cli import jobs_view

NOW = 10_000.0


def _job(**kw: Any) -> dict[str, Any]:
    job: dict[str, Any] = {
        "id": "j-3417ec", "name": "", "state": "succeeded", "nodes": ["friend1", "friend2"],
        "spec": {"script": "train.py", "args": ["30", "--lr", "0.1 0.2"],
                 "workdir": "/home/me/proj", "min_nodes": 2, "max_nodes": 5, "mode": "ddp",
                 "requirements": None},
        "created_at": NOW - 200, "started_at": NOW - 190, "ended_at": NOW - 149, "reason": "",
        "events": [{"at": NOW - 190, "event": "started", "detail": "2 node(s) × 1 …"},
                   {"at": NOW - 149, "event": "succeeded",
                    "detail": "friend1, friend2 exited 0 after 41s"}],
        "exits": {"friend1": 0, "friend2": 0}, "lost": {},
        "launch": {"backend": "gloo", "nproc_per_node": 1, "rendezvous": "friend1:29697"}}
    job.update(kw)
    return job


def test_the_list_row_has_duration_and_end_and_no_repeated_id() -> None:
    row = jobs_view.list_row(_job(), NOW)
    assert row[0] == "j-3417ec" and row[1] == "-"
    assert row[3] == "friend1, friend2"
    assert row[5] == "41s"
    assert row[6] == "2m ago"  # ended, with no reason to give
    assert len(row) == len(jobs_view.LIST_COLUMNS)
    # 0.1.0 stored the id as the name of an unnamed job
    assert jobs_view.list_row(_job(name="j-3417ec"), NOW)[1] == "-"
    assert jobs_view.list_row(_job(name="my-run"), NOW)[1] == "my-run"


def test_a_running_job_shows_its_last_event_and_time_so_far() -> None:
    job = _job(state="running", ended_at=None, started_at=NOW - 75,
               events=[{"at": NOW - 75, "event": "started", "detail": "x"}])
    row = jobs_view.list_row(job, NOW)
    assert row[5] == "1m15s" and row[6] == "started: x"
    failed = jobs_view.list_row(_job(state="failed", reason="friend2 exited 1"), NOW)
    assert failed[6].endswith("ago: friend2 exited 1")


def test_no_kind_is_followed_by_an_empty_detail() -> None:
    assert jobs_view.event_text("succeeded", "") == "succeeded"
    assert jobs_view.event_text("synced", "code a already on both nodes (nothing sent)") == \
        "synced: code a already on both nodes (nothing sent)"
    old = _job(events=[{"at": NOW - 1, "event": "succeeded", "detail": ""}], ended_at=None,
               state="running")
    assert not jobs_view.last_cell(old, NOW).endswith(": ")


def test_show_says_what_ran_where_and_how_it_ended() -> None:
    lines = jobs_view.show_lines(_job(), NOW)
    text = "\n".join(lines)
    assert lines[0].startswith("[bold]j-3417ec[/bold]") and lines[0].count("j-3417ec") == 1
    assert "script       train.py 30 --lr '0.1 0.2'" in text
    assert "workdir      /home/me/proj" in text
    assert "nodes        friend1, friend2 (asked for 2:5)" in text
    assert "backend      gloo, 1 process(es) per node, rendezvous friend1:29697" in text
    assert "ran 41s" in text
    assert "exit codes   friend1 0, friend2 0" in text
    assert "reason" not in text  # nothing to explain


def test_show_names_failed_lost_and_stopped_nodes_and_escapes_markup() -> None:
    job = _job(state="failed", nodes=["friend1", "friend2", "friend3"],
               exits={"friend1": 1}, lost={"friend2": "session broke"},
               reason="friend1 exited 1 ([rank0]: ValueError: bad)")
    text = "\n".join(jobs_view.show_lines(job, NOW))
    assert "friend1 1, friend2 lost (session broke), friend3 stopped" in text
    assert r"\[rank0]: ValueError: bad" in text  # printed as written, not as markup


def test_show_of_a_job_that_never_started() -> None:
    job = _job(state="failed", nodes=[], started_at=None, launch={}, exits={},
               reason="the job needs 5 node(s) but only 3 can take it")
    text = "\n".join(jobs_view.show_lines(job, NOW))
    assert "none placed (asked for 2:5)" in text and "before starting" in text
    assert "exit codes" not in text and "backend" not in text


def test_a_queued_job_shows_its_place_and_what_it_waits_for() -> None:
    job = _job(state="queued", nodes=[], started_at=None, ended_at=None, queue_position=2,
               reason="needs 2 nodes with 1 free GPU; 1 qualifies; friend3: the agent is paused",
               events=[{"at": NOW - 5, "event": "queued", "detail": "train.py on 2 node(s)"}],
               exits={}, launch={})
    row = jobs_view.list_row(job, NOW)
    assert row[6].startswith("#2 in the queue: needs 2 nodes with 1 free GPU")
    text = "\n".join(jobs_view.show_lines(job, NOW))
    assert "queue        #2, priority 0" in text and "friend3: the agent is paused" in text


def test_show_lists_what_the_job_held_and_why_it_was_released() -> None:
    held = [{"node": "friend1", "gpus": [0, 1], "released_at": NOW - 60,
             "release_reason": "its processes are gone (swept)"},
            {"node": "friend2", "gpus": [], "released_at": None, "release_reason": ""}]
    text = "\n".join(jobs_view.show_lines(_job(holdings=held), NOW))
    assert ("holds        friend1 GPUs 0,1 (released 1m ago: its processes are gone (swept)); "
            "friend2 CPU (held)") in text
