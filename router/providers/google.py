"""Google's Gemini models natively: the Gemini API (`type: gemini`) and Vertex AI (`type: vertex`),
through the official `google-genai` SDK with its retries off.

The SDK builds the requests (paths, API versions, the API key or the OAuth token) and parses the
answers; this module translates from OpenAI's shape and classifies every failure. The SDK's HTTP
client is ours (`sdk_http_client`: aiohttp underneath, every answer bounded by
`max_response_bytes`), its retries are off (`attempts=1`, which also stops its own resend of a
failed connection), automatic function calling and continuation are off (one call, one request),
and each call carries its timeout.

Translation from the OpenAI shape (see `router.providers._translate`):

- system (and developer) messages -> `system_instruction`; assistant -> the `model` role;
- assistant `tool_calls` -> `function_call` parts; `tool` messages -> `function_response` parts,
  named after the call they answer; `tools` -> `function_declarations` (their JSON schemas as
  given), `tool_choice` -> `function_calling_config` (auto, any, none, or one allowed name);
- images: `data:` URLs -> inline data; http(s) and gs:// URLs -> file data (by the extension's type);
- `max_tokens`, `temperature`, `top_p`, `stop`, `seed`, the penalties, `response_format`
  (`json_object` -> JSON output, `json_schema` -> its schema) have fields of their own; `extra_body`
  goes into the request body as given; other OpenAI options are dropped;
- thinking: a call's `reasoning_effort` (none 0, minimal 128, low 1024, medium 8192, high 24576
  tokens, as Google's OpenAI-compatible endpoint reads it) or else the provider's
  `thinking_budget`; thought parts are never part of the answer, their tokens are output.

Errors: the rpc status decides (`router.providers.kinds.google_kind`), with the HTTP status
behind it; a 429 carries the delay of its `Retry-After` header or of its `google.rpc.RetryInfo`
detail. A blocked prompt (`promptFeedback.blockReason`) or answer (a `SAFETY`, `PROHIBITED_CONTENT`,
... finish) is a `content_filter`, with the category its safety ratings name; in a stream whose
text had begun, the finish says `content_filter` instead. An error event inside a stream is
classified the same way. Garbage (HTML, cut JSON, a malformed event) is a `server_error`.

Vertex AI credentials: `api_key` (express mode), else the service-account key file
`credentials_file` (read once, at the first call; only its path and the kind of failure are ever
reported, never its contents), else Google's default chain (GOOGLE_APPLICATION_CREDENTIALS,
gcloud's application-default login, the metadata server).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import mimetypes
import re
import threading
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import google.auth.exceptions
import httpx2
import pydantic
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from router.errors import ErrorKind, ProviderError
from router.policy.model import ProviderSpec
from router.providers._http import TooManyValues, check_json_body, redact, retry_after, secrets_of
from router.providers._translate import (
    Block,
    Image,
    Text,
    ToolChoice,
    ToolResult,
    ToolUse,
    parse_data_url,
    read_conversation,
    read_stop,
    read_tool_choice,
    read_tools,
)
from router.providers.base import Call, Chunk, Reply
from router.providers.kinds import google_kind
from router.providers.transport import ResponseTooLarge, sdk_http_client
from router.results import ToolCall, Usage

__all__ = ["REASONING_BUDGETS", "GoogleProvider"]

REASONING_BUDGETS = {"none": 0, "minimal": 128, "low": 1024, "medium": 8192, "high": 24576}
"""A call's `reasoning_effort` as a thinking budget in tokens."""

_SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
# API versions pinned: the SDK's default for the Gemini API (v1) lacks features (system
# instructions with thinking, JSON schemas) that v1beta has.
_GEMINI_VERSION = "v1beta"
_VERTEX_VERSION = "v1beta1"
_FILTERED = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "LANGUAGE",
    }
)
_MALFORMED = frozenset({"MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL"})
_FINISH = {"STOP": "stop", "MAX_TOKENS": "length"}
_RPC_STATUS = re.compile(r"^[A-Z_]+$")
_AUTH_DETAIL = {
    "UNAUTHENTICATED": "credentials rejected",
    "PERMISSION_DENIED": "no access to this model or API (permission denied)",
    "NOT_FOUND": "not found: an unknown model, or a base_url that is not a Google endpoint",
}
_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"


class GoogleProvider:
    """One Gemini API key, or one Vertex AI project and location; key pools wrap several."""

    def __init__(self, name: str, spec: ProviderSpec, key: str | None, *, vertex: bool) -> None:
        self.name = name
        self._spec = spec
        self._key = key
        self._vertex = vertex
        self._secrets = secrets_of(spec, key)
        self._client: genai.Client | None = None
        self._http: httpx2.AsyncClient | None = None  # the SDK's; it closes only clients it made
        self._lock = threading.Lock()  # not asyncio's: the router may call from several loops

    def __repr__(self) -> str:
        return f"GoogleProvider({self.name!r}, {'vertex' if self._vertex else 'gemini'})"

    # -- the Provider protocol -------------------------------------------------------------

    async def complete(self, call: Call) -> Reply:
        config, contents = self._request(call)
        with self._sdk_errors():
            client = await self._sdk()
            response = await client.aio.models.generate_content(
                model=call.model, contents=contents, config=config
            )
            return self._reply(response)

    async def stream(self, call: Call) -> AsyncIterator[Chunk]:
        config, contents = self._request(call)
        state = _StreamState()
        with self._sdk_errors():
            client = await self._sdk()
            try:
                events = await client.aio.models.generate_content_stream(
                    model=call.model, contents=contents, config=config
                )
                async for response in events:
                    text = self._on_event(state, response)
                    if text:
                        yield Chunk(text=text)
            except httpx2.TransportError:
                if state.finish is not None:  # lost after the last word: the answer is whole
                    yield state.final()
                    return
                raise
            if state.finish is not None:
                yield state.final()
            # Else the stream ended without a finish: the engine judges it broken.

    async def list_models(self) -> list[str]:
        with self._sdk_errors():
            client = await self._sdk()
            pager = await client.aio.models.list(config={"page_size": 1000})
            names = [model.name async for model in pager]
        return [name.rpartition("/")[2] for name in names if name]

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aio.aclose()
        if self._http is not None:
            await self._http.aclose()

    # -- the client ------------------------------------------------------------------------

    async def _sdk(self) -> genai.Client:
        """The SDK client, made at the first call: a credentials file is read then, not at start-up."""
        if self._client is not None:
            return self._client
        try:
            return await asyncio.to_thread(self._client_once)
        except ValueError as error:  # the SDK's word on settings it cannot use
            raise ProviderError(
                ErrorKind.AUTH, redact(f"unusable settings: {error}", self._secrets), provider=self.name
            ) from None

    def _client_once(self) -> genai.Client:
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self) -> genai.Client:
        spec = self._spec
        self._http = sdk_http_client(spec.transport, spec.max_response_bytes)
        self._http.event_hooks["response"].append(_bound_json)
        options = types.HttpOptions(
            base_url=str(spec.base_url) if spec.base_url else None,
            api_version=_VERTEX_VERSION if self._vertex else _GEMINI_VERSION,
            headers=dict(spec.headers) or None,
            retry_options=types.HttpRetryOptions(attempts=1),
            httpx_async_client=self._http,
        )
        if not self._vertex:
            if not self._key:
                raise ProviderError(
                    ErrorKind.AUTH,
                    "no usable API key: set api_key in the policy, or GEMINI_API_KEY",
                    provider=self.name,
                )
            return genai.Client(vertexai=False, api_key=self._key, http_options=options)
        return genai.Client(
            vertexai=True,
            project=spec.project,
            location=spec.location or "global",
            api_key=self._key,  # express mode: sent as x-goog-api-key, no OAuth token is asked for
            credentials=None if self._key else self._credentials(),
            http_options=options,
        )

    def _credentials(self) -> Any:
        """The service account of `credentials_file`; None: the default chain, at the first call."""
        path = self._spec.credentials_file
        if path is None:
            return None
        from google.oauth2 import service_account

        try:
            return service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                path, scopes=_SCOPES
            )
        except OSError as error:
            problem = f"cannot be read ({type(error).__name__})"
        except (ValueError, KeyError, TypeError) as error:
            # Never the error's text: a parser's message may quote the key it choked on.
            problem = f"is not a service-account key file ({type(error).__name__})"
        raise ProviderError(ErrorKind.AUTH, f"credentials_file {path} {problem}", provider=self.name)

    # -- requests --------------------------------------------------------------------------

    def _request(self, call: Call) -> tuple[types.GenerateContentConfig, list[types.Content]]:
        """The call as the SDK's values, checked before any request (a mistake is a bad_request)."""
        try:
            contents, config = translate(call, self._spec.thinking_budget)
            checked = [types.Content.model_validate(content) for content in contents]
            return types.GenerateContentConfig.model_validate(config), checked
        except pydantic.ValidationError as error:
            fields = ", ".join(".".join(map(str, e["loc"])) for e in error.errors()[:3])
            raise ProviderError(
                ErrorKind.BAD_REQUEST, f"options Google cannot take ({fields})", provider=self.name
            ) from None
        except ValueError as error:
            raise ProviderError(ErrorKind.BAD_REQUEST, str(error), provider=self.name) from None

    # -- answers ---------------------------------------------------------------------------

    def _reply(self, response: types.GenerateContentResponse) -> Reply:
        self._check_blocked(response)
        candidate = _first(response)
        if candidate is None:
            raise ProviderError(
                ErrorKind.SERVER_ERROR, "malformed response (no candidate in the answer)", provider=self.name
            )
        reason = _reason(candidate)
        self._check_finish(reason, candidate)
        texts, calls = _parts(candidate)
        return Reply("".join(texts), _usage(response), _finish_reason(reason, calls), tuple(calls))

    def _on_event(self, state: _StreamState, response: types.GenerateContentResponse) -> str:
        if not state.texts:
            self._check_blocked(response)  # a blocked prompt is told at once, before any text
        if response.usage_metadata is not None:
            state.usage = _usage(response)
        candidate = _first(response)
        if candidate is None:
            return ""
        texts, calls = _parts(candidate)
        state.calls.extend(calls)
        state.texts += sum(map(len, texts))
        reason = _reason(candidate)
        if reason is not None:
            if reason in _MALFORMED:
                self._check_finish(reason, candidate)
            if reason in _FILTERED and not state.texts:
                self._check_finish(reason, candidate)
            state.finish = reason
        return "".join(texts)

    def _check_blocked(self, response: types.GenerateContentResponse) -> None:
        feedback = response.prompt_feedback
        if feedback is not None and feedback.block_reason is not None:
            category = _category(feedback.safety_ratings)
            raise ProviderError(
                ErrorKind.CONTENT_FILTER,
                f"the prompt was blocked ({_name(feedback.block_reason)}{category})",
                provider=self.name,
            )

    def _check_finish(self, reason: str | None, candidate: types.Candidate) -> None:
        if reason in _FILTERED:
            raise ProviderError(
                ErrorKind.CONTENT_FILTER,
                f"the answer was withheld ({reason}{_category(candidate.safety_ratings)})",
                provider=self.name,
            )
        if reason in _MALFORMED:
            raise ProviderError(
                ErrorKind.SERVER_ERROR, f"the model's output was malformed ({reason})", provider=self.name
            )

    # -- errors ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _sdk_errors(self) -> Iterator[None]:
        """What the SDK, google-auth and the HTTP stack raise, as this provider's `ProviderError`s."""
        try:
            yield
        except genai_errors.APIError as error:
            raise self._classify(error) from None
        except httpx2.TransportError as error:
            raise self._transport_error(error) from None
        except TooManyValues as error:
            raise ProviderError(ErrorKind.SERVER_ERROR, str(error), provider=self.name) from None
        except google.auth.exceptions.DefaultCredentialsError:
            raise ProviderError(
                ErrorKind.AUTH,
                "no Google credentials: set credentials_file or api_key in the policy, or "
                "GOOGLE_APPLICATION_CREDENTIALS",
                provider=self.name,
            ) from None
        except google.auth.exceptions.RefreshError:
            # Its text is the token endpoint's answer; the fixed one is enough and safe.
            raise ProviderError(
                ErrorKind.AUTH, "the token endpoint refused the credentials", provider=self.name
            ) from None
        except google.auth.exceptions.TransportError:
            raise ProviderError(
                ErrorKind.CONNECTION, "the token endpoint could not be reached", provider=self.name
            ) from None
        except (ValueError, TypeError, KeyError, AttributeError):
            # JSON that does not parse, or that is not an answer (the SDK's UnknownApiResponseError,
            # pydantic's ValidationError): a broken or hostile upstream.
            raise ProviderError(
                ErrorKind.SERVER_ERROR, "malformed response (not a Gemini answer)", provider=self.name
            ) from None

    def _classify(self, error: genai_errors.APIError) -> ProviderError:
        code = error.code if isinstance(error.code, int) and error.code >= 100 else None
        response = getattr(error, "response", None)
        # An error event inside a stream came on a 200: its code says what it is, not a status.
        status = code if isinstance(response, httpx2.Response) else None
        rpc = error.status if isinstance(error.status, str) and _RPC_STATUS.match(error.status) else ""
        message = error.message if isinstance(error.message, str) else ""
        kind = google_kind(code, rpc, message.lower())
        if kind is ErrorKind.AUTH:
            detail = _AUTH_DETAIL.get(rpc, "credentials rejected, or no access")
            if rpc == "FAILED_PRECONDITION":
                detail = redact(f"{rpc}: {message}", self._secrets)  # region or billing: worth reading
        elif rpc:
            detail = redact(f"{rpc}: {message}" if message else rpc, self._secrets)
        else:
            detail = f"HTTP {code}"  # no Google error: a proxy's page, not worth quoting
        headers = response.headers if status is not None and response is not None else None
        delay = retry_after(headers) if isinstance(headers, Mapping) else None
        if delay is None and kind is ErrorKind.RATE_LIMITED:
            delay = _retry_delay(error.details)
        return ProviderError(kind, detail, provider=self.name, status=status, retry_after=delay)

    def _transport_error(self, error: httpx2.TransportError) -> ProviderError:
        if isinstance(error, ResponseTooLarge):  # a hostile or broken upstream: fail over, count it
            return ProviderError(ErrorKind.SERVER_ERROR, str(error), provider=self.name)
        kind = ErrorKind.TIMEOUT if isinstance(error, httpx2.TimeoutException) else ErrorKind.CONNECTION
        return ProviderError(kind, type(error).__name__, provider=self.name)


async def _bound_json(response: httpx2.Response) -> None:
    """Refuse an answer whose JSON would hold the event loop while the SDK parses it (see
    `MAX_JSON_VALUES`); a stream's events are parsed one by one, and are left alone."""
    if response.request.url.path.endswith(":streamGenerateContent"):
        return
    await check_json_body(await response.aread())


@dataclass(slots=True)
class _StreamState:
    texts: int = 0  # characters of text so far
    calls: list[ToolCall] = field(default_factory=list)
    usage: Usage | None = None
    finish: str | None = None

    def final(self) -> Chunk:
        return Chunk(
            finish_reason=_finish_reason(self.finish, self.calls),
            usage=self.usage,
            tool_calls=tuple(self.calls),
        )


def _first(response: types.GenerateContentResponse) -> types.Candidate | None:
    return response.candidates[0] if response.candidates else None


def _name(value: Any) -> str:
    return str(getattr(value, "value", value))


def _reason(candidate: types.Candidate) -> str | None:
    return None if candidate.finish_reason is None else _name(candidate.finish_reason)


def _parts(candidate: types.Candidate) -> tuple[list[str], list[ToolCall]]:
    """The answer's text pieces and tool calls; thoughts are left out."""
    texts: list[str] = []
    calls: list[ToolCall] = []
    parts = candidate.content.parts if candidate.content is not None else None
    for part in parts or ():
        if part.thought:
            continue
        if part.text:
            texts.append(part.text)
        elif part.function_call is not None and part.function_call.name:
            call = part.function_call
            call_id = call.id or f"call_{uuid.uuid4().hex[:24]}"  # the Gemini API gives none
            calls.append(ToolCall(call_id, call.name or "", json.dumps(call.args or {})))
    return texts, calls


def _finish_reason(reason: str | None, calls: Sequence[ToolCall]) -> str | None:
    if reason is None:
        return None
    if reason in _FILTERED:
        return "content_filter"
    if calls and reason == "STOP":
        return "tool_calls"
    return _FINISH.get(reason, reason.lower())


def _category(ratings: Sequence[types.SafetyRating] | None) -> str:
    blocked = [_name(rating.category) for rating in ratings or () if rating.blocked and rating.category]
    return f", category {', '.join(blocked)}" if blocked else ""


def _usage(response: types.GenerateContentResponse) -> Usage:
    """Thinking tokens are output (and billed as such); the prompt count includes cached tokens."""
    meta = response.usage_metadata
    if meta is None:
        return Usage()
    output = (meta.candidates_token_count or 0) + (meta.thoughts_token_count or 0)
    return Usage(meta.prompt_token_count or 0, output)


def _retry_delay(details: Any) -> float | None:
    """`google.rpc.RetryInfo`'s `retryDelay` ("30s", "1.5s") among an error's details."""
    error = details.get("error", details) if isinstance(details, Mapping) else None
    items = error.get("details") if isinstance(error, Mapping) else None
    for item in items if isinstance(items, list) else ():
        if isinstance(item, Mapping) and item.get("@type") == _RETRY_INFO:
            delay = item.get("retryDelay")
            if isinstance(delay, str) and delay.endswith("s"):
                with contextlib.suppress(ValueError):
                    return max(0.0, float(delay[:-1]))
    return None


# -- OpenAI chat shape -> generateContent --------------------------------------------------


def translate(call: Call, thinking_budget: int | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The `contents` and the `GenerateContentConfig` fields of an OpenAI-shaped call.

    Raises ValueError for what the wire cannot express.
    """
    conversation = read_conversation(call.messages)
    names = {
        block.id: block.name
        for turn in conversation.turns
        for block in turn.blocks
        if isinstance(block, ToolUse)
    }
    contents = [
        {
            "role": "model" if turn.role == "assistant" else "user",
            "parts": [_part(block, names) for block in turn.blocks],
        }
        for turn in conversation.turns
    ]
    options = call.options
    config: dict[str, Any] = {
        "automatic_function_calling": {"disable": True},
        "automatic_continuation": False,
    }
    config["http_options"] = {"timeout": max(1, int(call.timeout * 1000))}
    if conversation.system:
        config["system_instruction"] = "\n\n".join(conversation.system)
    max_tokens = call.max_tokens if call.max_tokens is not None else options.get("max_completion_tokens")
    sampling = {
        "max_output_tokens": max_tokens,
        "temperature": call.temperature,
        "top_p": options.get("top_p"),
        "seed": options.get("seed"),
        "presence_penalty": options.get("presence_penalty"),
        "frequency_penalty": options.get("frequency_penalty"),
        "stop_sequences": read_stop(options.get("stop")) or None,
    }
    config |= {name: value for name, value in sampling.items() if value is not None}
    config |= _response_format(options.get("response_format"))
    tools = read_tools(options.get("tools"))
    if tools:
        declarations = [
            {"name": tool.name, "parameters_json_schema": tool.parameters}
            | ({"description": tool.description} if tool.description else {})
            for tool in tools
        ]
        config["tools"] = [{"function_declarations": declarations}]
        choice = read_tool_choice(options.get("tool_choice"))
        if choice is not None:
            config["tool_config"] = {"function_calling_config": _calling_config(choice)}
    budget = _thinking_budget(options.get("reasoning_effort"), thinking_budget)
    if budget is not None:
        config["thinking_config"] = {"thinking_budget": budget}
    extra = options.get("extra_body")
    if extra:
        config["http_options"]["extra_body"] = dict(extra)  # the caller's pass-through, sent as given
    return contents, config


def _part(block: Block, names: Mapping[str, str]) -> dict[str, Any]:
    if isinstance(block, Text):
        return {"text": block.text}
    if isinstance(block, ToolUse):
        return {"function_call": {"name": block.name, "args": block.input}}
    if isinstance(block, ToolResult):
        name = names.get(block.tool_use_id)
        if name is None:
            raise ValueError(f"tool result {block.tool_use_id!r} answers no tool call of the conversation")
        return {"function_response": {"name": name, "response": {"content": block.content}}}
    return _image(block)


def _image(block: Image) -> dict[str, Any]:
    inline = parse_data_url(block.url)
    if inline is not None:
        media_type, data = inline
        try:
            raw = base64.b64decode(data, validate=True)
        except binascii.Error:
            raise ValueError("an image data URL is not valid base64") from None
        return {"inline_data": {"mime_type": media_type, "data": raw}}
    if not block.url.startswith(("https://", "http://", "gs://")):
        raise ValueError("an image must be an http(s) or gs:// URL, or a base64 data: URL")
    guessed, _ = mimetypes.guess_type(block.url.partition("?")[0])
    if guessed is None or not guessed.startswith("image/"):
        raise ValueError("an image URL must end with an image file's extension (.png, .jpg, ...)")
    return {"file_data": {"file_uri": block.url, "mime_type": guessed}}


def _calling_config(choice: ToolChoice) -> dict[str, Any]:
    if choice.mode == "tool":
        return {"mode": "ANY", "allowed_function_names": [choice.name]}
    return {"mode": choice.mode.upper()}


def _response_format(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping) or value.get("type") not in ("json_object", "json_schema"):
        return {}
    if value["type"] == "json_object":
        return {"response_mime_type": "application/json"}
    spec = value.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, Mapping) else None
    if not isinstance(schema, Mapping):
        raise ValueError("response_format json_schema needs json_schema.schema")
    return {"response_mime_type": "application/json", "response_json_schema": dict(schema)}


def _thinking_budget(effort: Any, default: int | None) -> int | None:
    if effort is None:
        return default
    if effort not in REASONING_BUDGETS:
        raise ValueError(f"reasoning_effort {effort!r}: one of {', '.join(REASONING_BUDGETS)}")
    return REASONING_BUDGETS[effort]
