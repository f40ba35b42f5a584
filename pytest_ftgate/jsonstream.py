"""Rows streamed from a JSON array or a JSON Lines file, one at a time: a multi-GB dataset is never loaded whole.

JSON Lines are read line by line (a broken line is reported, the next lines are still read); a JSON array is parsed
incrementally with ``json.JSONDecoder.raw_decode`` over 1 MiB chunks (a syntax error ends it: later rows cannot be
found). A UTF-8 byte-order mark is skipped in both. A file that holds one JSON object (``{...}``, not in a list) is
refused, whatever its name says: one object is not rows. Rows are numbered from 1: the line of a JSON Lines file,
the element of a JSON array. No pytest.
"""

from __future__ import annotations

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


def halves(path: str | Path) -> tuple[int, int] | None:
    """Where a JSON Lines file can be cut in two, for two readers (``iter_lines``): (the byte offset of the first
    line that starts after the middle, the number of lines before it). None for a JSON array, a file of one JSON
    object, or a file whose last line starts before the middle."""
    p, first = Path(path), _first_byte(Path(path))
    if first == b"[" or (first == b"{" and _one_object(p)):
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


def _json_array(p: Path, raw: bool = False) -> Iterator[tuple]:
    decode, ws = json.JSONDecoder().raw_decode, _WS.match
    with open(p, encoding="utf-8-sig", newline="") as f:
        buf, eof, base, row, expect_value = "", False, 0, 0, True
        while not buf and not eof:  # skip leading whitespace, however long
            more = f.read(CHUNK)
            eof, buf = not more, more.lstrip(" \t\r\n")
        if not buf.startswith("["):
            raise DataError(f"{p}: not a JSON array or JSON Lines file (it starts with {buf[:20]!r})")
        pos = 1
        while True:
            pos = ws(buf, pos).end()
            refill = pos >= len(buf)
            if not refill and not expect_value:
                if buf[pos] == "]":
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
