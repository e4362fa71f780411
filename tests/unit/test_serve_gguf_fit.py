from pathlib import Path

import pytest

from gpuhive.serve.errors import GgufError
from gpuhive.serve.models.gguf_fit import (
    MIB,
    estimate_for,
    estimate_memory,
    fits,
    kv_cache_bytes,
    read_gguf_info,
)
from gpuhive.serve.models.tinymodel import write_tiny_model


def test_kv_cache_of_llama2_7b_at_4k_is_2_gib() -> None:
    # 2 · 32 layers · 4096 ctx · 32 kv heads · 128 head dim · 2 bytes (f16)
    assert kv_cache_bytes(32, 4096, 32, 128) == 2 * 32 * 4096 * 32 * 128 * 2 == 2 * 1024 * MIB


def test_gqa_and_kv_type_scale_the_cache() -> None:
    # Llama-3-8B: 8 KV heads -> a quarter of the MHA cache; q8_0 about half of f16
    mha = kv_cache_bytes(32, 8192, 32, 128)
    assert kv_cache_bytes(32, 8192, 8, 128) == mha / 4
    e16 = estimate_memory(weights_bytes=0, n_layers=32, ctx=8192, n_kv_heads=8, head_dim_k=128)
    e8 = estimate_memory(weights_bytes=0, n_layers=32, ctx=8192, n_kv_heads=8, head_dim_k=128,
                         kv_type="q8_0")
    assert e16.kv_mib == 1024 and e8.kv_mib == pytest.approx(1024 * 34 / 64)
    with pytest.raises(ValueError):
        estimate_memory(weights_bytes=0, n_layers=1, ctx=1, n_kv_heads=1, head_dim_k=1,
                        kv_type="f8")


def test_estimate_for_llama2_7b_q4_k_m() -> None:
    e = estimate_memory(weights_bytes=4_081_004_224 - 700_000, n_layers=32, ctx=4096,
                        n_kv_heads=32, head_dim_k=128, n_vocab=32000)
    assert e.weights_mib == pytest.approx(3891.3, abs=1)
    assert e.kv_mib == 2048
    assert e.overhead_mib == pytest.approx(64 + 32000 * 512 * 4 / MIB)  # 126.5
    assert e.need_mib() == 6066
    assert fits(e.need_mib(), 8192) and not fits(e.need_mib(), 6400)


def test_fits_boundary_is_inclusive() -> None:
    assert fits(1000, 1512) and not fits(1000, 1511)
    assert fits(1000, 1100, headroom=100) and fits(0, 512)


def test_read_tiny_model_header(tmp_path: Path) -> None:
    info = read_gguf_info(write_tiny_model(tmp_path / "t.gguf"))
    assert (info.arch, info.n_layers, info.n_embd, info.n_head, info.n_head_kv) == \
        ("llama", 2, 64, 4, 2)
    assert (info.head_dim_k, info.n_vocab, info.n_ctx_train) == (16, 356, 2048)
    assert info.bos_token == "<s>" and info.eos_token == "</s>"
    assert info.chat_template and "<|im_start|>" in info.chat_template
    assert 0 < info.weights_bytes < info.file_bytes < 1_000_000
    e = estimate_for(info, ctx=512)
    assert e.kv_mib * MIB == 2 * 2 * 512 * 2 * 16 * 2


def test_not_a_gguf_file(tmp_path: Path) -> None:
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"not a model at all" * 10)
    with pytest.raises(GgufError, match="not a readable GGUF"):
        read_gguf_info(bad)
