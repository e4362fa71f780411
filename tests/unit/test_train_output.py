"""A job's output lines: who printed them, the c10d reverse-DNS warning, `jobs logs` filters."""

from __future__ import annotations

from gpuhive.train import output
from gpuhive.train.output import LogFilter, OutputLine

# as torch 2.13 printed them in the lab, from torchrun's agent and from a worker
AGENT_NOISE = ("[W1202 00:01:29.249612675 socket.cpp:207] [c10d] The hostname of the client "
               "socket cannot be retrieved. err=-3")
WORKER_NOISE = "[rank0]:" + AGENT_NOISE


def test_a_worker_line_carries_its_rank_and_an_agent_line_none() -> None:
    assert output.from_node("friend1", "[rank3]:step 5 loss 1.0") == \
        OutputLine("friend1", 3, "step 5 loss 1.0")
    assert output.from_node("friend1", "W1202 torch elastic says") == \
        OutputLine("friend1", None, "W1202 torch elastic says")
    assert output.from_node("friend2", "[rank1]:x").kept == "friend2/rank1 | x"
    assert output.from_node("friend2", "y").kept == "friend2 | y"


def test_kept_lines_parse_back() -> None:
    for line in (OutputLine("friend1", 12, "a | b"), OutputLine("friend-2", None, "")):
        assert output.parse_kept(line.kept) == line
    assert output.parse_kept("no prefix here") is None


def test_only_the_reverse_dns_warning_is_noise() -> None:
    assert output.is_noise(AGENT_NOISE)
    assert output.is_noise(output.from_node("friend2", WORKER_NOISE).text)
    assert output.is_noise("[W socket.cpp:464] [c10d] The hostname of the client socket "
                           "cannot be retrieved. err=-2")
    # other c10d warnings, and the same words inside a user's own line, stay
    assert not output.is_noise("[W1202 00:01:41.060107109 TCPStore.cpp:115] [c10d] "
                               "recvVector failed on SocketImpl(fd=4)")
    assert not output.is_noise("my script: The hostname of the client socket cannot be "
                               "retrieved. err=-3")


LOG = ["friend1 | agent starting",
       "friend1/rank0 | step 0",
       "friend2/rank1 | step 0",
       f"friend2 | {AGENT_NOISE}",
       "friend1/rank0 | step 5",
       "friend2/rank1 | step 5",
       "friend2 | agent done"]


def test_filters_by_node_rank_and_tail() -> None:
    assert LogFilter().history(LOG) == [x for x in LOG if "socket.cpp" not in x]
    assert LogFilter(node="friend2").history(LOG) == [
        "friend2/rank1 | step 0", "friend2/rank1 | step 5", "friend2 | agent done"]
    assert LogFilter(rank=0).history(LOG) == ["friend1/rank0 | step 0",
                                              "friend1/rank0 | step 5"]
    assert LogFilter(node="friend1", rank=1).history(LOG) == []
    assert LogFilter(tail=2).history(LOG) == ["friend2/rank1 | step 5", "friend2 | agent done"]
    assert LogFilter(rank=1, tail=1).history(LOG) == ["friend2/rank1 | step 5"]
    assert LogFilter(tail=0).history(LOG) == []


def test_a_live_line_passes_the_same_filter() -> None:
    wanted = LogFilter(node="friend1", tail=1)  # tail is for history only
    assert wanted.matches("friend1/rank0 | step 10")
    assert not wanted.matches("friend2/rank1 | step 10")
    assert not wanted.matches(f"friend1 | {AGENT_NOISE}")
