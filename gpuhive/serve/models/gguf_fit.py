"""How much memory a replica of a GGUF model needs, and whether it fits.

``read_gguf_info`` reads only the header (the ``gguf`` package memory-maps the file; the
weights are not read). ``estimate_memory`` is pure arithmetic:

    weights   the tensors' bytes as stored (quantized sizes included)
    kv cache  n_layers · ctx · n_kv_heads · (head_dim_k + head_dim_v) · bytes per element
              (= 2 · n_layers · ctx · n_kv_heads · head_dim · bytes when K and V dims agree;
              f16 cache: 2 bytes)
    overhead  a fixed base (64 MiB) plus the logits buffer of one batch
              (n_vocab · batch · 4 bytes); the CUDA context and fragmentation are what
              ``fits``'s headroom (512 MiB, like the node ranking's) is for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpuhive.serve.errors import GgufError

MIB = 1024 * 1024
BASE_OVERHEAD_MIB = 64.0
DEFAULT_BATCH = 512
KV_BYTES = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}


@dataclass(frozen=True)
class GgufInfo:
    arch: str
    n_layers: int
    n_ctx_train: int
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim_k: int
    head_dim_v: int
    n_vocab: int
    weights_bytes: int
    file_bytes: int
    chat_template: str | None = None
    bos_token: str = ""
    eos_token: str = ""
    name: str = ""


@dataclass(frozen=True)
class MemoryEstimate:
    weights_mib: float
    kv_mib: float
    overhead_mib: float

    @property
    def total_mib(self) -> float:
        return self.weights_mib + self.kv_mib + self.overhead_mib

    def need_mib(self) -> int:
        """Whole MiB, rounded up: what placement asks a node for."""
        return int(-(-self.total_mib // 1))


def kv_cache_bytes(n_layers: int, ctx: int, n_kv_heads: int, head_dim_k: int,
                   head_dim_v: int | None = None, bytes_per_elem: float = 2.0) -> float:
    dv = head_dim_k if head_dim_v is None else head_dim_v
    return float(n_layers) * ctx * n_kv_heads * (head_dim_k + dv) * bytes_per_elem


def estimate_memory(*, weights_bytes: int, n_layers: int, ctx: int, n_kv_heads: int,
                    head_dim_k: int, head_dim_v: int | None = None, n_vocab: int = 0,
                    kv_type: str = "f16", batch: int = DEFAULT_BATCH,
                    base_overhead_mib: float = BASE_OVERHEAD_MIB) -> MemoryEstimate:
    if kv_type not in KV_BYTES:
        raise ValueError(f"unknown KV cache type {kv_type!r}; known: {', '.join(KV_BYTES)}")
    kv = kv_cache_bytes(n_layers, ctx, n_kv_heads, head_dim_k, head_dim_v, KV_BYTES[kv_type])
    logits = float(n_vocab) * batch * 4
    return MemoryEstimate(weights_mib=weights_bytes / MIB, kv_mib=kv / MIB,
                          overhead_mib=base_overhead_mib + logits / MIB)


def estimate_for(info: GgufInfo, ctx: int | None = None, kv_type: str = "f16") -> MemoryEstimate:
    return estimate_memory(weights_bytes=info.weights_bytes, n_layers=info.n_layers,
                           ctx=ctx or info.n_ctx_train, n_kv_heads=info.n_head_kv,
                           head_dim_k=info.head_dim_k, head_dim_v=info.head_dim_v,
                           n_vocab=info.n_vocab, kv_type=kv_type)


def fits(need_mib: float, free_mib: float, headroom: float = 512) -> bool:
    """True when ``free_mib`` covers ``need_mib`` plus ``headroom`` (the boundary fits)."""
    return free_mib - need_mib >= headroom


def read_gguf_info(path: Path) -> GgufInfo:
    """The fields placement and the gateway need, from the GGUF header of ``path``."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
    except (OSError, ValueError) as exc:
        raise GgufError(f"{path} is not a readable GGUF file: {exc}",
                        hint="check that the download completed and its sha256 matches",
                        path=str(path)) from exc
    fields: dict[str, Any] = {}
    for key, f in reader.fields.items():
        if key in ("tokenizer.ggml.tokens",):
            continue
        try:
            fields[key] = f.contents()
        except (ValueError, IndexError, TypeError):  # exotic array types: not needed here
            continue
    arch = str(fields.get("general.architecture", ""))

    def num(key: str, default: int | None = None) -> int:
        v = fields.get(f"{arch}.{key}", default)
        if isinstance(v, list):  # per-layer head counts (some archs): take the largest
            v = max(v) if v else default
        if v is None:
            raise GgufError(f"{path}: GGUF metadata has no {arch}.{key}",
                            hint="the file is not a supported language model",
                            path=str(path), key=f"{arch}.{key}")
        return int(v)

    n_embd, n_head = num("embedding_length"), num("attention.head_count")
    n_head_kv = num("attention.head_count_kv", n_head)
    head_dim_k = num("attention.key_length", n_embd // max(1, n_head))
    head_dim_v = num("attention.value_length", head_dim_k)
    tokens_field = reader.fields.get("tokenizer.ggml.tokens")
    n_vocab = len(tokens_field.data) if tokens_field is not None else 0
    n_vocab = int(fields.get(f"{arch}.vocab_size", n_vocab) or n_vocab)
    template = fields.get("tokenizer.chat_template")
    return GgufInfo(
        arch=arch, n_layers=num("block_count"), n_ctx_train=num("context_length"),
        n_embd=n_embd, n_head=n_head, n_head_kv=n_head_kv, head_dim_k=head_dim_k,
        head_dim_v=head_dim_v, n_vocab=n_vocab,
        weights_bytes=sum(int(t.n_bytes) for t in reader.tensors),
        file_bytes=path.stat().st_size,
        chat_template=str(template) if template is not None else None,
        bos_token=_token(reader, fields.get("tokenizer.ggml.bos_token_id")),
        eos_token=_token(reader, fields.get("tokenizer.ggml.eos_token_id")),
        name=str(fields.get("general.name", "")))


def _token(reader: Any, token_id: Any) -> str:
    f = reader.fields.get("tokenizer.ggml.tokens")
    if f is None or not isinstance(token_id, int) or not 0 <= token_id < len(f.data):
        return ""
    return str(f.contents(token_id))
