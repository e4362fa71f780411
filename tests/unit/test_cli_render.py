from rich.console import Console

from gpuhive.cli.render import plain_table
from gpuhive.cli.status_view import render


def _text(renderable: object) -> str:
    c = Console(width=140, record=True)
    c.print(renderable)
    return c.export_text()


def test_plain_table_has_the_headers_and_no_border() -> None:
    t = plain_table("A", "B")
    t.add_row("1", "2")
    text = _text(t)
    assert text.split() == ["A", "B", "1", "2"] and "─" not in text


def test_live_view_shows_each_replicas_tokens_per_second() -> None:
    data = {"status": {"pid": 7, "endpoint": "ctl:2222", "nodes": {"online": 1},
                       "connected": 1},
            "nodes": [], "events": [], "jobs": [],
            "replicas": [{"model": "tiny", "node": "friend1", "state": "ready",
                          "in_flight": 2, "tokens_per_s": 41.26},
                         {"model": "tiny", "node": "friend2", "state": "starting",
                          "in_flight": 0, "tokens_per_s": None}]}
    lines = _text(render(data)).splitlines()
    assert any("TOKENS/S" in line and "IN FLIGHT" in line for line in lines)
    assert any(line.split()[1:6] == ["tiny", "friend1", "ready", "41.3", "2"] for line in lines
               if "friend1" in line)
    assert any("friend2" in line and " - " in line for line in lines)
