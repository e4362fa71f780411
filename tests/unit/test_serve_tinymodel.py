import hashlib
from pathlib import Path

from gpuhive.serve.models.tinymodel import BYTE, CONTROL, NORMAL, tiny_vocab, write_tiny_model


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_same_seed_same_bytes_other_seed_other_weights(tmp_path: Path) -> None:
    a = write_tiny_model(tmp_path / "a.gguf", seed=0)
    b = write_tiny_model(tmp_path / "b.gguf", seed=0)
    c = write_tiny_model(tmp_path / "c.gguf", seed=1)
    assert sha(a) == sha(b) != sha(c)
    assert a.stat().st_size < 1_000_000
    assert not list(tmp_path.glob(".*tmp*"))  # written atomically, nothing left over


def test_required_metadata_keys(tmp_path: Path) -> None:
    from gguf import GGUFReader

    r = GGUFReader(str(write_tiny_model(tmp_path / "t.gguf")))
    keys = set(r.fields)
    for k in ("llama.context_length", "llama.attention.layer_norm_rms_epsilon",
              "llama.feed_forward_length", "llama.attention.head_count_kv",
              "tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.scores",
              "tokenizer.ggml.token_type", "tokenizer.chat_template"):
        assert k in keys, k
    assert r.fields["tokenizer.ggml.model"].contents() == "llama"
    assert {t.tensor_type.name for t in r.tensors} == {"F32"}


def test_vocabulary_is_byte_fallback_spm_with_chatml_specials() -> None:
    tokens, scores, types = tiny_vocab()
    assert 300 <= len(tokens) <= 400 and len(tokens) == len(scores) == len(types)
    assert types.count(BYTE) == 256 and tokens[tokens.index("<0x0A>")] == "<0x0A>"
    assert {"<s>", "</s>", "<|im_start|>", "<|im_end|>"} <= {
        t for t, ty in zip(tokens, types, strict=True) if ty == CONTROL}
    normal = [t for t, ty in zip(tokens, types, strict=True) if ty == NORMAL]
    assert all(len(t) == 1 for t in normal) and "\u2581" in normal
