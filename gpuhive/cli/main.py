"""The `gpuhive` command. Only here do errors become exit codes and one readable line."""

from __future__ import annotations

import sys

import typer

from gpuhive import __version__
from gpuhive.cli import agent, controller, invite, lab, nodes, overlay, serve, train
from gpuhive.cli.helpfmt import HiveGroup
from gpuhive.cli.render import err
from gpuhive.errors import GpuhiveError

app = typer.Typer(
    name="gpuhive", cls=HiveGroup, no_args_is_help=True, add_completion=False,
    help="Pool friends' GPU machines behind NAT into one hive.\n\n"
         "Owner: `gpuhive init`, `gpuhive up -d`, `gpuhive invite --name alice`, "
         "`gpuhive nodes`. Friend: `gpuhive enroll TOKEN`.",
    pretty_exceptions_enable=False)
app.command()(controller.init)
app.command()(controller.up)
app.command()(controller.down)
app.command()(controller.status)
app.command()(agent.enroll)
app.add_typer(invite.app, name="invite")
app.add_typer(nodes.app, name="nodes")
app.add_typer(agent.app, name="agent")
app.add_typer(lab.app, name="lab")
app.command(context_settings={"allow_extra_args": True,
                              "ignore_unknown_options": True})(train.train)
app.add_typer(train.jobs_app, name="jobs")
app.add_typer(overlay.app, name="overlay")
app.add_typer(serve.serve_app, name="serve")
app.add_typer(serve.keys_app, name="keys")


def _print_version(wanted: bool) -> None:
    if wanted:
        print(f"gpuhive {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", "-V", is_eager=True,
                                       callback=_print_version, expose_value=False,
                                       help="print the gpuhive version and exit")) -> None:
    pass  # the options above are the root's; its help is the Typer's


@app.command()
def version() -> None:
    """Print the gpuhive version."""
    print(__version__)


def run() -> None:
    try:
        app()
    except GpuhiveError as exc:
        err.print(f"[red]error:[/red] {exc.message}", markup=True)
        if exc.hint:
            err.print(f"  hint: {exc.hint}")
        sys.exit(exc.exit_code)
    except OSError as exc:
        # the disk filled up, a directory vanished, permissions changed under us…
        where = f" ({exc.filename})" if exc.filename else ""
        err.print(f"[red]error:[/red] {exc.strerror or exc}{where}", markup=True)
        err.print("  hint: check free disk space and permissions of $GPUHIVE_HOME")
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
