"""Every expected failure in gpuhive is a ``GpuhiveError``.

Each error carries the data that explains it and a ``hint`` that says what to do
next. Only the CLI entry point turns them into one readable line and an exit code.
Library errors (asyncssh, sqlite3, OSError) are translated at the boundary with
``raise ... from exc``.

    GpuhiveError
    ├── ConfigError                 a setting is missing or invalid (names the key)
    ├── StateError                  $GPUHIVE_HOME is missing, incomplete or unreadable
    ├── TokenError                  join tokens
    │   ├── TokenMalformed
    │   ├── TokenUnknown
    │   ├── TokenExpired
    │   ├── TokenUsedUp
    │   └── TokenRevoked
    ├── HostKeyMismatch             the controller is not the one the token pins
    ├── ProtocolError               a malformed agent <-> controller message
    ├── NotFound                    no such thing by that name or id (exit code 5)
    │   ├── NodeNotFound              node
    │   ├── KeyNotFound               gateway API key
    │   ├── InviteNotFound            join token, as the owner names it (`invite revoke`)
    │   └── ModelNotServed            served model (`serve stop`)
    ├── AmbiguousName               a name that fits several things; use an id (exit code 2)
    ├── NodeUnreachable             the controller cannot open a session to a node
    ├── RemoteFileError             a file operation on a node failed (hash, rename)
    ├── ControllerUnavailable       the admin socket does not answer
    ├── BadRequest                  an admin request the contract refuses (names the field)
    ├── EnrollRefused               the controller refused an enrollment
    ├── CommandFailed               an external command (ip, nft, ssh…) failed
    ├── LabError                    the network-namespace lab could not be built
    └── JobAlreadyEnded             `jobs cancel` on a job that is no longer running (exit code 6)
"""

from __future__ import annotations

from typing import Any


class GpuhiveError(Exception):
    """Root of all expected gpuhive failures."""

    code = "error"
    exit_code = 1

    def __init__(self, message: str, *, hint: str = "", **data: Any) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.data = data

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "hint": self.hint, "data": self.data}


class ConfigError(GpuhiveError):
    code = "config"
    exit_code = 2


class StateError(GpuhiveError):
    code = "state"


class TokenError(GpuhiveError):
    code = "token"
    exit_code = 3


class TokenMalformed(TokenError):
    code = "token_malformed"


class TokenUnknown(TokenError):
    code = "token_unknown"


class TokenExpired(TokenError):
    code = "token_expired"


class TokenUsedUp(TokenError):
    code = "token_used_up"


class TokenRevoked(TokenError):
    code = "token_revoked"


class HostKeyMismatch(GpuhiveError):
    code = "host_key_mismatch"
    exit_code = 4


class ProtocolError(GpuhiveError):
    code = "protocol"


class NotFound(GpuhiveError):
    """The owner named something that does not exist. One exit code for every kind, so a
    script can tell "not there" from "failed"."""

    code = "not_found"
    exit_code = 5


class NodeNotFound(NotFound):
    code = "node_not_found"


class KeyNotFound(NotFound):
    code = "key_not_found"


class InviteNotFound(NotFound):
    code = "invite_not_found"


class ModelNotServed(NotFound):
    code = "model_not_served"


class AmbiguousName(GpuhiveError):
    code = "ambiguous_name"
    exit_code = 2


class NodeUnreachable(GpuhiveError):
    code = "node_unreachable"


class RemoteFileError(GpuhiveError):
    code = "remote_file"


class ControllerUnavailable(GpuhiveError):
    code = "controller_unavailable"


class BadRequest(GpuhiveError):
    """An admin request that does not fit the contract (`controller/admin_api`): not JSON,
    an unknown method or field, a missing one, a wrong type. Between this CLI and its own
    controller that means two gpuhive versions; nothing was done."""

    code = "bad_request"
    exit_code = 2


class EnrollRefused(GpuhiveError):
    code = "enroll_refused"


class CommandFailed(GpuhiveError):
    code = "command_failed"

    def __init__(self, argv: list[str], returncode: int, output: str, *, hint: str = "") -> None:
        tail = output.strip().splitlines()[-5:]
        msg = f"`{' '.join(argv)}` exited with {returncode}"
        if tail:
            msg += ": " + " | ".join(tail)
        super().__init__(msg, hint=hint, argv=argv, returncode=returncode, output_tail=tail)


class LabError(GpuhiveError):
    code = "lab"


class JobAlreadyEnded(GpuhiveError):
    """A job that has ended cannot be cancelled; its own exit code tells a script so."""

    code = "job_already_ended"
    exit_code = 6


# Errors the admin API may send back, by code, so the CLI re-raises the same class.
BY_CODE: dict[str, type[GpuhiveError]] = {
    cls.code: cls
    for cls in (
        GpuhiveError, ConfigError, StateError, TokenError, TokenMalformed, TokenUnknown,
        TokenExpired, TokenUsedUp, TokenRevoked, HostKeyMismatch, ProtocolError, NotFound,
        NodeNotFound, KeyNotFound, InviteNotFound, ModelNotServed, AmbiguousName,
        NodeUnreachable, ControllerUnavailable, BadRequest, EnrollRefused, LabError,
    )
}


def error_class(code: str) -> type[GpuhiveError]:
    """The class for an error code from the wire: the core ones above, or any subclass
    defined elsewhere (overlay, serve, train) that this process has imported."""
    if code in BY_CODE:
        return BY_CODE[code]
    todo = list(GpuhiveError.__subclasses__())
    while todo:
        cls = todo.pop()
        if cls.code == code:
            return cls
        todo.extend(cls.__subclasses__())
    return GpuhiveError


def from_dict(d: dict[str, Any]) -> GpuhiveError:
    cls = error_class(str(d.get("code")))
    err = GpuhiveError.__new__(cls)
    GpuhiveError.__init__(err, str(d.get("message", "error")), hint=str(d.get("hint", "")),
                          **dict(d.get("data") or {}))
    return err
