"""The OpenAI chat-completions wire, and Azure OpenAI's variant of it.

OpenAI: `POST /v1/chat/completions` (JSON, or SSE `data:` lines ending with `data: [DONE]`),
`GET /v1/models`. Azure: `POST /openai/deployments/{deployment}/chat/completions?api-version=...`
(the deployment is the model), `GET /openai/models`; the same bodies and stream, plus Azure's
content-filter annotations (a first stream chunk with empty `choices` and
`prompt_filter_results`) and Azure's error codes.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from aiohttp import web

from router.testing.faults import (
    ContentFilter,
    ContextLength,
    ExceptionInStream,
    HttpError,
    InStreamError,
    Rejection,
    RejectPrefill,
)
from router.testing.wires.base import (
    Answer,
    BadRequest,
    Chat,
    Stream,
    Wire,
    content_text,
    estimate_tokens,
)

__all__ = ["AzureWire", "OpenAIWire"]

# status -> (message, type, code), what OpenAI sends.
_STATUS_DEFAULTS: dict[int, tuple[str, str, str | None]] = {
    400: ("Invalid request.", "invalid_request_error", None),
    401: (
        "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
        "invalid_request_error",
        "invalid_api_key",
    ),
    403: ("You are not allowed to sample from this model.", "invalid_request_error", "model_not_allowed"),
    404: (
        "The model does not exist or you do not have access to it.",
        "invalid_request_error",
        "model_not_found",
    ),
    429: ("Rate limit reached for requests. Please try again later.", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request. Sorry about that!", "server_error", None),
    502: ("Bad gateway.", "server_error", None),
    503: ("The server is overloaded or not ready yet.", "server_error", None),
    504: ("Gateway timeout.", "server_error", None),
}

# status -> (message, code), what Azure OpenAI sends.
_AZURE_DEFAULTS: dict[int, tuple[str, str]] = {
    400: ("Invalid request.", "BadRequest"),
    401: (
        "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a "
        "valid key for an active subscription and use a correct regional API endpoint for your resource.",
        "401",
    ),
    403: ("The principal does not have access to this deployment.", "PermissionDenied"),
    404: (
        "The API deployment for this resource does not exist. If you created the deployment within "
        "the last 5 minutes, please wait a moment and try again.",
        "DeploymentNotFound",
    ),
    429: (
        "Requests to the ChatCompletions_Create Operation under Azure OpenAI API have exceeded "
        "call rate limit of your current OpenAI S0 pricing tier. Please retry after 1 second.",
        "429",
    ),
    500: ("The server had an error while processing your request.", "InternalServerError"),
    503: (
        "The service is temporarily unable to process your request. Please try again later.",
        "ServiceUnavailable",
    ),
}

_FILTER_CATEGORIES = ("hate", "jailbreak", "self_harm", "sexual", "violence")

_PREFILL_MESSAGE = (
    "This model does not support assistant message prefill. The conversation must end with a user message."
)

_IN_STREAM_MESSAGES = {
    "internalServerException": "The server had an error while processing your request.",
    "modelStreamErrorException": "The model's stream failed. Please retry your request.",
    "serviceUnavailableException": "The server is overloaded or not ready yet.",
    "throttlingException": "Rate limit reached for requests. Please try again later.",
    "validationException": "Invalid request.",
}


class OpenAIWire(Wire):
    name: ClassVar[str] = "openai"
    chat_paths: ClassVar[tuple[str, ...]] = ("/v1/chat/completions",)
    models_path: ClassVar[str] = "/v1/models"
    client_path: ClassVar[str] = "/v1"

    def read(self, request: web.Request, body: Any) -> Chat:
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        return self._read_chat(body, body.get("model"))

    def _read_chat(self, body: dict[str, Any], model: Any) -> Chat:
        if not isinstance(model, str) or not model:
            raise BadRequest("'model' must be a non-empty string")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise BadRequest("'messages' must be a non-empty list of objects")
        stream_options = body.get("stream_options") or {}
        prefilled = messages[-1].get("role") == "assistant"
        return Chat(
            model=model,
            stream=bool(body.get("stream", False)),
            prompt_tokens=estimate_tokens("".join(content_text(m.get("content")) for m in messages)),
            ends_with_assistant=prefilled,
            include_usage=isinstance(stream_options, dict) and bool(stream_options.get("include_usage")),
            prefill=content_text(messages[-1].get("content")) if prefilled else "",
        )

    # --- errors ------------------------------------------------------------------------------

    def reject(self, fault: Rejection, model: str) -> web.Response:
        headers: dict[str, str] = {}
        match fault:
            case HttpError():
                status, error = fault.status, self._status_error(fault)
                headers.update(fault.headers)
            case ContextLength(limit=limit):
                status, error = 400, _context_length_error(limit)
            case ContentFilter(category=category):
                status, error = 400, _content_filter_error(category)
            case RejectPrefill():
                status = 400
                error = _error(_PREFILL_MESSAGE, "invalid_request_error", None, param="messages")
            case _:
                raise TypeError(f"not a rejection: {fault!r}")
        return web.json_response({"error": error}, status=status, headers=headers)

    def _status_error(self, fault: HttpError) -> dict[str, Any]:
        message, type_, code = _STATUS_DEFAULTS.get(
            fault.status,
            (
                f"Upstream error {fault.status}.",
                "server_error" if fault.status >= 500 else "invalid_request_error",
                None,
            ),
        )
        return _error(fault.message or message, fault.type or type_, fault.code or code)

    # --- answers -----------------------------------------------------------------------------

    def completion_id(self, answer: Answer) -> str:
        return f"chatcmpl-fake{answer.number:06d}"

    def headers(self, answer: Answer) -> dict[str, str]:
        return {"x-request-id": f"req_fake{answer.number:06d}"}

    def usage(self, answer: Answer) -> dict[str, int]:
        prompt, completion = answer.chat.prompt_tokens, answer.completion_tokens
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def body(self, answer: Answer) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": answer.text, "refusal": None}
        if answer.tool is not None:
            message["content"] = None
            message["tool_calls"] = [
                {
                    "id": _tool_call_id(answer),
                    "type": "function",
                    "function": {"name": answer.tool, "arguments": answer.text},
                }
            ]
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": answer.finish}
        return {
            "id": self.completion_id(answer),
            "object": "chat.completion",
            "created": answer.created,
            "model": answer.chat.model,
            "choices": [] if answer.empty else [self._annotate_choice(choice)],
            "usage": self.usage(answer),
            "system_fingerprint": "fp_fake",
        }

    def _annotate_choice(self, choice: dict[str, Any]) -> dict[str, Any]:
        return choice

    def stream(self, answer: Answer) -> Stream:
        deltas: list[tuple[dict[str, Any], str | None]] = []
        if answer.tool is not None:
            call = {
                "index": 0,
                "id": _tool_call_id(answer),
                "type": "function",
                "function": {"name": answer.tool, "arguments": ""},
            }
            deltas.append(({"role": "assistant", "content": None, "tool_calls": [call]}, None))
            deltas += [
                ({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}, None)
                for piece in answer.pieces
            ]
        else:
            deltas.append(({"role": "assistant", "content": ""}, None))
            deltas += [({"content": piece}, None) for piece in answer.pieces]
        deltas.append(({}, answer.finish))
        chunks = [] if answer.empty else [self._chunk(answer, 0, d, f) for d, f in deltas]
        finish = len(chunks) - 1 if chunks else 0
        if answer.chat.include_usage:
            for chunk in chunks:
                chunk["usage"] = None
            chunks.append(self._chunk(answer, None, {}, None) | {"usage": self.usage(answer)})
        lead = self._lead_chunks(answer)
        return Stream(
            events=[_sse(chunk) for chunk in [*lead, *chunks]],
            finish=finish + len(lead),
            terminator=b"data: [DONE]\n\n",
        )

    def _lead_chunks(self, answer: Answer) -> list[dict[str, Any]]:
        return []

    def _chunk(
        self, answer: Answer, index: int | None, delta: dict[str, Any], finish: str | None
    ) -> dict[str, Any]:
        choices = (
            []
            if index is None
            else [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}]
        )
        return {
            "id": self.completion_id(answer),
            "object": "chat.completion.chunk",
            "created": answer.created,
            "model": answer.chat.model,
            "system_fingerprint": "fp_fake",
            "choices": choices,
        }

    def malformed(self, answer: Answer) -> bytes:
        return b'data: {"id": "' + self.completion_id(answer).encode() + b'", "choices": [{"delta\n\n'

    def stream_error(self, fault: InStreamError, answer: Answer) -> bytes:
        if isinstance(fault, ExceptionInStream):
            message = _IN_STREAM_MESSAGES[fault.exception]
        else:
            message = _IN_STREAM_MESSAGES["serviceUnavailableException"]
        return _sse({"error": _error(message, "server_error", None)})

    def models(self, models: list[str]) -> dict[str, Any]:
        data = [
            {"id": model, "object": "model", "created": 0, "owned_by": "fake-upstream"} for model in models
        ]
        return {"object": "list", "data": data}


class AzureWire(OpenAIWire):
    name: ClassVar[str] = "azure"
    chat_paths: ClassVar[tuple[str, ...]] = ("/openai/deployments/{deployment}/chat/completions",)
    models_path: ClassVar[str] = "/openai/models"
    client_path: ClassVar[str] = ""

    def read(self, request: web.Request, body: Any) -> Chat:
        if not request.query.get("api-version"):
            raise BadRequest(
                "The api-version query parameter (?api-version=) is required for all requests.",
                code="MissingApiVersionParameter",
            )
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        return self._read_chat(body, request.match_info["deployment"])

    def _status_error(self, fault: HttpError) -> dict[str, Any]:
        message, code = _AZURE_DEFAULTS.get(
            fault.status,
            (
                f"Upstream error {fault.status}.",
                "InternalServerError" if fault.status >= 500 else "BadRequest",
            ),
        )
        error: dict[str, Any] = {"code": fault.code or code, "message": fault.message or message}
        if fault.type is not None:
            error["type"] = fault.type
        return error

    def _annotate_choice(self, choice: dict[str, Any]) -> dict[str, Any]:
        return choice | {"content_filter_results": _filter_results(None)}

    def body(self, answer: Answer) -> dict[str, Any]:
        return super().body(answer) | {"prompt_filter_results": _prompt_filter_results()}

    def _lead_chunks(self, answer: Answer) -> list[dict[str, Any]]:
        # Azure opens every stream with a chunk that has no choices, only the prompt's filter verdict.
        return [
            {
                "choices": [],
                "created": 0,
                "id": "",
                "model": "",
                "object": "",
                "prompt_filter_results": _prompt_filter_results(),
            }
        ]


def _error(message: str, type_: str | None, code: str | None, *, param: str | None = None) -> dict[str, Any]:
    return {"message": message, "type": type_, "param": param, "code": code}


def _context_length_error(limit: int) -> dict[str, Any]:
    message = (
        f"This model's maximum context length is {limit} tokens. However, your messages "
        f"resulted in {limit + 1_000} tokens. Please reduce the length of the messages."
    )
    return _error(message, "invalid_request_error", "context_length_exceeded", param="messages")


def _content_filter_error(category: str) -> dict[str, Any]:
    # Azure's shape; OpenAI-compatible gateways in front of Azure pass it on unchanged.
    message = (
        "The response was filtered due to the prompt triggering Azure OpenAI's content management "
        f"policy (category: {category}). Please modify your prompt and retry. To learn more about our "
        "content filtering policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766"
    )
    error = _error(message, None, "content_filter", param="prompt")
    error["status"] = 400
    error["innererror"] = {
        "code": "ResponsibleAIPolicyViolation",
        "content_filter_result": _filter_results(category),
    }
    return error


def _filter_results(tripped: str | None) -> dict[str, Any]:
    results: dict[str, Any] = {}
    extra = () if tripped is None or tripped in _FILTER_CATEGORIES else (tripped,)
    for category in (*_FILTER_CATEGORIES, *extra):
        hit = category == tripped
        if category == "jailbreak":
            results[category] = {"filtered": hit, "detected": hit}
        else:
            results[category] = {"filtered": hit, "severity": "high" if hit else "safe"}
    return results


def _prompt_filter_results() -> list[dict[str, Any]]:
    return [{"prompt_index": 0, "content_filter_results": _filter_results(None)}]


def _tool_call_id(answer: Answer) -> str:
    return f"call_fake{answer.number:06d}"


def _sse(event: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(event).encode() + b"\n\n"
