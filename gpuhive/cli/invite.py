"""`gpuhive invite`: join tokens for friends."""

from __future__ import annotations

import time

import typer

from gpuhive.cli import common
from gpuhive.cli.render import age, err, out, plain_table, print_json, status_text
from gpuhive.controller import admin_api as api

app = typer.Typer(help="Create, list and revoke join tokens: `gpuhive invite --name FRIEND` "
                  "(or `--anyone`), `invite ls`, `invite revoke ID|NAME`.",
                  no_args_is_help=False)


@app.callback(invoke_without_command=True)
def create(
    ctx: typer.Context,
    name: str = typer.Option("", help="the friend or machine this token is for"),
    anyone: bool = typer.Option(False, "--anyone", help="a token for no one in particular "
                                "(the node is named after its hostname)"),
    ttl: str = typer.Option("24h", help="how long the token stays valid (30m, 24h, 7d)"),
    uses: int = typer.Option(1, help="how many machines may enroll with it"),
    json_out: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Print a new join token and the exact command the friend runs."""
    if ctx.invoked_subcommand is not None:
        return
    problem = usage_problem(name, anyone)
    if problem:
        # a token is a live credential: never mint one the owner did not clearly ask for
        err.print(ctx.get_usage())
        err.print(f"Try '{ctx.command_path} --help' for help.\n")
        err.print(f"[red]error:[/red] {problem}")
        raise typer.Exit(2)
    inv = common.admin(api.InviteCreate(name=name, ttl=ttl, uses=uses))
    if json_out:
        print_json(inv)
        return
    out.print(f"join token {inv['id']} for {name or 'anyone'}: {uses} use(s), valid for {ttl}")
    out.print("the friend runs, on their GPU machine:\n")
    out.print(f"  {inv['command']}\n")


def usage_problem(name: str, anyone: bool) -> str:
    """What is wrong with how `gpuhive invite` was asked to create a token, or ""."""
    if name and anyone:
        return "--name and --anyone exclude each other: give one"
    if not name and not anyone:
        return ("say who the token is for: `--name FRIEND`, or `--anyone` for a token "
                "anyone holding it may use")
    return ""


@app.command("ls")
def list_(json_out: bool = typer.Option(False, "--json", help="machine-readable output")) \
        -> None:
    """List join tokens and their state (valid, used, expired, revoked). Secrets are not kept."""
    rows = common.admin(api.InviteList())
    if json_out:
        print_json(rows)
        return
    table = plain_table("ID", "NAME", "STATE", "USES", "CREATED", "EXPIRES")
    now = time.time()
    for r in rows:
        table.add_row(r["id"], r["name"] or "-", status_text(r["state"]),
                      f"{r['uses']}/{r['max_uses']}", age(r["created_at"]),
                      age(r["expires_at"]) if r["state"] == "expired"
                      else until(r["expires_at"] - now))
    out.print(table)


@app.command()
def revoke(token: str = typer.Argument(..., help="token id or name from `gpuhive invite ls`"))\
        -> None:
    """Revoke a join token (by id, or by the name of its one valid token) so nobody can
    enroll with it any more."""
    r = common.admin(api.InviteRevoke(token=token))
    named = f" ({r['name']})" if r.get("name") else ""
    out.print(f"join token {r['id']}{named} revoked")


def until(seconds: float) -> str:
    """How long until a token expires, the way a person says it: in 45m, in 23h, in 7d."""
    minutes = round(max(seconds, 0) / 60)
    if minutes < 60:
        return f"in {max(minutes, 1)}m" if seconds > 0 else "now"
    hours = round(seconds / 3600)
    if hours < 48:
        return f"in {hours}h"
    return f"in {round(seconds / 86400)}d"
