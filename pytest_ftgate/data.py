"""Dataset checks on LLaMA-Factory data files, streamed row by row: the alpaca/sharegpt schema that
``dataset_info.json`` declares, PII (detectors in ``pii.py``), train/test leakage and duplicated training rows.

Pure: no pytest, no MLflow. A file is never loaded whole: JSON Lines are read line by line, a JSON array is parsed
incrementally (``json.JSONDecoder.raw_decode`` over 1 MiB chunks). Memory grows only with the test prompts and
16 bytes per training row (duplicates). Rows are numbered from 1: the line of a JSON Lines file, the element of a
JSON array. Verdict texts name files, rows and kinds, never row contents (PII must not leak into a report).
Only what was trained is scanned: the first ``max_samples`` rows of each training/validation dataset, as
LLaMA-Factory selects them (the audit record says how many).
"""

from __future__ import annotations

import json
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
from .jsonstream import data_files, iter_rows

FORMATS = ("alpaca", "sharegpt")
COLUMN_KEYS = ("prompt", "query", "response", "history", "messages", "system", "tools", "images", "videos",
               "audios", "chosen", "rejected", "kto_tag")
TAG_KEYS = ("role_tag", "content_tag", "user_tag", "assistant_tag", "observation_tag", "function_tag", "system_tag")
# LLaMA-Factory's defaults (llamafactory/data/parser.py, DatasetAttr)
DEFAULT_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output", "messages": "conversations"}
DEFAULT_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                "observation_tag": "observation", "function_tag": "function_call", "system_tag": "system"}


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset as ``dataset_info.json`` registers it (LLaMA-Factory's DatasetAttr, for local files)."""

    name: str
    formatting: str = "alpaca"
    ranking: bool = False
    columns: dict = field(default_factory=lambda: dict(DEFAULT_COLUMNS))
    tags: dict = field(default_factory=lambda: dict(DEFAULT_TAGS))

    @classmethod
    def from_info(cls, name: str, entry: Any, where: str) -> tuple["DatasetSpec", list[str]]:
        """The spec of ``name`` and the problems of its registration (unknown keys, formats, columns)."""
        if not isinstance(entry, dict):
            return cls(name), [f"{where}: entry {name!r} must be an object, got {type(entry).__name__}"]
        problems = []
        formatting = entry.get("formatting", "alpaca")
        if formatting not in FORMATS:
            problems.append(f"{where}: {name}.formatting is {formatting!r}; ftgate checks {' and '.join(FORMATS)}")
        columns, tags = dict(DEFAULT_COLUMNS), dict(DEFAULT_TAGS)
        for key, known, target in (("columns", COLUMN_KEYS, columns), ("tags", TAG_KEYS, tags)):
            given = entry.get(key, {})
            if not isinstance(given, dict):
                problems.append(f"{where}: {name}.{key} must be an object")
                continue
            unknown = sorted(set(given) - set(known))
            if unknown:
                problems.append(f"{where}: {name}.{key} has unknown keys {unknown} (known: {', '.join(known)})")
            target.update({k: v for k, v in given.items() if k in known})
        spec = cls(name, formatting if formatting in FORMATS else "alpaca", bool(entry.get("ranking", False)),
                   columns, tags)
        return spec, problems


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


def load_dataset_info(path: str | Path) -> dict:
    """``dataset_info.json`` as a mapping; DataError naming the file when it is missing or not a JSON object."""
    p = Path(path)
    try:
        info = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{p}: dataset_info.json not found; the dataset registrations cannot be read") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{p}: dataset_info.json cannot be read: {exc}") from None
    if not isinstance(info, dict):
        raise DataError(f"{p}: dataset_info.json must be an object of dataset names, got {type(info).__name__}")
    return info


def from_lineage(entries: list, dataset_info: str | None, test_set: str = "",
                 base_dir: Path | None = None) -> list[DataFile]:
    """The data files of a run's lineage (the audit record's ``input_artifacts.datasets``), each with its
    registration in ``dataset_info.json``; ``test_set`` (an alpaca file) replaces the recorded test split."""
    info, info_problem = {}, ""
    if dataset_info:
        try:
            info = load_dataset_info(_at(dataset_info, base_dir))
        except DataError as exc:
            info_problem = str(exc)
    files = []
    for e in entries:
        if not isinstance(e, dict) or (test_set and e.get("split") == "test"):
            continue
        name, fmt = str(e.get("name", "?")), e.get("format") or "alpaca"
        if info_problem or not dataset_info:
            spec, problems = DatasetSpec(name, fmt if fmt in FORMATS else "alpaca"), [info_problem] * bool(info_problem)
        elif name not in info:
            spec, problems = DatasetSpec(name, fmt), [f"{dataset_info}: dataset {name!r} is not registered"]
        else:
            spec, problems = DatasetSpec.from_info(name, info[name], str(dataset_info))
        if e.get("format") and e["format"] != spec.formatting:
            problems.append(f"{name}: recorded as {e['format']} but dataset_info.json declares {spec.formatting}")
        path = str(_at(e.get("path") or "", base_dir)) if e.get("path") else f"<no path recorded for {name}>"
        limit = e.get("max_samples") if e.get("split") != "test" else None
        files.append(DataFile(name, str(e.get("split") or "train"), path, spec, str(e.get("sha256") or ""),
                              tuple(problems), limit if isinstance(limit, int) and limit > 0 else 0))
    if test_set:
        files.append(DataFile(Path(test_set).stem, "test", test_set, DatasetSpec(Path(test_set).stem)))
    return files


def _at(path: str | Path, base_dir: Path | None) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() or base_dir is None else base_dir / p


# -- rows ---------------------------------------------------------------------------------------------
def row_problems(row: Any, spec: DatasetSpec) -> list[str]:
    """Why ``row`` is not a valid example of ``spec`` (empty when it is), after LLaMA-Factory's converters."""
    if not isinstance(row, dict):
        return [f"is {_an(row)}, not an object"]
    problems = []
    system = spec.columns.get("system")
    if system and row.get(system) is not None and not isinstance(row.get(system), str):
        problems.append(f"{system!r} is {_an(row[system])}, not a string")
    if spec.formatting == "sharegpt":
        return problems + _sharegpt_problems(row, spec)
    return problems + _alpaca_problems(row, spec)


def _alpaca_problems(row: dict, spec: DatasetSpec) -> list[str]:
    c, problems = spec.columns, []
    prompt, query, response = row.get(c.get("prompt") or ""), row.get(c.get("query") or ""), row.get(
        c.get("response") or "")
    if (type(prompt) is str and prompt.strip() and (query is None or type(query) is str) and type(response) is str
            and response.strip() and not spec.ranking and not c.get("history")):
        return problems  # the common case, checked fast
    for key in ("prompt", "query"):
        col = c.get(key)
        if col and row.get(col) is not None and not isinstance(row[col], str):
            problems.append(f"{col!r} is {_an(row[col])}, not a string")
    texts = [row.get(c[k]) for k in ("prompt", "query") if c.get(k)]
    if not any(isinstance(t, str) and t.strip() for t in texts):
        problems.append(f"has no prompt: {c.get('prompt')!r} is {_state(row, c.get('prompt'))}")
    answers = [c.get("chosen"), c.get("rejected")] if spec.ranking else [c.get("response")]
    for col in answers:
        value = row.get(col) if col else None
        if not (isinstance(value, str) and value.strip()):
            problems.append(f"{col!r} is {_state(row, col)}: the row has no answer to train on")
    history = c.get("history")
    if history and row.get(history) is not None:
        turns = row[history]
        if not isinstance(turns, list) or not all(
                isinstance(t, list) and len(t) == 2 and all(isinstance(x, str) for x in t) for t in turns):
            problems.append(f"{history!r} must be a list of [prompt, response] string pairs")
    return problems


def _sharegpt_problems(row: dict, spec: DatasetSpec) -> list[str]:
    col, t = spec.columns.get("messages") or "conversations", spec.tags
    msgs = row.get(col)
    if not isinstance(msgs, list) or not msgs:
        return [f"{col!r} is {_state(row, col, 'list')}: a sharegpt row needs a non-empty list of messages"]
    role, content = t["role_tag"], t["content_tag"]
    for i, m in enumerate(msgs, 1):
        if not isinstance(m, dict) or not isinstance(m.get(role), str) or not isinstance(m.get(content), str):
            return [f"message {i} needs string {role!r} and {content!r} fields"]
    start = 1 if t.get("system_tag") and msgs[0][role] == t["system_tag"] else 0
    turns = msgs[start:]
    accept = ((t["user_tag"], t["observation_tag"]), (t["assistant_tag"], t["function_tag"]))
    for i, m in enumerate(turns):
        if m[role] not in accept[i % 2]:
            return [f"message {i + start + 1} has role {m[role]!r} where {' or '.join(map(repr, accept[i % 2]))} "
                    f"is expected (turns alternate user/assistant)"]
    if not turns or (len(turns) % 2 != 0) != spec.ranking:
        return [f"has {len(turns)} turns: LLaMA-Factory needs user/assistant pairs and skips this row"]
    if not spec.ranking and not turns[-1][content].strip():
        return [f"the last {t['assistant_tag']!r} message is empty: the row has no answer to train on"]
    return []


def prompt_text(row: dict, spec: DatasetSpec) -> str:
    """The prompt of a valid row as LLaMA-Factory builds it: "instruction\\ninput", or the turns before the last."""
    if spec.formatting == "sharegpt":
        msgs, t = row[spec.columns.get("messages") or "conversations"], spec.tags
        start = 1 if t.get("system_tag") and msgs[0][t["role_tag"]] == t["system_tag"] else 0
        return "\n".join(m[t["content_tag"]] for m in msgs[start:-1])
    return "\n".join(row[c] for c in (spec.columns.get("prompt"), spec.columns.get("query")) if c and row.get(c))


def answer_text(row: dict, spec: DatasetSpec) -> str:
    if spec.formatting == "sharegpt":
        return row[spec.columns.get("messages") or "conversations"][-1][spec.tags["content_tag"]]
    col = spec.columns.get("chosen") if spec.ranking else spec.columns.get("response")
    return str(row.get(col) or "")


_NONWORD = re.compile(r"[\W_]+")
_ASCII_NONWORD = str.maketrans({c: " " for c in map(chr, range(128)) if not c.isalnum()})


def normalise(text: str) -> str:
    """Case, width, whitespace and punctuation folded: "What is  LoRA?" == "what is lora"."""
    if text.isascii():  # the same result, three times faster
        return " ".join(text.lower().translate(_ASCII_NONWORD).split())
    return _NONWORD.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


_h = hash  # 64-bit, fast; salted per process, which is fine: every hash of one scan is compared in one process


def _strings(value: Any, out: list[str]) -> list[str]:
    """Every string inside a JSON value, in order (what the PII detectors read)."""
    for v in value.values() if isinstance(value, dict) else value if isinstance(value, list) else (value,):
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, (dict, list)):
            _strings(v, out)
    return out


def _kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number")


def _an(value: Any) -> str:
    kind = _kind(value)
    return ("an " if kind[0] in "ao" else "a ") + kind


def _state(row: dict, col: str | None, want: str = "string") -> str:
    if not col or col not in row:
        return "missing"
    value = row[col]
    if value in ([], {}) or (isinstance(value, str) and not value.strip()):
        return "empty"
    return f"{_an(value)}, not a {want}"


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
                for row, value, problem in iter_rows(path):
                    if left == 0:
                        break
                    left -= 1
                    self.row(fr, df.spec, row, value, problem)
            except DataError as exc:
                fr.error = str(exc)
            except (OSError, UnicodeDecodeError) as exc:
                fr.error = f"{path}: cannot be read at row {fr.rows + 1}: {exc}"

    def row(self, fr: FileResult, spec: DatasetSpec, row: int, value: Any, problem: str) -> None:
        fr.rows += 1
        problems = [problem] if problem else row_problems(value, spec)
        if problems:
            fr.bad_rows += 1
            if len(fr.bad) < self.scan.max_listed:
                fr.bad.append((row, "; ".join(problems)))
        if self.kinds and value is not None:
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
            self.train_row(fr, value, spec, row)

    def test_row(self, fr: FileResult, prompt: str, row: int) -> None:
        if not prompt.strip():
            return
        self.scan.test_prompts += 1
        self.test_exact.setdefault(_h(prompt), (fr.path, row))
        self.test_norm.setdefault(_h(normalise(prompt)), (fr.path, row))

    def train_row(self, fr: FileResult, value: dict, spec: DatasetSpec, row: int) -> None:
        prompt = prompt_text(value, spec)
        norm = normalise(prompt)
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
        key = "\x1f".join((normalise(system) if system else "", norm, normalise(answer_text(value, spec))))
        self.dup_hash.append(_h(key))
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
