"""Incremental decoding of a response body: content-encoding, then UTF-8.

The proxy hands over chunks as read from the upstream, so a gzip member, a
brotli stream or a UTF-8 character may be split across any two chunks. Each
stage keeps its state between calls.
"""

import codecs
import zlib

import brotli

# Maximum decompressed bytes kept per body. It bounds memory against
# decompression bombs, and model server responses are far smaller.
MAX_DECODED_BYTES = 256 * 1024 * 1024

_GZIP_WBITS = 16 + zlib.MAX_WBITS
_RAW_DEFLATE_WBITS = -zlib.MAX_WBITS


class DecodeError(Exception):
    """The body cannot be decoded with its declared content-encoding."""


class _ZlibStage:
    """A gzip or deflate decoder that falls back to plain bytes on a bad start.

    A server that labels a plain body gzip is common enough that a decompression
    error before any output switches the stage to pass-through.
    """

    def __init__(self, coding: str) -> None:
        self.coding = coding
        self._wbits = _GZIP_WBITS if coding == "gzip" else zlib.MAX_WBITS
        self._decompressor = zlib.decompressobj(self._wbits)
        self._raw_before_output: list[bytes] = []
        self._started = False
        self.plain = False

    def feed(self, data: bytes, limit: int) -> bytes:
        if self.plain:
            return data
        if not self._started:
            self._raw_before_output.append(data)

        try:
            out = self._decompress(data, limit)
        except zlib.error as exc:
            if self._started:
                raise DecodeError(f"invalid {self.coding} data: {exc}") from exc
            return self._retry_or_fall_back(limit)

        if out and not self._started:
            self._started = True
            self._raw_before_output.clear()
        return out

    def _decompress(self, data: bytes, limit: int) -> bytes:
        out = self._decompressor.decompress(data, limit)

        # gzip allows several members back to back, and each needs a new decompressor.
        while (
            self.coding == "gzip"
            and self._decompressor.eof
            and self._decompressor.unused_data
        ):
            rest = self._decompressor.unused_data
            self._decompressor = zlib.decompressobj(self._wbits)
            out += self._decompressor.decompress(rest, max(limit - len(out), 1))
        return out

    @property
    def ended_early(self) -> bool:
        """Whether compressed data arrived but its end marker did not."""
        return self._started and not self.plain and not self._decompressor.eof

    def _retry_or_fall_back(self, limit: int) -> bytes:
        raw = b"".join(self._raw_before_output)
        self._raw_before_output.clear()

        # "deflate" means zlib-wrapped data, but some servers send raw deflate.
        # Raw deflate has no header, so text that looks plain is taken as plain.
        if (
            self.coding == "deflate"
            and self._wbits == zlib.MAX_WBITS
            and not _looks_like_text(raw)
        ):
            self._wbits = _RAW_DEFLATE_WBITS
            self._decompressor = zlib.decompressobj(self._wbits)
            return self.feed(raw, limit)

        self.plain = True
        return raw


def _looks_like_text(data: bytes) -> bool:
    head = data[:64]
    if not head or not (head[0] in b"\t\n\r" or 0x20 <= head[0] < 0x7F):
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A character cut at the end of the sample is still text.
        return exc.start >= len(head) - 3
    return True


class _BrotliStage:
    def __init__(self) -> None:
        self.coding = "br"
        self._decompressor = brotli.Decompressor()
        self._started = False
        self.plain = False

    @property
    def ended_early(self) -> bool:
        """Whether compressed data arrived but the brotli stream did not finish."""
        if not self._started:
            return False
        try:
            return not self._decompressor.is_finished()
        except brotli.error:
            # A decoder that already failed has reported its error.
            return False

    def feed(self, data: bytes, limit: int) -> bytes:
        self._started = True
        try:
            return self._decompressor.process(data, output_buffer_limit=limit)
        except brotli.error as exc:
            raise DecodeError(f"invalid br data: {exc}") from exc


def _make_stage(coding: str) -> _ZlibStage | _BrotliStage:
    if coding in ("gzip", "x-gzip"):
        return _ZlibStage("gzip")
    if coding == "deflate":
        return _ZlibStage("deflate")
    if coding == "br":
        return _BrotliStage()
    raise DecodeError(f"unsupported content-encoding {coding!r}")


class BodyDecoder:
    """Turn raw body chunks into text, undoing the content-encoding first.

    Invalid UTF-8 becomes U+FFFD and sets `replaced`. When a stage fails, `error`
    is set: text decoded before the failure is kept and later chunks are
    dropped, but a failure before any output switches to the raw bytes, so the
    body is still stored.
    """

    def __init__(self, content_encoding: str | None) -> None:
        self.error: str | None = None
        self.notes: list[str] = []
        self.replaced = False
        self.cut = False
        self._text_decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stages: list[_ZlibStage | _BrotliStage] = []
        self._raw_mode = False
        self._stopped = False
        self._raw_before_output: list[bytes] = []
        self._decoded_bytes = 0
        self._tail = b""
        self._raw_fffd = 0
        self._text_fffd = 0
        self._setup_stages(content_encoding)

    def _setup_stages(self, content_encoding: str | None) -> None:
        codings = [c.strip().lower() for c in (content_encoding or "").split(",")]
        codings = [c for c in codings if c and c != "identity"]

        # Codings are listed in the order applied, so they are undone in reverse.
        try:
            self._stages = [_make_stage(c) for c in reversed(codings)]
        except DecodeError as exc:
            self._record_error(str(exc))
            self._raw_mode = True

    def feed(self, raw: bytes) -> str:
        """Decode one chunk and return the text it completes."""
        data = self._undo_encoding(raw)
        if not data:
            return ""

        return self._decode_text(self._within_budget(data), final=False)

    def finish(self) -> str:
        """Return the text held back at the end of the body."""
        for stage in self._stages:
            if stage.plain:
                self.notes.append(
                    f"content-encoding {stage.coding} declared, but the body is not "
                    f"{stage.coding}, so it was read as plain bytes"
                )
            elif not self._stopped and not self._raw_mode and stage.ended_early:
                self.notes.append(
                    f"the {stage.coding} stream ended before its end marker"
                )

        text = self._decode_text(b"", final=True)
        if self._text_fffd > self._raw_fffd:
            self.replaced = True
        return text

    def _undo_encoding(self, raw: bytes) -> bytes:
        if self._raw_mode:
            return raw
        if self._stopped:
            return b""
        if self._decoded_bytes == 0 and self._stages:
            self._raw_before_output.append(raw)

        data = raw
        for stage in self._stages:
            if not data:
                break
            limit = max(MAX_DECODED_BYTES - self._decoded_bytes, 1)
            try:
                data = stage.feed(data, limit)
            except DecodeError as exc:
                return self._on_stage_error(str(exc))

        if data:
            self._raw_before_output.clear()
        return data

    def _on_stage_error(self, message: str) -> bytes:
        self._record_error(message)
        if self._decoded_bytes > 0:
            self._stopped = True
            return b""

        # Nothing decoded yet: keep the raw bytes as the stored body.
        self._raw_mode = True
        raw = b"".join(self._raw_before_output)
        self._raw_before_output.clear()
        return raw

    def _within_budget(self, data: bytes) -> bytes:
        room = MAX_DECODED_BYTES - self._decoded_bytes
        if len(data) > room:
            data = data[:room]
            self._stopped = True
            self._raw_mode = False
            if not self.cut:
                self.cut = True
                self.notes.append(
                    f"decoded body cut at {MAX_DECODED_BYTES} bytes, and the rest "
                    "was not read"
                )

        self._decoded_bytes += len(data)
        return data

    def _decode_text(self, data: bytes, final: bool) -> str:
        # U+FFFD already present in the bytes must not count as a replacement.
        # The 2-byte tail catches an encoded U+FFFD split across chunks.
        window = self._tail + data
        self._raw_fffd += window.count(b"\xef\xbf\xbd")
        self._tail = window[-2:]

        text = self._text_decoder.decode(data, final)
        self._text_fffd += text.count("\ufffd")
        return text

    def _record_error(self, message: str) -> None:
        if self.error is None:
            self.error = message
            self.notes.append(f"response body could not be decoded: {message}")
