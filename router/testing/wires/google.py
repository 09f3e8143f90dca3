"""Google's Gemini REST wire, as the Gemini API and Vertex AI both speak it (`google-genai` SDK paths).

Gemini API: `POST /v1beta/models/{model}:generateContent`, `:streamGenerateContent?alt=sse` and
`GET /v1beta/models`; Vertex AI: the same calls under
`/v1beta1/projects/{project}/locations/{location}/publishers/google/models/{model}:...` and the
publisher models listing `GET /v1beta1/publishers/google/models`. Bodies are `contents` of `parts`
(text, `functionCall`, `functionResponse`, `inlineData`); answers are `candidates` with a
`finishReason` and `usageMetadata`. A stream is one `data:` event per word and a last event with the
finish reason and the usage; Google sends no terminator. Errors are
`{"error": {"code", "message", "status", "details"}}`, a 429 with a `google.rpc.RetryInfo` detail
when a delay is known, and the same object as a `data:` event when they strike mid-stream. A
tripped safety filter is not an error status: the answer is a 200 whose `promptFeedback` names the
block reason and no candidate comes (so `filters_in_band`).

Vertex AI's service-account credentials get their token from `TOKEN_PATH` on the same server
(point a service-account file's `token_uri` at it), so no test talks to Google's token endpoint.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Awaitable, Callable, Iterable
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
from router.testing.wires.base import Answer, BadRequest, Chat, Stream, Wire, estimate_tokens

__all__ = ["GOOGLE_STATUS", "IN_STREAM_ERRORS", "SAFETY_CATEGORY", "TOKEN_PATH", "GoogleWire"]

TOKEN_PATH = "/google/oauth2/token"
"""Where the fake upstream hands out OAuth access tokens for service-account credentials."""

SAFETY_CATEGORY = "HARM_CATEGORY_HATE_SPEECH"
"""The category a content-filter fault's block names."""

# status -> (google.rpc status, message), what the Gemini API sends.
GOOGLE_STATUS: dict[int, tuple[str, str]] = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: (
        "UNAUTHENTICATED",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
        "or other valid authentication credential.",
    ),
    403: ("PERMISSION_DENIED", "Permission denied: Consumer has been suspended or the API is not enabled."),
    404: ("NOT_FOUND", "models/unknown is not found for API version v1beta."),
    409: ("ABORTED", "The operation was aborted."),
    429: (
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota, please check your plan and billing details.",
    ),
    499: ("CANCELLED", "The operation was cancelled."),
    500: ("INTERNAL", "An internal error has occurred. Please retry or report in the troubleshooting guide."),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    504: ("DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
}

# A Bedrock in-stream exception's name -> the HTTP status of the error event Google sends instead.
IN_STREAM_ERRORS: dict[str, int] = {
    "internalServerException": 500,
    "modelStreamErrorException": 500,
    "serviceUnavailableException": 503,
    "throttlingException": 429,
    "validationException": 400,
}

_FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP", "content_filter": "SAFETY"}
_PREFILL_MESSAGE = "Please ensure that multiturn requests end with a user turn or a function response."
_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"


class GoogleWire(Wire):
    name: ClassVar[str] = "google"
    chat_paths: ClassVar[tuple[str, ...]] = (
        "/v1beta/models/{call}",
        "/v1beta1/projects/{project}/locations/{location}/publishers/google/models/{call}",
    )
    # Both listings; neither path is another wire's (the default API version, v1, would be OpenAI's).
    models_path: ClassVar[str] = "/{listing:v1beta/models|v1beta1/publishers/google/models}"
    filters_in_band: ClassVar[bool] = True

    def __init__(self) -> None:
        self._tokens = itertools.count(1)

    def routes(self) -> Iterable[tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]]:
        return [("POST", TOKEN_PATH, self._token)]

    async def _token(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" or not form.get(
            "assertion"
        ):
            return web.json_response(
                {"error": "invalid_grant", "error_description": "Bad Request"}, status=400
            )
        token = f"ya29.fake-{next(self._tokens)}"
        return web.json_response({"access_token": token, "expires_in": 3600, "token_type": "Bearer"})

    def read(self, request: web.Request, body: Any) -> Chat:
        model, _, method = request.match_info["call"].partition(":")
        if method not in ("generateContent", "streamGenerateContent") or not model:
            raise BadRequest(f"unknown method {method or request.match_info['call']!r}")
        stream = method == "streamGenerateContent"
        if stream and request.query.get("alt") != "sse":
            raise BadRequest("this fake streams server-sent events only: ?alt=sse")
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents or not all(isinstance(c, dict) for c in contents):
            raise BadRequest("* GenerateContentRequest.contents: contents is not specified")
        for index, content in enumerate(contents):
            if content.get("role", "user") not in ("user", "model"):
                raise BadRequest(f"* GenerateContentRequest.contents[{index}].role: Please use a valid role")
            if not isinstance(content.get("parts"), list) or not content["parts"]:
                raise BadRequest(
                    f"* GenerateContentRequest.contents[{index}].parts: contents.parts must not be empty"
                )
        texts = [_text(body.get("systemInstruction"))] + [_text(content) for content in contents]
        last = contents[-1]
        prefill = last.get("role") == "model"
        return Chat(
            model=model,
            stream=stream,
            prompt_tokens=estimate_tokens("".join(texts)),
            ends_with_assistant=prefill,
            prefill=_text(last) if prefill else "",
        )

    def reject(self, fault: Rejection, model: str) -> web.Response:
        headers: dict[str, str] = {}
        details: list[dict[str, Any]] = []
        match fault:
            case HttpError():
                status = fault.status
                usual, message = GOOGLE_STATUS.get(
                    status, ("INTERNAL" if status >= 500 else "INVALID_ARGUMENT", f"Error {status}.")
                )
                if status == 404 and model:
                    message = f"models/{model} is not found for API version v1beta."
                google_status, message = fault.type or usual, fault.message or message
                headers.update(fault.headers)
                delay = _delay(fault.headers)
                if delay is not None:
                    details.append({"@type": _RETRY_INFO, "retryDelay": delay})
            case ContextLength(limit=limit):
                status, google_status = 400, "INVALID_ARGUMENT"
                message = (
                    f"The input token count ({limit + 1_000}) exceeds the maximum number of tokens allowed "
                    f"({limit})."
                )
            case RejectPrefill():
                status, google_status, message = 400, "INVALID_ARGUMENT", _PREFILL_MESSAGE
            case ContentFilter():  # answered in band; kept total for a wire that asks
                status, google_status, message = 400, "INVALID_ARGUMENT", "The request was blocked (SAFETY)."
            case _:
                raise TypeError(f"not a rejection: {fault!r}")
        return web.json_response(
            _error(status, google_status, message, details), status=status, headers=headers
        )

    def _usage(self, answer: Answer) -> dict[str, int]:
        prompt, completion = answer.chat.prompt_tokens, answer.completion_tokens
        return {
            "promptTokenCount": prompt,
            "candidatesTokenCount": completion,
            "totalTokenCount": prompt + completion,
        }

    def _parts(self, answer: Answer, pieces: Iterable[str]) -> list[dict[str, Any]]:
        if answer.tool is not None:
            return [{"functionCall": {"name": answer.tool, "args": answer.tool_input}}]
        return [{"text": piece} for piece in pieces]

    def _candidate(self, answer: Answer, parts: list[dict[str, Any]], *, finish: bool) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
        if finish and answer.finish is not None:
            candidate["finishReason"] = _FINISH[answer.finish]
        return candidate

    def _blocked(self, answer: Answer) -> dict[str, Any]:
        ratings = [{"category": SAFETY_CATEGORY, "probability": "HIGH", "blocked": True}]
        return {
            "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": ratings},
            "usageMetadata": {
                "promptTokenCount": answer.chat.prompt_tokens,
                "totalTokenCount": answer.chat.prompt_tokens,
            },
            "modelVersion": answer.chat.model,
        }

    def body(self, answer: Answer) -> dict[str, Any]:
        if answer.finish == "content_filter":
            return self._blocked(answer)
        parts = [] if answer.empty else self._parts(answer, [answer.text])
        candidates = [] if answer.empty else [self._candidate(answer, parts, finish=True)]
        return {
            "candidates": candidates,
            "usageMetadata": self._usage(answer),
            "modelVersion": answer.chat.model,
            "responseId": f"fake{answer.number:06d}",
        }

    def stream(self, answer: Answer) -> Stream:
        if answer.finish == "content_filter":
            return Stream(events=[_sse(self._blocked(answer))], finish=0, terminator=b"")
        if answer.empty:
            pieces: list[list[dict[str, Any]]] = []
        elif answer.tool is not None:
            pieces = [self._parts(answer, ())]  # Google sends a function call whole
        else:
            pieces = [self._parts(answer, [piece]) for piece in answer.pieces]
        events = [
            {"candidates": [self._candidate(answer, parts, finish=False)], "modelVersion": answer.chat.model}
            for parts in pieces
        ]
        last = {
            "candidates": [self._candidate(answer, [{"text": ""}], finish=True)],
            "usageMetadata": self._usage(answer),
            "modelVersion": answer.chat.model,
        }
        return Stream(events=[*map(_sse, events), _sse(last)], finish=len(events), terminator=b"")

    def malformed(self, answer: Answer) -> bytes:
        return b'data: {"candidates": [{"content": {"parts": [{"te\r\n\r\n'

    def stream_error(self, fault: InStreamError, answer: Answer) -> bytes:
        exception = fault.exception if isinstance(fault, ExceptionInStream) else "serviceUnavailableException"
        status = IN_STREAM_ERRORS[exception]
        google_status, message = GOOGLE_STATUS[status]
        return _sse(_error(status, google_status, message, []))

    def models(self, models: list[str]) -> dict[str, Any]:
        # One body for both listings: the SDK reads `models` from the Gemini API, `publisherModels`
        # from Vertex AI.
        gemini = [
            {
                "name": f"models/{model}",
                "displayName": model,
                "supportedGenerationMethods": ["generateContent", "countTokens"],
            }
            for model in models
        ]
        vertex = [{"name": f"publishers/google/models/{model}", "versionId": "001"} for model in models]
        return {"models": gemini, "publisherModels": vertex}


def _error(status: int, google_status: str, message: str, details: list[dict[str, Any]]) -> dict[str, Any]:
    error: dict[str, Any] = {"code": status, "message": message, "status": google_status}
    if details:
        error["details"] = details
    return {"error": error}


def _delay(headers: Iterable[tuple[str, str]]) -> str | None:
    """The fault's Retry-After (or retry-after-ms) as RetryInfo's `retryDelay` (`"2s"`)."""
    values = {name.lower(): value for name, value in headers}
    if "retry-after-ms" in values:
        return f"{int(values['retry-after-ms']) / 1000:g}s"
    if "retry-after" in values:
        return f"{float(values['retry-after']):g}s"
    return None


def _sse(data: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(data)}\r\n\r\n".encode()


def _text(content: Any) -> str:
    """The text in a content's (or `systemInstruction`'s) parts: text, function calls and responses."""
    if not isinstance(content, dict) or not isinstance(content.get("parts"), list):
        return ""
    texts = []
    for part in content["parts"]:
        if not isinstance(part, dict):
            continue
        if isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif isinstance(part.get("functionCall"), dict):
            texts.append(json.dumps(part["functionCall"].get("args")))
        elif isinstance(part.get("functionResponse"), dict):
            texts.append(json.dumps(part["functionResponse"].get("response")))
    return "".join(texts)
