"""An agent's link to the hive endpoint, in memory: a ``transport.api.AgentLink`` for tests
of ``controller.hive`` (what the hive endpoint hands the controller when an agent says
hello).

    link = FakeLink()
    hive.link_opened(node, link, "198.51.100.7:40000", link.send)
    ...
    assert link.closed and link.sent[-1].type == "peers"
"""

from __future__ import annotations

from typing import Any

from gpuhive.core.messages import Message, decode, encode


class FakeLink:
    def __init__(self) -> None:
        self.closed = False
        self.sent: list[Message] = []  # what went down the link, as the agent decodes it

    def close(self) -> None:
        self.closed = True

    def send(self, type_: str, **fields: Any) -> None:
        """A ``transport.api.Send``: encoded and decoded, so a message the real link would
        refuse fails here too."""
        self.sent.append(decode(encode(type_, **fields)))
