import pytest

from gpuhive.serve.errors import InvalidRequest
from gpuhive.serve.gateway.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    parse_body,
)

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def test_nulls_mean_the_default_and_developer_is_system() -> None:
    body = parse_body(ChatCompletionRequest, {
        "model": "m", "max_tokens": None, "stop": None, "top_k": None,
        "messages": [{"role": "developer", "content": "be brief"}]})
    assert body == {"model": "m", "messages": [{"role": "system", "content": "be brief"}]}


def test_valid_bodies_keep_only_what_was_sent() -> None:
    assert parse_body(ChatCompletionRequest, {**CHAT, "temperature": 0, "vendor_x": 1}) == {
        **CHAT, "temperature": 0.0}
    assert parse_body(CompletionRequest, {"model": "m", "prompt": ["only"]})["prompt"] == "only"
    assert parse_body(EmbeddingRequest, {"model": "m", "input": ["a", "b"]})["input"] == ["a", "b"]


@pytest.mark.parametrize(("schema", "body", "param"), [
    (ChatCompletionRequest, {"model": "m", "messages": []}, "messages"),
    (ChatCompletionRequest, {**CHAT, "max_tokens": "3"}, "max_tokens"),
    (ChatCompletionRequest, {**CHAT, "max_tokens": 0}, "max_tokens"),
    (ChatCompletionRequest, {**CHAT, "temperature": 3}, "temperature"),
    (ChatCompletionRequest, {**CHAT, "stream": "yes"}, "stream"),
    (ChatCompletionRequest, {**CHAT, "n": 2}, "n"),
    (ChatCompletionRequest, {"messages": CHAT["messages"]}, "model"),
    (ChatCompletionRequest, {"model": "m", "messages": [{"role": "wizard", "content": "x"}]},
     "messages.0.role"),
    (ChatCompletionRequest, {"model": "m", "messages": [{"role": "user", "content": None}]},
     "messages.0.content"),
    (ChatCompletionRequest, {"model": "m", "messages": [{"role": "user", "content": [{}]}]},
     "messages.0.content"),
    (ChatCompletionRequest, {"model": "m", "messages": [{"role": "tool", "content": "x"}]},
     "messages.0.role"),
    (CompletionRequest, {"model": "m"}, "prompt"),
    (CompletionRequest, {"model": "m", "prompt": ["a", "b"]}, "prompt"),
    (EmbeddingRequest, {"model": "m", "input": []}, "input"),
])
def test_invalid_fields_are_400_naming_the_param(schema: type, body: dict, param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_body(schema, body)
    assert info.value.status == 400
    assert (info.value.param or "").startswith(param)


@pytest.mark.parametrize("body", [[], "x", 3, None])
def test_the_body_must_be_an_object(body: object) -> None:
    with pytest.raises(InvalidRequest, match="JSON object"):
        parse_body(CompletionRequest, body)
