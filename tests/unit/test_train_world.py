"""Rank and world from torchrun's and gpuhive's environment (pure parsing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpuhive.train.errors import TrainConfigError
from gpuhive.train.world import Backend, Compress, Mode, World, choose_backend, world_from_env

TORCHRUN = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2",
            "GROUP_RANK": "1", "MASTER_ADDR": "10.77.0.2", "MASTER_PORT": "29500",
            "TORCHELASTIC_RESTART_COUNT": "2"}


def test_plain_python_is_rank_zero_of_one() -> None:
    w = world_from_env({})
    assert (w.rank, w.world_size, w.local_rank, w.node_rank) == (0, 1, 0, 0)
    assert not w.launched and not w.distributed and w.is_main
    assert w.mode is Mode.DDP and w.backend is Backend.AUTO and w.compress is None
    assert w.checkpoint_dir == Path("checkpoints/local") and w.node_name


def test_torchrun_and_gpuhive_variables() -> None:
    w = world_from_env({**TORCHRUN, "GPUHIVE_JOB_ID": "j-42", "GPUHIVE_CHECKPOINT_DIR": "/ck",
                        "GPUHIVE_NODE_NAME": "alice-4090", "GPUHIVE_MODE": "DiLoCo",
                        "GPUHIVE_SYNC_EVERY": "25", "GPUHIVE_COMPRESS": "fp16",
                        "GPUHIVE_BACKEND": "gloo"})
    assert w == World(rank=3, world_size=4, local_rank=1, local_world_size=2, node_rank=1,
                      master_addr="10.77.0.2", master_port=29500, restart_count=2,
                      launched=True, job_id="j-42", checkpoint_dir=Path("/ck"),
                      node_name="alice-4090", mode=Mode.DILOCO, sync_every=25,
                      compress=Compress.FP16, backend=Backend.GLOO)
    assert w.distributed and not w.is_main


def test_checkpoint_dir_defaults_to_the_job() -> None:
    assert world_from_env({"GPUHIVE_JOB_ID": "j-7"}).checkpoint_dir == Path("checkpoints/j-7")


@pytest.mark.parametrize(("mode", "compress", "effective"), [
    ("ddp", "", Compress.NONE), ("diloco", "", Compress.BF16),
    ("diloco", "none", Compress.NONE), ("ddp", "powersgd", Compress.POWERSGD)])
def test_compression_defaults_per_mode(mode: str, compress: str, effective: Compress) -> None:
    w = world_from_env({"GPUHIVE_MODE": mode, "GPUHIVE_COMPRESS": compress})
    assert w.effective_compress is effective


@pytest.mark.parametrize(("env", "key"), [
    ({"GPUHIVE_MODE": "fsdp"}, "GPUHIVE_MODE"),
    ({"GPUHIVE_COMPRESS": "int8"}, "GPUHIVE_COMPRESS"),
    ({"GPUHIVE_BACKEND": "mpi"}, "GPUHIVE_BACKEND"),
    ({"GPUHIVE_SYNC_EVERY": "0"}, "GPUHIVE_SYNC_EVERY"),
    ({"GPUHIVE_SYNC_EVERY": "ten"}, "GPUHIVE_SYNC_EVERY"),
    ({**TORCHRUN, "RANK": "4"}, "RANK"),
    ({**TORCHRUN, "LOCAL_RANK": "-1"}, "LOCAL_RANK"),
])
def test_bad_values_name_the_key(env: dict[str, str], key: str) -> None:
    with pytest.raises(TrainConfigError) as err:
        world_from_env(env)
    assert err.value.data["key"] == key and err.value.hint


def test_half_a_torchrun_environment_is_an_error() -> None:
    with pytest.raises(TrainConfigError) as err:
        world_from_env({"RANK": "0", "WORLD_SIZE": "2"})
    assert err.value.data["keys"] == ["MASTER_ADDR", "MASTER_PORT"]
    assert "torchrun" in err.value.hint


@pytest.mark.parametrize(("requested", "gpus", "local", "chosen"), [
    (Backend.AUTO, 0, 1, Backend.GLOO),
    (Backend.AUTO, 1, 1, Backend.NCCL),
    (Backend.AUTO, 8, 8, Backend.NCCL),
    (Backend.AUTO, 1, 2, Backend.GLOO),   # two ranks cannot share one GPU under NCCL
    (Backend.GLOO, 8, 1, Backend.GLOO),
    (Backend.NCCL, 0, 1, Backend.NCCL),   # asked for: init_distributed then says why not
])
def test_backend_choice(requested: Backend, gpus: int, local: int, chosen: Backend) -> None:
    assert choose_backend(requested, cuda_devices=gpus, local_world_size=local) is chosen
