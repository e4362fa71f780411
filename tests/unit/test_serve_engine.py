from pathlib import Path

from gpuhive.serve.node.engine import (
    LLAMA_CPP_PYTHON,
    LLAMA_SERVER,
    EngineHost,
    EngineSpec,
    build_engine_command,
)

SPEC = EngineSpec(Path("/m/model.gguf"), 8123, "llama-7b", n_ctx=4096)


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_llama_cpp_python_when_no_llama_server() -> None:
    cmd = build_engine_command(SPEC, EngineHost(cores=8, has_gpu=False, python="/py"))
    assert cmd.kind == LLAMA_CPP_PYTHON and cmd.health_path == "/v1/models"
    assert cmd.alive_path == "/openapi.json"  # /v1/models waits while a stream generates
    a = cmd.argv
    assert flag(a, "--interrupt_requests") == "false"  # else a new request cuts a stream
    assert a[:3] == ["/py", "-m", "llama_cpp.server"]
    assert flag(a, "--host") == "127.0.0.1" and flag(a, "--port") == "8123"
    assert flag(a, "--n_ctx") == "4096" and flag(a, "--n_threads") == "8"
    assert flag(a, "--n_gpu_layers") == "0" and flag(a, "--model_alias") == "llama-7b"
    assert "--chat_format" not in a and "--embedding" not in a


def test_llama_cpp_python_with_gpu_chat_format_embeddings_and_no_repack() -> None:
    spec = EngineSpec(Path("/m.gguf"), 1, "x", chat_format="llama-2", embeddings=True,
                      no_repack=True, n_threads=3)
    a = build_engine_command(spec, EngineHost(cores=8, has_gpu=True, python="/py")).argv
    assert a[2] == "gpuhive.serve.node.llama_cpp_main"
    assert flag(a, "--n_gpu_layers") == "-1" and flag(a, "--n_threads") == "3"
    assert flag(a, "--chat_format") == "llama-2" and flag(a, "--embedding") == "true"


def test_llama_server_when_on_path() -> None:
    host = EngineHost(cores=16, has_gpu=True, llama_server="/usr/bin/llama-server")
    cmd = build_engine_command(SPEC, host)
    assert cmd.kind == LLAMA_SERVER and cmd.health_path == "/health"
    a = cmd.argv
    assert a[0] == "/usr/bin/llama-server" and flag(a, "--host") == "127.0.0.1"
    assert flag(a, "--ctx-size") == "4096" and flag(a, "--threads") == "16"
    assert flag(a, "--n-gpu-layers") == "999" and "--jinja" in a
    spec = EngineSpec(Path("/m.gguf"), 1, "x", chat_format="llama-2", no_repack=True,
                      gpu_layers=10, embeddings=True)
    b = build_engine_command(spec, host).argv
    assert flag(b, "--chat-template") == "llama2" and "--no-repack" in b
    assert flag(b, "--n-gpu-layers") == "10" and "--embeddings" in b


def test_context_is_rounded_up_to_a_multiple_of_256() -> None:
    host = EngineHost(cores=1, has_gpu=False, python="/py")
    for asked, got in ((1, 256), (128, 256), (256, 256), (257, 512), (4096, 4096)):
        spec = EngineSpec(Path("/m.gguf"), 1, "x", n_ctx=asked)
        assert flag(build_engine_command(spec, host).argv, "--n_ctx") == str(got)
