"""A tiny, working LLaMA-architecture GGUF for tests and demos (the catalog's ``tiny-test``).

2 layers, n_embd 64, 4 heads (2 KV heads), a byte-fallback SentencePiece vocabulary of
356 tokens and a ChatML chat template; F32 weights drawn from ``seed``, so the same seed
gives the same file. About 0.5 MB; llama.cpp loads it in milliseconds.

The vocabulary is built so that greedy output is easy to check:

* every normal token is one character (``▁`` is the space), so any text the model writes
  tokenizes back into exactly the tokens it wrote (a stream continued from "prompt + text
  so far" on another replica reproduces the original run token for token);
* the output rows of the control, unknown and byte tokens are zero, so the model (whose
  best printable logit is positive in practice) writes printable ASCII only and never
  stops by itself: ``max_tokens`` decides the length;
* greedy output walks a fixed random cycle through the printable characters (see
  ``tiny_weights``): varied text, robustly the same in every run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Starts with the BOS token, like Llama's own templates: then a chat prompt and the same text
# sent as a completion (where the engine adds BOS) tokenize identically on both engines.
CHATML_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# token types of tokenizer.ggml.token_type (llama.cpp's llama_token_type)
NORMAL, UNKNOWN, CONTROL, BYTE = 1, 2, 3, 6


@dataclass(frozen=True)
class TinyShape:
    n_layer: int = 2
    n_embd: int = 64
    n_head: int = 4
    n_head_kv: int = 2
    n_ff: int = 128
    context_length: int = 2048


def tiny_vocab() -> tuple[list[str], list[float], list[int]]:
    """(tokens, scores, types): specials, the 256 byte tokens, then one token per char."""
    tokens = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    types = [UNKNOWN, CONTROL, CONTROL, CONTROL, CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [BYTE] * 256
    chars = ["\u2581"] + [chr(c) for c in range(0x21, 0x7F)]
    tokens += chars
    types += [NORMAL] * len(chars)
    scores = [0.0] * (len(tokens) - len(chars)) + [-float(i) for i in range(len(chars))]
    return tokens, scores, types


def tiny_weights(seed: int, shape: TinyShape, n_vocab: int,
                 printable: np.ndarray) -> dict[str, np.ndarray]:
    """Tensor name -> array (numpy row-major: (out, in)), deterministic from ``seed``.

    The output matrix maps each printable token's embedding onto the row of its successor in
    one random cycle through all printable tokens, plus noise; the layers add a smaller,
    history-dependent part. Greedy output therefore walks that cycle (no repeat within 95
    tokens, so a duplicated or lost piece of a stream shows) with wide logit margins (the
    same tokens whether the prompt is evaluated at once or token by token).
    """
    rng = np.random.default_rng(seed)
    e, ff = shape.n_embd, shape.n_ff
    kv = e // shape.n_head * shape.n_head_kv

    def mat(rows: int, cols: int, scale: float) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) * scale).astype(np.float32)

    embd = mat(n_vocab, e, 1.0)
    out = mat(n_vocab, e, 0.3 / np.sqrt(e))
    cycle = rng.permutation(np.flatnonzero(printable))
    out[np.roll(cycle, -1)] += embd[cycle] / np.sqrt(e)
    out[~printable] = 0.0
    w: dict[str, np.ndarray] = {
        "token_embd.weight": embd,
        "output_norm.weight": np.ones(e, dtype=np.float32),
        "output.weight": out,
    }
    small = 0.5 / np.sqrt(e)
    for i in range(shape.n_layer):
        p = f"blk.{i}."
        w[p + "attn_norm.weight"] = np.ones(e, dtype=np.float32)
        w[p + "attn_q.weight"] = mat(e, e, 1.0 / np.sqrt(e))
        w[p + "attn_k.weight"] = mat(kv, e, 1.0 / np.sqrt(e))
        w[p + "attn_v.weight"] = mat(kv, e, 1.0 / np.sqrt(e))
        w[p + "attn_output.weight"] = mat(e, e, small)
        w[p + "ffn_norm.weight"] = np.ones(e, dtype=np.float32)
        w[p + "ffn_gate.weight"] = mat(ff, e, 1.0 / np.sqrt(e))
        w[p + "ffn_up.weight"] = mat(ff, e, 1.0 / np.sqrt(e))
        w[p + "ffn_down.weight"] = mat(e, ff, small / np.sqrt(2))
    return w


def write_tiny_model(path: Path, *, seed: int = 0, shape: TinyShape = TinyShape(),
                     name: str = "gpuhive-tiny") -> Path:
    """Write the tiny model to ``path`` atomically (a temp file renamed into place)."""
    import gguf  # the writer is only needed here

    tokens, scores, types = tiny_vocab()
    printable = np.array([t == NORMAL for t in types])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    w = gguf.GGUFWriter(str(tmp), "llama")
    try:
        w.add_name(name)
        w.add_context_length(shape.context_length)
        w.add_embedding_length(shape.n_embd)
        w.add_block_count(shape.n_layer)
        w.add_feed_forward_length(shape.n_ff)
        w.add_head_count(shape.n_head)
        w.add_head_count_kv(shape.n_head_kv)
        w.add_rope_dimension_count(shape.n_embd // shape.n_head)
        w.add_rope_freq_base(10000.0)
        w.add_layer_norm_rms_eps(1e-5)
        w.add_vocab_size(len(tokens))
        w.add_file_type(gguf.LlamaFileType.ALL_F32)
        w.add_tokenizer_model("llama")
        w.add_token_list(tokens)
        w.add_token_scores(scores)
        w.add_token_types(types)
        w.add_unk_token_id(0)
        w.add_bos_token_id(1)
        w.add_eos_token_id(2)
        w.add_add_bos_token(True)
        w.add_add_eos_token(False)
        w.add_add_space_prefix(False)
        w.add_chat_template(CHATML_TEMPLATE)
        for tname, arr in tiny_weights(seed, shape, len(tokens), printable).items():
            w.add_tensor(tname, arr)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
    finally:
        w.close()
    os.replace(tmp, path)
    return path
