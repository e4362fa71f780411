"""Give an older wireguard-go the UDP socket buffers that current releases set themselves. I/O.

wireguard-go since 2023 sets SO_RCVBUF/SO_SNDBUF to 7 MiB on its UDP sockets (with the
*FORCE variants, past net.core.*mem_max). Older builds (Debian's v0.0.20220316) keep the
kernel default of 208 KiB; on a busy box the hub then drops bursts at its socket (UDP
RcvbufErrors) and TCP over the overlay halves its rate. We set the same sizes from outside:
``pidfd_getfd`` duplicates the daemon's socket into this process, and a socket option set
on the duplicate applies to the one socket both share. Best effort: needs root (ptrace
access to the daemon) and Linux >= 5.6; anything else just leaves the defaults.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
from pathlib import Path

SOCKET_BUFFER = 7 << 20  # wireguard-go's own conn.socketBufferSize
_SYS_PIDFD_GETFD = 438  # the same number on every architecture (new-style syscall table)
_SO_SNDBUFFORCE, _SO_RCVBUFFORCE = 32, 33


def _udp_inodes(pid: int) -> set[str]:
    found = set()
    for table in ("udp", "udp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) > 9:
                    found.add(fields[9])
    return found


def grow_udp_buffers(pid: int, size: int = SOCKET_BUFFER) -> int:
    """Set SO_RCVBUF/SO_SNDBUF (forced) on every UDP socket of ``pid``; how many were set."""
    inodes = _udp_inodes(pid)
    if not inodes or not hasattr(os, "pidfd_open"):
        return 0
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pidfd = os.pidfd_open(pid)
    except OSError:
        return 0
    done = 0
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if not (target.startswith("socket:[") and target[8:-1] in inodes):
                continue
            dup = libc.syscall(_SYS_PIDFD_GETFD, pidfd, int(fd), 0)
            if dup < 0:
                continue
            with socket.socket(fileno=dup) as s:  # closes only our duplicate
                try:
                    s.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, size)
                    s.setsockopt(socket.SOL_SOCKET, _SO_SNDBUFFORCE, size)
                except OSError:
                    continue
                done += 1
    except OSError:
        pass
    finally:
        os.close(pidfd)
    return done
