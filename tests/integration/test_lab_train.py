"""gpuhive train end to end in the lab: real torchrun over gloo, real code sync, cancel,
and proof that nothing of a job is left on any node."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpuhive.agent import reaper
from gpuhive.lab.hive import Lab, LabOptions
from tests.integration.labs import running_lab

DATA = Path(__file__).resolve().parents[1] / "data" / "train"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    # As root: three NAT'd friends whose ranks reach each other only over the WireGuard
    # overlay (wireguard-go). Otherwise local processes, ranks on loopback.
    yield from running_lab(
        tmp_path_factory, LabOptions(friends=3, heartbeat_interval=0.5, overlay=True))


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    shutil.copy(DATA / "allreduce.py", tmp_path / "train.py")
    return tmp_path


def _train(lab: Lab, workdir: Path, *args: str, timeout: float = 240) \
        -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gpuhive", "train", *args],
                          cwd=workdir, env=lab.env(lab.controller_home), capture_output=True,
                          text=True, timeout=timeout)


def _job(lab: Lab) -> dict:
    return json.loads(lab.cli("jobs", "--json", check=True).stdout)[0]


def _latest_job(lab: Lab) -> dict:
    """The newest job, or {} while none was submitted yet (a lab's first test)."""
    jobs = json.loads(lab.cli("jobs", "--json", check=True).stdout)
    return jobs[0] if jobs else {}


def _job_pids(job_id: str) -> list[int]:
    return reaper.tagged(job_id, var="GPUHIVE_JOB_ID")


def test_three_node_job_ends_with_identical_weights(lab: Lab, workdir: Path) -> None:
    proc = _train(lab, workdir, "train.py", "--nodes", "3", "--", "30")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    hashes = re.findall(r"^(friend\d)/rank(\d) \| final weights_sha256 (\w+)", proc.stdout,
                        re.M)
    assert len(hashes) == 3 and len({h for _, _, h in hashes}) == 1, proc.stdout
    assert {r for _, r, _ in hashes} == {"0", "1", "2"}
    assert re.search(r"^friend\d/rank0 \| step 25 loss [\d.]+ world 3$", proc.stdout, re.M)
    job = _job(lab)
    assert job["state"] == "succeeded" and len(job["nodes"]) == 3
    assert _job_pids(job["id"]) == []
    logs = lab.cli("jobs", "logs", job["id"], check=True).stdout
    assert "final weights_sha256" in logs  # kept on the controller


def test_code_is_synced_once_and_only_once(lab: Lab, workdir: Path) -> None:
    def sent(proc: subprocess.CompletedProcess[str]) -> int:
        if re.search(r"synced: code \w+ already on both nodes \(nothing sent\)$", proc.stdout,
                     re.M):
            return 0
        m = re.search(r"synced: code \w+: [\d.]+ (bytes|KiB|MiB) sent to (\d+) of 2 node",
                      proc.stdout)
        assert m, proc.stdout + proc.stderr
        return int(m.group(2))

    def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr
        return proc

    ok(_train(lab, workdir, "train.py", "--nodes", "2", "--", "2"))
    assert sent(ok(_train(lab, workdir, "train.py", "--nodes", "2", "--", "2"))) == 0
    (workdir / "notes.txt").write_text("a change\n")
    assert sent(ok(_train(lab, workdir, "train.py", "--nodes", "2", "--", "2"))) == 2
    assert sent(ok(_train(lab, workdir, "train.py", "--nodes", "2", "--", "2"))) == 0


def test_ctrl_c_cancels_and_leaves_nothing(lab: Lab, workdir: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "gpuhive", "train", "train.py", "--nodes",
                             "3", "--", "100000", "0.05"], cwd=workdir,
                            env=lab.env(lab.controller_home), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    job_id = ""
    while time.monotonic() < deadline:
        job = _latest_job(lab)
        if job.get("state") == "running" and len(_job_pids(job["id"])) >= 6:
            job_id = job["id"]  # torchrun + a worker on each of 3 nodes
            break
        time.sleep(0.3)
    assert job_id
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "cancelled" in out and "Traceback" not in err
    job = json.loads(lab.cli("jobs", "show", job_id, "--json", check=True).stdout)
    assert job["state"] == "cancelled"
    assert any(e["event"] == "cleaned" for e in job["events"])
    assert _job_pids(job_id) == []


@pytest.mark.timeout(600)
def test_elastic_job_survives_a_node_kill(lab: Lab, workdir: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "gpuhive", "train", "train.py", "--nodes",
                             "2:3", "--max-restarts", "3", "--", "200", "0.05"], cwd=workdir,
                            env=lab.env(lab.controller_home), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    job: dict = {}
    while time.monotonic() < deadline:
        job = _latest_job(lab)
        if job.get("state") == "running" and len(_job_pids(job["id"])) >= 6:
            break
        time.sleep(0.3)
    victim = next(n for n in job["nodes"][1:])  # not the rendezvous host
    time.sleep(3)
    lab.kill_node(victim)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:] + err
    job = json.loads(lab.cli("jobs", "show", job["id"], "--json", check=True).stdout)
    kinds = [e["event"] for e in job["events"]]
    assert "node_lost" in kinds and "workers_failed" in kinds and job["state"] == "succeeded"
    assert re.search(r"step \d+ loss [\d.]+ world 2$", out, re.M)  # carried on smaller
    lab.start_agent(victim)
    lab.wait_for({victim: "online"}, timeout=30)


def _helper_wheel(folder: Path) -> str:
    """A tiny pure-Python wheel, so the requirements install works without an index."""
    import base64
    import hashlib
    import zipfile
    name = "ghv_helper-0.1-py3-none-any.whl"
    files = {"ghv_helper/__init__.py": "VALUE = 42\n",
             "ghv_helper-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: ghv-helper\n"
                                                   "Version: 0.1\n",
             "ghv_helper-0.1.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\n"
                                                "Root-Is-Purelib: true\nTag: py3-none-any\n"}
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text)}")
    record.append("ghv_helper-0.1.dist-info/RECORD,,")
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / name, "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
        z.writestr("ghv_helper-0.1.dist-info/RECORD", "\n".join(record) + "\n")
    return name


def test_a_requirements_job_runs_when_the_agent_lives_in_a_venv(lab: Lab,
                                                               workdir: Path) -> None:
    # the lab's agents run this interpreter: a venv, as Debian 12 and Ubuntu 24 users must
    # install gpuhive (PEP 668). Its base interpreter need not have torch.
    assert sys.prefix != sys.base_prefix, "run the tests from a virtualenv (.venv)"
    wheel = _helper_wheel(workdir / "wheels")
    (workdir / "requirements.txt").write_text(f"./wheels/{wheel}\n")
    (workdir / "uses_env.py").write_text(
        "import sys, torch, ghv_helper\n"
        "print('helper', ghv_helper.VALUE, 'torch', torch.__version__, 'prefix', sys.prefix)\n")
    first = _train(lab, workdir, "uses_env.py", "--nodes", "2", "--requirements",
                   "requirements.txt")
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr
    seen = re.findall(r"^(friend\d)/rank\d \| helper 42 torch (\S+) prefix (\S+)$",
                      first.stdout, re.M)
    assert len(seen) == 2, first.stdout
    assert all("/envs/" in prefix for _, _, prefix in seen)  # the job's venv, layered
    assert re.search(r"environment: venv \w+: friend\d built, friend\d built", first.stdout)
    assert re.search(r"torch: torch \S+ imports in the job's venv \w+ on every node",
                     first.stdout), first.stdout
    again = _train(lab, workdir, "uses_env.py", "--nodes", "2", "--requirements",
                   "requirements.txt")
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr
    # the ranking may pick another pair the second time: a node that built it reuses it
    built = {n for n, _ in re.findall(r"(friend\d) (built)", first.stdout)}
    line = re.search(r"environment: venv \w+: .*", again.stdout)
    assert line, again.stdout
    states = dict(re.findall(r"(friend\d) (built|reused)", line[0]))
    assert len(states) == 2 and built & set(states), again.stdout
    assert all(state == ("reused" if node in built else "built")
               for node, state in states.items()), states


def test_a_requirement_that_cannot_install_fails_the_job_clearly(lab: Lab,
                                                                 workdir: Path) -> None:
    (workdir / "requirements.txt").write_text("./wheels/not_there-1.0-py3-none-any.whl\n")
    proc = _train(lab, workdir, "train.py", "--nodes", "1", "--requirements",
                  "requirements.txt", "--", "2")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    job = _job(lab)
    assert job["state"] == "failed"
    assert "building the job's environment from requirements.txt failed" in job["reason"]
    assert "Traceback" not in proc.stderr


def test_bad_jobs_get_clear_errors(lab: Lab, workdir: Path) -> None:
    missing = _train(lab, workdir, "nope.py", "--nodes", "1")
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    (workdir / "job.yaml").write_text("script: train.py\nnodez: 2\n")
    bad_key = _train(lab, workdir, "job.yaml")
    assert bad_key.returncode == 2 and "unknown key 'nodez'" in bad_key.stderr
    (workdir / "job.yaml").write_text("script: train.py\nnodes: two\n")
    bad_value = _train(lab, workdir, "job.yaml")
    assert bad_value.returncode == 2 and "nodes='two'" in bad_value.stderr
    (workdir / "job.yaml").write_text("script: [unclosed\n")
    bad_yaml = _train(lab, workdir, "job.yaml")
    assert bad_yaml.returncode == 2 and "not valid YAML" in bad_yaml.stderr
    assert f"{workdir / 'job.yaml'}:2:1: not valid YAML" in bad_yaml.stderr  # not "<unicode…>"
    too_many = _train(lab, workdir, "train.py", "--nodes", "5")
    assert too_many.returncode == 1 and "needs 5 node(s)" in too_many.stdout + too_many.stderr
    for p in (missing, bad_key, bad_value, bad_yaml, too_many):
        assert "Traceback" not in p.stderr


def _job_count(lab: Lab) -> int:
    return len(json.loads(lab.cli("jobs", "--json", check=True).stdout))


def test_what_can_be_checked_here_is_refused_before_anything_is_sent(lab: Lab,
                                                                    workdir: Path) -> None:
    before = _job_count(lab)
    (workdir / "broken.py").write_text("import torch\n\nfor step in range(3)\n    pass\n")
    broken = _train(lab, workdir, "broken.py", "--nodes", "1")
    assert broken.returncode == 2, broken.stdout + broken.stderr
    assert "training script broken.py:3:" in broken.stderr and "SyntaxError" in broken.stderr
    (workdir / "job.yaml").write_text("script: gone.py\nnodes: 1\n")
    missing = _train(lab, workdir, "job.yaml")
    assert missing.returncode == 2 and "training script gone.py does not exist" in \
        missing.stderr
    (workdir / ".gpuhiveignore").write_text("local_*.py\n")
    shutil.copy(workdir / "train.py", workdir / "local_try.py")
    ignored = _train(lab, workdir, "local_try.py", "--nodes", "1")
    assert ignored.returncode == 2 and ".gpuhiveignore excludes it" in ignored.stderr
    for p in (broken, missing, ignored):
        assert "Traceback" not in p.stderr and "submitted" not in p.stdout
    assert _job_count(lab) == before  # nothing reached the controller


def test_workdir_runs_a_project_from_anywhere(lab: Lab, workdir: Path,
                                              tmp_path_factory: pytest.TempPathFactory) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    proc = subprocess.run([sys.executable, "-m", "gpuhive", "train", "train.py", "--workdir",
                           str(workdir), "--nodes", "1", "--", "2"], cwd=elsewhere,
                          env=lab.env(lab.controller_home), capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    job = _job(lab)
    assert job["spec"]["workdir"] == str(workdir) and job["spec"]["script"] == "train.py"
    (workdir / "job.yaml").write_text("script: train.py\nnodes: 1\nargs: [2]\n")
    from_yaml = subprocess.run([sys.executable, "-m", "gpuhive", "train",
                                str(workdir / "job.yaml")], cwd=elsewhere,
                               env=lab.env(lab.controller_home), capture_output=True,
                               text=True, timeout=240)
    assert from_yaml.returncode == 0, from_yaml.stdout + from_yaml.stderr
    assert _job(lab)["spec"]["workdir"] == str(workdir)


C10D_NOISE = "The hostname of the client socket cannot be retrieved"


def test_a_small_job_reads_clean_and_jobs_commands_say_what_happened(lab: Lab,
                                                                     workdir: Path) -> None:
    proc = _train(lab, workdir, "train.py", "--nodes", "3:5", "--name", "clean-run", "--",
                  "6")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert C10D_NOISE not in proc.stdout + proc.stderr
    # the elastic wait is said, and cut: the controller placed every node it will get
    assert "· elastic: placed 3 of up to 5 nodes; torch elastic waits 1 s for more" in \
        proc.stdout, proc.stdout
    assert not re.search(r"^· \w+: ?$", proc.stdout, re.M)  # no "succeeded: " and nothing
    assert re.search(r"^· succeeded: friend\d, friend\d, friend\d exited 0 after \d+s$",
                     proc.stdout, re.M), proc.stdout
    job = _job(lab)
    assert job["exits"] == {n: 0 for n in job["nodes"]} and job["name"] == "clean-run"
    raw = lab.controller_home / "jobs" / job["id"] / "nodes" / f"{job['nodes'][0]}.log"
    assert raw.exists()  # what each node printed, unfiltered

    logs = lab.cli("jobs", "logs", job["id"], check=True).stdout
    assert "final weights_sha256" in logs and C10D_NOISE not in logs
    rank1 = lab.cli("jobs", "logs", job["id"], "--rank", "1", check=True).stdout.splitlines()
    assert rank1 and all(re.match(r"friend\d/rank1 \| ", line) for line in rank1), rank1
    node = job["nodes"][1]
    mine = lab.cli("jobs", "logs", job["id"], "--node", node, check=True).stdout.splitlines()
    assert mine and all(line.startswith(f"{node}") for line in mine)
    assert lab.cli("jobs", "logs", job["id"], "--tail", "2", check=True).stdout \
        .splitlines() == logs.splitlines()[-2:]
    wrong = lab.cli("jobs", "logs", job["id"], "--node", "friend9")
    assert wrong.returncode == 2 and "did not run on 'friend9'" in wrong.stderr

    assert lab.cli("jobs", "ls", "--json", check=True).stdout == \
        lab.cli("jobs", "--json", check=True).stdout  # the same listing
    listing = lab.cli("jobs", "ls", check=True).stdout
    header, row = listing.splitlines()[0], next(line for line in listing.splitlines()
                                               if line.startswith(job["id"]))
    assert header.split()[:7] == ["JOB", "NAME", "STATE", "NODES", "STARTED", "DURATION",
                                  "ENDED"]
    assert row.split()[1] == "clean-run"
    show = lab.cli("jobs", "show", job["id"], check=True).stdout
    assert show.splitlines()[0].split() == [job["id"], "clean-run", "succeeded"]
    for expected in ("script       train.py 6", f"workdir      {workdir}",
                     "backend      gloo, 1 process(es) per node", "ran ",
                     "exit codes   " + ", ".join(f"{n} 0" for n in job["nodes"])):
        assert expected in show, show

    cancel = lab.cli("jobs", "cancel", job["id"])
    assert cancel.returncode == 6, cancel.stdout + cancel.stderr
    assert f"job {job['id']} has already ended: succeeded" in cancel.stderr
    assert "Traceback" not in cancel.stderr
    unknown = lab.cli("jobs", "show", "j-nope00")
    assert unknown.returncode == 5 and "no job 'j-nope00'" in unknown.stderr


def test_node_with_another_torch_is_refused_by_name(lab: Lab, workdir: Path) -> None:
    import sqlite3
    db = sqlite3.connect(str(lab.controller_home / "registry.db"))
    (old,) = db.execute("SELECT software FROM nodes WHERE name = 'friend3'").fetchone()
    software = {**json.loads(old), "torch": "1.13.1+cu117"}  # as a probe of that box says
    db.execute("UPDATE nodes SET software = ? WHERE name = 'friend3'", (json.dumps(software),))
    db.commit()
    try:
        # all three must be eligible: so this runs before the test that fails a task on a
        # node (past 10 tasks, one failure is over the ranking's 5 % error rate)
        proc = _train(lab, workdir, "train.py", "--nodes", "3", "--", "2")
        assert proc.returncode == 1
        assert "node friend3 has torch 1.13.1+cu117" in proc.stdout
    finally:
        db.execute("UPDATE nodes SET software = ? WHERE name = 'friend3'", (old,))
        db.commit()


def test_a_failed_job_says_why_without_opening_the_logs(lab: Lab, workdir: Path) -> None:
    (workdir / "boom.py").write_text('raise ValueError("no shard 7 in the dataset")\n')
    proc = _train(lab, workdir, "boom.py", "--nodes", "1")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    job = _job(lab)
    assert job["state"] == "failed"
    # the worker's exception, not only "exited 1" or torchrun's ChildFailedError summary
    assert "ValueError: no shard 7 in the dataset" in job["reason"], job["reason"]
    assert "ValueError: no shard 7 in the dataset" in proc.stdout + proc.stderr


def test_kubeflow_manifest(workdir: Path) -> None:
    import yaml
    proc = subprocess.run([sys.executable, "-m", "gpuhive", "train", "train.py", "--nodes",
                           "2:4", "--gpus-per-node", "2", "--emit", "kubeflow", "--image",
                           "me/llm:1", "--", "30"], cwd=workdir, capture_output=True,
                          text=True, env={**os.environ, "GPUHIVE_HOME": str(workdir / "h")})
    assert proc.returncode == 0, proc.stderr
    m = yaml.safe_load(proc.stdout)
    assert (m["apiVersion"], m["kind"]) == ("kubeflow.org/v1", "PyTorchJob")
    worker = m["spec"]["pytorchReplicaSpecs"]["Worker"]
    container = worker["template"]["spec"]["containers"][0]
    assert worker["replicas"] == 4 and container["image"] == "me/llm:1"
    assert container["command"] == ["python", "train.py", "30"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert m["spec"]["elasticPolicy"] == {"rdzvBackend": "c10d", "minReplicas": 2,
                                          "maxReplicas": 4, "maxRestarts": 3}
    assert m["spec"]["nprocPerNode"] == "2"


def test_overlay_status_and_check(lab: Lab) -> None:
    if lab.state.mode != "netns":
        pytest.skip("the overlay needs the network-namespace lab (root)")
    st = json.loads(lab.cli("overlay", "status", "--json", check=True).stdout)
    assert st["up"] and len(st["peers"]) == 3
    for p in st["peers"]:
        assert p["latest_handshake"] and p["spoke"]["up"]
        # the hub sees each spoke behind its router's public address (NAT)
        assert p["endpoint"].split(":")[0] == lab.host(p["node"]).public_address
    check = lab.cli("overlay", "check", "--megabytes", "5", "--json", timeout=180)
    assert check.returncode == 0, check.stdout + check.stderr
    cells = json.loads(check.stdout)["cells"]
    assert len(cells) == 6 and all(c["ok"] for c in cells)


def test_removed_node_loses_the_overlay(lab: Lab) -> None:
    """Last in this module: it removes a node for good."""
    if lab.state.mode != "netns":
        pytest.skip("the overlay needs the network-namespace lab (root)")
    hub_ip = json.loads(lab.cli("overlay", "status", "--json", check=True).stdout)["hub_ip"]
    assert lab.run_on("friend3", ["ping", "-c", "1", "-W", "2", hub_ip],
                      check=False).returncode == 0
    assert lab.cli("nodes", "rm", "friend3").returncode == 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        peers = json.loads(lab.cli("overlay", "status", "--json", check=True).stdout)["peers"]
        if len(peers) == 2:
            break
        time.sleep(0.3)
    assert sorted(p["node"] for p in peers) == ["friend1", "friend2"]
    # its packets are dropped now: the hub no longer knows its key
    assert lab.run_on("friend3", ["ping", "-c", "2", "-W", "2", hub_ip],
                      check=False).returncode != 0
