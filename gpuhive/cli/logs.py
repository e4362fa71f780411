"""Logging for the long-running commands (controller daemon, agent): one place, no cycle.

``cli.main`` builds the command tree from ``cli.agent`` and ``cli.controller``, which call
this; keeping it out of ``cli.main`` keeps them from importing their own parent.
"""

from __future__ import annotations

import logging
import os
import sys


def setup_logging(daemon: bool = False) -> None:
    level = os.environ.get("GPUHIVE_LOG", "INFO" if daemon else "WARNING").upper()
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # asyncssh logs every channel at INFO; only its warnings matter to a user
    logging.getLogger("asyncssh").setLevel(max(logging.WARNING, logging.getLogger().level))
