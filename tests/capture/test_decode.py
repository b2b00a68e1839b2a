"""Unit tests of content-encoding and UTF-8 decoding across chunks."""

import gzip
import zlib

import brotli
import pytest

from app.capture.decode import BodyDecoder

TEXT = '{"content":"你好 🌍 bonjour"}' * 50


def decode(parts: list[bytes], encoding: str | None) -> tuple[str, BodyDecoder]:
    decoder = BodyDecoder(encoding)
    text = "".join(decoder.feed(part) for part in parts)
    return text + decoder.finish(), decoder


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


ENCODED = {
    "identity": TEXT.encode(),
    "gzip": gzip.compress(TEXT.encode()),
    "x-gzip": gzip.compress(TEXT.encode()),
    "deflate": zlib.compress(TEXT.encode()),
    "br": brotli.compress(TEXT.encode()),
}


@pytest.mark.parametrize("encoding", list(ENCODED))
@pytest.mark.parametrize("size", [1, 7, 100000], ids=["1-byte", "7-bytes", "whole"])
def test_encoding_decodes_in_any_chunking(encoding, size):
    text, decoder = decode(pieces(ENCODED[encoding], size), encoding)
    assert text == TEXT
    assert decoder.error is None
    assert decoder.replaced is False


def test_raw_deflate_is_accepted():
    text, decoder = decode(pieces(raw_deflate(TEXT.encode()), 5), "deflate")
    assert text == TEXT
    assert decoder.error is None


def test_gzip_members_back_to_back():
    data = gzip.compress(b"first ") + gzip.compress(b"second")
    text, _ = decode(pieces(data, 3), "gzip")
    assert text == "first second"


def test_gzip_flushed_per_event_decodes_incrementally():
    compressor = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
    first = compressor.compress(b"data: one\n\n") + compressor.flush(zlib.Z_SYNC_FLUSH)
    decoder = BodyDecoder("gzip")
    assert decoder.feed(first) == "data: one\n\n"


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_plain_body_labelled_compressed_reads_as_text(encoding):
    text, decoder = decode(pieces(b'{"ok":true}', 1), encoding)
    assert text == '{"ok":true}'
    assert decoder.error is None
    assert any("read as plain bytes" in note for note in decoder.notes)


def test_invalid_brotli_keeps_raw_bytes_and_reports_error():
    text, decoder = decode([b"\xff\xff\xff\xff not brotli"], "br")
    assert decoder.error is not None
    assert "not brotli" in text


def test_gzip_corrupted_after_output_keeps_decoded_prefix():
    compressor = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
    head = compressor.compress(TEXT.encode()) + compressor.flush(zlib.Z_SYNC_FLUSH)
    text, decoder = decode([head, b"\xff" * 64, b"more"], "gzip")
    assert decoder.error is not None
    assert text == TEXT


def test_gzip_cut_short_is_noted():
    data = gzip.compress(TEXT.encode())
    _, decoder = decode([data[: len(data) // 2]], "gzip")
    assert any("ended before its end marker" in note for note in decoder.notes)


def test_unknown_encoding_keeps_raw_bytes():
    text, decoder = decode([b"abc"], "zstd")
    assert text == "abc"
    assert "zstd" in (decoder.error or "")


def test_stacked_encodings_undone_in_reverse():
    data = brotli.compress(gzip.compress(b"layered"))
    text, _ = decode([data], "gzip, br")
    assert text == "layered"


def test_character_split_across_chunks_comes_out_whole():
    text, decoder = decode([b"\xe4\xbd", b"\xa0\xf0\x9f", b"\x8c\x8d"], None)
    assert text == "你🌍"
    assert decoder.replaced is False


def test_invalid_utf8_is_replaced_and_flagged():
    text, decoder = decode([b"ok \xff end"], None)
    assert text == "ok \ufffd end"
    assert decoder.replaced is True


def test_truncated_character_at_end_is_flagged():
    _, decoder = decode([b"ok \xe4\xbd"], None)
    assert decoder.replaced is True


def test_replacement_character_sent_by_upstream_is_not_flagged():
    text, decoder = decode([b"a \xef\xbf", b"\xbd b"], None)
    assert text == "a \ufffd b"
    assert decoder.replaced is False
