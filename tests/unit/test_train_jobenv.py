"""A job's venv sees the agent's environment (torch, gpuhive) under its own packages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gpuhive.train import jobenv, launch
from gpuhive.train.sync import requirements_digest


def test_site_dirs_keep_order_and_skip_what_is_not_a_site_dir(tmp_path: Path) -> None:
    a = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    b = tmp_path / "usr" / "lib" / "python3" / "dist-packages"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    path = [str(tmp_path), str(a), "/nowhere/site-packages", str(b), str(a),
            str(tmp_path / "lib" / "python311.zip")]
    assert jobenv.agent_site_dirs(path) == [str(a), str(b)]


def test_layer_file_runs_addsitedir_so_editable_installs_work() -> None:
    text = jobenv.layer_text(["/a/site-packages", "/b/it's/dist-packages"])
    assert text.startswith("import site; ")  # .pth lines run only when they start so
    assert "site.addsitedir('/a/site-packages')" in text
    assert "site.addsitedir(\"/b/it's/dist-packages\")" in text and text.count("\n") == 1


@pytest.mark.timeout(180)
def test_a_layered_venv_imports_the_agents_torch_and_prefers_its_own_packages(
        tmp_path: Path) -> None:
    # this interpreter plays the agent: the tests run from a venv, as the agent usually does
    python = jobenv.create(tmp_path / "env")
    probe = subprocess.run([str(python), "-c", launch.TORCH_PROBE], capture_output=True,
                           text=True, check=True, cwd=tmp_path)
    import torch
    assert json.loads(probe.stdout) == {"torch": torch.__version__}
    where = subprocess.run([str(python), "-c", "import sys, gpuhive; print(sys.prefix); "
                            "print(gpuhive.__file__)"], capture_output=True, text=True,
                           check=True, cwd=tmp_path).stdout.split()
    assert where[0] == str(tmp_path / "env")  # the job's own venv, not the agent's
    assert Path(where[1]).resolve() == Path(jobenv.__file__).resolve().parents[1] / \
        "__init__.py"  # gpuhive found through the agent's (editable) install
    # what the job's requirements install shadows the agent's copy of the same module
    purelib = subprocess.run([str(python), "-c", "import sysconfig; "
                              "print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # (yaml: a regular install in the agent's venv; gpuhive's editable finder would win)
    (Path(purelib) / "yaml").mkdir()
    (Path(purelib) / "yaml" / "__init__.py").write_text("SHADOW = True\n")
    shadow = subprocess.run([str(python), "-c", "import yaml; print(yaml.SHADOW)"],
                            capture_output=True, text=True, cwd=tmp_path)
    assert shadow.stdout.strip() == "True", shadow.stderr


@pytest.mark.timeout(180)
def test_plain_system_site_packages_would_miss_what_the_agent_venv_has(tmp_path: Path) -> None:
    """Why the layer exists: from a venv, --system-site-packages means the base interpreter."""
    if sys.prefix == sys.base_prefix:
        pytest.skip("the tests run from the base interpreter: there is no layer to miss")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages",
                    str(tmp_path / "plain")], check=True)
    found = subprocess.run([str(tmp_path / "plain" / "bin" / "python"), "-c",
                            "import gpuhive"], capture_output=True, text=True, cwd=tmp_path)
    assert found.returncode != 0 and "No module named 'gpuhive'" in found.stderr


def test_the_venv_key_covers_the_code_only_when_requirements_name_local_files() -> None:
    plain = "numpy==2.0\n# a comment\nrich\n"
    assert requirements_digest(plain, "code1") == requirements_digest(plain, "code2")
    assert requirements_digest(plain) == requirements_digest("rich\nnumpy==2.0\n")
    for local in ("./wheels/x-1.0-py3-none-any.whl", "-e .", "-r more.txt",
                  "--requirement more.txt", "file:///tmp/x.whl", "/abs/pkg"):
        text = f"numpy\n{local}\n"
        assert requirements_digest(text, "code1") != requirements_digest(text, "code2"), local
    assert requirements_digest("-r https://example.org/r.txt\n", "a") == \
        requirements_digest("-r https://example.org/r.txt\n", "b")


def test_the_env_build_runs_pip_in_the_synced_code_and_removes_a_half_built_venv() -> None:
    cmd = launch.env_command("abc123", "code9")
    assert 'cd "$H/code/code9"' in cmd
    assert "-m gpuhive.train.jobenv create" in cmd and "--system-site-packages" not in cmd
    assert "trap 'rm -rf \"$t\" \"$t.req\"' EXIT" in cmd  # the venv and the requirements read
    assert cmd.index("mv \"$t\" ") < cmd.index("trap - ")
