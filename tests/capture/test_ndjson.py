"""Unit tests of the incremental NDJSON splitter."""

from app.capture.ndjson import NdjsonSplitter


def split_all(pieces: list[str]) -> list:
    splitter = NdjsonSplitter()
    lines = []
    for piece in pieces:
        lines.extend(splitter.feed(piece))
    lines.extend(splitter.finish())
    return lines


def test_line_split_inside_json_is_joined():
    lines = split_all(['{"a":', '1}\n{"b"', ":2}\n"])
    assert [line.value for line in lines] == [{"a": 1}, {"b": 2}]


def test_last_line_without_newline_is_parsed():
    lines = split_all(['{"a":1}\n{"b":2}'])
    assert lines[-1].value == {"b": 2}


def test_junk_line_is_marked_invalid():
    lines = split_all(['{"a":1}\nnot json\n{"b":2}\n'])
    assert [line.valid for line in lines] == [True, False, True]


def test_blank_lines_are_skipped():
    lines = split_all(['\n\n{"a":1}\n\n'])
    assert len(lines) == 1


def test_crlf_lines_are_parsed():
    lines = split_all(['{"a":1}\r\n{"b":2}\r\n'])
    assert [line.value for line in lines] == [{"a": 1}, {"b": 2}]


def test_nul_escape_is_sanitized():
    lines = split_all(['{"a":"x\\u0000y"}\n'])
    assert lines[0].value == {"a": "x\ufffdy"}
    assert lines[0].sanitized is True


def test_deep_nesting_is_invalid_not_an_error():
    lines = split_all(["[" * 100000 + "\n"])
    assert lines[0].valid is False
