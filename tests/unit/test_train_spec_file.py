"""job.yaml errors name the file, line and column; a relative workdir is the file's folder's."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpuhive.errors import ConfigError
from gpuhive.train.spec import load_job_file


def _job(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "conf" / "job.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def test_a_syntax_error_names_the_file_line_and_column(tmp_path: Path) -> None:
    path = _job(tmp_path, "script: train.py\nargs: [1, 2\nnodes: 2\n")
    with pytest.raises(ConfigError) as e:
        load_job_file(path, {})
    assert str(e.value).startswith(f"{path}:3:6: not valid YAML: ")
    assert "while parsing a flow sequence at 2:7" in e.value.message
    assert "<unicode string>" not in str(e.value)


def test_bad_keys_and_values_name_where_they_are(tmp_path: Path) -> None:
    path = _job(tmp_path, "script: train.py\n\nnodez: 2\n")
    with pytest.raises(ConfigError, match=rf"unknown key 'nodez' in {path}:3:1 "):
        load_job_file(path, {})
    path = _job(tmp_path, "script: train.py\nnodes: two\n")
    with pytest.raises(ConfigError, match=rf"nodes='two' in {path}:2:1: "):
        load_job_file(path, {"name": None})
    path = _job(tmp_path, "script: train.py\nmax_restarts: -1\n")
    with pytest.raises(ConfigError, match=r"max_restarts=-1 in flags: "):
        load_job_file(path, {"max_restarts": -1})  # the flag's value, named as a flag


def test_a_key_given_twice_is_refused(tmp_path: Path) -> None:
    path = _job(tmp_path, "script: a.py\nnodes: 2\nnodes: 3\n")
    with pytest.raises(ConfigError, match=rf"{path}:3:1: key 'nodes' is given twice "
                                          rf"\(first at {path}:2:1\)"):
        load_job_file(path, {})


def test_not_a_mapping(tmp_path: Path) -> None:
    for text in ("- script: a.py\n", "", "just a string\n"):
        with pytest.raises(ConfigError, match="must hold a mapping of job keys"):
            load_job_file(_job(tmp_path, text), {})


def test_the_workdir_defaults_to_the_files_folder_and_a_flag_wins(tmp_path: Path) -> None:
    path = _job(tmp_path, "script: train.py\n")
    assert load_job_file(path, {}).workdir == str(path.parent)
    path = _job(tmp_path, "script: train.py\nworkdir: ../code\n")
    assert load_job_file(path, {}).workdir == str(tmp_path / "code")
    assert load_job_file(path, {"workdir": "/elsewhere"}).workdir == "/elsewhere"
