"""Dataset checks on LLaMA-Factory data files, streamed row by row: the schema that ``dataset_info.json``
declares (the row model is ``rows.py``: alpaca, sharegpt, openai), PII (detectors in ``pii.py``), train/test
leakage and duplicated training rows. It owns the scan, not the rules of a row (those are ``rows.py``'s).

Pure: no pytest, no MLflow. A file is never loaded whole: JSON Lines are read line by line, a JSON array is parsed
incrementally (``json.JSONDecoder.raw_decode`` over 1 MiB chunks). Memory grows only with the test prompts and
16 bytes per training row (duplicates). Rows are numbered from 1: the line of a JSON Lines file, the element of a
JSON array. Verdict texts name files, rows and kinds, never row contents (PII must not leak into a report).
Only what was trained is scanned: the first ``max_samples`` rows of each training/validation dataset, as
LLaMA-Factory selects them (the audit record says how many).
"""

from __future__ import annotations

import os
import re
import time
import unicodedata
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import pii
from .errors import ConfigError, DataError
from .fileio import resolve_path
from .jsonstream import data_files, iter_rows
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


# _key(): ASCII folded in one bytes.translate: upper to lower case, every other non-alphanumeric byte to a space
_ASCII_FOLD = bytes(c + 32 if 65 <= c <= 90 else c if chr(c).isalnum() and c < 128 else 32 for c in range(256))


def _key(text: str) -> bytes:
    """``normalise(text)`` as UTF-8 bytes, what leakage and duplicates hash: for ASCII text the same tokens by
    bytes.translate (twice as fast as str.lower + str.translate); other text through ``normalise`` itself."""
    if text.isascii():
        return b" ".join(text.encode("ascii").translate(_ASCII_FOLD).split())
    return normalise(text).encode("utf-8")


_h = hash  # 64-bit, fast; salted per process, which is fine: every hash of one scan is compared in one process


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


class _Scanner:
    def __init__(self, pii_kinds: tuple[str, ...], max_listed: int):
        self.kinds, self.scan = tuple(pii_kinds), DataScan(max_listed=max_listed)
        self.test_exact: dict[int, tuple[str, int]] = {}
        self.test_norm: dict[int, tuple[str, int]] = {}
        self.dup_hash, self.dup_where = array("q"), array("Q")
        self.names: list[str] = []

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
            try:
                for row, value, problem, raw in iter_rows(path, raw=True):  # read_rows, with each row's JSON text
                    if left == 0:
                        break
                    left -= 1
                    self.row(fr, df.spec, row, value, [problem] if problem else row_problems(value, df.spec), raw)
            except DataError as exc:
                fr.error = str(exc)
            except (OSError, UnicodeDecodeError) as exc:
                fr.error = f"{path}: cannot be read at row {fr.rows + 1}: {exc}"

    def row(self, fr: FileResult, spec: DatasetSpec, row: int, value: Any, problems: list[str],
            raw: str | bytes | None = None) -> None:
        """Schema, PII (the exact detectors only on a row whose raw text ``pii.maybe`` holds), then leakage and
        duplicates of a valid row."""
        fr.rows += 1
        if problems:
            fr.bad_rows += 1
            if len(fr.bad) < self.scan.max_listed:
                fr.bad.append((row, "; ".join(problems)))
        if self.kinds and value is not None and pii.maybe(raw):
            found = pii.count("\n".join(_strings(value, [])), self.kinds)
            if found:
                fr.pii_rows += 1
                for kind, n in found.items():
                    entry = fr.pii.setdefault(kind, {"count": 0, "rows": []})
                    entry["count"] += n
                    if len(entry["rows"]) < self.scan.max_listed:
                        entry["rows"].append(row)
        if problems:
            return
        if fr.split == "test":
            self.test_row(fr, prompt_text(value, spec), row)
        elif fr.split == "train":
            self.train_row(fr, value, spec.for_row(value), row)

    def test_row(self, fr: FileResult, prompt: str, row: int) -> None:
        if not prompt.strip():
            return
        self.scan.test_prompts += 1
        self.test_exact.setdefault(_h(prompt), (fr.path, row))
        self.test_norm.setdefault(_h(_key(prompt)), (fr.path, row))

    def train_row(self, fr: FileResult, value: dict, spec: DatasetSpec, row: int) -> None:
        prompt = prompt_text(value, spec)
        norm = _key(prompt)
        if self.test_norm:
            hit = self.test_exact.get(_h(prompt))
            how = "exact"
            if hit is None:
                hit, how = self.test_norm.get(_h(norm)), "normalised"
            if hit is not None and hit not in self.scan.leaks:
                self.scan.leaks[hit] = (fr.path, row, how)
        if not self.names or self.names[-1] != fr.path:
            self.names.append(fr.path)
        system = value.get(spec.columns["system"]) if spec.columns.get("system") else None
        self.dup_hash.append(_h((_key(system) if system else b"", norm, _key(answer_text(value, spec)))))
        self.dup_where.append((len(self.names) - 1) << 40 | row)
        self.scan.train_rows += 1

    def duplicates(self) -> None:
        import numpy as np

        hashes = np.frombuffer(self.dup_hash, dtype=np.int64)
        if not len(hashes):
            return
        order = np.argsort(hashes, kind="stable")
        sorted_h = hashes[order]
        repeat = np.flatnonzero(sorted_h[1:] == sorted_h[:-1]) + 1  # positions of later copies
        self.scan.duplicate_rows = int(len(repeat))
        where = np.frombuffer(self.dup_where, dtype=np.uint64)
        for i in repeat[: self.scan.max_listed]:
            first = int(np.searchsorted(sorted_h, sorted_h[i]))
            self.scan.duplicate_examples.append((self._loc(int(where[order[i]])), self._loc(int(where[order[first]]))))
        self.dup_hash, self.dup_where = array("q"), array("Q")

    def _loc(self, packed: int) -> tuple[str, int]:
        return self.names[packed >> 40], packed & ((1 << 40) - 1)


SPLIT_ORDER = {"test": 0, "validation": 1, "train": 2}


def scan(files: list[DataFile], pii_kinds: tuple[str, ...] = pii.KINDS, max_listed: int = 20) -> DataScan:
    """One streaming pass over every file: test first (its prompts are kept for the leakage check), then
    validation, then train (schema, PII, leakage and duplicates at once)."""
    unknown = sorted(set(pii_kinds) - set(pii.KINDS))
    if unknown:
        raise ConfigError(f"data.pii_kinds: unknown kind(s) {unknown}; known: {', '.join(pii.KINDS)}")
    started = time.perf_counter()
    scanner = _Scanner(pii_kinds, max_listed)
    for df in sorted(files, key=lambda d: SPLIT_ORDER.get(d.split, 1)):
        scanner.file(df)
    scanner.duplicates()
    scanner.scan.seconds = time.perf_counter() - started
    return scanner.scan


# The gates that lived here moved to pytest_ftgate.gates.data: the old names work for one release.
_MOVED = ('schema_check', 'pii_check', 'leakage_check', 'duplicates_check')


def __getattr__(name: str):
    if name in _MOVED:
        from ._compat import forward

        return forward(__name__, ("pytest_ftgate.gates.data",))(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
