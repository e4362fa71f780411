"""`gpuhive train` and `gpuhive jobs`: multi-node torchrun jobs owned by the controller."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from gpuhive.cli import common
from gpuhive.cli.render import age, out, plain_table, print_json, status_text
from gpuhive.errors import ConfigError, ControllerUnavailable

jobs_app = typer.Typer(help="Training jobs: list, follow logs, cancel.")


def train(
    script: str = typer.Argument(..., help="training script, or a job.yaml"),
    script_args: list[str] = typer.Argument(None, help="arguments for the script, after --"),
    nodes: str = typer.Option(None, "--nodes", "-n", help="N, or MIN:MAX for an elastic job"),
    gpus_per_node: str = typer.Option(None, help="processes (GPUs) per node, or auto"),
    min_vram: str = typer.Option(None, help="VRAM needed per GPU, e.g. 12G"),
    backend: str = typer.Option(None, help="nccl, gloo or auto"),
    requirements: str = typer.Option(None, help="requirements file (a venv per hash on nodes)"),
    max_restarts: int = typer.Option(None, help="torchrun --max-restarts"),
    name: str = typer.Option(None, help="a name for the job"),
    mode: str = typer.Option(None, help="ddp or diloco (for scripts using gpuhive.train)"),
    sync_every: int = typer.Option(None, help="DiLoCo: inner steps between syncs"),
    compress: str = typer.Option(None, help="none, bf16, fp16 or powersgd"),
    detach: bool = typer.Option(False, "--detach", "-d", help="return once submitted"),
    emit: str = typer.Option(None, help="write the job for another system instead: kubeflow"),
    image: str = typer.Option("pytorch/pytorch:latest", help="container image (--emit)"),
) -> None:
    """Run SCRIPT with torchrun on the best nodes; logs stream back, Ctrl-C cancels.

    Examples: `gpuhive train examples/llm.py --nodes 3 -- --steps 300`,
    `gpuhive train job.yaml`, `gpuhive train examples/llm.py --nodes 2:3 --detach`.
    """
    from gpuhive.train.spec import build_spec, load_job_file

    flags: dict[str, Any] = {"nodes": nodes, "gpus_per_node": gpus_per_node,
                             "min_vram": min_vram, "backend": backend,
                             "requirements": requirements, "max_restarts": max_restarts,
                             "name": name, "mode": mode, "sync_every": sync_every,
                             "compress": compress}
    if script_args:
        flags["args"] = script_args
    path = Path(script)
    if path.suffix in (".yaml", ".yml"):
        spec = load_job_file(path.resolve(), flags)
    else:
        if not path.is_file():
            raise ConfigError(f"training script {script} does not exist",
                              hint="give a path to a .py file or a job.yaml", key="script")
        workdir = Path.cwd()
        try:
            rel = str(path.resolve().relative_to(workdir))
        except ValueError as exc:
            raise ConfigError(f"{script} is outside the current directory {workdir}",
                              hint="run gpuhive train from the project's folder",
                              key="script") from exc
        spec = build_spec({"script": rel, "workdir": str(workdir),
                           **{k: v for k, v in flags.items() if v is not None}})
    if emit:
        _emit(spec, emit, image)
        return
    job = common.admin("jobs.submit", {"spec": {**_spec_values(spec)}})
    out.print(f"job {job['id']} submitted: {spec.script} on {spec.nodes_text} node(s)")
    if detach:
        out.print(f"follow it with `gpuhive jobs logs {job['id']} -f`")
        return
    _follow(job["id"])


def _spec_values(spec: Any) -> dict[str, Any]:
    d = spec.to_dict()
    return {"script": d["script"], "args": d["args"], "workdir": d["workdir"],
            "nodes": spec.nodes_text, "gpus_per_node": d["gpus_per_node"] if
            d["gpus_per_node"] is not None else "auto", "min_vram": f"{d['min_vram_mib']}M",
            "backend": d["backend"], "requirements": d["requirements"],
            "max_restarts": d["max_restarts"], "name": d["name"], "mode": d["mode"],
            "sync_every": d["sync_every"], "compress": d["compress"], "env": d["env"]}


def _emit(spec: Any, kind: str, image: str) -> None:
    if kind != "kubeflow":
        raise ConfigError(f"--emit {kind} is not supported", hint="use --emit kubeflow",
                          key="emit")
    import yaml

    from gpuhive.train.kubeflow import pytorchjob
    manifest = pytorchjob(spec, name=spec.name or Path(spec.script).stem.replace("_", "-"),
                          image=image, nproc_per_node=spec.gpus_per_node or 1)
    sys.stdout.write(yaml.safe_dump(manifest, sort_keys=False))


def _follow(job_id: str) -> None:
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
            if not shown["bars"]:
                progress.start()
                shown["bars"] = True
            if ev["node"] not in bars:
                bars[ev["node"]] = progress.add_task(f"code → {ev['node']}", total=ev["total"])
            progress.update(bars[ev["node"]], completed=ev["sent"])
        elif kind == "job":
            done_with_bars()
            out.print(f"[dim]· {ev['kind']}: {ev['detail']}[/dim]")

    try:
        job = common.admin("jobs.logs", {"job": job_id, "follow": True}, on_event=show,
                           timeout=None)
    except KeyboardInterrupt:
        done_with_bars()
        out.print(f"\ncancelling job {job_id}…")
        with contextlib.suppress(ControllerUnavailable):
            common.admin("jobs.cancel", {"job": job_id}, timeout=60)
        out.print(f"job {job_id} cancelled")
        raise typer.Exit(130) from None
    finally:
        done_with_bars()
    out.print(f"job {job['id']} {status_text(job['state'])}"
              + (f": {job['reason']}" if job["reason"] else ""))
    raise typer.Exit(0 if job["state"] == "succeeded" else 1)


@jobs_app.callback(invoke_without_command=True)
def jobs_list(ctx: typer.Context,
              json_out: bool = typer.Option(False, "--json", help="machine-readable output")) \
        -> None:
    """List jobs: state, nodes, what happened."""
    if ctx.invoked_subcommand is not None:
        return
    jobs = common.admin("jobs.list")
    if json_out:
        print_json(jobs)
        return
    if not jobs:
        out.print("no jobs yet: `gpuhive train SCRIPT --nodes N`")
        return
    table = plain_table("JOB", "NAME", "STATE", "NODES", "STARTED", "LAST EVENT")
    for j in jobs:
        last = j["events"][-1] if j["events"] else {}
        table.add_row(j["id"], j["name"], status_text(j["state"]), ", ".join(j["nodes"]),
                      age(j["started_at"]) if j["started_at"] else "-",
                      f"{last.get('event', '')}: {last.get('detail', '')}"[:90])
    out.print(table)


@jobs_app.command("show")
def jobs_show(job: str, json_out: bool = typer.Option(False, "--json")) -> None:
    """One job with its whole timeline (preflight, sync, restarts, lost nodes…)."""
    j = common.admin("jobs.show", {"job": job})
    if json_out:
        print_json(j)
        return
    out.print(f"[bold]{j['id']}[/bold] {j['name']} {status_text(j['state'])} {j['reason']}")
    for e in j["events"]:
        out.print(f"  {age(e['at']):>10}  {e['event']:<12} {e['detail']}")


@jobs_app.command("logs")
def jobs_logs(job: str, follow: bool = typer.Option(False, "--follow", "-f",
                                                    help="keep streaming until the job ends")) \
        -> None:
    """A job's output, every line prefixed with node and rank (kept on the controller)."""
    if follow:
        _follow(job)
        return
    common.admin("jobs.logs", {"job": job, "follow": False},
                 on_event=lambda ev: sys.stdout.write(ev["line"] + "\n")
                 if ev["event"] == "log" else None)


@jobs_app.command("cancel")
def jobs_cancel(job: str) -> None:
    """Cancel a job: every process of it on every node is stopped."""
    j = common.admin("jobs.cancel", {"job": job}, timeout=60)
    out.print(f"job {j['id']} {status_text(j['state'])}")



