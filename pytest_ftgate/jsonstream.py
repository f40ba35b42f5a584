"""Rows streamed from a JSON array or a JSON Lines file, one at a time: a multi-GB dataset is never loaded whole.

JSON Lines are read line by line (a broken line is reported, the next lines are still read); a JSON array is parsed
incrementally with ``json.JSONDecoder.raw_decode`` over 1 MiB chunks (a syntax error ends it: later rows cannot be
found). A UTF-8 byte-order mark is skipped in both. A file that holds one JSON object (``{...}``, not in a list) is
refused, whatever its name says: one object is not rows. Rows are numbered from 1: the line of a JSON Lines file,
the element of a JSON array. No pytest.
"""

from __future__ import annotations

import io
import json
import re
from itertools import islice
from pathlib import Path
from typing import Iterator

from .errors import DataError

CHUNK = 1 << 20
MAX_ROW_CHARS = 64 << 20  # a JSON-array element larger than this is refused, not buffered


def data_files(path: str | Path) -> list[Path]:
    """The files of a dataset path: the file itself, or a folder's JSON/JSONL files (as LLaMA-Factory loads)."""
    p = Path(path)
    if p.is_dir():
        return sorted(f for f in p.iterdir() if f.suffix.lower() in (".json", ".jsonl") and f.is_file())
    return [p]


def iter_rows(path: str | Path, raw: bool = False) -> Iterator[tuple]:
    """Stream ``(row, value, problem)`` from a JSON array or a JSON Lines file. ``problem`` is why a JSON Lines
    row does not parse ("" when it does); a JSON array that breaks, or a file of one JSON object, raises DataError.
    With ``raw``, a fourth item: the row's JSON text as read (bytes of a JSON Lines line, the str of an array
    element), which lets the data scan prefilter a row (``pii.maybe``) without walking its decoded strings."""
    p = Path(path)
    first = _first_byte(p)
    if first == b"[":
        yield from _json_array(p, raw)
        return
    if first == b"{" and _one_object(p):
        raise DataError(f"{p}: is one JSON object, not rows: put the rows in a JSON list [{{...}}, ...] or write "
                        "JSON Lines (one object per line)")
    yield from iter_lines(p, raw)


def _first_byte(p: Path) -> bytes:
    with open(p, "rb") as fb:
        return fb.read(4096).removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n")[:1]


def halves(path: str | Path) -> tuple[int, int | None] | None:
    """Where a file can be cut in two, for two readers:
    - JSON Lines (``iter_lines``): (the byte offset of the first line that starts after the middle, the number of
      lines before it);
    - a JSON array (``array_window`` before the cut, ``array_rest`` after it): (the byte offset of a line after the
      middle that seems to start an element, None). A guess from the layout (``_array_cut``): the reader of the
      first part checks it, where the parse of the array's first part must end on it.
    None where there is no such place: a file of one JSON object, an array with no element on a line of its own (a
    JSON array written on one line), a file whose last line starts before the middle."""
    p, first = Path(path), _first_byte(Path(path))
    if first == b"[":
        return _array_cut(p)
    if first == b"{" and _one_object(p):
        return None
    with open(p, "rb") as f:
        f.seek(p.stat().st_size // 2)
        f.readline()  # the rest of the line the middle falls in
        start, lines = f.tell(), 0
        if not f.read(1):
            return None
        f.seek(0)
        while f.tell() + CHUNK <= start:
            lines += f.read(CHUNK).count(b"\n")
        return start, lines + f.read(start - f.tell()).count(b"\n")


def _array_cut(p: Path) -> tuple[int, None] | None:
    """A line after the middle of an indented JSON array that starts as its first element does (the same
    indentation, then ``{`` or ``[``) and follows a line ending in ``,``. A raw newline is never inside a JSON
    string, so that comma is between two values; whether between two rows or deeper, the first part's reader
    decides."""
    with open(p, "rb") as f:
        head = f.read(CHUNK).removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n")[1:]  # after the "["
        first = re.match(rb"[ \t\r]*\n([ \t]*)([\[{])", head)
        if not first:
            return None
        indent, opener = first[1], first[2]
        f.seek(p.stat().st_size // 2)
        f.readline()
        previous = b""
        for _ in range(100_000):  # a line that starts a row is near
            start, line = f.tell(), f.readline()
            if not line:
                return None
            body = line[len(indent):]
            if line.startswith(indent) and body[:1] == opener and previous.rstrip().endswith(b","):
                return start, None
            if line.strip():
                previous = line
    return None


def array_window(path: str | Path, stop: int, state: dict) -> Iterator[tuple]:
    """``iter_rows(path, raw=True)`` of a JSON array's rows before the byte offset ``stop`` (``halves``).
    ``state["cut"]`` says afterwards whether ``stop`` is where a row starts: True when the bytes before it parse as
    the array's first rows and a comma; False otherwise (a cut inside a row, or a syntax error: a reader of the whole
    file then says which), and no more rows are given."""
    state["cut"] = False
    try:
        yield from _json_array(Path(path), True, stop=stop)
    except DataError:
        return
    state["cut"] = True


def array_rest(path: str | Path, start: int) -> Iterator[tuple]:
    """``iter_rows(path, raw=True)`` of a JSON array's rows from the byte offset ``start`` (where a row starts, as
    ``array_window`` found), numbered from 1. A DataError's row and character are counted from ``start``."""
    return _json_array(Path(path), True, start=start)


class _Window(io.RawIOBase):
    """The bytes [start, stop) of a file."""

    def __init__(self, path: Path, start: int, stop: int | None):
        self.f, self.left = open(path, "rb"), None if stop is None else stop - start
        self.f.seek(start)

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        view = memoryview(b)
        if self.left is not None:
            view = view[:self.left]
        n = self.f.readinto(view)
        if self.left is not None:
            self.left -= n
        return n

    def close(self) -> None:
        self.f.close()
        super().close()


def iter_lines(path: str | Path, raw: bool = False, start: int = 0, count: int | None = None,
               first: int = 1) -> Iterator[tuple]:
    """``iter_rows`` of a JSON Lines file, or of ``count`` of its lines (None: to the end) from the byte offset
    ``start`` (a line start, see ``halves``), numbered from ``first``."""
    loads = json.loads
    with open(path, "rb") as f:
        f.seek(start)
        for lineno, line in enumerate(f if count is None else islice(f, count), first):
            if lineno == 1:
                line = line.removeprefix(b"\xef\xbb\xbf")
            if not line.strip():
                continue
            try:
                value = loads(line)
            except ValueError as exc:
                why = f"is not valid JSON ({getattr(exc, 'msg', exc)})"
                yield (lineno, None, why, line) if raw else (lineno, None, why)
                continue
            yield (lineno, value, "", line) if raw else (lineno, value, "")


def _one_object(p: Path) -> bool:
    """Whether a file that starts with ``{`` is one JSON object (on one line or many) and nothing else. A one-line
    ``.jsonl`` file is one row of JSON Lines; a pretty-printed object is one object whatever the name."""
    decode = json.JSONDecoder().raw_decode
    with open(p, encoding="utf-8-sig", errors="replace") as f:
        buf = ""
        while len(buf) <= MAX_ROW_CHARS:
            more = f.read(CHUNK)
            buf += more
            try:
                value, end = decode(buf, len(buf) - len(buf.lstrip()))
            except json.JSONDecodeError as exc:
                if not more or not _incomplete(exc, buf):
                    return False  # broken JSON: JSON Lines reports it row by row
                continue
            if buf[end:].strip() or (p.suffix.lower() == ".jsonl" and "\n" not in buf[:end]):
                return False
            while more:
                more = f.read(CHUNK)
                if more.strip():
                    return False
            return isinstance(value, dict)
    return False


_WS = re.compile(r"[ \t\r\n]*")


def _json_array(p: Path, raw: bool = False, start: int = 0, stop: int | None = None) -> Iterator[tuple]:
    """The rows of a JSON array; of its bytes [start, stop) only where ``start`` is where a row starts (no "[" then)
    or ``stop`` is (the bytes end after a comma then, else DataError)."""
    decode, ws = json.JSONDecoder().raw_decode, _WS.match
    window = start or stop is not None
    opened = io.TextIOWrapper(io.BufferedReader(_Window(p, start, stop), CHUNK), encoding="utf-8-sig" if not start
                              else "utf-8", newline="") if window else open(p, encoding="utf-8-sig", newline="")
    with opened as f:
        buf, eof, base, row, expect_value = "", False, 0, 0, True
        while not buf and not eof:  # skip leading whitespace, however long
            more = f.read(CHUNK)
            eof, buf = not more, more.lstrip(" \t\r\n")
        if not start and not buf.startswith("["):
            raise DataError(f"{p}: not a JSON array or JSON Lines file (it starts with {buf[:20]!r})")
        pos = 0 if start else 1
        while True:
            pos = ws(buf, pos).end()
            refill = pos >= len(buf)
            if refill and eof and stop is not None and expect_value and row:
                return  # the window ends after a comma: ``stop`` is where a row starts
            if not refill and not expect_value:
                if buf[pos] == "]":
                    if stop is not None:
                        raise DataError(f"{p}: the array ends before the cut")
                    return
                if buf[pos] != ",":
                    raise DataError(f"{p}: not valid JSON after row {row} (character {base + pos}): expected ',' "
                                    f"or ']' between rows; rows after {row} cannot be read")
                pos, expect_value = pos + 1, True
                continue
            if not refill and row == 0 and buf[pos] == "]":
                return
            if not refill:
                try:
                    value, end = decode(buf, pos)
                    refill = end == len(buf) and not eof  # a number may go on in the next chunk
                except json.JSONDecodeError as exc:
                    if eof or not _incomplete(exc, buf) or len(buf) - pos > MAX_ROW_CHARS:
                        why = exc.msg if eof or not _incomplete(exc, buf) else f"over {MAX_ROW_CHARS} characters"
                        raise DataError(f"{p}: not valid JSON at row {row + 1} (character {base + exc.pos}): "
                                        f"{why}; rows after {row} cannot be read") from None
                    refill = True
            if refill:
                if eof:
                    raise DataError(f"{p}: the JSON array ends after row {row} without its closing ']' "
                                    "(a truncated file?)")
                more = f.read(max(CHUNK, len(buf) - pos))
                eof, base, buf, pos = not more, base + pos, buf[pos:] + more, 0
                continue
            row += 1
            yield (row, value, "", buf[pos:end]) if raw else (row, value, "")
            pos, expect_value = end, False


def _incomplete(exc: json.JSONDecodeError, buf: str) -> bool:
    """Whether a decode error may only mean that the chunk ended inside the value."""
    return exc.msg.startswith("Unterminated string") or exc.pos >= len(buf) - 16
