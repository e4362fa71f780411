"""Errors a friend meets running the agent.

    GpuhiveError
    ├── StateError
    │   └── AgentAlreadyRunning   another agent holds this $GPUHIVE_HOME's lock
    └── NodeRemoved               the controller says the owner removed this machine

``NodeRemoved`` has its own exit status, ``REMOVED_EXIT``, which the systemd unit lists in
``RestartPreventExitStatus=``: restarting cannot help, only a new token can.
"""

from __future__ import annotations

from gpuhive.errors import GpuhiveError, StateError

REMOVED_EXIT = 77  # sysexits EX_NOPERM: not allowed any more


class AgentAlreadyRunning(StateError):
    code = "agent_already_running"


class NodeRemoved(GpuhiveError):
    code = "node_removed"
    exit_code = REMOVED_EXIT
