"""`gpuhive enroll TOKEN`: make this machine's keys, register with the controller, store state."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from gpuhive.agent.overlay_spoke import wireguard_identity
from gpuhive.agent.state import AgentHome, AgentIdentity
from gpuhive.config import Settings
from gpuhive.core.tokens import parse_token
from gpuhive.fsutil import ensure_private_dir
from gpuhive.probe import probe_hardware, probe_software
from gpuhive.transport import enroll_client, keys


async def enroll(root: Path, token_text: str, name: str = "", *,
                 timeout: float = 20.0, settings: Settings | None = None) -> AgentIdentity:
    token = parse_token(token_text)  # malformed tokens fail here, before any network I/O
    settings = settings or Settings()
    home = AgentHome(ensure_private_dir(root))
    node_key = keys.ensure_key(home.node_key, "gpuhive node key")
    host_key = keys.ensure_key(home.embedded_host_key, "gpuhive embedded server host key")
    hardware = probe_hardware()
    request = {"name": name, "hostname": socket.gethostname(),
               "node_key": keys.public_text(node_key),
               "embedded_host_key": keys.public_text(host_key),
               "hardware": hardware.to_dict(), "software": probe_software().to_dict(),
               **wireguard_identity(home.root, token.host, settings)}
    reply, controller_host_key = await enroll_client.enroll(token, request, timeout=timeout)
    identity = AgentIdentity(
        node_id=reply["node_id"], name=reply["name"], controller_host=token.host,
        controller_port=token.port, controller_host_key=controller_host_key,
        controller_client_key=reply["controller_client_key"],
        forward_port=reply["forward_port"], enrolled_at=time.time())
    identity.save(home)
    return identity
