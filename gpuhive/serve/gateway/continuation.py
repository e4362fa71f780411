"""The request that continues a broken stream on another replica. Pure.

* completion: the same request with ``prompt + text sent`` and the tokens still allowed;
* chat: the messages rendered with the model's chat template (as the engine renders them:
  Jinja, ``trim_blocks``/``lstrip_blocks``, ``add_generation_prompt``), plus the text
  sent, as a completion. A leading BOS string is dropped because the engine adds BOS to
  a completion prompt itself. The model's EOS string joins the stop list, as the engine's
  chat handler does.

With greedy sampling the continued stream is the uninterrupted one, token for token,
whenever the text sent tokenizes back into the tokens generated (true for the tiny test
model by construction, and for ordinary text with most tokenizers).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from gpuhive.serve.api import ModelProfile

# request fields that mean the same for a completion as for a chat completion
SAMPLING_FIELDS = ("model", "temperature", "top_p", "top_k", "min_p", "typical_p", "seed",
                   "presence_penalty", "frequency_penalty", "repeat_penalty", "mirostat_mode",
                   "mirostat_tau", "mirostat_eta", "logit_bias", "user")


class ContinuationImpossible(Exception):
    """The template could not render these messages (the caller ends the stream)."""


@lru_cache(maxsize=32)
def _template(source: str) -> Any:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(source)


def render_chat_prompt(profile: ModelProfile, messages: list[Any]) -> str:
    if not profile.chat_template:
        raise ContinuationImpossible(f"no chat template known for {profile.name}")

    def raise_exception(message: str) -> None:
        raise ContinuationImpossible(message)

    try:
        text = _template(profile.chat_template).render(
            messages=messages, add_generation_prompt=True, bos_token=profile.bos_token,
            eos_token=profile.eos_token, raise_exception=raise_exception,
            strftime_now=lambda fmt: datetime.now().strftime(fmt))
    except TemplateError as exc:
        raise ContinuationImpossible(f"chat template failed: {exc}") from exc
    if profile.bos_token and text.startswith(profile.bos_token):
        text = text[len(profile.bos_token):]
    return str(text)


def continuation_body(body: Mapping[str, Any], *, chat: bool, profile: ModelProfile,
                      sent_text: str, max_tokens: int | None) -> dict[str, Any]:
    if chat:
        out = {k: body[k] for k in SAMPLING_FIELDS if k in body}
        out["prompt"] = render_chat_prompt(profile, list(body.get("messages") or [])) + sent_text
        stop = body.get("stop")
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        if profile.eos_token and profile.eos_token not in stops:
            stops.append(profile.eos_token)
        if stops:
            out["stop"] = stops
    else:
        out = dict(body)
        out["prompt"] = str(body.get("prompt", "")) + sent_text
    out["max_tokens"] = max_tokens
    out["stream"] = True
    out.pop("stream_options", None)
    return out
