"""Errors of the in-script training helpers, all under ``gpuhive.errors.GpuhiveError``.

They are raised inside a user's training script (under torchrun), so each one says what
the launcher or the script should do about it.

    GpuhiveError
    └── TrainError
        ├── TrainConfigError        a torchrun or GPUHIVE_* variable is missing or invalid
        ├── DistributedError        the process group could not be started
        ├── CheckpointError         a checkpoint could not be written, read or received
        └── PeerLost                a collective failed mid-round: a peer left the group
"""

from __future__ import annotations

from gpuhive.errors import GpuhiveError


class TrainError(GpuhiveError):
    code = "train"


class TrainConfigError(TrainError):
    code = "train_config"
    exit_code = 2


class DistributedError(TrainError):
    code = "train_distributed"


class CheckpointError(TrainError):
    code = "train_checkpoint"


class PeerLost(TrainError):
    """A collective failed: the round is discarded, torchrun restarts the group."""

    code = "train_peer_lost"
