"""`gpuhive invite`: join tokens for friends."""

from __future__ import annotations

import typer

from gpuhive.cli import common
from gpuhive.cli.render import age, out, plain_table, print_json, status_text

app = typer.Typer(help="Create, list and revoke join tokens.", no_args_is_help=False)


@app.callback(invoke_without_command=True)
def create(
    ctx: typer.Context,
    name: str = typer.Option("", help="the friend or machine this token is for"),
    ttl: str = typer.Option("24h", help="how long the token stays valid (30m, 24h, 7d)"),
    uses: int = typer.Option(1, help="how many machines may enroll with it"),
    json_out: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Print a new join token and the exact command the friend runs."""
    if ctx.invoked_subcommand is not None:
        return
    inv = common.admin("invite.create", {"name": name, "ttl": ttl, "uses": uses})
    if json_out:
        print_json(inv)
        return
    out.print(f"join token {inv['id']} for {name or 'anyone'}: {uses} use(s), valid for {ttl}")
    out.print("the friend runs, on their GPU machine:\n")
    out.print(f"  {inv['command']}\n")


@app.command("ls")
def list_(json_out: bool = typer.Option(False, "--json", help="machine-readable output")) \
        -> None:
    """List join tokens and their state (valid, used, expired, revoked). Secrets are not kept."""
    rows = common.admin("invite.list")
    if json_out:
        print_json(rows)
        return
    table = plain_table("ID", "NAME", "STATE", "USES", "CREATED", "EXPIRES")
    for r in rows:
        table.add_row(r["id"], r["name"] or "-", status_text(r["state"]),
                      f"{r['uses']}/{r['max_uses']}", age(r["created_at"]),
                      age(r["expires_at"]) if r["state"] == "expired"
                      else _until(r["expires_at"]))
    out.print(table)


@app.command()
def revoke(token_id: str = typer.Argument(..., help="token id from `gpuhive invite ls`")) -> None:
    """Revoke a join token so nobody can enroll with it any more."""
    r = common.admin("invite.revoke", {"token_id": token_id})
    out.print(f"join token {r['id']} revoked")


def _until(ts: float) -> str:
    import time
    s = ts - time.time()
    return f"in {s / 3600:.1f}h" if s >= 3600 else f"in {max(s, 0) / 60:.0f}m"
