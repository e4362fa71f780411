"""The CLI's blocking client for the admin socket: sends one request of the contract
(`admin_api`) and returns its typed answer."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

from gpuhive.controller import admin_api as api
from gpuhive.controller.admin_codec import decode, encode
from gpuhive.errors import ControllerUnavailable, from_dict

R = TypeVar("R")
OnEvent = Callable[[dict[str, Any]], object]


def request(sock_path: Path, req: api.Request[R], *, on_event: OnEvent | None = None,
            timeout: float | None = 120.0) -> R:
    """Send ``req``; its events (if its method streams any) go to ``on_event``."""
    if on_event is not None and not req.streams():
        raise TypeError(f"{req.method} streams no events; on_event would never be called")
    line = encode(req)  # before connecting: a request too large is refused here
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
    method = req.method
    with s, s.makefile("rwb") as f:
        try:
            f.write(line)
            f.flush()
        except OSError as exc:
            raise ControllerUnavailable(f"the controller did not answer {method}: {exc}",
                                        hint="see the controller log") from exc
        while True:
            try:
                raw = f.readline()
            except OSError as exc:
                raise ControllerUnavailable(f"the controller did not answer {method}: {exc}",
                                            hint="see the controller log") from exc
            if not raw:
                raise ControllerUnavailable(f"the controller closed the socket during {method}",
                                            hint="see the controller log")
            msg = json.loads(raw)
            if "event" in msg:
                if on_event:
                    on_event(msg)
                continue
            if msg.get("ok"):
                # the contract's response type: the controller answers what its handler,
                # held to the same type, returned
                return cast(R, msg.get("result"))
            raise from_dict(msg.get("error") or {})


def call(sock_path: Path, method: str, params: dict[str, Any] | None = None, *,
         on_event: OnEvent | None = None, timeout: float | None = 120.0) -> Any:
    """By method name and a dict of params (the lab, the benchmarks): the dict is decoded
    through the contract first, so a wrong field is a `BadRequest` here, before sending."""
    return request(sock_path, decode(method, params or {}), on_event=on_event,
                   timeout=timeout)
