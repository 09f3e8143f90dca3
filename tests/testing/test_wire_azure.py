"""The fake upstream's Azure OpenAI wire, seen through `openai.AsyncAzureOpenAI`."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import openai
import pytest

from router.testing import FakeUpstream, Fault

DEPLOYMENT = "gpt-4o-prod"
MESSAGES: list[Any] = [{"role": "user", "content": "Say hello, please."}]


async def complete(client: openai.AsyncAzureOpenAI, **kwargs: Any) -> Any:
    kwargs.setdefault("messages", MESSAGES)
    return await client.chat.completions.create(model=DEPLOYMENT, **kwargs)


async def test_completion_is_served_to_the_deployment(
    fake_upstream: FakeUpstream, azure: openai.AsyncAzureOpenAI
) -> None:
    completion = await complete(azure)

    assert completion.choices[0].message.content == f"Hello from {DEPLOYMENT}."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == len(MESSAGES[0]["content"]) // 4 + 1
    assert (
        completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    assert completion.model_extra is not None and completion.model_extra["prompt_filter_results"]
    record = fake_upstream.log[-1]
    assert (record.wire, record.model) == ("azure", DEPLOYMENT)
    assert record.path == f"/openai/deployments/{DEPLOYMENT}/chat/completions"
    assert fake_upstream.count(DEPLOYMENT) == 1


async def test_stream_opens_with_a_chunk_without_choices(azure: openai.AsyncAzureOpenAI) -> None:
    stream = await complete(azure, stream=True, stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]

    assert chunks[0].choices == [] and chunks[0].model_extra is not None
    assert (
        chunks[0].model_extra["prompt_filter_results"][0]["content_filter_results"]["hate"]["filtered"]
        is False
    )
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == f"Hello from {DEPLOYMENT}."
    )
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_api_version_is_required(fake_upstream: FakeUpstream) -> None:
    request = urllib.request.Request(
        f"{fake_upstream.azure_endpoint}/openai/deployments/{DEPLOYMENT}/chat/completions",
        data=json.dumps({"messages": MESSAGES}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=2)
    with caught.value as response:
        body = json.load(response)

    assert caught.value.code == 400
    assert body["error"]["code"] == "MissingApiVersionParameter"
    assert fake_upstream.log[-1].fault == "invalid_request"


@pytest.mark.parametrize(
    ("fault", "error_class", "status", "code"),
    [
        (Fault.rate_limited(retry_after=1), openai.RateLimitError, 429, "429"),
        (Fault.unauthorized(), openai.AuthenticationError, 401, "401"),
        (Fault.http(404), openai.NotFoundError, 404, "DeploymentNotFound"),
        (Fault.server_error(), openai.InternalServerError, 500, "InternalServerError"),
        (Fault.unavailable(), openai.InternalServerError, 503, "ServiceUnavailable"),
    ],
    ids=lambda value: str(value) if isinstance(value, int) else None,
)
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_statuses_carry_azure_codes(
    azure: openai.AsyncAzureOpenAI,
    fake_upstream: FakeUpstream,
    fault: Fault,
    error_class: type[openai.APIStatusError],
    status: int,
    code: str,
    stream: bool,
) -> None:
    fake_upstream.add_fault(DEPLOYMENT, fault)

    with pytest.raises(error_class) as caught:
        await complete(azure, stream=stream)

    assert caught.value.status_code == status
    assert caught.value.code == code and caught.value.message
    assert caught.value.response.headers.get("retry-after") == ("1" if status == 429 else None)


async def test_content_filter_has_azure_inner_error(
    fake_upstream: FakeUpstream, azure: openai.AsyncAzureOpenAI
) -> None:
    fake_upstream.add_fault(DEPLOYMENT, Fault.content_filter("violence"))

    with pytest.raises(openai.BadRequestError) as caught:
        await complete(azure)

    assert caught.value.code == "content_filter"
    body: Any = caught.value.body
    inner = body["innererror"]
    assert inner["code"] == "ResponsibleAIPolicyViolation"
    assert inner["content_filter_result"]["violence"] == {"filtered": True, "severity": "high"}
    assert inner["content_filter_result"]["hate"] == {"filtered": False, "severity": "safe"}


async def test_context_length_is_openais(fake_upstream: FakeUpstream, azure: openai.AsyncAzureOpenAI) -> None:
    fake_upstream.add_fault(DEPLOYMENT, Fault.context_length(8192))

    with pytest.raises(openai.BadRequestError) as caught:
        await complete(azure)

    assert caught.value.code == "context_length_exceeded"
    assert "maximum context length is 8192 tokens" in caught.value.message


async def test_stream_faults_apply(fake_upstream: FakeUpstream, azure: openai.AsyncAzureOpenAI) -> None:
    fake_upstream.add_fault(DEPLOYMENT, Fault.cut(3))

    received = []
    with pytest.raises(openai.APIConnectionError):
        async for chunk in await complete(azure, stream=True):
            received.append(chunk)

    # The prompt-filter chunk, the role chunk, then the first word.
    assert len(received) == 3 and received[2].choices[0].delta.content == "Hello"


async def test_tool_call(fake_upstream: FakeUpstream, azure: openai.AsyncAzureOpenAI) -> None:
    fake_upstream.set_tool_call(DEPLOYMENT, "lookup", {"id": 7})

    completion = await complete(azure)

    (call,) = completion.choices[0].message.tool_calls
    assert (call.function.name, json.loads(call.function.arguments)) == ("lookup", {"id": 7})
    assert completion.choices[0].finish_reason == "tool_calls"


async def test_models_list(fake_upstream: FakeUpstream, azure: openai.AsyncAzureOpenAI) -> None:
    await complete(azure)

    models = await azure.models.list()

    assert [m.id for m in models.data] == [DEPLOYMENT]
    assert (fake_upstream.log[-1].path, fake_upstream.log[-1].wire) == ("/openai/models", "azure")
