"""The LLaMA-Factory row model: how ``dataset_info.json`` registers a dataset, which rows LLaMA-Factory can train on,
and what a row's prompt, answer and messages are, as its converters (``llamafactory/data/parser.py`` and
``converter.py``, 0.9.5) build them for the alpaca, sharegpt and openai formats.

Training validation (``train.py``), the data scan (``data.py``) and the held-out test set (``predict.py``) all read
rows here, so one row is one prompt everywhere. Pure: no pytest, no MLflow, no LLaMA-Factory import; rows are
streamed (``jsonstream``), never loaded whole, and numbered from 1. Problem texts name columns and kinds, never row
contents (PII must not leak into a report).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DataError
from .jsonstream import data_files, iter_rows

FORMATS = ("alpaca", "sharegpt", "openai")
AUTO = "unregistered"  # an unregistered file (``--ftgate-test-set``): each row's own keys say its format
COLUMN_KEYS = ("prompt", "query", "response", "history", "messages", "system", "tools", "images", "videos",
               "audios", "chosen", "rejected", "kto_tag")
TAG_KEYS = ("role_tag", "content_tag", "user_tag", "assistant_tag", "observation_tag", "function_tag", "system_tag")
# LLaMA-Factory's defaults (DatasetAttr), the same for every formatting, openai included. A registration with a
# `columns` (or `tags`) object replaces them all: the keys it leaves out are unset, as DatasetAttr.join does.
DEFAULT_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output", "messages": "conversations"}
DEFAULT_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                "observation_tag": "observation", "function_tag": "function_call", "system_tag": "system"}
# How OpenAI-style rows ({"messages": [{"role", "content"}]}) are registered (LLaMA-Factory's data/README.md)
OPENAI_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
               "observation_tag": "tool", "function_tag": "function_call", "system_tag": "system"}
ROLE_NAMES = {"observation": "tool"}  # LLaMA-Factory's Role -> the role the quality gates' messages carry
TOOL_SEP = "\n</tool_response>\n<tool_response>\n"  # consecutive tool results become one observation turn
SHORT_SYSTEM = "detailed thinking off"  # what LLaMA-Factory's openai converter adds to a system prompt

Messages = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset as ``dataset_info.json`` registers it (LLaMA-Factory's DatasetAttr, for local files)."""

    name: str
    formatting: str = "alpaca"  # alpaca | sharegpt | openai | unregistered (AUTO: guessed per row)
    ranking: bool = False
    columns: dict = field(default_factory=lambda: dict(DEFAULT_COLUMNS))
    tags: dict = field(default_factory=lambda: dict(DEFAULT_TAGS))

    @classmethod
    def from_info(cls, name: str, entry: Any, where: str) -> tuple[DatasetSpec, list[str]]:
        """The spec of ``name`` and the problems of its registration (unknown keys, formats, columns)."""
        if not isinstance(entry, dict):
            return cls(name), [f"{where}: entry {name!r} must be an object, got {type(entry).__name__}"]
        problems = []
        formatting = entry.get("formatting", "alpaca")
        if formatting not in FORMATS:
            problems.append(f"{where}: {name}.formatting is {formatting!r}; LLaMA-Factory reads "
                            f"{', '.join(FORMATS)}")
        found = {}
        for key, known, default in (("columns", COLUMN_KEYS, DEFAULT_COLUMNS), ("tags", TAG_KEYS, DEFAULT_TAGS)):
            given = entry.get(key, default)
            if not isinstance(given, dict):
                problems.append(f"{where}: {name}.{key} must be an object")
                given = default
            unknown = sorted(set(given) - set(known))
            if unknown:
                problems.append(f"{where}: {name}.{key} has unknown keys {unknown} (known: {', '.join(known)})")
            found[key] = {k: v for k, v in given.items() if k in known and v}
        spec = cls(name, formatting if formatting in FORMATS else "alpaca", bool(entry.get("ranking", False)),
                   found["columns"], found["tags"])
        if spec.formatting != "alpaca":
            unset = [k for k in ("role_tag", "content_tag") if k not in spec.tags] + (
                ["columns.messages"] if "messages" not in spec.columns else [])
            if unset:
                problems.append(f"{where}: {name} ({spec.formatting}) sets no {', '.join(unset)}: LLaMA-Factory "
                                "cannot read its messages")
        return spec, problems

    def for_row(self, row: Any) -> DatasetSpec:
        """The spec a row is read with: this one, or for an unregistered file the one its keys suggest."""
        if self.formatting != AUTO:
            return self
        if isinstance(row, dict) and isinstance(row.get("messages"), list) and not isinstance(
                row.get("conversations"), list):
            first = row["messages"][0] if row["messages"] else None
            return _GUESSED["messages" if isinstance(first, dict) and "role" in first else "sharegpt_messages"]
        if isinstance(row, dict) and "conversations" in row:
            return _GUESSED["sharegpt"]
        return _GUESSED["alpaca"]


_GUESSED = {
    "alpaca": DatasetSpec(AUTO, "alpaca", columns={**DEFAULT_COLUMNS, "history": "history", "system": "system",
                                                   "tools": "tools"}),
    "sharegpt": DatasetSpec(AUTO, "sharegpt", columns={"messages": "conversations", "system": "system",
                                                       "tools": "tools"}),
    "sharegpt_messages": DatasetSpec(AUTO, "sharegpt", columns={"messages": "messages", "system": "system",
                                                                "tools": "tools"}),
    "messages": DatasetSpec(AUTO, "sharegpt", columns={"messages": "messages", "system": "system", "tools": "tools"},
                            tags=dict(OPENAI_TAGS)),
}


def load_dataset_info(path: str | Path) -> dict:
    """``dataset_info.json`` as a mapping; DataError naming the file when it is missing or not a JSON object."""
    p = Path(path)
    try:
        info = json.loads(p.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise DataError(f"{p}: dataset_info.json not found; the dataset registrations cannot be read") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{p}: dataset_info.json cannot be read: {exc}") from None
    if not isinstance(info, dict):
        raise DataError(f"{p}: dataset_info.json must be an object of dataset names, got {type(info).__name__}")
    return info


def registered_spec(name: str, recorded_format: str, info: dict | None, where: str,
                    info_problem: str = "") -> tuple[DatasetSpec, list[str]]:
    """The spec of a recorded dataset (an audit record's lineage entry) from ``info``, and its problems. Without
    ``info`` (none recorded, or unreadable: ``info_problem``): the recorded format with LLaMA-Factory's default
    columns, or with no format recorded either, each row's keys (``AUTO``)."""
    fmt = recorded_format or "alpaca"
    if info is None:
        spec = DatasetSpec(name, fmt if fmt in FORMATS else "alpaca") if recorded_format else DatasetSpec(name, AUTO)
        return spec, [info_problem] * bool(info_problem)
    if name not in info:
        return DatasetSpec(name, fmt if fmt in FORMATS else "alpaca"), [f"{where}: dataset {name!r} is not registered"]
    spec, problems = DatasetSpec.from_info(name, info[name], where)
    if recorded_format and recorded_format != spec.formatting:
        problems.append(f"{name}: recorded as {recorded_format} but dataset_info.json declares {spec.formatting}")
    return spec, problems


# -- reading ------------------------------------------------------------------------------------------------
def read_rows(path: str | Path, spec: DatasetSpec | None = None) -> Iterator[tuple[Path, int, Any, list[str]]]:
    """``(file, row, value, problems)`` for every row of a dataset path (a file or a folder of JSON/JSONL files),
    streamed: JSON arrays (BOM or not) and JSON Lines; a file holding one JSON object is a DataError. ``problems``
    is why the row does not parse, or (with ``spec``) why LLaMA-Factory cannot train on it; [] for a good row."""
    for f in data_files(path):
        for row, value, problem in iter_rows(f):
            yield f, row, value, [problem] if problem else (row_problems(value, spec) if spec else [])


def row_problems(row: Any, spec: DatasetSpec) -> list[str]:
    """Why ``row`` is not a valid example of ``spec`` (empty when it is), after LLaMA-Factory's converters."""
    if not isinstance(row, dict):
        return [f"is {_an(row)}, not an object"]
    spec = spec.for_row(row)
    problems = []
    system = spec.columns.get("system")
    if system and row.get(system) is not None and not isinstance(row.get(system), str):
        problems.append(f"{system!r} is {_an(row[system])}, not a string")
    if spec.formatting == "alpaca":
        return problems + _alpaca_problems(row, spec)
    problem = _turns(row, spec)[2]
    return problems + [problem] * bool(problem)


def _alpaca_problems(row: dict, spec: DatasetSpec) -> list[str]:
    c, problems = spec.columns, []
    prompt, query, response = row.get(c.get("prompt") or ""), row.get(c.get("query") or ""), row.get(
        c.get("response") or "")
    if _plain(prompt, query, response) and not spec.ranking and not c.get("history"):
        return problems  # the common case, checked fast
    for key in ("prompt", "query"):
        col = c.get(key)
        if col and row.get(col) is not None and not isinstance(row[col], str):
            problems.append(f"{col!r} is {_an(row[col])}, not a string")
    texts = [row.get(c[k]) for k in ("prompt", "query") if c.get(k)]
    if not any(isinstance(t, str) and t.strip() for t in texts):
        problems.append(f"no prompt: {c.get('prompt')!r} is {_state(row, c.get('prompt'))}")
    answers = [c.get("chosen"), c.get("rejected")] if spec.ranking else [c.get("response")]
    for col in answers:
        value = row.get(col) if col else None
        if not (isinstance(value, str) and value.strip()):
            problems.append(f"no reference answer: {col!r} is {_state(row, col)} (nothing to train on or score)")
    history = c.get("history")
    if history and row.get(history) is not None:
        turns = row[history]
        if not isinstance(turns, list) or not all(
                isinstance(t, list) and len(t) == 2 and all(isinstance(x, str) for x in t) for t in turns):
            problems.append(f"{history!r} must be a list of [prompt, response] string pairs")
    return problems


def _plain(prompt: Any, query: Any, response: Any) -> bool:
    """The common alpaca row, checked fast: a non-blank instruction and output, the input a string or absent."""
    return (type(prompt) is str and bool(prompt.strip()) and (query is None or type(query) is str)
            and type(response) is str and bool(response.strip()))


def _turns(row: dict, spec: DatasetSpec) -> tuple[str, list[tuple[str, str]], str]:
    """(system, turns as LLaMA-Factory's roles, problem) of a sharegpt/openai row; problem is "" when valid."""
    col, t = spec.columns.get("messages"), spec.tags
    msgs = row.get(col) if col else None
    if not isinstance(msgs, list) or not msgs:
        return "", [], (f"{col!r} is {_state(row, col, 'list')}: a {spec.formatting} row needs a non-empty list "
                        "of messages")
    role, content, openai = t.get("role_tag"), t.get("content_tag"), spec.formatting == "openai"
    for i, m in enumerate(msgs, 1):
        if not isinstance(m, dict) or not isinstance(m.get(role), str) or not (
                isinstance(m.get(content), str) or (openai and m.get("tool_calls"))):
            return "", [], f"message {i} needs string {role!r} and {content!r} fields"
    start = 1 if t.get("system_tag") and msgs[0][role] == t["system_tag"] else 0
    system = msgs[0][content] if start else _text(row, spec.columns.get("system"))
    turns, problem = (_openai_align if openai else _sharegpt_align)(msgs, start, t)
    if problem:
        return system, [], problem
    if not turns or (len(turns) % 2 != 0) != spec.ranking:
        return system, [], f"has {len(turns)} turns: LLaMA-Factory needs user/assistant pairs and skips this row"
    if not spec.ranking and not turns[-1][1].strip():
        return system, [], (f"the last {t.get('assistant_tag')!r} message is empty: the row has no answer to train "
                            "on or score")
    return system, turns, ""


def _role_map(t: dict) -> dict:
    names = {t.get("user_tag"): "user", t.get("assistant_tag"): "assistant", t.get("observation_tag"): "observation",
             t.get("function_tag"): "function", t.get("system_tag"): "system"}
    names.pop(None, None)
    return names


def _sharegpt_align(msgs: list, start: int, t: dict) -> tuple[list[tuple[str, str]], str]:
    role, content, names = t["role_tag"], t["content_tag"], _role_map(t)
    accept = ((t.get("user_tag"), t.get("observation_tag")), (t.get("assistant_tag"), t.get("function_tag")))
    turns = []
    for i, m in enumerate(msgs[start:]):
        if m[role] not in accept[i % 2]:
            expected = " or ".join(repr(x) for x in accept[i % 2] if x)
            return [], (f"message {i + start + 1} has role {m[role]!r} where {expected} is expected (turns "
                        "alternate user/assistant)")
        turns.append((names[m[role]], m[content]))
    return turns, ""


def _openai_align(msgs: list, start: int, t: dict) -> tuple[list[tuple[str, str]], str]:
    """LLaMA-Factory's OpenAIDatasetConverter: assistant tool calls become a function turn, consecutive tool
    results one observation turn (trailing ones are dropped, as there), then user/assistant must alternate."""
    role, content, names = t["role_tag"], t["content_tag"], _role_map(t)
    turns, pending = [], []
    for i, m in enumerate(msgs[start:], start + 1):
        r, c = m[role], m.get(content)
        if pending and r != t.get("observation_tag"):
            turns.append(("observation", TOOL_SEP.join(pending)))
            pending = []
        if r in (t.get("assistant_tag"), t.get("function_tag")) and m.get("tool_calls"):
            calls = m["tool_calls"]
            if not isinstance(calls, list) or not all(isinstance(x, dict) and "function" in x for x in calls):
                return [], f"message {i}: tool_calls must be a list of objects with a 'function'"
            turns.append(("function", json.dumps([x["function"] for x in calls], ensure_ascii=False)))
            continue
        if r == t.get("observation_tag"):
            pending.append(c)
            continue
        if r not in names:
            return [], f"message {i} has role {r!r}, which the tags of dataset_info.json do not name"
        turns.append((names[r], c))
    accept = (("user", "observation"), ("assistant", "function"))
    for i, (r, _) in enumerate(turns):
        if r not in accept[i % 2]:
            return [], f"turn {i + 1} is {r!r} where {' or '.join(accept[i % 2])} is expected (turns alternate)"
    return turns, ""


def row_reader(spec: DatasetSpec) -> Callable[[Any], tuple[list[str], str, str, str]]:
    """A function of a row: ``(row_problems(row, spec), system, prompt, answer)``, the texts "" for an invalid row
    (what the data scan reads of every row, in one call). A plain alpaca spec (instruction, input and output
    columns; no history, no ranking) reads a row whose columns hold strings in a few dict lookups (``_plain``, the
    fast check of ``_alpaca_problems``); any other row goes the long way (``row_problems``, ``prompt_text``,
    ``answer_text``)."""
    c = spec.columns
    plain = spec.formatting == "alpaca" and not spec.ranking and not c.get("history") and all(
        c.get(k) for k in ("prompt", "query", "response"))
    p, q, r, s = c.get("prompt"), c.get("query"), c.get("response"), c.get("system")

    def read(row: Any) -> tuple[list[str], str, str, str]:
        if plain and type(row) is dict:
            prompt, query, response, system = row.get(p), row.get(q), row.get(r), row.get(s) if s else None
            if _plain(prompt, query, response) and (system is None or type(system) is str):
                return [], system or "", "\n".join((prompt, query)) if query else prompt, response
        problems = row_problems(row, spec)
        if problems:
            return problems, "", "", ""
        row_spec = spec.for_row(row)
        column = row_spec.columns.get("system")
        return [], (row.get(column) if column else None) or "", prompt_text(row, row_spec), answer_text(row, row_spec)

    return read


# -- what a valid row says ----------------------------------------------------------------------------------
def messages(row: dict, spec: DatasetSpec) -> tuple[Messages, str]:
    """(the ``(role, content)`` turns up to the one to answer, the answer) of a valid row, as LLaMA-Factory's
    converter builds them: the system prompt first, then history or earlier turns; roles are system, user,
    assistant, tool (an observation) and function (a function call)."""
    spec = spec.for_row(row)
    c = spec.columns
    if spec.formatting == "alpaca":
        system = _text(row, c.get("system"))
        msgs = [("system", system)] if system else []
        for old_prompt, old_answer in (row.get(c["history"]) or []) if c.get("history") else []:
            msgs += [("user", old_prompt), ("assistant", old_answer)]
        msgs.append(("user", _alpaca_prompt(row, c)))
        return tuple(msgs), answer_text(row, spec)
    system, turns, _ = _turns(row, spec)
    if spec.formatting == "openai":
        system = _openai_system(system, tools_text(row, spec))
    msgs = [("system", system)] if system else []
    msgs += [(ROLE_NAMES.get(r, r), text) for r, text in turns[:-1]]
    return tuple(msgs), turns[-1][1] if turns else ""


def prompt_of(msgs: Messages) -> str:
    """The prompt text of a row's messages (every turn but the system prompt): what leakage and duplicates compare
    and what the quality gates' sample table shows."""
    return "\n".join(text for r, text in msgs if r != "system")


def prompt_text(row: dict, spec: DatasetSpec) -> str:
    """The prompt of a valid row: "instruction\\ninput" (after any history), or the turns before the last."""
    s = spec.for_row(row)
    if s.formatting == "alpaca" and not s.columns.get("history"):
        return _alpaca_prompt(row, s.columns)  # the common case, without building the messages
    return prompt_of(messages(row, s)[0])


def answer_text(row: dict, spec: DatasetSpec) -> str:
    """The answer of a valid row (alpaca: the response, or ``chosen`` when ranking; else the last turn)."""
    spec = spec.for_row(row)
    if spec.formatting != "alpaca":
        turns = _turns(row, spec)[1]
        return turns[-1][1] if turns else ""
    col = spec.columns.get("chosen") if spec.ranking else spec.columns.get("response")
    return str(row.get(col) or "") if col else ""


def tools_text(row: dict, spec: DatasetSpec) -> str:
    """The row's tool definitions (its registered ``tools`` column) as text; "" when none."""
    col = spec.for_row(row).columns.get("tools")
    tools = row.get(col) if col else None
    if not tools:
        return ""
    return tools if isinstance(tools, str) else json.dumps(tools, ensure_ascii=False)


def _alpaca_prompt(row: dict, c: dict) -> str:
    """The set and non-empty of instruction and input, joined by a newline (without a generator: the data scan
    calls this for every row)."""
    prompt, query = c.get("prompt"), c.get("query")
    first, second = row.get(prompt) if prompt else None, row.get(query) if query else None
    if first and second:
        return "\n".join((first, second))
    return "\n".join((first or second,)) if first or second else ""


def _openai_system(system: str, tools: str) -> str:
    if tools:
        return system + "\n" if system else ""
    if not system:
        return SHORT_SYSTEM
    return system if "detailed thinking on" in system or SHORT_SYSTEM in system else f"{system}\n{SHORT_SYSTEM}"


def _text(row: dict, col: str | None) -> str:
    value = row.get(col) if col else None
    return value if isinstance(value, str) else ""


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
