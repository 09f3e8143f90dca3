"""The AWS Bedrock runtime wire: Converse, ConverseStream and the control plane's ListFoundationModels.

`POST /model/{modelId}/converse` answers JSON; `POST /model/{modelId}/converse-stream` answers
event-stream frames (`messageStart`, `contentBlockStart` for a tool call, `contentBlockDelta`
per word, `contentBlockStop`, `messageStop`, then the terminator `metadata` with usage).
Errors carry their name in `x-amzn-ErrorType` and `{"message"}` as the body; errors mid-stream
are `:message-type: exception` frames. A tripped content filter is not an error on Bedrock:
the answer is the guardrail's message, stopped with `guardrail_intervened`.
`GET /foundation-models` lists the models as `list_foundation_models` returns them.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from aiohttp import web

from router.testing.faults import (
    BEDROCK_ERRORS,
    ContentFilter,
    ContextLength,
    ExceptionInStream,
    HttpError,
    InStreamError,
    Rejection,
    RejectPrefill,
    bedrock_error_name,
)
from router.testing.wires.base import Answer, BadRequest, Chat, Stream, Wire, estimate_tokens
from router.testing.wires.eventstream import encode_frame

__all__ = ["GUARDRAIL_MESSAGE", "BedrockWire"]

GUARDRAIL_MESSAGE = "Sorry, the model cannot answer this question."

_ERROR_NAMESPACE = ":http://internal.amazon.com/coral/com.amazon.bedrock/"

_FINISH = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "guardrail_intervened",
}

_PREFILL_MESSAGE = (
    "This model does not support assistant message prefill. The conversation must end with a user message."
)


class BedrockWire(Wire):
    name: ClassVar[str] = "bedrock"
    chat_paths: ClassVar[tuple[str, ...]] = (
        "/model/{model_id:.+}/converse",
        "/model/{model_id:.+}/converse-stream",
    )
    models_path: ClassVar[str] = "/foundation-models"
    stream_content_type: ClassVar[str] = "application/vnd.amazon.eventstream"
    filters_in_band: ClassVar[bool] = True

    def read(self, request: web.Request, body: Any) -> Chat:
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise BadRequest("The conversation must have at least one message.")
        for message in messages:
            if message.get("role") not in ("user", "assistant") or not isinstance(
                message.get("content"), list
            ):
                raise BadRequest(
                    "Each message needs a role of user or assistant and a list of content blocks."
                )
        texts = [_text(body.get("system"))] + [_text(message["content"]) for message in messages]
        return Chat(
            model=request.match_info["model_id"],
            stream=request.path.endswith("/converse-stream"),
            prompt_tokens=estimate_tokens("".join(texts)),
            ends_with_assistant=messages[-1]["role"] == "assistant",
            prefill=_text(messages[-1]["content"]) if messages[-1]["role"] == "assistant" else "",
        )

    def reject(self, fault: Rejection, model: str) -> web.Response:
        headers: dict[str, str] = {}
        match fault:
            case HttpError():
                status, usual = fault.status, bedrock_error_name(fault.status)
                name = fault.type or usual
                message = fault.message or BEDROCK_ERRORS.get(name, BEDROCK_ERRORS[usual])[1]
                headers.update(fault.headers)
            case ContextLength():
                status, name, message = 400, "ValidationException", "Input is too long for requested model."
            case RejectPrefill():
                status, name, message = 400, "ValidationException", _PREFILL_MESSAGE
            case ContentFilter():  # answered in band; kept total for a wire that asks
                status, name, message = 400, "ValidationException", "The request was blocked by a guardrail."
            case _:
                raise TypeError(f"not a rejection: {fault!r}")
        headers["x-amzn-ErrorType"] = name + _ERROR_NAMESPACE
        return web.json_response({"message": message}, status=status, headers=headers)

    def headers(self, answer: Answer) -> dict[str, str]:
        return {"x-amzn-RequestId": f"00000000-0000-4000-8000-{answer.number:012d}"}

    def _usage(self, answer: Answer) -> dict[str, int]:
        prompt, completion = answer.chat.prompt_tokens, answer.completion_tokens
        return {"inputTokens": prompt, "outputTokens": completion, "totalTokens": prompt + completion}

    def body(self, answer: Answer) -> dict[str, Any]:
        content: list[dict[str, Any]]
        if answer.empty:
            content = []
        elif answer.tool is not None:
            content = [
                {
                    "toolUse": {
                        "toolUseId": _tool_use_id(answer),
                        "name": answer.tool,
                        "input": answer.tool_input,
                    }
                }
            ]
        else:
            content = [{"text": answer.text}]
        return {
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": _FINISH.get(answer.finish or ""),
            "usage": self._usage(answer),
            "metrics": {"latencyMs": answer.latency_ms()},
        }

    def stream(self, answer: Answer) -> Stream:
        events: list[tuple[str, dict[str, Any]]] = [("messageStart", {"role": "assistant"})]
        if not answer.empty:
            if answer.tool is not None:
                start = {"toolUse": {"toolUseId": _tool_use_id(answer), "name": answer.tool}}
                events.append(("contentBlockStart", {"contentBlockIndex": 0, "start": start}))
            for piece in answer.pieces:
                delta = {"text": piece} if answer.tool is None else {"toolUse": {"input": piece}}
                events.append(("contentBlockDelta", {"contentBlockIndex": 0, "delta": delta}))
            events.append(("contentBlockStop", {"contentBlockIndex": 0}))
        finish = len(events)
        events.append(("messageStop", {"stopReason": _FINISH.get(answer.finish or "")}))
        metadata = {"usage": self._usage(answer), "metrics": {"latencyMs": answer.latency_ms()}}
        return Stream(
            events=[_event(name, json.dumps(data).encode()) for name, data in events],
            finish=finish,
            terminator=_event("metadata", json.dumps(metadata).encode()),
        )

    def malformed(self, answer: Answer) -> bytes:
        # Framing and CRCs intact, the JSON inside broken: botocore hands on what it could parse.
        return _event("contentBlockDelta", b'{"contentBlockIndex": 0, "delta": {"te')

    def stream_error(self, fault: InStreamError, answer: Answer) -> bytes:
        payload: dict[str, Any]
        if isinstance(fault, ExceptionInStream):
            exception = fault.exception
            payload = {"message": BEDROCK_ERRORS[exception[:1].upper() + exception[1:]][1]}
        else:
            exception = "serviceUnavailableException"
            payload = {"message": "Model is overloaded. Try your request again."}
        if exception == "modelStreamErrorException":
            payload |= {"originalStatusCode": 500, "originalMessage": "Internal server error"}
        headers = {
            ":exception-type": exception,
            ":content-type": "application/json",
            ":message-type": "exception",
        }
        return encode_frame(headers, json.dumps(payload).encode())

    def models(self, models: list[str]) -> dict[str, Any]:
        summaries = [
            {
                "modelArn": f"arn:aws:bedrock:us-east-1::foundation-model/{model}",
                "modelId": model,
                "modelName": model,
                "providerName": model.split(".", 1)[0].capitalize() if "." in model else "Fake",
                "inputModalities": ["TEXT"],
                "outputModalities": ["TEXT"],
                "responseStreamingSupported": True,
                "customizationsSupported": [],
                "inferenceTypesSupported": ["ON_DEMAND"],
                "modelLifecycle": {"status": "ACTIVE"},
            }
            for model in models
        ]
        return {"modelSummaries": summaries}


def _event(name: str, payload: bytes) -> bytes:
    headers = {":event-type": name, ":content-type": "application/json", ":message-type": "event"}
    return encode_frame(headers, payload)


def _tool_use_id(answer: Answer) -> str:
    return f"tooluse_fake{answer.number:06d}"


def _text(content: Any) -> str:
    """The text in `system` or a message's `content` blocks (text, toolUse input, toolResult)."""
    if not isinstance(content, list):
        return ""
    parts = []
    for block in content:
        if not isinstance(block, dict):
            continue
        if isinstance(block.get("text"), str):
            parts.append(block["text"])
        elif isinstance(block.get("toolUse"), dict):
            parts.append(json.dumps(block["toolUse"].get("input")))
        elif isinstance(block.get("toolResult"), dict):
            parts.append(_text(block["toolResult"].get("content")))
        elif "json" in block:
            parts.append(json.dumps(block["json"]))
    return "".join(parts)
