"""Predictions on the held-out test set and the quality gates on them: test-set loading (the run's recorded test
file or ``--ftgate-test-set``), the on-disk prediction cache, greedy prediction through an engine, and G4
(baseline), G5 (task quality), ``adapter_applied`` and ``determinism`` as pure functions returning ``Check``.

No pytest; no engine internals (engines live in ``serve/``); metrics come from ``metrics.py``. The cache key holds
the engine kind and settings, the base model's and the adapter's sha256, the generation parameters and the
prompt, so a re-run is free and a changed adapter never reuses stale outputs.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from . import metrics, rows
from .config import Quality
from .errors import DataError, IntegrityError
from .record import AuditRecord, LoadedRecord
from .serve.base import Engine, GenerationError, GenParams, Prompt
from .serve.cache import PredictionCache, file_sha256, weights_digest  # noqa: F401 (re-exported)

CHAT_ROLES = {"function": "assistant"}  # a saved chat template knows no function-call turn: it is the assistant's


# -- the test set -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sample:
    index: int  # position among the file's rows (0-based; rows left out keep theirs)
    messages: tuple[tuple[str, str], ...]  # (role, content) up to the turn to be answered (rows.messages)
    reference: str
    tools: str = ""  # the row's tool definitions (LLaMA-Factory's `tools` column), "" when none

    @property
    def prompt(self) -> str:
        """The row's prompt text, the same the leakage and duplicates gates compare (``rows.prompt_of``)."""
        return rows.prompt_of(self.messages)


@dataclass(frozen=True)
class HeldOutSet:
    """The held-out test set the quality gates score: its samples, the rows left out, where it came from."""

    __test__ = False  # not a pytest test class when a suite imports it

    path: str
    samples: tuple[Sample, ...]
    skipped: tuple[str, ...] = ()  # "row 3: no reference answer: ..." (only with quality.bad_rows: warn)
    source: str = ""  # where the path came from
    sha256: str = ""

    @property
    def problems(self) -> list[str]:
        """The warning the quality gates carry when rows were left out (quality.bad_rows: warn); [] when none."""
        if not self.skipped:
            return []
        return [f"test set {self.path}: {len(self.skipped)} row(s) left out, not scored (quality.bad_rows: warn): "
                f"{_listed(self.skipped)}"]


TestSet = HeldOutSet  # the name before issue 14

FIX_ROWS = "give every row an instruction (or conversations) and an output"


def load_test_set(path: str | Path, max_samples: int = 0, source: str = "", sha256: str = "",
                  bad_rows: str = "error", spec: rows.DatasetSpec | None = None) -> HeldOutSet:
    """The rows of a test file read with the row model (``rows``): ``spec`` is the dataset's registration in
    dataset_info.json; without one (a ``--ftgate-test-set`` file) each row's keys say its format. DataError (one
    line naming the file, the rows and the fix) when the file cannot be read, is not UTF-8, is not rows, holds no
    rows, or has rows LLaMA-Factory could not train on; with ``bad_rows="warn"`` such rows are left out and named
    in ``HeldOutSet.skipped`` / ``problems`` instead. Rows are numbered from 1 as in the data gates."""
    p = Path(path)
    name = f"test set {str(p)!r}"
    where = f" (from {source})" if source else ""
    _check_text(p, name, where)
    spec = spec or rows.DatasetSpec(p.stem, rows.AUTO)
    good, bad, skipped = [], [], []
    try:
        for _, row, value, problems in rows.read_rows(p, spec):
            if value is None and problems and problems[0].startswith("is not valid JSON"):
                bad.append(f"row {row}: {problems[0]}")
            elif problems:
                skipped.append(f"row {row}: {'; '.join(problems)}")
            else:
                good.append((len(good) + len(skipped), value))
    except DataError as exc:  # a broken JSON array (its later rows cannot be found), or one object
        raise DataError(f"test set {exc}; fix the JSON (a list of objects, or one object per line)") from None
    if bad:
        raise DataError(f"{name}: {len(bad)} of {len(bad) + len(good) + len(skipped)} lines are not valid JSON: "
                        f"{_listed(bad)}; fix them (one JSON object per line)")
    if not good and not skipped:
        raise DataError(f"{name}{where} has no rows: the quality gates need held-out examples (alpaca: "
                        "instruction/input/output; sharegpt: conversations)")
    if skipped and (bad_rows != "warn" or not good):
        n = len(good) + len(skipped)
        fix = FIX_ROWS + (", or set quality.bad_rows: warn in ftgate.yaml to score the others" if good else "")
        raise DataError(f"{name}: {len(skipped)} of {n} rows cannot be scored: {_listed(skipped)}; {fix}")
    samples = [Sample(i, *rows.messages(v, spec), rows.tools_text(v, spec)) for i, v in good]
    if max_samples:
        samples = samples[:max_samples]
    return HeldOutSet(str(p), tuple(samples), tuple(skipped), source, sha256 or file_sha256(p))


def _check_text(p: Path, name: str, where: str) -> None:
    """DataError when the file cannot be read, is not UTF-8 (naming the byte and line) or is empty."""
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise DataError(f"{name}{where} cannot be read ({exc.strerror or exc}); pass a readable file to "
                        "--ftgate-test-set") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"{name} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}, line "
                        f"{line}); save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None
    if not text.lstrip("\ufeff").strip():
        raise DataError(f"{name}{where} is empty; it must hold a JSON list of alpaca/sharegpt rows or JSON lines")


def _listed(items: Sequence[str], n: int = 8) -> str:
    more = f"; ... and {len(items) - n} more" if len(items) > n else ""
    return "; ".join(items[:n]) + more


def recorded_test_file(audit) -> dict | None:
    """The audit record's dataset entry with split "test" (seed 002 shape), or None."""
    from .record import AuditRecord

    return AuditRecord.of(audit).test_dataset


def resolve_test_set(explicit: str, audit: dict | None, max_samples: int = 0,
                     bad_rows: str = "error") -> HeldOutSet:
    """``--ftgate-test-set`` / ``quality.test_set`` if given, else the run's recorded test file (hash-checked), read
    with its registration in the run's dataset_info.json (as training and the data gates read it)."""
    if explicit:
        return load_test_set(explicit, max_samples, source="--ftgate-test-set / quality.test_set", bad_rows=bad_rows)
    entry = recorded_test_file(audit)
    if entry is None:
        why = "has no audit record" if audit is None else "records no dataset with split 'test'"
        raise DataError(f"the run {why}, so there is no held-out test set to score; pass --ftgate-test-set PATH "
                        "(alpaca JSON/JSONL) or set quality.test_set in ftgate.yaml")
    path = Path(entry.get("path", ""))
    if not path.is_file():
        raise DataError(f"the run's recorded test file {str(path)!r} does not exist on this machine; copy it there "
                        "or pass --ftgate-test-set PATH")
    actual, recorded = file_sha256(path), str(entry.get("sha256", ""))
    if recorded and actual != recorded:
        raise IntegrityError(f"test file {str(path)!r} changed since training: sha256 is {actual}, the audit record "
                             f"says {recorded}; restore it, or pass --ftgate-test-set to score another file knowingly")
    return load_test_set(path, max_samples, source="the run's audit record (split 'test')", sha256=actual,
                         bad_rows=bad_rows, spec=recorded_spec(audit, entry))


def recorded_spec(audit: dict | None, entry: dict) -> rows.DatasetSpec:
    """The registration of the recorded test dataset: its ``name`` in the dataset_info.json the audit record names
    (``input_artifacts.dataset_info.path``), as ``data.from_lineage`` reads it for the data gates; the recorded
    format with LLaMA-Factory's default columns when that file cannot be read (the schema gate says why)."""
    from .record import AuditRecord

    where = str(AuditRecord.of(audit).dataset_info_path or "")
    info, problem = None, ""
    if where:
        try:
            info = rows.load_dataset_info(where)
        except DataError as exc:
            problem = str(exc)
    return rows.registered_spec(str(entry.get("name", "?")), str(entry.get("format") or ""), info, where, problem)[0]


def prompts_for(test_set: HeldOutSet, chat_template: str = "", raw: bool = False, template_args: dict | None = None,
                tokenizer: str = "", cache: PredictionCache | None = None) -> list[Prompt]:
    """One prompt per sample. With ``template_args`` (the run's LLaMA-Factory ``template`` and its options) each
    prompt is LLaMA-Factory's own encoding of the row (system prompt and tools included), carried as a chat
    template that renders exactly that text; else ``chat_template`` (the one saved with the adapter) renders it.
    Encoded prompts are remembered in ``cache`` by the digest of the tokenizer's files, the template arguments, the
    installed LLaMA-Factory and transformers and the row: a re-gate imports neither."""
    if template_args and not raw:
        texts = _encoded(test_set, template_args, tokenizer, cache)
        return [Prompt(_chat(s.messages), chat_template=texts[i]) for i, s in enumerate(test_set.samples)]
    return [Prompt(_chat(s.messages), chat_template=chat_template, raw=raw) for s in test_set.samples]


def _encoded(test_set: HeldOutSet, args: dict, tokenizer: str, cache: PredictionCache | None) -> list[str]:
    from importlib import metadata

    from . import hashing, lf_template

    versions = {d: metadata.version(d) for d in ("llamafactory", "transformers")}
    base = {"tokenizer": hashing.tree_digest(tokenizer, hashing.HashMemo()), "args": args, **versions}
    keys = [hashing.digest_json({**base, "messages": s.messages, "tools": s.tools}) for s in test_set.samples]
    found = cache.get_prompts(keys) if cache else {}
    fresh = {k: lf_template.literal_template(lf_template.prompt_text(tokenizer, args, s.messages, s.tools))
             for k, s in zip(keys, test_set.samples) if k not in found}
    if cache and fresh:
        cache.put_prompts(fresh)
    return [found.get(k) or fresh[k] for k in keys]


def _chat(messages: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple((CHAT_ROLES.get(r, r), c) for r, c in messages)


def chat_template_of(directory: str | Path) -> str:
    """The chat template saved beside an adapter or model (LLaMA-Factory saves its template there), or ""."""
    d = Path(directory)
    jinja = d / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    try:
        value = json.loads((d / "tokenizer_config.json").read_text()).get("chat_template")
    except (OSError, ValueError):
        return ""
    return value if isinstance(value, str) else ""


# -- where a run's inputs are: audit record, base model, the production adapter ------------------------------------
def base_model_path(audit: "AuditRecord | dict | None", params: dict, adapter_dir: str | Path | None, override: str = "",
                    required: bool = False) -> str:
    """The base model: ``quality.base_model`` when set, else the audit record's path, else the run param
    ``model_name_or_path``, else the adapter's ``base_model_name_or_path``; the first that is a local directory wins
    (else the first named, for servers). ``required`` (an engine that loads the weights here): a named local path
    that is gone is a DataError saying where the path came from and how to point at the model's new place."""
    if override:
        return str(Path(override).resolve())
    named = [(AuditRecord.of(audit).base_model_path, "the run's audit record, input_artifacts.base_model.path"),
             (params.get("model_name_or_path", ""), "the run's param model_name_or_path")]
    if adapter_dir and (Path(adapter_dir) / "adapter_config.json").is_file():
        named.append((json.loads((Path(adapter_dir) / "adapter_config.json").read_text()).get(
            "base_model_name_or_path") or "", "the adapter's adapter_config.json, base_model_name_or_path"))
    named = [(str(n), where) for n, where in named if n]
    for n, _ in named:
        if (Path(n) / "config.json").is_file():
            return str(Path(n).resolve())
    if named and required and Path(named[0][0]).expanduser().is_absolute():
        path, where = named[0]
        gone = "does not exist" if not Path(path).exists() else "has no config.json"
        raise DataError(f"the run's base model {path!r} (from {where}) {gone} on this machine (moved or not copied "
                        "here); set quality.base_model: /new/path/of/the/base/model in ftgate.yaml, or put the model "
                        "back at that path")
    if named:
        return named[0][0]
    raise DataError("the run names no base model (no audit record, no model_name_or_path param, no "
                    "base_model_name_or_path in adapter_config.json): set quality.base_model in ftgate.yaml to the "
                    "local base model directory")


def production_adapter(store, model_name: str, alias: str, dst: str | Path, run_id: str) -> tuple[Path | None, dict,
                                                                                                    str]:
    """(local adapter dir, version info, note) of the registry version holding ``alias``; None when there is none."""
    if not model_name:
        return None, {}, ("no registered model configured (quality.registered_model or --ftgate-promote): "
                          "compared with the base model only")
    from mlflow.exceptions import MlflowException

    try:
        mv = store.client.get_model_version_by_alias(model_name, alias)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            raise
        return None, {}, (f"registered model {model_name!r} has no version with alias {alias!r}: compared with the "
                          "base model only")
    info = {"name": model_name, "version": mv.version, "alias": alias, "run_id": mv.run_id, "source": mv.source}
    if mv.run_id and mv.run_id == run_id:
        return None, info, f"this run is {model_name} v{mv.version} ({alias}) itself: compared with the base model"
    from mlflow.artifacts import download_artifacts

    try:
        local = download_artifacts(artifact_uri=mv.source, dst_path=str(dst), tracking_uri=store.tracking_uri)
    except Exception as exc:
        raise DataError(f"{model_name} v{mv.version} (alias {alias!r}) points at {mv.source!r}, which cannot be "
                        f"downloaded: {type(exc).__name__}: {str(exc)[:200]}") from None
    return Path(local), info, f"{alias} = {model_name} v{mv.version} (run {mv.run_id})"


# -- prediction -------------------------------------------------------------------------------------------------
@dataclass
class Answers:
    """One model's answers to the test set, and their scores."""

    label: str  # candidate | base | production
    model: str | None  # the engine's model name (None = the base weights)
    outputs: list[str]
    scores: metrics.Scores
    cached: int = 0  # answers taken from the cache
    seconds: float = 0.0  # generation time of the rest
    info: dict = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)  # their prediction-cache keys
    problems: list[str] = field(default_factory=list)  # test-set warnings the quality gates show (TestSet.problems)


def cache_keys(engine: Engine, model: str | None, prompts: Sequence[Prompt], params: GenParams,
               weights: dict) -> list[str]:
    identity = {**engine.cache_identity(model), **weights}
    return [PredictionCache.key(identity, p, params) for p in prompts]


def predict(engine: Engine, model: str | None, prompts: Sequence[Prompt], params: GenParams,
            weights: dict, cache: PredictionCache | None = None, desc: str = "") -> tuple[list[str], int, float]:
    """Greedy answers for every prompt, from the cache where the key matches: (outputs, cached, seconds)."""
    keys = cache_keys(engine, model, prompts, params, weights)
    found = cache.get_many(keys) if cache else {}
    todo = [i for i, k in enumerate(keys) if k not in found]
    fresh: dict[str, str] = {}
    started = time.perf_counter()
    if todo:
        bar = _bar(len(todo), desc)
        try:
            outs = engine.generate([prompts[i] for i in todo], model, params, progress=bar.update)
        except GenerationError as exc:  # keep what arrived: a re-run asks only for the rest
            if cache:
                cache.put_many({keys[i]: o for i, o in zip(todo, exc.outputs) if o is not None})
            raise
        finally:
            bar.close()
        fresh = {keys[i]: o for i, o in zip(todo, outs)}
        if cache:
            cache.put_many(fresh)
    seconds = time.perf_counter() - started if todo else 0.0
    return [found.get(k, fresh.get(k, "")) for k in keys], len(keys) - len(todo), seconds


def _bar(total: int, desc: str):
    """A progress bar on the terminal itself (pytest captures sys.stderr), shown when that is a TTY."""
    from tqdm.auto import tqdm

    out = sys.__stderr__ or sys.stderr
    show = os.environ.get("FTGATE_PROGRESS", "") == "1" or (hasattr(out, "isatty") and out.isatty())
    return tqdm(total=total, desc=desc or "ftgate predictions", unit="answer", file=out, disable=not show,
                leave=False)


def adapter_name(run_id: str) -> str:
    """The name a run's adapter is served under (one engine serves the adapters of several runs)."""
    return f"run-{run_id}"


@dataclass
class Scorer:
    """Predicts and scores any model of one run on its test set with the same prompts and settings."""

    test_set: TestSet
    prompts: list[Prompt]
    params: GenParams
    q: Quality
    cache: PredictionCache | None = None

    @classmethod
    def create(cls, test_set: TestSet, adapter_dir: str | Path | None, base_model: str, q: Quality, seed: int = 0,
               cache: PredictionCache | None = None, training_config: dict | None = None) -> "Scorer":
        """Prompts encoded as LLaMA-Factory encoded them in training (the run's ``template`` in
        ``training_config``, LLaMA-Factory's own template code) when it is installed; else rendered with the chat
        template saved with the adapter, else the base model's; ``quality.prompt_format: raw`` sends plain text."""
        from . import lf_template

        raw = q.prompt_format == "raw"
        params = GenParams(max_new_tokens=q.max_new_tokens, temperature=0.0, seed=seed)
        args = lf_template.template_args(training_config)
        if args and not raw and lf_template.available():
            tokenizer = lf_template.tokenizer_dir(adapter_dir, base_model)
            return cls(test_set, prompts_for(test_set, template_args=args, tokenizer=tokenizer, cache=cache), params, q,
                       cache)
        template = "" if raw else (chat_template_of(adapter_dir) if adapter_dir else "") or chat_template_of(base_model)
        return cls(test_set, prompts_for(test_set, template, raw), params, q, cache)

    def weights(self, base_model: str, adapter_dir: str | Path | None) -> dict:
        return {"base_sha256": weights_digest(base_model), "adapter_sha256": weights_digest(adapter_dir)}

    def answers(self, label: str, engine: Engine, model: str | None, base_model: str,
                adapter_dir: str | Path | None) -> Answers:
        """Predict (cached) and score one model (extra evaluate modules included)."""
        weights = self.weights(base_model, adapter_dir)
        outputs, cached, seconds = predict(engine, model, self.prompts, self.params, weights, self.cache,
                                           desc=f"{label} answers")
        refs = [s.reference for s in self.test_set.samples]
        scores = self.score(outputs, refs)
        for name in self.q.extra_metrics:
            scores.extra.update(metrics.evaluate_module(name, outputs, refs))
        info = {**weights, "engine": engine.kind, "cached": cached, "generation_s": round(seconds, 3),
                "n": len(outputs)}
        answers = Answers(label, model, outputs, scores, cached, seconds, info)
        answers.keys = cache_keys(engine, model, self.prompts, self.params, weights)
        answers.problems = self.test_set.problems
        return answers

    def score(self, outputs: list[str], refs: list[str]) -> metrics.Scores:
        """The built-in metrics of these answers, remembered in the cache by the digest of the answers, the
        references, the settings and the metric libraries' versions (a re-gate imports neither rouge-score nor
        sacrebleu)."""
        from importlib import metadata

        from . import hashing

        key = hashing.digest_json({"scores": 1, "stemmer": self.q.rouge_stemmer, "outputs": outputs, "refs": refs,
                                   **{d: metadata.version(d) for d in ("rouge-score", "sacrebleu")}})
        found = self.cache.get_scores(key) if self.cache else None
        if found is not None:
            return metrics.Scores.from_dict(found)
        scores = metrics.score(outputs, refs, use_stemmer=self.q.rouge_stemmer)
        if self.cache:
            self.cache.put_scores(key, scores.to_dict())
        return scores

    def forget(self, answers: Answers) -> None:
        """Drop these answers from the cache (an engine that failed a gate must not hand them back once fixed)."""
        if self.cache is not None and answers.keys:
            self.cache.delete(answers.keys)

    def rerun(self, engine: Engine, answers: "Answers | str | None", k: int) -> tuple[list[int], list[str]]:
        """A second greedy pass over ``k`` prompts spread over the test set: (positions, answers). Generated by the
        engine once and then cached like any prediction, under keys of its own (``"pass": 2``), so a re-gate of an
        unchanged run compares the same two passes without loading the model. ``answers``: the first pass (its
        weights' digests key the second); a bare model name (older suites) is answered uncached."""
        import random

        n = len(self.prompts)
        picked = sorted(random.Random(self.q.seed).sample(range(n), min(k, n)))
        prompts = [self.prompts[i] for i in picked]
        if not isinstance(answers, Answers):
            return picked, engine.generate(prompts, answers, self.params)
        weights = {k_: answers.info[k_] for k_ in ("base_sha256", "adapter_sha256")}
        outputs, _, _ = predict(engine, answers.model, prompts, self.params, {**weights, "pass": 2}, self.cache,
                                desc=f"{answers.label} second pass")
        return picked, outputs


@dataclass
class Baselines:
    """What G4 compares the candidate with: the base model always, the registry's production version if any."""

    answers: list[Answers]
    notes: list[str] = field(default_factory=list)
    production: dict = field(default_factory=dict)

    @property
    def base(self) -> Answers:
        return next(a for a in self.answers if a.label == "base")


@dataclass(frozen=True)
class ProductionModel:
    """The registry's ``alias`` version, attached to an engine: its name there, its base model, its adapter."""

    engine: Engine
    name: str
    base_model: str
    adapter_dir: Path
    info: dict


def production_model(engine: Engine, pool, base_model: str, store, run_id: str, model_name: str, alias: str,
                     dst: str | Path, audit_record: Callable[[str], LoadedRecord]
                     ) -> tuple[ProductionModel | None, dict, str]:
    """(the ``alias`` version served next to the candidate or None, its version info, the note the gates show).

    ``audit_record(run_id)`` is the session's one read of a run's record (``FtgateSession.audit_record``): the
    production version's base model is named there; a record that cannot be read leaves the run's params and the
    adapter's config to name it (its ``problem`` is not this gate's to report). A production version on another
    base model gets that base model's engine from ``pool``."""
    path, info, note = production_adapter(store, model_name, alias, Path(dst) / "adapter", run_id)
    if path is None:
        return None, info, note
    prod_run = info.get("run_id") or ""
    audit = audit_record(prod_run).view if prod_run else None
    params = dict(store.client.get_run(prod_run).data.params) if prod_run else {}
    prod_base = base_model_path(audit, params, path)
    name = f"{alias}-{model_name}-v{info['version']}"
    prod_engine = engine if prod_base == base_model else pool.get(prod_base)
    prod_engine.add_adapter(name, path)
    return ProductionModel(prod_engine, name, prod_base, path, info), info, note


def baselines(scorer: Scorer, engine: Engine, base_model: str,
              production: tuple[ProductionModel | None, dict, str]) -> Baselines:
    """The base model's answers and, when the registry has a ``production`` version (``production_model``'s
    answer), that version's."""
    prod, info, note = production
    out = Baselines([scorer.answers("base", engine, None, base_model, None)], [note], info)
    if prod is not None:
        out.answers.append(scorer.answers(prod.info["alias"], prod.engine, prod.name, prod.base_model,
                                          prod.adapter_dir))
    return out


# -- the per-sample table ------------------------------------------------------------------------------------------
def sample_table(test_set: TestSet, candidate: Answers, baselines: Sequence[Answers] = (), limit: int = 50,
                 metric_names: Sequence[str] = ("exact_match", "f1", "rougeL")) -> list[dict]:
    """Rows of prompt, reference, the candidate's (and baselines') answers and per-sample scores."""
    rows = []
    for i, s in enumerate(test_set.samples[: limit or None]):
        row = {"row": s.index, "prompt": s.prompt, "reference": s.reference, "prediction": candidate.outputs[i],
               "scores": {m: round(float(candidate.scores.per_sample[m][i]), 4) for m in metric_names
                          if m in candidate.scores.per_sample}}
        for b in baselines:
            row[b.label] = b.outputs[i]
        rows.append(row)
    return rows


# The gates that lived here moved to pytest_ftgate.gates.quality: the old names work for one release.
_MOVED = ('task_quality', 'compare', 'samples_to_decide', 'baseline_gate', 'adapter_applied', 'determinism', 'G4_LABEL', 'G5_LABEL', 'APPLIED_LABEL', 'DETERMINISM_LABEL')


def __getattr__(name: str):
    if name in _MOVED:
        from ._compat import forward

        return forward(__name__, ("pytest_ftgate.gates.quality",))(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
