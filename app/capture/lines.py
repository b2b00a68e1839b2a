"""Incremental line splitting of decoded text that arrives in arbitrary pieces."""


class LineSplitter:
    """Split text fed in pieces into lines ended by LF, CRLF or CR.

    Lines are returned without their terminator, together with their length in
    characters including it. A CR at the end of a piece is held back, because
    the LF of a CRLF may come with the next piece.
    """

    def __init__(self) -> None:
        self._partial: list[str] = []
        self._held_cr = False

    def feed(self, text: str) -> list[tuple[str, int]]:
        """Return the lines that this piece completes."""
        if self._held_cr:
            text = "\r" + text
            self._held_cr = False
        if text.endswith("\r"):
            text = text[:-1]
            self._held_cr = True
        if not text:
            return []

        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        return self._split(text)

    def finish(self) -> list[tuple[str, int]]:
        """Return the last line if the text did not end with a line terminator."""
        if self._held_cr:
            self._held_cr = False
            return self._split("\n")
        if not self._partial:
            return []

        line = "".join(self._partial)
        self._partial.clear()
        return [(line, len(line))]

    def _split(self, text: str) -> list[tuple[str, int]]:
        if "\n" not in text:
            self._partial.append(text)
            return []

        parts = text.split("\n")
        if self._partial:
            self._partial.append(parts[0])
            parts[0] = "".join(self._partial)
            self._partial.clear()

        last = parts.pop()
        if last:
            self._partial.append(last)
        return [(line, len(line) + 1) for line in parts]
