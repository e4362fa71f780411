import json

import pytest

from gpuhive.serve.api import ModelProfile
from gpuhive.serve.gateway.chunks import (
    DONE,
    ChunkMeta,
    build_chunk,
    error_event,
    meta_of,
    read_delta,
    sse_json,
)
from gpuhive.serve.gateway.continuation import (
    ContinuationImpossible,
    continuation_body,
    render_chat_prompt,
)
from gpuhive.serve.models.tinymodel import CHATML_TEMPLATE

TINY = ModelProfile("tiny", 512, CHATML_TEMPLATE, "<s>", "</s>")


def test_read_delta_of_chat_and_completion_chunks() -> None:
    chat = {"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]}
    role = {"choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}
    end = {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}
    text = {"choices": [{"index": 0, "text": "yo", "finish_reason": "stop"}]}
    assert read_delta(chat).text == "hi" and read_delta(role).text == ""
    assert read_delta(end).finish_reason == "length"
    assert (read_delta(text).text, read_delta(text).finish_reason) == ("yo", "stop")
    assert not read_delta({"usage": {}}).has_choices
    assert read_delta({"choices": "x"}).text == ""


def test_rebuilt_chunks_keep_the_first_streams_identity() -> None:
    first = {"id": "chatcmpl-1", "created": 7, "model": "tiny", "object": "chat.completion.chunk"}
    meta = meta_of(first, chat=True, fallback_model="x", fallback_id="y", now=9)
    assert meta == ChunkMeta("chatcmpl-1", 7, "tiny", "chat.completion.chunk")
    c = build_chunk(meta, "abc")
    assert c["id"] == "chatcmpl-1" and c["choices"][0]["delta"] == {"content": "abc"}
    assert build_chunk(meta, "", "length")["choices"][0] == {
        "index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}
    tmeta = meta_of({}, chat=False, fallback_model="m", fallback_id="gh-1", now=9)
    assert tmeta == ChunkMeta("gh-1", 9, "m", "text_completion")
    assert build_chunk(tmeta, "z")["choices"][0]["text"] == "z"


def test_sse_framing_and_error_event() -> None:
    assert sse_json({"a": 1}) == b'data: {"a":1}\n\n'
    assert DONE == b"data: [DONE]\n\n"
    ev = json.loads(error_event("boom")[6:])
    assert ev["error"]["message"] == "boom" and ev["error"]["type"] == "server_error"


def test_render_drops_leading_bos_like_the_engine_adds_it() -> None:
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Hi"}]
    assert render_chat_prompt(TINY, msgs) == (
        "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n")


def test_llama2_catalog_template_renders() -> None:
    from gpuhive.serve.models.catalog import load_catalog

    ref = load_catalog().get("llama-7b")
    prof = ModelProfile("llama-7b", 4096, ref.chat_template, "<s>", "</s>")
    out = render_chat_prompt(prof, [{"role": "system", "content": "S"},
                                    {"role": "user", "content": "Q"}])
    assert out == "[INST] <<SYS>>\nS\n<</SYS>>\n\nQ [/INST]"


def test_no_template_or_a_failing_one_means_no_continuation() -> None:
    with pytest.raises(ContinuationImpossible):
        render_chat_prompt(ModelProfile("x"), [{"role": "user", "content": "Hi"}])
    bad = ModelProfile("x", chat_template="{{ raise_exception('roles must alternate') }}")
    with pytest.raises(ContinuationImpossible, match="alternate"):
        render_chat_prompt(bad, [])
    with pytest.raises(ContinuationImpossible):
        render_chat_prompt(ModelProfile("x", chat_template="{% for %}"), [])


def test_completion_continuation_appends_the_text_sent() -> None:
    body = {"model": "m", "prompt": "Once", "max_tokens": 50, "temperature": 0.0,
            "stream": True, "stream_options": {"include_usage": True}}
    out = continuation_body(body, chat=False, profile=TINY, sent_text=" upon", max_tokens=45)
    assert out == {"model": "m", "prompt": "Once upon", "max_tokens": 45, "temperature": 0.0,
                   "stream": True}


def test_chat_continuation_is_a_completion_of_the_rendered_prompt() -> None:
    body = {"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "seed": 3,
            "temperature": 0.0, "stop": "zz", "stream": True}
    out = continuation_body(body, chat=True, profile=TINY, sent_text="ab", max_tokens=None)
    assert out["prompt"] == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nab"
    assert out["stop"] == ["zz", "</s>"] and out["max_tokens"] is None
    assert out["seed"] == 3 and "messages" not in out and out["stream"] is True
