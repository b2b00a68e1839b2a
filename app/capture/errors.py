"""Error kinds and error messages found in upstream responses."""

import json

from app.capture.assembly import error_text

# HTTP statuses with a kind of their own. Other 4xx are client_error, 5xx server_error.
_KIND_BY_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    408: "request_timeout",
    413: "request_too_large",
    422: "bad_request",
    429: "rate_limited",
    500: "server_error",
    502: "bad_gateway",
    503: "unavailable",
    504: "gateway_timeout",
}

MAX_ERROR_CHARS = 500


def http_error_kind(status: int) -> str:
    """Return the error kind of an upstream HTTP status of 400 or more."""
    if status in _KIND_BY_STATUS:
        return _KIND_BY_STATUS[status]
    if 400 <= status < 500:
        return "client_error"
    if 500 <= status < 600:
        return "server_error"
    return "http_error"


def find_stream_error(value: object, event_name: str | None) -> str | None:
    """Return the message of an error reported inside a response body, if any.

    Recognized: SSE `event: error` frames, {"error": ...} objects (OpenAI and
    Ollama), vLLM's {"object": "error", "message": ...}, Responses API
    {"type": "error"} and `response.failed` events.
    """
    if event_name == "error":
        return _error_event_message(value)
    if not isinstance(value, dict):
        return None

    error = value.get("error")
    if error not in (None, "", {}):
        return error_text(error)
    if value.get("object") == "error" or value.get("type") == "error":
        return error_text(value.get("message")) or _dump(value)
    if value.get("type") == "response.failed":
        response = value.get("response")
        if isinstance(response, dict) and response.get("error"):
            return error_text(response["error"])
        return "response failed without an error message"
    return None


def http_error_message(value: object, valid_json: bool, text: str) -> str:
    """Return the message of an HTTP error body.

    It is error.message (or Ollama's error string) of a JSON body, otherwise the
    first 500 characters of the body text, and "" for an empty body.
    """
    if valid_json:
        message = find_stream_error(value, None)
        if message is not None:
            return message[:MAX_ERROR_CHARS]
        if isinstance(value, dict) and isinstance(value.get("message"), str):
            return value["message"][:MAX_ERROR_CHARS]

    return text.strip()[:MAX_ERROR_CHARS]


def _error_event_message(value: object) -> str:
    if isinstance(value, dict):
        for key in ("error", "message"):
            message = error_text(value.get(key))
            if message:
                return message
        return _dump(value)
    if isinstance(value, str) and value:
        return value[:MAX_ERROR_CHARS]
    return "error event without a message"


def _dump(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)[:MAX_ERROR_CHARS]
