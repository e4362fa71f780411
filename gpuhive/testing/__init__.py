"""Test doubles that ship with gpuhive, for its own tests and for anyone extending it.

``FakeNodes`` is a scripted ``transport.api.NodeSessions``: hand it to any controller part
instead of the real SSH sessions (see ``gpuhive.testing.nodes`` for the scripting API and
docs/architecture.md, "Seams", for a ten-line example). ``FakeLink`` is an agent's link to
the hive endpoint (``transport.api.AgentLink``), for the hive's own tests.
``gpuhive.testing.registry`` puts agents and ssh nodes into a real, temporary registry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gpuhive.testing.links import FakeLink
from gpuhive.testing.nodes import Call, FakeHost, FakeNode, FakeNodes, LinkFacts, Script

__all__ = ["Call", "FakeHost", "FakeLink", "FakeNode", "FakeNodes", "LinkFacts", "Script"]

if TYPE_CHECKING:  # mypy proves the fakes are what they imitate; nothing runs here
    from gpuhive.transport.api import AgentLink, NodeSessions

    _conforms: NodeSessions = FakeNodes()
    _link: AgentLink = FakeLink()
