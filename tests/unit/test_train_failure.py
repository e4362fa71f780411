from gpuhive.train.failure import MAX_LEN, telling_line

TORCHRUN_FAILURE = """\
step 0 loss 12.1 world 2
Traceback (most recent call last):
  File "/root/.gpuhive/code/abc/train.py", line 20, in <module>
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
RuntimeError: Connection reset by peer
E1122 15:00:01 torch/distributed/elastic/multiprocessing/api.py:882] failed (exitcode: 1)
Traceback (most recent call last):
  File "/usr/lib/python3/dist-packages/torch/distributed/run.py", line 900, in <module>
    raise ChildFailedError(
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
train.py FAILED
Root Cause (first observed failure):
  exitcode  : 1 (pid: 4242)
  traceback : To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html
============================================================
"""


def test_the_workers_exception_beats_torchruns_summary() -> None:
    assert telling_line(TORCHRUN_FAILURE.splitlines()) == \
        "RuntimeError: Connection reset by peer"


def test_a_plain_error_line_is_found() -> None:
    lines = ["loading", "error: no such file data.bin", "bye"]
    assert telling_line(lines) == "error: no such file data.bin"


def test_without_an_error_the_last_line_is_given_and_nothing_for_silence() -> None:
    assert telling_line(["one", "two", "  "]) == "two"
    assert telling_line([]) is None


def test_long_lines_are_clipped() -> None:
    line = telling_line(["ValueError: " + "x" * 1000])
    assert line is not None and len(line) == MAX_LEN and line.endswith("…")
