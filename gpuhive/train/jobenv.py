"""A job's virtualenv on a node, layered over the agent's own environment. Runs on the node.

``python -m venv --system-site-packages`` from an agent that itself runs in a venv or pipx
means the *base* interpreter's packages, which usually lack torch (Debian 12 and Ubuntu 24
users must install gpuhive in a venv, PEP 668). So the job venv is made without system
packages and given a ``.pth`` file that adds every site directory the agent's interpreter
sees, in the agent's order, after the venv's own: what the requirements install wins, and
torch, numpy and gpuhive itself come from where the node's probe found them. ``addsitedir``
(not a bare path line) also runs those directories' own ``.pth`` files, so editable
installs keep working.

    python -m gpuhive.train.jobenv create DIR     make the layered venv at DIR, print its python
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

LAYER_FILE = "_gpuhive_agent_env.pth"


def agent_site_dirs(path: list[str] | None = None) -> list[str]:
    """The site directories on this interpreter's ``sys.path``, in order, existing only."""
    out: list[str] = []
    for entry in sys.path if path is None else path:
        name = Path(entry).name
        if name in ("site-packages", "dist-packages") and Path(entry).is_dir() \
                and entry not in out:
            out.append(entry)
    return out


def layer_text(site_dirs: list[str]) -> str:
    """The ``.pth`` body: one ``import`` line (``.pth`` files run lines that start so)."""
    return "import site; " + "; ".join(f"site.addsitedir({d!r})" for d in site_dirs) + "\n"


def create(target: Path) -> Path:
    """Make the venv at ``target`` layered over this interpreter's site dirs; its python."""
    venv.EnvBuilder(with_pip=True, system_site_packages=False, clear=True).create(target)
    python = target / "bin" / "python"
    # the venv's own answer: distributions patch the default scheme (Debian: dist-packages)
    purelib = subprocess.run([str(python), "-c", "import sysconfig; "
                              "print(sysconfig.get_paths()['purelib'])"], check=True,
                             capture_output=True, text=True).stdout.strip()
    Path(purelib).mkdir(parents=True, exist_ok=True)
    (Path(purelib) / LAYER_FILE).write_text(layer_text(agent_site_dirs()))
    return python


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "create":
        print(create(Path(argv[1])))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
