"""A tiny TCP bulk sender/receiver for reachability checks and benchmarks.

    python -m gpuhive.overlay.bulk recv ADDR PORT [--timeout S]
    python -m gpuhive.overlay.bulk send ADDR PORT NBYTES [--timeout S]

The receiver accepts one connection, reads to EOF and answers with the byte count; the
sender retries connecting while the receiver starts, sends, and prints one JSON line:
{"bytes", "received", "seconds", "mb_per_s"} or {"error"}. Exit 0 only if every byte
arrived. Standard library only, so it runs on any node with Python.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time

CHUNK = 1 << 16


def receive(addr: str, port: int, timeout_s: float) -> int:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, port))
    srv.listen(1)
    srv.settimeout(timeout_s)
    conn, _ = srv.accept()
    conn.settimeout(timeout_s)
    n = 0
    start = time.monotonic()
    while True:
        b = conn.recv(CHUNK)
        if not b:
            break
        n += len(b)
    conn.sendall(json.dumps({"bytes": n, "seconds": time.monotonic() - start}).encode())
    conn.close()
    srv.close()
    return n


def send(addr: str, port: int, nbytes: int, timeout_s: float) -> dict[str, object]:
    deadline = time.monotonic() + min(timeout_s, 15.0)
    while True:
        try:
            conn = socket.create_connection((addr, port), timeout=5)
            break
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    conn.settimeout(timeout_s)
    start = time.monotonic()
    left, chunk = nbytes, b"\0" * CHUNK
    while left > 0:
        conn.sendall(chunk[:left])
        left -= CHUNK
    conn.shutdown(socket.SHUT_WR)
    reply = b""
    while b := conn.recv(4096):
        reply += b
    seconds = time.monotonic() - start
    conn.close()
    received = int(json.loads(reply or b"{}").get("bytes", -1))
    return {"bytes": nbytes, "received": received, "seconds": seconds,
            "mb_per_s": nbytes / 1e6 / seconds if seconds > 0 else 0.0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gpuhive.overlay.bulk")
    ap.add_argument("mode", choices=["send", "recv"])
    ap.add_argument("addr")
    ap.add_argument("port", type=int)
    ap.add_argument("nbytes", type=int, nargs="?", default=0)
    ap.add_argument("--timeout", type=float, default=30.0)
    a = ap.parse_args(argv)
    try:
        if a.mode == "recv":
            receive(a.addr, a.port, a.timeout)
            return 0
        out = send(a.addr, a.port, a.nbytes, a.timeout)
    except OSError as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return 2
    print(json.dumps(out), flush=True)
    return 0 if out["received"] == a.nbytes else 1


if __name__ == "__main__":
    sys.exit(main())
