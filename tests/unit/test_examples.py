"""The example job file loads and passes the checks `gpuhive train` makes before submitting."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from gpuhive.train import precheck
from gpuhive.train.spec import load_job_file

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_the_example_job_file_is_ready_to_submit() -> None:
    path = EXAMPLES / "llm.yaml"
    spec = load_job_file(path, {})
    assert spec.workdir == str(EXAMPLES) and (spec.min_nodes, spec.max_nodes) == (2, 3)
    spec = dataclasses.replace(spec, script=precheck.locate_script(spec.script, EXAMPLES,
                                                                   path.parent))
    assert spec.script == "llm.py"
    precheck.check(spec, EXAMPLES)
