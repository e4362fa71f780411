"""`gpuhive serve` and `gpuhive keys`: models on the hive behind an OpenAI-compatible gateway."""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from gpuhive.cli import common
from gpuhive.cli.render import age, err, out, plain_table, print_json, status_text
from gpuhive.controller import admin_api as api


class _ModelOrCommand(TyperGroup):
    """`gpuhive serve MODEL` as well as `gpuhive serve ls|stop`: a first word that is not a
    subcommand is the model to serve."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["start", *args]
        return super().parse_args(ctx, args)


serve_app = typer.Typer(cls=_ModelOrCommand, no_args_is_help=True,
                        help="Serve models with llama.cpp on the nodes that fit: "
                             "`gpuhive serve MODEL`, `serve ls`, `serve stop MODEL`.")
keys_app = typer.Typer(help="API keys for the gateway (stored hashed).")


@serve_app.command("start")
def serve(
    model: str = typer.Argument(..., help="catalog name (inference/models.yaml) or a .gguf"),
    replicas: int = typer.Option(1, "--replicas", "-r", help="how many nodes serve it; on a "
                                 "model already served, replicas are added or stopped to "
                                 "reach this"),
    context: int = typer.Option(None, "--ctx", help="context length (default: the catalog's)"),
) -> None:
    """Place replicas, push the model (resumable, hash-checked), start the engines, and
    route /v1/* on the controller's gateway to them.

    Exits 0 only when all the replicas asked for are ready; "2 of 3 placed (why)" otherwise.
    """
    with out.status(f"placing {replicas} replica(s) of {model}…"):
        r = common.admin(api.ServeStart(model=model, replicas=replicas, ctx=context),
                         timeout=None)
    st = common.admin(api.Status())
    out.print(f"{r['model']} (about {r['need_mib']} MiB per replica): {r['summary']}")
    for rep in r["replicas"]:
        out.print(f"  {rep['node']}: {status_text(rep['state'])} {rep['error']}".rstrip())
    ready = sum(1 for x in r["replicas"] if x["state"] == "ready")
    if ready < replicas and not r["unplaced"]:
        err.print(f"{ready} of {replicas} replica(s) ready; `gpuhive serve ls` shows them")
    elif r["unplaced"]:
        err.print(f"{r['model']}: {r['summary']}")
    out.print(f"OpenAI base URL: http://{st.get('http') or '127.0.0.1:8088'}/v1 "
              "(create a key with `gpuhive keys create NAME`)")
    raise typer.Exit(0 if ready == replicas else 1)


@serve_app.command("ls")
def serve_ls(json_out: bool = typer.Option(False, "--json", help="machine-readable output")) \
        -> None:
    """Replicas: model, node, state, restarts, tokens/s (as answers through the gateway
    measured it, recent ones weighing more), requests in flight."""
    rows = common.admin(api.ServeList())
    if json_out:
        print_json(rows)
        return
    if not rows:
        out.print("nothing served: `gpuhive serve MODEL`")
        return
    table = plain_table("MODEL", "NODE", "STATE", "RESTARTS", "TOKENS/S", "IN FLIGHT", "ERROR")
    for r in rows:
        rate = r.get("tokens_per_s")
        table.add_row(r["model"], r["node"], status_text(r["state"]), str(r["restarts"]),
                      "-" if rate is None else f"{rate:.1f}", str(r["in_flight"]), r["error"])
    out.print(table)


@serve_app.command("stop")
def serve_stop(model: str) -> None:
    """Stop every replica of a model; its engines are gone from every node."""
    r = common.admin(api.ServeStop(model=model), timeout=60)
    out.print(f"{r['model']}: {r['stopped']} replica(s) stopped")


@keys_app.command("create")
def keys_create(
    name: str,
    models: list[str] = typer.Option(None, "--models", help="models it may use (default all)"),
    rpm: int = typer.Option(None, help="requests per minute"),
    tokens_per_day: int = typer.Option(None, help="tokens per day"),
) -> None:
    """Create a key; its secret is printed once and only its hash is kept."""
    k = common.admin(api.KeysCreate(name=name, models=tuple(models) if models else None,
                                    rpm=rpm, tokens_per_day=tokens_per_day))
    out.print(f"API key {k['name']} created; use it as the Bearer token (shown once):\n")
    out.print(f"  {k['token']}\n")


@keys_app.command("ls")
def keys_ls(json_out: bool = typer.Option(False, "--json", help="machine-readable output")) \
        -> None:
    """Keys with their scope, limits and state (never their secrets)."""
    rows = common.admin(api.KeysList())
    if json_out:
        print_json(rows)
        return
    for k in rows:
        state = "revoked" if k.get("revoked_at") else "valid"
        out.print(f"{k.get('key_id', k.get('id'))}  {k['name']:<16} {status_text(state):<8} "
                  f"models {','.join(k.get('models') or ['*'])}  created "
                  f"{age(k.get('created_at'))}")


@keys_app.command("revoke")
def keys_revoke(key: str) -> None:
    """Revoke a key (by id or name): the next request with it is refused."""
    k = common.admin(api.KeysRevoke(key=key))
    out.print(f"API key {k['name']} revoked")
