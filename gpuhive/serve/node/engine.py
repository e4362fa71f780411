"""The command line of one inference engine process. Pure: what the host has is passed in.

Two engines speak the same OpenAI API:

* llama.cpp's ``llama-server``, when it is on PATH (fast, C++; health: ``GET /health``);
* ``python -m llama_cpp.server`` (llama-cpp-python) otherwise. It has no ``/health`` (404),
  so readiness is ``GET /v1/models``; its ``--n_threads`` defaults to 1, so the core count
  is always given. It serves one request at a time behind a lock, and by default a new
  request *interrupts* the one streaming (it ends with ``[DONE]``, no finish reason: a
  silently truncated answer), so ``--interrupt_requests false`` is always given: requests
  queue instead. ``/v1/models`` also waits for that lock, so once ready, liveness is
  ``GET /openapi.json``, which does not (a long generation is not a dead engine).

Both bind 127.0.0.1 only: the controller reaches a replica through an SSH forward.

Quantized models on CPUs with AMX: llama.cpp repacks weights into "extra buffer types",
and a natively built llama-cpp-python was seen to crash (SIGSEGV) in the AMX matmul on
them. ``no_repack`` turns that off: ``--no-repack`` for llama-server, and for
llama-cpp-python (whose server has no such flag) the small wrapper
``gpuhive.serve.node.llama_cpp_main``, which sets ``use_extra_bufts = False``.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

LLAMA_SERVER = "llama-server"
LLAMA_CPP_PYTHON = "llama-cpp-python"

# llama-cpp-python chat_format name -> llama-server --chat-template name
CHAT_TEMPLATE_NAMES = {"llama-2": "llama2", "chatml": "chatml", "llama-3": "llama3",
                       "gemma": "gemma", "mistral-instruct": "mistral-v1", "phi-3": "phi3",
                       "zephyr": "zephyr", "vicuna": "vicuna"}


@dataclass(frozen=True)
class EngineSpec:
    model_path: Path
    port: int
    alias: str  # the model name clients use
    n_ctx: int = 2048
    n_threads: int | None = None  # None: every core of the host
    gpu_layers: int | None = None  # None: all layers when the host has a GPU, else 0
    chat_format: str | None = None  # None: the template inside the GGUF
    embeddings: bool = False
    no_repack: bool = False
    extra_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class EngineHost:
    cores: int
    has_gpu: bool
    llama_server: str | None = None  # its path, when installed
    python: str = sys.executable


@dataclass(frozen=True)
class EngineCommand:
    kind: str
    argv: list[str]
    health_path: str  # 200 once the model is loaded and answering
    alive_path: str  # 200 while the process serves HTTP, even when busy generating
    env: dict[str, str] = field(default_factory=dict)


def engine_ctx(n_ctx: int) -> int:
    """llama.cpp pads the context to a multiple of 256; llama-cpp-python sizes its own
    buffers by the number asked for, and then fails ("could not broadcast input array") on
    prompts between the two. Asking for a multiple of 256 keeps them equal."""
    return max(256, -(-n_ctx // 256) * 256)


def build_engine_command(spec: EngineSpec, host: EngineHost) -> EngineCommand:
    threads = str(spec.n_threads or max(1, host.cores))
    n_ctx = str(engine_ctx(spec.n_ctx))
    ngl = spec.gpu_layers if spec.gpu_layers is not None else (999 if host.has_gpu else 0)
    if host.llama_server:
        argv = [host.llama_server, "--model", str(spec.model_path), "--host", "127.0.0.1",
                "--port", str(spec.port), "--ctx-size", n_ctx,
                "--threads", threads, "--alias", spec.alias, "--n-gpu-layers", str(ngl)]
        if spec.chat_format:
            argv += ["--chat-template", CHAT_TEMPLATE_NAMES.get(spec.chat_format,
                                                                spec.chat_format)]
        else:
            argv += ["--jinja"]
        if spec.embeddings:
            argv += ["--embeddings"]
        if spec.no_repack:
            argv += ["--no-repack"]
        return EngineCommand(LLAMA_SERVER, [*argv, *spec.extra_args], "/health", "/health")
    module = "gpuhive.serve.node.llama_cpp_main" if spec.no_repack else "llama_cpp.server"
    argv = [host.python, "-m", module, "--model", str(spec.model_path),
            "--model_alias", spec.alias, "--host", "127.0.0.1", "--port", str(spec.port),
            "--n_ctx", n_ctx, "--n_threads", threads, "--n_threads_batch", threads,
            "--n_gpu_layers", str(-1 if ngl >= 999 else ngl), "--verbose", "false",
            "--interrupt_requests", "false"]
    if spec.chat_format:
        argv += ["--chat_format", spec.chat_format]
    if spec.embeddings:
        argv += ["--embedding", "true"]
    return EngineCommand(LLAMA_CPP_PYTHON, [*argv, *spec.extra_args], "/v1/models",
                         "/openapi.json", {"PYTHONUNBUFFERED": "1"})


def detect_host() -> EngineHost:
    """What this machine has (the agent's side of ``build_engine_command``)."""
    has_gpu = bool(shutil.which("nvidia-smi")) or Path("/dev/nvidia0").exists()
    return EngineHost(cores=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                      else (os.cpu_count() or 1), has_gpu=has_gpu,
                      llama_server=shutil.which(LLAMA_SERVER))
