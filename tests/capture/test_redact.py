"""Redaction of request bodies before storage."""

import hashlib
import json

import pytest

from app.capture import redact_request_body

IMAGE_PAYLOAD = "iVBORw0KGgo" + "A" * 20_000_000
IMAGE_URL = "data:image/png;base64," + IMAGE_PAYLOAD


def vision_request(url: str) -> bytes:
    return json.dumps(
        {
            "model": "vision-mock",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Describe the picture"},
                        {"type": "image_url", "image_url": {"url": url}},
                    ],
                }
            ],
        }
    ).encode()


def test_data_url_is_elided():
    value, truncated, sanitized = redact_request_body(vision_request(IMAGE_URL))
    url = value["messages"][0]["content"][1]["image_url"]["url"]
    digest = hashlib.sha256(IMAGE_PAYLOAD.encode()).hexdigest()
    assert (
        url
        == f"data:image/png;base64,<elided {len(IMAGE_PAYLOAD)} chars sha256={digest}>"
    )
    assert value["messages"][0]["content"][0]["text"] == "Describe the picture"
    assert truncated is True
    assert sanitized is False
    assert len(json.dumps(value)) < 1_048_576


def test_three_images_are_each_elided():
    body = json.loads(vision_request("data:image/jpeg;base64," + "B" * 7_000_000))
    content = body["messages"][0]["content"]
    content += [content[1], content[1]]
    value, truncated, _ = redact_request_body(json.dumps(body).encode())
    urls = [part["image_url"]["url"] for part in value["messages"][0]["content"][1:]]
    assert len(urls) == 3
    assert all(
        url.startswith("data:image/jpeg;base64,<elided 7000000 chars") for url in urls
    )
    assert truncated is True


def test_keep_images_leaves_small_body_alone():
    body = vision_request("data:image/png;base64,AAAA")
    value, truncated, _ = redact_request_body(body, keep_images=True)
    assert value == json.loads(body)
    assert truncated is False


def test_ollama_images_are_elided():
    body = json.dumps(
        {
            "model": "llava",
            "prompt": "What is this?",
            "images": ["iVBORw0KGgoAAAA", "R0lGODlh"],
        }
    ).encode()
    value, truncated, _ = redact_request_body(body)
    assert value["images"][0].startswith("<elided 15 chars sha256=")
    assert value["images"][1].startswith("<elided 8 chars sha256=")
    assert value["prompt"] == "What is this?"
    assert truncated is True


def test_ollama_message_images_are_elided():
    body = json.dumps(
        {
            "model": "llava",
            "messages": [{"role": "user", "content": "hi", "images": ["QUJD"]}],
        }
    ).encode()
    value, _, _ = redact_request_body(body)
    assert value["messages"][0]["images"][0].startswith("<elided 4 chars")


def test_input_audio_is_elided():
    body = json.dumps(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "input_audio",
                            "input_audio": {"data": "UklGR" * 10, "format": "wav"},
                        }
                    ],
                }
            ]
        }
    ).encode()
    value, _, _ = redact_request_body(body)
    audio = value["messages"][0]["content"][0]["input_audio"]
    assert audio["data"].startswith("<elided 50 chars")
    assert audio["format"] == "wav"


def test_text_that_starts_with_data_is_kept():
    body = json.dumps({"messages": [{"role": "user", "content": "data: a, b and c"}]})
    value, truncated, _ = redact_request_body(body.encode())
    assert value["messages"][0]["content"] == "data: a, b and c"
    assert truncated is False


def test_small_json_body_is_stored_as_is():
    body = b'{"model":"m","messages":[{"role":"user","content":"hi"}]}'
    assert redact_request_body(body) == (json.loads(body), False, False)


def test_oversized_body_is_cut_to_a_string():
    body = json.dumps({"messages": [{"role": "user", "content": "x" * 5000}]}).encode()
    value, truncated, _ = redact_request_body(body, max_body_bytes=1000)
    assert isinstance(value, str)
    assert len(value.encode()) <= 1000
    assert truncated is True


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", (None, False, False)),
        (b"plain text", ("plain text", False, False)),
        (b"bad \xff utf8", ("bad \ufffd utf8", False, True)),
        (b"nul \x00 byte", ("nul \ufffd byte", False, True)),
        (b'{"a":"\\u0000"}', ({"a": "\ufffd"}, False, True)),
        (b'{"a":"\\udc00"}', ({"a": "\ufffd"}, False, True)),
    ],
    ids=[
        "empty",
        "non-json",
        "invalid-utf8",
        "nul-byte",
        "nul-escape",
        "lone-surrogate",
    ],
)
def test_special_bodies(body, expected):
    assert redact_request_body(body) == expected


def test_deeply_nested_body_is_stored_as_text():
    body = b'{"data:":' + b"[" * 50000 + b"]" * 50000 + b"}"
    value, _, _ = redact_request_body(body, max_body_bytes=10_000_000)
    assert isinstance(value, str)
