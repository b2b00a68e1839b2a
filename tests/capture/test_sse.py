"""Unit tests of the incremental SSE splitter."""

import pytest

from app.capture.sse import SseSplitter


def split_all(pieces: list[str]) -> list:
    splitter = SseSplitter()
    events = []
    for piece in pieces:
        events.extend(splitter.feed(piece))
    events.extend(splitter.finish())
    return events


@pytest.mark.parametrize(
    "text",
    [
        "data: a\n\ndata: b\n\n",
        "data: a\r\n\r\ndata: b\r\n\r\n",
        "data: a\r\rdata: b\r\r",
        "data: a\n\r\ndata: b\r\n\n",
    ],
    ids=["lf", "crlf", "cr", "mixed"],
)
def test_line_endings_split_events(text):
    events = split_all([text])
    assert [e.data for e in events] == ["a", "b"]


def test_crlf_split_across_pieces_is_one_terminator():
    events = split_all(["data: a\r", "\n\r", "\ndata: b\r\n\r\n"])
    assert [e.data for e in events] == ["a", "b"]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("data:x", "x"),
        ("data: x", "x"),
        ("data:  x", " x"),
        ("data", ""),
        ("data:", ""),
    ],
    ids=["no-space", "one-space", "two-spaces", "bare-field", "empty-value"],
)
def test_data_value_strips_one_space(line, expected):
    events = split_all([line + "\n\n"])
    assert events[0].data == expected


def test_multiple_data_lines_join_with_newline():
    events = split_all(["data: first\ndata: second\n\n"])
    assert events[0].data == "first\nsecond"


def test_event_id_retry_fields_kept():
    events = split_all(["event: error\nid: 7\nretry: 3000\ndata: {}\n\n"])
    assert (events[0].event, events[0].id, events[0].retry) == ("error", "7", "3000")


def test_comment_block_has_no_data():
    events = split_all([": ping\n\n"])
    assert events[0].data is None
    assert events[0].comments == [" ping"]


def test_unknown_field_ignored():
    events = split_all(["foo: bar\ndata: x\n\n"])
    assert events[0].data == "x"


def test_leading_byte_order_mark_removed():
    events = split_all(["\ufeffdata: x\n\n"])
    assert events[0].data == "x"


def test_final_event_without_blank_line_is_incomplete():
    events = split_all(['data: a\n\ndata: {"b":1}'])
    assert events[-1].data == '{"b":1}'
    assert events[-1].complete is False


def test_blank_lines_alone_give_no_event():
    assert split_all(["\n\n\n"]) == []


def test_one_character_pieces_match_whole_text():
    text = "data: a\r\n\r\n: c\n\nevent: e\ndata: b\rdata: c\r\r"
    whole = [(e.data, e.event, e.comments) for e in split_all([text])]
    pieces = [(e.data, e.event, e.comments) for e in split_all(list(text))]
    assert pieces == whole


def test_event_size_counts_its_characters():
    events = split_all(["data: abc\n\n"])
    assert events[0].size == len("data: abc\n\n")
