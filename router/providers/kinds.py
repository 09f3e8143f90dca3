"""How each wire's failures become error kinds: pure tables and functions, no SDK.

The adapters classify with these, and so does the chaos simulation (`router simulate`), which
must reach the same verdicts without the SDKs.
"""

from __future__ import annotations

from router.errors import ErrorKind

__all__ = [
    "ANTHROPIC_ERROR_TYPES",
    "BEDROCK_ERROR_CODES",
    "GOOGLE_STATUSES",
    "anthropic_kind",
    "bedrock_kind",
    "google_kind",
    "kind_for_request_error",
    "kind_for_status",
]

# What providers write when a prompt does not fit, or when a filter refused it (lower case).
_CONTEXT_MARKERS = (
    "context_length_exceeded",
    "maximum context length",
    "context window",
    "context limit",
    "prompt is too long",
    "too many tokens",
    "too many input tokens",
    "input is too long",
    "max input tokens",
    "context length",
    "maximum context",
)
_FILTER_MARKERS = (
    "content_filter",
    "content filter",
    "content_policy",
    "content policy",
    "content management policy",
    "usage policy",
    "usage policies",
)

ANTHROPIC_ERROR_TYPES = {
    "rate_limit_error": ErrorKind.RATE_LIMITED,
    # Overloaded is capacity, not our quota: another key would not help, another provider will.
    "overloaded_error": ErrorKind.SERVER_ERROR,
    "api_error": ErrorKind.SERVER_ERROR,
    "timeout_error": ErrorKind.SERVER_ERROR,
    "authentication_error": ErrorKind.AUTH,
    "permission_error": ErrorKind.AUTH,
    "not_found_error": ErrorKind.AUTH,
    "billing_error": ErrorKind.AUTH,
    "request_too_large": ErrorKind.BAD_REQUEST,
}

BEDROCK_ERROR_CODES = {
    "ThrottlingException": ErrorKind.RATE_LIMITED,
    "ModelNotReadyException": ErrorKind.RATE_LIMITED,
    "ServiceQuotaExceededException": ErrorKind.RATE_LIMITED,
    "TooManyRequestsException": ErrorKind.RATE_LIMITED,
    "ModelTimeoutException": ErrorKind.TIMEOUT,
    "ServiceUnavailableException": ErrorKind.SERVER_ERROR,
    "InternalServerException": ErrorKind.SERVER_ERROR,
    "ModelErrorException": ErrorKind.SERVER_ERROR,
    "ModelStreamErrorException": ErrorKind.SERVER_ERROR,
    "AccessDeniedException": ErrorKind.AUTH,
    "UnrecognizedClientException": ErrorKind.AUTH,
    "ResourceNotFoundException": ErrorKind.AUTH,
    "InvalidSignatureException": ErrorKind.AUTH,
    "ExpiredTokenException": ErrorKind.AUTH,
    "ValidationException": ErrorKind.BAD_REQUEST,
}


# google.rpc status codes, as Gemini API and Vertex AI errors name them ({"error": {"status"}}).
GOOGLE_STATUSES = {
    "RESOURCE_EXHAUSTED": ErrorKind.RATE_LIMITED,
    "UNAVAILABLE": ErrorKind.SERVER_ERROR,
    "INTERNAL": ErrorKind.SERVER_ERROR,
    "UNKNOWN": ErrorKind.SERVER_ERROR,
    "ABORTED": ErrorKind.SERVER_ERROR,
    "CANCELLED": ErrorKind.SERVER_ERROR,
    "DATA_LOSS": ErrorKind.SERVER_ERROR,
    "DEADLINE_EXCEEDED": ErrorKind.SERVER_ERROR,
    "UNAUTHENTICATED": ErrorKind.AUTH,
    "PERMISSION_DENIED": ErrorKind.AUTH,
    "NOT_FOUND": ErrorKind.AUTH,
    # "User location is not supported", "billing is not enabled": this provider cannot serve from
    # here until someone changes its account, as a 402 on Anthropic; another provider can (auth:
    # no retry, failover, and it counts against the breaker).
    "FAILED_PRECONDITION": ErrorKind.AUTH,
}
# What Google writes when a prompt does not fit (lower case), besides the common markers.
_GOOGLE_CONTEXT_MARKERS = ("exceeds the maximum number of tokens", "input token count")


def kind_for_request_error(detail: str) -> ErrorKind:
    """A 4xx the caller caused: too long, filtered, or otherwise malformed (`detail` in lower case)."""
    if any(marker in detail for marker in _CONTEXT_MARKERS):
        return ErrorKind.CONTEXT_LENGTH
    if any(marker in detail for marker in _FILTER_MARKERS):
        return ErrorKind.CONTENT_FILTER
    return ErrorKind.BAD_REQUEST


def kind_for_status(status: int, detail: str = "", *, auth: tuple[int, ...] = (401, 403, 404)) -> ErrorKind:
    """An HTTP error status, with the provider's error text (lower case) for the 4xx it leaves open."""
    if status == 429:
        return ErrorKind.RATE_LIMITED
    if status in auth:
        return ErrorKind.AUTH
    if status == 408:
        return ErrorKind.TIMEOUT
    if status >= 500 or status == 409 or status < 400:
        return ErrorKind.SERVER_ERROR
    return kind_for_request_error(detail)


def anthropic_kind(status: int, error_type: str, detail: str) -> ErrorKind:
    """Anthropic's status, then its error type; 402 (billing) is an account problem, as auth."""
    if status in (429, 401, 402, 403, 404, 408) or status >= 500 or status == 409:
        return kind_for_status(status, auth=(401, 402, 403, 404))
    return ANTHROPIC_ERROR_TYPES.get(error_type) or kind_for_request_error(detail)


def bedrock_kind(code: str, status: int | None, message: str) -> ErrorKind:
    """Bedrock's error code first (in-stream exceptions have no status), then the HTTP status."""
    kind = BEDROCK_ERROR_CODES.get(code)
    if kind is None:
        kind = ErrorKind.SERVER_ERROR if status is None else kind_for_status(status)
    if kind is ErrorKind.BAD_REQUEST and kind_for_request_error(message) is ErrorKind.CONTEXT_LENGTH:
        return ErrorKind.CONTEXT_LENGTH
    return kind


def google_kind(status: int | None, google_status: str, detail: str) -> ErrorKind:
    """A Google error: its rpc status first (an error inside a stream may have no HTTP status),
    then the HTTP status; `INVALID_ARGUMENT` is read by its message (`detail` in lower case)."""
    kind = GOOGLE_STATUSES.get(google_status)
    if kind is None:
        kind = kind_for_status(status, detail) if status is not None else ErrorKind.SERVER_ERROR
    if google_status == "INVALID_ARGUMENT" or kind is ErrorKind.BAD_REQUEST:
        if any(marker in detail for marker in _GOOGLE_CONTEXT_MARKERS):
            return ErrorKind.CONTEXT_LENGTH
        return kind_for_request_error(detail)
    return kind
