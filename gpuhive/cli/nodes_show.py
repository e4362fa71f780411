"""Lines `gpuhive nodes show|rank|probe|bench` print, from the admin API's answers. Pure:
each function takes the answer and returns Rich markup, so tests read what users read."""

from __future__ import annotations

from typing import Any

from rich.markup import escape

from gpuhive.cli.render import (
    age,
    gib,
    hardware_summary,
    link_cell,
    link_of,
    overlay_cell,
    software_of,
    spoke_of,
    status_text,
)
from gpuhive.core.node_facts import LinkMeasure, SoftwareFacts


def show_lines(n: dict[str, Any], now: float) -> list[str]:
    """`gpuhive nodes show NAME`, ages as of ``now``."""
    hw = n.get("hardware") or {}
    reason = n.get("reason") or n.get("status_reason") or ""
    lines = [f"[bold]{n['name']}[/bold] ({n['id']}, {n['kind']}) {status_text(n['status'])}"
             + (f" {escape(reason)}" if reason else "")]
    lines.append(f"  hostname {n.get('hostname') or '-'} · {connection_text(n, now)} · last "
                 f"heartbeat {age(n.get('last_heartbeat'), now)}")
    lines.append(f"  overlay {overlay_text(n)}")
    score = n.get("reliability_score")
    if score is not None:
        lines.append(f"  reliability {score:.2f} (REL: earned, 0 to 1; a new node starts at "
                     "0.30, finished tasks raise it, failures and missed heartbeats lower it)")
    cpu = hw.get("cpu") or {}
    lines.append(f"  cpu {cpu.get('cores', '?')} cores {cpu.get('model', '')} · ram "
                 f"{gib(hw.get('memory_total_mib'))} · {hw.get('os', '')}")
    for g in hw.get("gpus") or []:
        lines.append(f"  gpu{g['index']} {g['name']} {gib(g['memory_total_mib'])} "
                     f"({gib(g.get('memory_used_mib'))} used)")
    sw = software_of(n)
    if sw is not None:
        lines.append(f"  software {software_text(sw)}")
    link = link_cell(link_of(n))
    if link != "-":
        lines.append(f"  link {link} (from `gpuhive nodes bench`)")
    lines.append("  history:")
    for e in (n.get("events") or [])[-20:]:
        lines.append(f"    {age(e['at'], now):>10}  {e['event']:<13} {escape(e['detail'])}")
    return lines


def connection_text(n: dict[str, Any], now: float) -> str:
    """How the controller reaches the node, in words (not `connected True`)."""
    where = n.get("public_addr") or n.get("address") or ""
    if n.get("kind") == "ssh":
        state = "reachable over ssh" if n.get("connected") else "not reachable over ssh"
        return f"{state} at {where}" if where else state
    if not n.get("connected"):
        return "not connected"
    since = n.get("connected_since")
    text = f"connected {age(since, now)}" if since else "connected"
    return f"{text} from {where}" if where else text


def overlay_text(n: dict[str, Any]) -> str:
    st = spoke_of(n)
    where = " ".join(x for x in (st.ip, f"on {st.iface}" if st.iface else "") if x)
    if st.state == "up":
        return f"{overlay_cell(n)} {where}" + (f", {st.direct} direct path(s)"
                                               if st.direct else "")
    if st.state == "off":
        return f"{overlay_cell(n)} (the controller runs without `gpuhive up --overlay`)"
    if st.state == "down":
        return f"{overlay_cell(n, wide=False)} ({where}): {escape(st.error or '?')}"
    return f"{overlay_cell(n)}: {escape(st.problem or 'not reported')}"


def software_text(sw: SoftwareFacts) -> str:
    """python, torch (and the CUDA it was built with), NCCL, llama.cpp."""
    torch = f"torch {sw.torch}" if sw.torch else "no torch"
    if sw.torch and sw.torch_cuda:
        torch += f" (CUDA {sw.torch_cuda})"
    nccl = f"NCCL {sw.nccl}" if sw.nccl else "no NCCL"
    if sw.llama_server:
        llama = f"llama.cpp: llama-server ({sw.llama_server})"
    elif sw.llama_cpp_python:
        llama = "llama.cpp: llama-cpp-python"
    else:
        llama = "no llama.cpp"
    parts = [f"python {sw.python}"] if sw.python else []
    return " · ".join([*parts, torch, nccl, llama])


def probe_line(r: dict[str, Any]) -> str:
    """One line per probed node: GPUs and where they were found, then the software."""
    hw = r.get("hardware") or {}
    gpus = f" ({hardware_summary(hw)})" if hw.get("gpus") else ""
    line = f"{r['node']}: {r['gpus']} GPU(s) via {r['source']}{gpus}"
    sw = software_of(r)
    return line + (f" · {software_text(sw)}" if sw is not None
                   else " · software not probed (ssh node)")


def bench_line(r: dict[str, Any]) -> str:
    """One measured node (an ``ok`` answer of `nodes.bench`: its link's fields at the top)."""
    link = LinkMeasure.from_dict(r)
    line = (f"{r['node']}: rtt {_num(link.rtt_ms, '.1f')} ms, down "
            f"{_num(link.down_mbps, '.1f')} Mbit/s, up {_num(link.up_mbps, '.1f')} Mbit/s")
    g = link.gpu
    if r.get("gpu_skipped"):
        line += f"; GPU bench skipped: {r['gpu_skipped']}"
    elif g is not None and g.available:
        line += f"; {g.device}: {g.matmul_tflops} TFLOPS fp16, {g.memory_gbps} GB/s"
    elif g is not None and g.to_dict():  # it printed something, just not a figure
        line += f"; no GPU benchmark: {g.reason}"
    return line


def _num(value: float | None, spec: str) -> str:
    return "?" if value is None else format(value, spec)


def rank_lines(r: dict[str, Any]) -> list[str]:
    """`gpuhive nodes rank`: the ranked nodes (the chosen marked *), then the excluded."""
    chosen = list(r.get("chosen") or [])
    lines = []
    if r.get("cpu_fallback"):
        train = r["request"]["purpose"] == "train"
        want = r["need"] if train else r["take"]
        short = "no GPU node fits" if want == 1 else f"fewer than {want} GPU nodes fit"
        lines.append(f"[yellow]{short}, so CPU nodes{' (gloo)' if train else ''}:[/yellow]")
        gpu_excluded = r.get("gpu_excluded") or []
        few = [n["name"] for n in gpu_excluded
               if [x["code"] for x in n["reasons"]] == ["gpu_count"]]
        if few:
            lines.append(f"  [dim]too few GPUs: {', '.join(few)}[/dim]")
        for n in gpu_excluded:
            if n["name"] not in few:
                lines.append(f"  [dim]no GPU work: {n['name']:<16} {_reasons(n)}[/dim]")
    for i, n in enumerate(r["ranked"], 1):  # * only on what would really run
        mark = "*" if r["fits"] and n["name"] in chosen else " "
        lines.append(f"{i:>3}.{mark}{n['name']:<16} {n.get('why', '')}")
    for n in r["excluded"]:
        lines.append(f"  [dim]✗ {n['name']:<16} {_reasons(n)}[/dim]")
    if r["fits"] and chosen:
        lines.append(f"* chosen: {', '.join(chosen)}")
    return lines


def _reasons(n: dict[str, Any]) -> str:
    return escape("; ".join(x["message"] for x in n["reasons"]))
