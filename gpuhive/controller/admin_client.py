"""The CLI's blocking client for the admin socket."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gpuhive.errors import ControllerUnavailable, from_dict


def call(sock_path: Path, method: str, params: dict[str, Any] | None = None, *,
         on_event: Callable[[dict[str, Any]], None] | None = None,
         timeout: float | None = 120.0) -> Any:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(str(sock_path))
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        s.close()
        raise ControllerUnavailable(
            f"no controller is running for {sock_path.parent}",
            hint="start it with `gpuhive up` (or `gpuhive up --detach`)",
            socket=str(sock_path)) from exc
    except OSError as exc:
        s.close()
        raise ControllerUnavailable(f"cannot reach the controller socket {sock_path}: {exc}",
                                    hint="check GPUHIVE_HOME and permissions") from exc
    with s, s.makefile("rwb") as f:
        f.write(json.dumps({"method": method, "params": params or {}}).encode() + b"\n")
        f.flush()
        while True:
            try:
                line = f.readline()
            except OSError as exc:
                raise ControllerUnavailable(f"the controller did not answer {method}: {exc}",
                                            hint="see the controller log") from exc
            if not line:
                raise ControllerUnavailable(f"the controller closed the socket during {method}",
                                            hint="see the controller log")
            msg = json.loads(line)
            if "event" in msg:
                if on_event:
                    on_event(msg)
                continue
            if msg.get("ok"):
                return msg.get("result")
            raise from_dict(msg.get("error") or {})
