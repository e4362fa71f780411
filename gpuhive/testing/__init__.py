"""Test doubles that ship with gpuhive, for its own tests and for anyone extending it.

``FakeNodes`` is a scripted ``transport.api.NodeSessions``: hand it to any controller part
instead of the real SSH sessions (see ``gpuhive.testing.nodes`` for the scripting API and
docs/architecture.md, "Seams", for a ten-line example).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gpuhive.testing.nodes import Call, FakeHost, FakeNode, FakeNodes, LinkFacts, Script

__all__ = ["Call", "FakeHost", "FakeNode", "FakeNodes", "LinkFacts", "Script"]

if TYPE_CHECKING:  # mypy proves the fake is a NodeSessions; nothing runs here
    from gpuhive.transport.api import NodeSessions

    _conforms: NodeSessions = FakeNodes()
