"""`gpuhive train` and `gpuhive jobs`: multi-node torchrun jobs owned by the controller."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from gpuhive.cli import common, jobs_view
from gpuhive.cli.render import out, plain_table, print_json, status_text
from gpuhive.controller import admin_api as api
from gpuhive.controller.job_store import JobNotFound
from gpuhive.errors import ConfigError, ControllerUnavailable, JobAlreadyEnded

if TYPE_CHECKING:
    from gpuhive.train.spec import JobSpec

jobs_app = typer.Typer(help="Training jobs: list, follow logs, cancel.")
# the controller's "no job X" comes back as this class (exit 5) only once it is imported here
RAISED_BY_THE_CONTROLLER = (JobNotFound, JobAlreadyEnded)


def train(
    script: str = typer.Argument(..., help="training script, or a job.yaml"),
    script_args: list[str] = typer.Argument(None, help="arguments for the script, after --"),
    nodes: str = typer.Option(None, "--nodes", "-n", help="N, or MIN:MAX for an elastic job"),
    workdir: Path = typer.Option(None, "--workdir", "-w", help="the folder synced to the nodes; "
                                 "SCRIPT is relative to it (default: the current directory, "
                                 "or the job.yaml's folder)"),
    gpus_per_node: str = typer.Option(None, help="processes (GPUs) per node, or auto"),
    min_vram: str = typer.Option(None, help="VRAM needed per GPU, e.g. 12G"),
    backend: str = typer.Option(None, help="nccl, gloo or auto"),
    requirements: str = typer.Option(None, help="requirements file in the workdir (a venv "
                                     "per hash on nodes)"),
    max_restarts: int = typer.Option(None, help="torchrun --max-restarts"),
    name: str = typer.Option(None, help="a name for the job"),
    mode: str = typer.Option(None, help="ddp or diloco (for scripts using gpuhive.train)"),
    sync_every: int = typer.Option(None, help="DiLoCo: inner steps between syncs"),
    compress: str = typer.Option(None, help="none, bf16, fp16 or powersgd"),
    detach: bool = typer.Option(False, "--detach", "-d", help="return once submitted"),
    wait: bool = typer.Option(None, "--wait/--no-wait", help="when the nodes are busy, queue "
                              "until they are free (the default), or fail at once"),
    queue_timeout: str = typer.Option(None, help="give up after this long in the queue, e.g. "
                                      "90s, 10m, 2h (default: wait as long as it takes)"),
    priority: int = typer.Option(None, help="queued jobs with a higher priority are placed "
                                 "first (default 0; FIFO within a priority)"),
    requeue: bool = typer.Option(None, "--requeue/--no-requeue", help="go back to the queue "
                                 "when a friend's sharing window closes on the job"),
    grace: int = typer.Option(None, help="seconds the script gets between SIGTERM and SIGKILL "
                              "when the job is stopped early (default 60)"),
    no_check: bool = typer.Option(False, "--no-check", help="do not compile the script here "
                                  "before submitting (for syntax this Python does not know)"),
    emit: str = typer.Option(None, help="write the job for another system instead: kubeflow"),
    image: str = typer.Option("pytorch/pytorch:latest", help="container image (--emit)"),
) -> None:
    """Run SCRIPT with torchrun on the best nodes; logs stream back, Ctrl-C cancels.

    Before anything is sent, the script must exist in the workdir, be among the files the
    sync sends (git-tracked, or not in .gpuhiveignore) and compile; errors exit 2.

    Examples: `gpuhive train examples/llm.py --nodes 3 -- --steps 300`,
    `gpuhive train job.yaml`, `gpuhive train train.py --workdir ~/proj --nodes 2:3 --detach`.

    When too few nodes are free the job waits in the queue (`gpuhive jobs` shows its place
    and what it waits for); `--no-wait` fails at once instead, `--queue-timeout` gives up.
    """
    from gpuhive.train import precheck
    from gpuhive.train.spec import build_spec, load_job_file

    flags: dict[str, Any] = {"nodes": nodes, "gpus_per_node": gpus_per_node,
                             "min_vram": min_vram, "backend": backend,
                             "requirements": requirements, "max_restarts": max_restarts,
                             "name": name, "mode": mode, "sync_every": sync_every,
                             "compress": compress, "wait": wait,
                             "queue_timeout": queue_timeout, "priority": priority,
                             "requeue": requeue, "grace": grace}
    if script_args:
        flags["args"] = script_args
    cwd = Path.cwd()
    if workdir is not None:
        flags["workdir"] = str(precheck.absolute(workdir.expanduser(), cwd))
    path = Path(script)
    if path.suffix in (".yaml", ".yml"):
        job_file = precheck.absolute(path, cwd)
        spec = load_job_file(job_file, flags)
        base = job_file.parent  # its script: in the workdir, else from the file's folder
    else:
        spec = build_spec({"script": script, "workdir": str(cwd),
                           **{k: v for k, v in flags.items() if v is not None}})
        base = cwd
    work = Path(spec.workdir)
    if not work.is_dir():
        raise ConfigError(f"workdir {work} is not a directory", key="workdir",
                          hint="pass --workdir with the project folder")
    spec = dataclasses.replace(spec, script=precheck.locate_script(spec.script, work, base))
    precheck.check(spec, cwd, synced=not emit, compiles=not no_check)
    if emit:
        _emit(spec, emit, image)
        return
    job = common.admin(api.JobsSubmit(spec=_train_spec(spec)))
    out.print(f"job {job['id']} submitted: {escape(spec.script)} on {spec.nodes_text} node(s)")
    if detach:
        out.print(f"follow it with `gpuhive jobs logs {job['id']} -f`")
        return
    _follow(api.JobsLogs(job=job["id"], follow=True))


def _train_spec(spec: JobSpec) -> api.TrainSpec:
    gpn = spec.gpus_per_node
    return api.TrainSpec(
        script=spec.script, args=tuple(spec.args), workdir=spec.workdir, nodes=spec.nodes_text,
        gpus_per_node=gpn if gpn is not None else "auto", min_vram=f"{spec.min_vram_mib}M",
        backend=spec.backend, requirements=spec.requirements, max_restarts=spec.max_restarts,
        name=spec.name, mode=spec.mode, sync_every=spec.sync_every, compress=spec.compress,
        env=dict(spec.env), wait=spec.wait,
        queue_timeout=int(spec.queue_timeout_s) if spec.queue_timeout_s else None,
        priority=spec.priority, requeue=spec.requeue, grace=spec.grace_s)


def _emit(spec: Any, kind: str, image: str) -> None:
    if kind != "kubeflow":
        raise ConfigError(f"--emit {kind} is not supported", hint="use --emit kubeflow",
                          key="emit")
    import yaml

    from gpuhive.train.kubeflow import pytorchjob
    manifest = pytorchjob(spec, name=spec.name or Path(spec.script).stem.replace("_", "-"),
                          image=image, nproc_per_node=spec.gpus_per_node or 1)
    sys.stdout.write(yaml.safe_dump(manifest, sort_keys=False))


def _follow(logs: api.JobsLogs) -> None:
    job_id = logs.job
    progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                        TransferSpeedColumn(), console=out, transient=True)
    bars: dict[str, Any] = {}
    shown = {"bars": False}

    def done_with_bars() -> None:
        if shown["bars"]:
            progress.stop()
            shown["bars"] = False

    def show(ev: dict[str, Any]) -> None:
        kind = ev["event"]
        if kind == "log":
            done_with_bars()
            sys.stdout.write(ev["line"] + "\n")
            sys.stdout.flush()
        elif kind == "progress":
            if not out.is_terminal:
                return  # bars in a pipe or a file are noise (and leave a blank line)
            if not shown["bars"]:
                progress.start()
                shown["bars"] = True
            if ev["node"] not in bars:
                bars[ev["node"]] = progress.add_task(f"code → {ev['node']}", total=ev["total"])
            progress.update(bars[ev["node"]], completed=ev["sent"])
        elif kind == "job":
            done_with_bars()
            out.print(f"[dim]· {escape(jobs_view.event_text(ev['kind'], ev['detail']))}[/dim]")

    try:
        job = common.admin(logs, on_event=show, timeout=None)
    except KeyboardInterrupt:
        done_with_bars()
        out.print(f"\ncancelling job {job_id}…")
        try:
            with contextlib.suppress(ControllerUnavailable):
                common.admin(api.JobsCancel(job=job_id), timeout=60)
        except JobAlreadyEnded as exc:  # it ended while Ctrl-C was on its way
            out.print(escape(exc.message))
            raise typer.Exit(130) from None
        out.print(f"job {job_id} cancelled")
        raise typer.Exit(130) from None
    finally:
        done_with_bars()
    out.print(f"job {job['id']} {status_text(job['state'])}"
              + (f": {escape(job['reason'])}" if job["reason"] else ""))
    raise typer.Exit(0 if job["state"] == "succeeded" else 1)


def _list(json_out: bool) -> None:
    jobs = common.admin(api.JobsList())
    if json_out:
        print_json(jobs)
        return
    if not jobs:
        out.print("no jobs yet: `gpuhive train SCRIPT --nodes N`")
        return
    table = plain_table(*jobs_view.LIST_COLUMNS)
    now = time.time()
    for j in jobs:
        table.add_row(*jobs_view.list_row(j, now))
    out.print(table)


@jobs_app.callback(invoke_without_command=True)
def jobs_list(ctx: typer.Context,
              json_out: bool = typer.Option(False, "--json", help="machine-readable output")) \
        -> None:
    """List jobs: state, nodes, how long they ran, how they ended (also `jobs ls`)."""
    if ctx.invoked_subcommand is None:
        _list(json_out)


@jobs_app.command("ls")
def jobs_ls(json_out: bool = typer.Option(False, "--json", help="machine-readable output")) \
        -> None:
    """List jobs: the same as `gpuhive jobs`."""
    _list(json_out)


@jobs_app.command("show")
def jobs_show(job: str, json_out: bool = typer.Option(False, "--json",
                                                      help="machine-readable output")) -> None:
    """One job: script, workdir, nodes, backend, duration, exit codes, then its timeline."""
    j = common.admin(api.JobsShow(job=job))
    if json_out:
        print_json(j)
        return
    for line in jobs_view.show_lines(j, time.time()):
        out.print(line)


@jobs_app.command("logs")
def jobs_logs(
    job: str,
    follow: bool = typer.Option(False, "--follow", "-f",
                                help="keep streaming until the job ends"),
    tail: int = typer.Option(None, "--tail", "-t", min=0,
                             help="only the last N lines so far (then, with -f, what follows)"),
    node: str = typer.Option(None, "--node", help="only lines from this node"),
    rank: int = typer.Option(None, "--rank", min=0,
                             help="only lines of the worker with this global rank"),
) -> None:
    """A job's output, every line prefixed with node and rank (kept on the controller)."""
    logs = api.JobsLogs(job=job, follow=follow, tail=tail, node=node, rank=rank)
    if follow:
        _follow(logs)
        return
    common.admin(logs, on_event=lambda ev: sys.stdout.write(ev["line"] + "\n")
                 if ev["event"] == "log" else None)


@jobs_app.command("cancel")
def jobs_cancel(job: str) -> None:
    """Cancel a running job: every process of it on every node is stopped.

    A job that has already ended is an error (exit 6), so a script can tell.
    """
    j = common.admin(api.JobsCancel(job=job), timeout=60)
    out.print(f"job {j['id']} {status_text(j['state'])}")
