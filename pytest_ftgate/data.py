"""Dataset checks on LLaMA-Factory data files, streamed row by row: the schema that ``dataset_info.json``
declares (the row model is ``rows.py``: alpaca, sharegpt, openai), PII (detectors in ``pii.py``), train/test
leakage and duplicated training rows. It owns the scan, not the rules of a row (those are ``rows.py``'s).

Pure: no pytest, no MLflow. A file is never loaded whole: JSON Lines are read line by line, a JSON array is parsed
incrementally (``json.JSONDecoder.raw_decode`` over 1 MiB chunks). Memory grows only with the test prompts, besides
one batch of rows and the duplicate index's 16 bytes (a 64-bit hash and where the row is) for at most SPILL_ROWS
training rows (``_Duplicates``: beyond, it spills to temporary files, sorted by hash). The rows are checked
BATCH at a time (``_check``, a pure function of the rows), which lets the texts of a batch be normalised in a few C
calls and a large file be shared with a forked helper process (``_Helper``: cut in two halves, or interleaved);
the parts are merged in row order, so the findings equal a serial scan's. Rows are numbered from 1: the line of a
JSON Lines file, the element of a JSON array. Verdict texts name files, rows and kinds, never row contents (PII must
not leak into a report).
Only what was trained is scanned: the first ``max_samples`` rows of each training/validation dataset, as
LLaMA-Factory selects them (the audit record says how many).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import time
import unicodedata
import warnings
from array import array
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any

from . import pii
from .errors import ConfigError, DataError
from .fileio import resolve_path
from .jsonstream import array_rest, array_window, data_files, halves, iter_lines, iter_rows
from .rows import (  # noqa: F401 (re-exported)
    AUTO,
    COLUMN_KEYS,
    DEFAULT_COLUMNS,
    DEFAULT_TAGS,
    FORMATS,
    TAG_KEYS,
    DatasetSpec,
    answer_text,
    load_dataset_info,
    prompt_text,
    read_rows,
    registered_spec,
    row_problems,
    row_reader,
)


@dataclass(frozen=True)
class DataFile:
    """A dataset file of a run: its registration, its split and where it lies."""

    name: str
    split: str  # train | validation | test
    path: str
    spec: DatasetSpec
    sha256: str = ""
    problems: tuple[str, ...] = ()  # registration problems (dataset_info.json), reported by the schema check
    max_rows: int = 0  # LLaMA-Factory's max_samples: only the first rows were trained (0 = every row)


def from_lineage(entries: list, dataset_info: str | None, test_set: str = "",
                 base_dir: Path | None = None) -> list[DataFile]:
    """The data files of a run's lineage (the audit record's ``input_artifacts.datasets``), each with its
    registration in ``dataset_info.json``; ``test_set`` (an unregistered file: each row's keys say its format)
    replaces the recorded test split. Relative paths resolve against ``base_dir`` (``~`` first)."""
    info, info_problem = None, ""
    if dataset_info:
        try:
            info = load_dataset_info(resolve_path(dataset_info, base_dir))
        except DataError as exc:
            info_problem = str(exc)
    files = []
    for e in entries:
        if not isinstance(e, dict) or (test_set and e.get("split") == "test"):
            continue
        name = str(e.get("name", "?"))
        spec, problems = registered_spec(name, str(e.get("format") or ""), info, str(dataset_info), info_problem)
        path = str(resolve_path(e["path"], base_dir)) if e.get("path") else f"<no path recorded for {name}>"
        limit = e.get("max_samples") if e.get("split") != "test" else None
        files.append(DataFile(name, str(e.get("split") or "train"), path, spec, str(e.get("sha256") or ""),
                              tuple(problems), limit if isinstance(limit, int) and limit > 0 else 0))
    if test_set:
        files.append(DataFile(Path(test_set).stem, "test", test_set, DatasetSpec(Path(test_set).stem, AUTO)))
    return files


_NONWORD = re.compile(r"[\W_]+")
_ASCII_NONWORD = str.maketrans({c: " " for c in map(chr, range(128)) if not c.isalnum()})


def normalise(text: str) -> str:
    """Case, width, whitespace and punctuation folded: "What is  LoRA?" == "what is lora"."""
    if text.isascii():  # the same result, three times faster
        return " ".join(text.lower().translate(_ASCII_NONWORD).split())
    return _NONWORD.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


# keys(): upper to lower case, every other non-alphanumeric ASCII byte to a space; NUL (the separator) and the bytes
# of non-ASCII characters (texts that ``normalise`` has already folded) are kept
_FOLD = bytes(c + 32 if 65 <= c <= 90 else c if c == 0 or c >= 128 or chr(c).isalnum() else 32 for c in range(256))


def keys(texts: list[str]) -> list[bytes]:
    """``normalise(text).encode()`` of every text, what leakage and duplicates hash, in a few C calls for the whole
    list (a scan's batch of rows) instead of a split and join per text: the texts are joined by " NUL ", folded by
    one bytes.translate (ASCII text; other text goes through ``normalise`` first, whose output the table keeps),
    each run of spaces cut to one (numpy: four times faster than a regex), and the result cut at the NULs. A NUL
    inside a text is a space to ``normalise``, so it becomes one before the join."""
    import numpy as np

    if not texts:
        return []
    joined = " \x00 ".join(texts)
    if joined.count("\x00") != len(texts) - 1:
        texts = [t.replace("\x00", " ") for t in texts]
        joined = " \x00 ".join(texts)
    if not joined.isascii():
        joined = " \x00 ".join(t if t.isascii() else normalise(t) for t in texts)
    folded = np.frombuffer(joined.encode("utf-8").translate(_FOLD), np.uint8)
    space = folded == 32
    space[1:] &= space[:-1]  # a space after a space
    return list(map(bytes.strip, folded[~space].tobytes().split(b"\x00")))


def _strings(value: Any, out: list[str]) -> list[str]:
    """Every string inside a JSON value, in order (what the PII detectors read)."""
    for v in value.values() if isinstance(value, dict) else value if isinstance(value, list) else (value,):
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, (dict, list)):
            _strings(v, out)
    return out


# -- the scan -----------------------------------------------------------------------------------------
@dataclass
class FileResult:
    """What one pass over one file found."""

    name: str
    split: str
    path: str
    formatting: str = "alpaca"
    rows: int = 0
    bytes: int = 0
    bad_rows: int = 0
    bad: list = field(default_factory=list)  # [(row, problem)], the first ``max_listed``
    problems: list = field(default_factory=list)  # registration problems (dataset_info.json)
    pii_rows: int = 0
    pii: dict = field(default_factory=dict)  # kind -> {"count": matches, "rows": [row, ...] (first max_listed)}
    error: str = ""  # the file could not be read (missing, broken JSON array): later rows were not checked
    max_rows: int = 0  # the rows after the first max_rows were not trained (max_samples) and are not scanned


@dataclass
class DataScan:
    """The result of one streaming pass over a run's data files (test, then validation, then train)."""

    files: list = field(default_factory=list)
    test_prompts: int = 0
    leaks: dict = field(default_factory=dict)  # test (file, row) -> (train file, row, "exact" | "normalised")
    train_rows: int = 0
    duplicate_rows: int = 0
    duplicate_examples: list = field(default_factory=list)  # [((file, row), (file, row) of the first copy)]
    seconds: float = 0.0
    max_listed: int = 20

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.files)

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)


BATCH = 1000  # rows checked together: keys() folds the texts of a batch at once (a few hundred KB of rows)


@dataclass(frozen=True)
class _Task:
    """What checking a file's rows needs besides the rows: the same for every batch of the file."""

    split: str
    spec: DatasetSpec
    kinds: tuple
    listed: int  # max_listed
    test_exact: dict  # hash of a test prompt -> (file, row) of its first test row
    test_norm: dict  # the same for the normalised prompt


@dataclass
class _Part:
    """What checking one batch of a file's rows found, in row order: a pure result of the rows and the task
    (``_check``), which ``_Scanner.merge`` adds to the file's and the scan's, batch after batch."""

    rows: int = 0
    bad_rows: int = 0
    bad: list = field(default_factory=list)  # [(row, problem)], the first max_listed
    pii_rows: int = 0
    pii: dict = field(default_factory=dict)  # kind -> [matches, rows (the first max_listed)]
    tests: list = field(default_factory=list)  # test prompts: [(hash, hash of the normalised prompt, row)]
    leaks: list = field(default_factory=list)  # [(test (file, row), training row, "exact" | "normalised")]
    dup_hash: array = field(default_factory=lambda: array("q"))  # a training row's hash of (system, prompt, answer)
    dup_rows: array = field(default_factory=lambda: array("Q"))  # its row


def _check(task: _Task, batch: list[tuple]) -> _Part:
    """Schema, PII (the exact detectors only on the rows whose raw text ``pii.maybe_rows`` holds), then leakage and
    duplicates of the valid rows, for a batch of ``iter_rows(path, raw=True)`` items."""
    part, read, valid = _Part(rows=len(batch)), row_reader(task.spec), []
    for row, value, problem, _ in batch:
        problems, system, prompt, answer = ([problem], "", "", "") if problem else read(value)
        if problems:
            part.bad_rows += 1
            if len(part.bad) < task.listed:
                part.bad.append((row, "; ".join(problems)))
        else:
            valid.append((row, system, prompt, answer))
    for i in pii.maybe_rows([item[3] for item in batch]) if task.kinds else ():
        if batch[i][1] is not None:
            _pii(part, task, batch[i][0], batch[i][1])
    if valid and task.split == "test":
        _test_rows(part, valid)
    elif valid and task.split == "train":
        _train_rows(part, task, valid)
    return part


def _pii(part: _Part, task: _Task, row: int, value: Any) -> None:
    found = pii.count("\n".join(_strings(value, [])), task.kinds)
    if found:
        part.pii_rows += 1
        for kind, n in found.items():
            entry = part.pii.setdefault(kind, [0, []])
            entry[0] += n
            if len(entry[1]) < task.listed:
                entry[1].append(row)


def _test_rows(part: _Part, valid: list[tuple]) -> None:
    """The non-blank test prompts, hashed as they are and normalised (what the training rows are looked up by)."""
    prompts = [(prompt, row) for row, _, prompt, _ in valid if prompt.strip()]
    norm = keys([prompt for prompt, _ in prompts])
    part.tests = [(hash(prompt), hash(key), row) for (prompt, row), key in zip(prompts, norm)]


def _train_rows(part: _Part, task: _Task, valid: list[tuple]) -> None:
    """The leaks and the duplicate hashes of a batch's valid training rows (hash(): 64-bit, fast, salted per
    process: every hash of one scan is compared in one process)."""
    rows, systems, prompts, answers = zip(*valid)
    n = len(valid)
    folded = keys([*systems, *prompts, *answers])
    if task.test_norm:
        _leaks(part, task, rows, prompts, folded[n:2 * n])
    part.dup_hash = array("q", map(hash, zip(folded[:n], folded[n:2 * n], folded[2 * n:])))
    part.dup_rows = array("Q", rows)


def _leaks(part: _Part, task: _Task, rows: tuple, prompts: tuple, norm: list[bytes]) -> None:
    """Each training row whose prompt is a test prompt, as it is or else normalised (a set test decides first
    that a batch has none, the common case)."""
    exact, normalised = list(map(hash, prompts)), list(map(hash, norm))
    if task.test_exact.keys().isdisjoint(exact) and task.test_norm.keys().isdisjoint(normalised):
        return
    for row, e, k in zip(rows, exact, normalised):
        hit, how = task.test_exact.get(e), "exact"
        if hit is None:
            hit, how = task.test_norm.get(k), "normalised"
        if hit is not None:
            part.leaks.append((hit, row, how))


def _batches(rows: Iterator[tuple], path: Path, left: int, out: dict, done: int = 0) -> Iterator[list[tuple]]:
    """The ``iter_rows(path, raw=True)`` items ``rows`` in batches of BATCH, the first ``left`` (-1: all); the last
    batch may be short or empty. ``out`` gets "left" (rows left after these) and "error" (why the file could not be
    read to its end); ``done`` rows of the file came before these."""
    batch: list[tuple] = []
    try:
        for item in rows:
            if left == 0:
                break
            left -= 1
            batch.append(item)
            if len(batch) == BATCH:
                yield batch
                done, batch = done + BATCH, []
    except DataError as exc:
        out["error"] = str(exc)
    except (OSError, UnicodeDecodeError) as exc:
        out["error"] = f"{path}: cannot be read at row {done + len(batch) + 1}: {exc}"
    out["left"] = left
    yield batch


def _checked(task: _Task, path: Path, rows: Iterator[tuple], out: dict, left: int = -1, done: int = 0
             ) -> Iterator[_Part]:
    """The parts of ``rows`` (``iter_rows`` items of ``path``, ``done`` rows after the file's start), batch by batch."""
    return map(partial(_check, task), _batches(rows, path, left, out, done))


PARALLEL_MIN_BYTES = 32 << 20  # a file this large is shared with a helper process (``_Helper``)
_PROBE = b"pytest-ftgate hash probe"
HELPER_SILENCE_S = 60.0  # a helper that sends nothing for this long is taken for stuck: its rows are checked here


class _Helper:
    """A forked process that shares the check of a large file with this one: ``_Halves`` (each process checks one
    half) or ``_Interleaved`` (each checks every other batch). ``parts`` yields the file's checked batches in order,
    the helper's among them. Each part is a pure result of its rows, so the merged scan equals a serial one: fork
    keeps the process's hash secret (a probe checks it) and the test prompts."""

    def __init__(self, task: _Task, path: Path):
        self.task, self.path = task, path
        self.parts_in: deque = deque()
        self.proc, self.conn = None, None

    def fork(self) -> bool:
        """Start the helper where it is worth it: Linux (fork), two CPUs. The process may run other threads (MLflow's
        artifact pools, tqdm's monitor): the child has only this one, and needs no lock of theirs (it parses, hashes
        and writes to its pipe; CPython renews its own locks at fork). Should it ever block all the same, its
        silence ends it (``_receive``): this process checks the rows it did not send."""
        if sys.platform != "linux" or len(os.sched_getaffinity(0)) < 2:
            return False
        import multiprocessing

        import numpy  # noqa: F401 (imported before the fork, not in the child)

        ctx = multiprocessing.get_context("fork")
        self.conn, child_conn = ctx.Pipe(duplex=False)
        try:
            self.proc = ctx.Process(target=self.main, args=(child_conn,), daemon=True)
            with warnings.catch_warnings():  # Python 3.12+: "This process is multi-threaded, use of fork() ..."
                warnings.simplefilter("ignore", DeprecationWarning)
                self.proc.start()
        except (OSError, AssertionError):  # no fork left, or a daemon process (which may not have children)
            self.proc = None
            return False
        finally:
            child_conn.close()
        return self._receive() == ("probe", hash(_PROBE))

    def main(self, conn: Any) -> None:
        """The helper process: the probe, its parts (``work``), then "done" if it read the file to its end. Any
        failure ends it: what it has not sent is checked by the parent (which meets the same error)."""
        try:
            conn.send(("probe", hash(_PROBE)))
            out: dict = {}
            for part in self.work(out):
                conn.send(("part", part))
            if "error" not in out:
                conn.send(("done",))
        except Exception:  # noqa: S110 (the parent checks what was not sent itself, and meets the same error)
            pass
        finally:
            conn.close()

    def work(self, out: dict) -> Iterator[_Part]:
        """In the helper: the parts it checks and sends."""
        raise NotImplementedError

    def parts(self, out: dict) -> Iterator[_Part]:
        """In this process, once forked: every part of the file in order."""
        raise NotImplementedError

    def _receive(self) -> tuple | None:
        """The helper's next message; None where it has ended, or sent nothing for HELPER_SILENCE_S (stuck)."""
        try:
            return self.conn.recv() if self.conn.poll(HELPER_SILENCE_S) else None
        except (EOFError, OSError):
            return None

    def close(self) -> None:
        if self.proc is not None:
            self.conn.close()
            self.proc.terminate()
            self.proc.join(5)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join()
            self.proc = None


class _Halves(_Helper):
    """A file read whole, cut by ``jsonstream.halves``: the helper checks the second half while this process checks
    the first; its parts, buffered here as they come, follow this half's. Where it fails, dies or hashes
    differently, the rows it has not sent are checked here. A JSON array's cut (``lines`` None) is a guess from its
    layout: this process's parse of the first half checks it (``jsonstream.array_window``), and where it was wrong
    reads on itself; the helper numbers its rows from the cut, and they are renumbered here. The duplicate hashes of
    the helper's parts go to the scan's duplicate index (``dups``, under their own ``tag``) as they come, so that
    the parts buffered here hold no per-row data."""

    def __init__(self, task: _Task, path: Path, start: int, lines: int | None, dups: _Duplicates, tag: int):
        super().__init__(task, path)
        self.start, self.lines = start, lines
        self.dups, self.tag = dups, tag

    def second_half(self) -> Iterator[tuple]:
        if self.lines is None:  # a JSON array: rows numbered from the cut
            return array_rest(self.path, self.start)
        return iter_lines(self.path, True, self.start, None, self.lines + 1)

    def work(self, out: dict) -> Iterator[_Part]:
        return _checked(self.task, self.path, self.second_half(), out)

    def parts(self, out: dict) -> Iterator[_Part]:
        state, done = {"cut": True}, 0
        rows = iter_lines(self.path, True, 0, self.lines) if self.lines is not None else \
            array_window(self.path, self.start, state)
        for batch in _batches(rows, self.path, -1, out):
            part = _check(self.task, batch)
            done += part.rows
            yield part
            self.collect()
        if not state["cut"]:  # not where a row starts (or a broken first half): read on here
            self.close()
            self.dups.drop(self.tag)
            yield from _checked(self.task, self.path, islice(iter_rows(self.path, raw=True), done, None), out,
                                done=done)
        elif "error" in out:  # a serial scan stops here too: none of the helper's rows count
            self.dups.drop(self.tag)
        else:
            yield from self.rest(done, out)

    def collect(self) -> None:
        """Buffer the parts that have come, so that the helper never waits on a full pipe."""
        while not (self.parts_in and self.parts_in[-1] in (None, ("done",))) and self.conn.poll():
            # None: the helper has ended (poll holds at the end of the pipe)
            self.parts_in.append(self._indexed(self._receive()))

    def _indexed(self, message: tuple | None) -> tuple | None:
        """A message of the helper's, a part's duplicate hashes moved to the index (under the helper's tag)."""
        if message is not None and message[0] == "part":
            part = message[1]
            self.dups.add(self.tag, part.dup_hash, part.dup_rows)
            part.dup_hash, part.dup_rows = array("q"), array("Q")
        return message

    def rest(self, done: int, out: dict) -> Iterator[_Part]:
        """The parts of the second half in order: the helper's, then (where it stopped short) the rows after them,
        checked here; ``done`` rows came before the half."""
        covered, shift = 0, done if self.lines is None else 0
        self.dups.shift(self.tag, shift)
        while True:
            message = self.parts_in.popleft() if self.parts_in else self._indexed(self._receive())
            if message is None or message[0] != "part":
                break
            covered += message[1].rows
            yield _shifted(message[1], shift)
        if message == ("done",):
            return
        if self.lines is None:  # read again from the start: a syntax error is then told as a serial scan tells it
            rows = islice(iter_rows(self.path, raw=True), done + covered, None)
        else:
            rows = islice(self.second_half(), covered, None)
        yield from _checked(self.task, self.path, rows, out, done=done + covered)


class _Interleaved(_Helper):
    """A JSON array that cannot be cut without parsing it, or a file of which only the first ``left`` rows are
    trained: both processes parse the whole stream, this one checks the even batches and the helper the odd ones
    (parsing is the cheaper part of a scan). Where the helper fails, this process checks the odd batches too."""

    def __init__(self, task: _Task, path: Path, left: int):
        super().__init__(task, path)
        self.left = left

    def work(self, out: dict) -> Iterator[_Part]:
        batches = _batches(iter_rows(self.path, raw=True), self.path, self.left, out)
        return (_check(self.task, batch) for i, batch in enumerate(batches) if i % 2)

    def parts(self, out: dict) -> Iterator[_Part]:
        helped = True
        for i, batch in enumerate(_batches(iter_rows(self.path, raw=True), self.path, self.left, out)):
            part = self.odd_part(batch) if helped and i % 2 else None
            helped = helped and (part is not None or not i % 2)  # once the helper has ended, all batches are here
            yield _check(self.task, batch) if part is None else part

    def odd_part(self, batch: list[tuple]) -> _Part | None:
        """The helper's part of this odd batch, None where the helper has ended or sent another."""
        message = self._receive()
        if message is None or message[0] != "part" or message[1].rows != len(batch):
            return None
        return message[1]




def _shifted(part: _Part, n: int) -> _Part:
    """A part whose rows were numbered from a cut, numbered from the file's start (``n`` rows before the cut)."""
    if not n:
        return part
    part.bad = [(row + n, why) for row, why in part.bad]
    part.pii = {kind: [count, [row + n for row in rows]] for kind, (count, rows) in part.pii.items()}
    part.tests = [(exact, norm, row + n) for exact, norm, row in part.tests]
    part.leaks = [(hit, row + n, how) for hit, row, how in part.leaks]
    return part  # (its duplicate hashes are in the index already, under a tag shifted by n)


SPILL_ROWS = 1 << 18  # training rows the duplicate index holds in memory (4 MB); beyond, it spills to a file
_ROW_BITS = 40  # where = tag << 40 | row


class _Duplicates:
    """The duplicate index of a scan's valid training rows: per row, the 64-bit hash of its folded (system, prompt,
    answer) and where it is, ``tag << 40 | row``; a tag names a file (its place in the scan, its path) and the rows
    before the part it numbers (a helper's half of a JSON array counts from the cut: ``shift``). At most
    SPILL_ROWS rows are held in memory: beyond, they are written sorted by hash to a temporary file, and ``result``
    reads the files back one range of hashes at a time, so memory stays flat whatever the size of the data. The
    result does not depend on how the rows came (in memory or spilled, serial or from a helper, in any order).
    Where a file cannot be written (no space left, no temporary directory), the rows stay in memory."""

    RANGE_BITS = 12  # a spilled file is indexed by the row at which each of 4096 ranges of hashes starts
    RANGES = 1 << RANGE_BITS

    def __init__(self):
        self.hashes, self.where = array("q"), array("Q")
        self.tags: list[list] = []  # per tag: [the file's place in the scan, its path, rows before the part]
        self.dropped: set[int] = set()
        self.runs: list[tuple[str, int, Any]] = []  # spilled: (path, rows, where each range of hashes starts)
        self.dir: str | None = None
        self.unwritable = False  # a spill failed: the rows stay in memory from then on
        self.owner = os.getpid()  # a forked helper holds a copy: only this process removes the files

    def tag(self, file_no: int, path: str) -> int:
        self.tags.append([file_no, path, 0])
        return len(self.tags) - 1

    def shift(self, tag: int, rows: int) -> None:
        self.tags[tag][2] = rows

    def drop(self, tag: int) -> None:
        """Forget the rows of ``tag`` (a helper's parts that this process checks again itself)."""
        self.dropped.add(tag)

    def add(self, tag: int, hashes: array, rows: array) -> None:
        if not rows:
            return
        import numpy as np

        self.hashes.extend(hashes)
        self.where.frombytes((np.frombuffer(rows, np.uint64) | np.uint64(tag << _ROW_BITS)).tobytes())
        if len(self.hashes) >= SPILL_ROWS and not self.unwritable:
            self._spill()

    def _spill(self) -> None:
        try:
            if self.dir is None:
                self.dir = tempfile.mkdtemp(prefix="ftgate-duplicates-")
            path = os.path.join(self.dir, f"{len(self.runs)}.bin")
            self._write(path)
        except OSError:
            self.unwritable = True
        else:
            self.hashes, self.where = array("q"), array("Q")

    def _write(self, path: str) -> None:
        import numpy as np

        h = np.frombuffer(self.hashes, np.uint64)  # the hashes as unsigned: a range of hashes is a top-bits prefix
        order = np.argsort(h, kind="stable")
        h, w = h[order], np.frombuffer(self.where, np.uint64)[order]
        with open(path, "wb") as f:
            h.tofile(f)
            w.tofile(f)
        starts = np.searchsorted(h, self._edge(np.arange(self.RANGES, dtype=np.uint64)))
        self.runs.append((path, len(h), np.append(starts, len(h))))

    def result(self, listed: int) -> tuple[int, int, list]:
        """(training rows, rows that repeat an earlier row, the first ``listed`` of those in scan order as
        ((file, row), (file, row) of its first copy))."""
        import numpy as np

        if not self.runs:
            groups = [(np.frombuffer(self.hashes, np.uint64), np.frombuffer(self.where, np.uint64))]
        else:
            if self.hashes and not self.unwritable:
                self._spill()
            total = sum(n for _, n, _ in self.runs)
            count = 1
            while count < self.RANGES and total / count > SPILL_ROWS // 2:
                count *= 2
            groups = (self._read(j * (self.RANGES // count), (j + 1) * (self.RANGES // count)) for j in range(count))
        files = np.array([t[0] for t in self.tags] or [0], np.uint64) << np.uint64(_ROW_BITS)
        shifts = np.array([t[2] for t in self.tags] or [0], np.uint64)
        rows = repeats = 0
        found: list[tuple[int, int]] = []
        for h, w in groups:
            tag = (w >> np.uint64(_ROW_BITS)).astype(np.intp)
            if self.dropped:
                keep = ~np.isin(tag, list(self.dropped))
                h, w, tag = h[keep], w[keep], tag[keep]
            rows += len(h)
            key = files[tag] | ((w & np.uint64((1 << _ROW_BITS) - 1)) + shifts[tag])  # (file, row) in scan order
            order = np.lexsort((key, h))
            h, key = h[order], key[order]
            later = h[1:] == h[:-1]
            repeat = np.flatnonzero(later) + 1
            repeats += len(repeat)
            if len(repeat):
                group_start = np.maximum.accumulate(np.where(np.r_[True, ~later], np.arange(len(h)), 0))
                copies, firsts = key[repeat], key[group_start[repeat]]
                pick = np.argsort(copies, kind="stable")[:listed]
                found = sorted(found + list(zip(copies[pick].tolist(), firsts[pick].tolist())))[:listed]
        paths = {t[0]: t[1] for t in self.tags}
        mask = (1 << _ROW_BITS) - 1
        return rows, repeats, [((paths[c >> _ROW_BITS], c & mask), (paths[f >> _ROW_BITS], f & mask))
                               for c, f in found]

    def _read(self, first: int, end: int) -> tuple[Any, Any]:
        """The spilled rows whose hashes lie in ranges ``first`` to ``end`` (exclusive), from every file."""
        import numpy as np

        hs, ws = [], []
        for path, n, starts in self.runs:
            lo, hi = int(starts[first]), int(starts[end])
            if hi > lo:
                hs.append(np.fromfile(path, np.uint64, hi - lo, offset=lo * 8))
                ws.append(np.fromfile(path, np.uint64, hi - lo, offset=(n + lo) * 8))
        if self.hashes:  # rows that could not be spilled
            h = np.frombuffer(self.hashes, np.uint64)
            inside = h >= self._edge(np.uint64(first))
            if end < self.RANGES:
                inside &= h < self._edge(np.uint64(end))
            hs.append(h[inside])
            ws.append(np.frombuffer(self.where, np.uint64)[inside])
        empty = np.zeros(0, np.uint64)
        return (np.concatenate(hs), np.concatenate(ws)) if hs else (empty, empty)

    @classmethod
    def _edge(cls, i: Any) -> Any:
        """The first hash of range ``i`` (numpy uint64)."""
        import numpy as np

        return i << np.uint64(64 - cls.RANGE_BITS)

    def close(self) -> None:
        if self.dir is not None and os.getpid() == self.owner:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


class _Scanner:
    def __init__(self, pii_kinds: tuple[str, ...], max_listed: int):
        self.kinds, self.scan = tuple(pii_kinds), DataScan(max_listed=max_listed)
        self.test_exact: dict[int, tuple[str, int]] = {}
        self.test_norm: dict[int, tuple[str, int]] = {}
        self.dups = _Duplicates()

    def file(self, df: DataFile) -> None:
        left = df.max_rows or -1  # LLaMA-Factory trains the first max_samples rows of a dataset (its files joined)
        for path in data_files(df.path) if Path(df.path).exists() else [Path(df.path)]:
            if left == 0:
                break
            fr = FileResult(df.name, df.split, str(path), df.spec.formatting, problems=list(df.problems),
                            max_rows=df.max_rows)
            self.scan.files.append(fr)
            if not path.is_file():
                fr.error = f"{path} does not exist: the {df.split} data of {df.name!r} cannot be checked"
                continue
            fr.bytes = os.path.getsize(path)
            task = _Task(df.split, df.spec, self.kinds, self.scan.max_listed, self.test_exact, self.test_norm)
            left = self.read(fr, task, path, left)

    def read(self, fr: FileResult, task: _Task, path: Path, left: int) -> int:
        """Check a file's rows batch by batch, the first ``left`` of them (-1: all); how many are left after it. A
        large file is shared with a helper process: a file read whole cut in two halves where it can be (JSON Lines;
        a JSON array with its rows on lines of their own, ``_Halves``), any other interleaved by batches
        (``_Interleaved``)."""
        out: dict = {}
        helper = None
        file_no = len(self.scan.files) - 1
        tag = self.dups.tag(file_no, str(path))
        if fr.bytes >= PARALLEL_MIN_BYTES:
            cut = halves(path) if left < 0 else None
            helper = _Halves(task, path, *cut, self.dups, self.dups.tag(file_no, str(path))) if cut else \
                _Interleaved(task, path, left)
        try:
            parts = helper.parts(out) if helper is not None and helper.fork() else \
                _checked(task, path, iter_rows(path, raw=True), out, left)
            for part in parts:
                self.merge(fr, part, tag)
        finally:
            if helper:
                helper.close()
        fr.error = out.get("error", fr.error)
        return out["left"]

    def merge(self, fr: FileResult, part: _Part, tag: int) -> None:
        """Add what a batch found to its file's result and to the scan, as if its rows were checked here."""
        listed = self.scan.max_listed
        fr.rows, fr.bad_rows = fr.rows + part.rows, fr.bad_rows + part.bad_rows
        fr.pii_rows += part.pii_rows
        fr.bad.extend(part.bad[:listed - len(fr.bad)])
        for kind, (n, rows) in part.pii.items():
            entry = fr.pii.setdefault(kind, {"count": 0, "rows": []})
            entry["count"] += n
            entry["rows"].extend(rows[:listed - len(entry["rows"])])
        for exact, norm, row in part.tests:
            self.scan.test_prompts += 1
            self.test_exact.setdefault(exact, (fr.path, row))
            self.test_norm.setdefault(norm, (fr.path, row))
        for hit, row, how in part.leaks:
            self.scan.leaks.setdefault(hit, (fr.path, row, how))
        self.dups.add(tag, part.dup_hash, part.dup_rows)

    def duplicates(self) -> None:
        """The training rows counted, and which repeat an earlier row (the first ``max_listed`` in scan order)."""
        scan = self.scan
        scan.train_rows, scan.duplicate_rows, scan.duplicate_examples = self.dups.result(scan.max_listed)


SPLIT_ORDER = {"test": 0, "validation": 1, "train": 2}


def scan(files: list[DataFile], pii_kinds: tuple[str, ...] = pii.KINDS, max_listed: int = 20) -> DataScan:
    """One streaming pass over every file: test first (its prompts are kept for the leakage check), then
    validation, then train (schema, PII, leakage and duplicates at once)."""
    unknown = sorted(set(pii_kinds) - set(pii.KINDS))
    if unknown:
        raise ConfigError(f"data.pii_kinds: unknown kind(s) {unknown}; known: {', '.join(pii.KINDS)}")
    started = time.perf_counter()
    scanner = _Scanner(pii_kinds, max_listed)
    try:
        for df in sorted(files, key=lambda d: SPLIT_ORDER.get(d.split, 1)):
            scanner.file(df)
        scanner.duplicates()
    finally:
        scanner.dups.close()
    scanner.scan.seconds = time.perf_counter() - started
    return scanner.scan


# The gates that lived here moved to pytest_ftgate.gates.data: the old names work for one release.
_MOVED = ('schema_check', 'pii_check', 'leakage_check', 'duplicates_check')


def __getattr__(name: str):
    if name in _MOVED:
        from ._compat import forward

        return forward(__name__, ("pytest_ftgate.gates.data",))(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
