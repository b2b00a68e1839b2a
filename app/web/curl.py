"""Build a curl command that repeats a stored request against the same upstream."""

import json
import shlex
from typing import Any

# Stored headers carry only fingerprints of credentials, so the command sends a
# shell variable in their place and the user supplies the real key.
API_KEY_PLACEHOLDER = "$API_KEY"
UPSTREAM_PLACEHOLDER = "$UPSTREAM_URL"

CREDENTIAL_HEADERS = {"authorization": "Bearer ", "x-api-key": "", "api-key": ""}


def curl_command(exchange: dict[str, Any]) -> str:
    """Return a shell command that sends the exchange's request again."""
    target = (exchange.get("path") or "") + (
        "?" + exchange["query"] if exchange.get("query") else ""
    )
    if exchange.get("target_url"):
        url = shlex.quote(exchange["target_url"].rstrip("/") + target)
    else:
        # An exchange recorded without its upstream origin: the user fills it in.
        url = f'"{UPSTREAM_PLACEHOLDER}"{shlex.quote(target)}'

    lines = [f"curl -X {exchange.get('method') or 'POST'} {url}"]
    names = _header_names(exchange.get("request_headers"))
    for name, prefix in CREDENTIAL_HEADERS.items():
        if name in names:
            # Double quotes so that the shell expands $API_KEY.
            lines.append(f'-H "{name}: {prefix}{API_KEY_PLACEHOLDER}"')

    body = exchange.get("request_body")
    if body is not None:
        lines.append("-H 'content-type: application/json'")
        text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
        lines.append(f"--data-binary {shlex.quote(text)}")
    return " \\\n  ".join(lines)


def _header_names(headers: Any) -> set[str]:
    """Return the lowercased names of stored headers, kept as a dict or as pairs."""
    if isinstance(headers, dict):
        return {str(name).lower() for name in headers}
    if isinstance(headers, list):
        return {
            str(pair[0]).lower() for pair in headers if isinstance(pair, list) and pair
        }
    return set()
