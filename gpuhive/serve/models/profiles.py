"""A model's gateway profile from its catalog entry and (when at hand) its GGUF header."""

from __future__ import annotations

from gpuhive.serve.api import ModelProfile
from gpuhive.serve.models.catalog import ModelRef
from gpuhive.serve.models.gguf_fit import GgufInfo


def model_profile(ref: ModelRef, info: GgufInfo | None = None, *,
                  embeddings: bool = False) -> ModelProfile:
    """The catalog's chat template wins over the GGUF's (a catalog entry may name a chat
    format whose template the file lacks); BOS/EOS strings come from the GGUF."""
    template = ref.chat_template or (info.chat_template if info else None)
    return ModelProfile(name=ref.name, ctx=ref.ctx, chat_template=template,
                        bos_token=info.bos_token if info else "",
                        eos_token=info.eos_token if info else "", embeddings=embeddings)
