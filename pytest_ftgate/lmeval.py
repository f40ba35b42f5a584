"""lm-evaluation-harness runs of an adapter and of its base model, their result cache, and the pure gate comparing
them (``bench:<task>``). No pytest; lm_eval, torch and mlflow are imported inside the functions that need them.

Backends: ``hf`` (transformers + ``peft=<adapter>``, CPU or one GPU), ``vllm`` (lm-eval's own vLLM backend with
``lora_local_path`` and ``max_lora_rank`` from ``adapter_config.json``, run as a child process in the vLLM
environment, which pytest's cannot import) and ``local-completions`` (an OpenAI-compatible server whose
``/v1/completions`` returns prompt logprobs with ``echo``: ``engine.base_url``, or, with the ``vllm`` engine and
``backend: auto``, the session's own vLLM server that also answers the quality gates). Tasks come from ``benchmarks.include_path``
(indexed without lm-eval's ~14,700 built-in tasks) and, only when a name is not found there, from the built-ins.
Results are cached on disk keyed by the weights' digests, the task's config and data digests and the settings.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .config import BenchTask, Engine, FtgateConfig
from . import hashing
from .fileio import write_atomic
from .lmeval_tasks import TaskCatalog, task_config, task_fingerprint, top_level  # noqa: F401 (the runner's tasks)
from .errors import BenchmarkError, ConfigError

BACKENDS = ("auto", "hf", "vllm", "local-completions")
CACHE_SCHEMA = 1


# -- settings and the two sides ------------------------------------------------------------------------
@dataclass(frozen=True)
class Settings:
    """How lm-eval is run: the resolved backend, and ``engine`` of ftgate.yaml for vllm and local-completions."""

    backend: str = "hf"  # hf | vllm | local-completions
    device: str = "cpu"
    dtype: str = "float32"
    batch_size: int = 16
    bootstrap_iters: int = 1000
    trust_remote_code: bool = False
    engine: Engine = field(default_factory=Engine)  # local-completions: base_url, *_model_name(s), base_model_url
    session_server: bool = False  # local-completions against the engine pool's vLLM server (engine kind vllm)

    def key(self) -> dict:
        """What changes the numbers (part of every cache key; the batch size does not)."""
        out = {"backend": self.backend, "device": self.device, "dtype": self.dtype, "seed": self.engine.seed,
               "bootstrap_iters": self.bootstrap_iters}
        return {**out, "served_by": "vllm"} if self.session_server else out


@dataclass(frozen=True)
class Side:
    """One model evaluated: the base model alone, or the base model with the run's adapter."""

    label: str  # "candidate" | "base"
    base_model: str
    base_sha256: str
    adapter: str = ""
    adapter_sha256: str = ""

    def key(self) -> dict:
        return {"base_model_sha256": self.base_sha256, "adapter_sha256": self.adapter_sha256 or None}


def completions_url(url: str) -> str:
    """lm-eval's ``base_url`` is the full ``/v1/completions`` URL; accept a server root or ``.../v1`` too."""
    u = url.rstrip("/")
    if u.endswith("/completions"):
        return u
    return u + ("/completions" if u.endswith("/v1") else "/v1/completions")


def settings_from_config(cfg: FtgateConfig, engine_kind: str = "", cuda: bool | None = None) -> Settings:
    """The settings of ``ftgate.yaml`` (``benchmarks`` and ``engine``); ``engine_kind`` is ``--ftgate-engine``."""
    b, e = cfg.benchmarks, cfg.engine  # their values were validated when ftgate.yaml was loaded (config.py)
    where = cfg.source or "ftgate.yaml"
    backend = b.backend
    session_server = backend == "auto" and (engine_kind or e.kind) == "vllm"
    if backend == "auto":
        from .serve import lmeval_backend

        backend = lmeval_backend(engine_kind or e.kind)
    if backend == "local-completions" and not e.base_url and not session_server:
        raise ConfigError(f"{where}: benchmarks.backend local-completions needs engine.base_url (the server's root "
                          "URL, e.g. http://127.0.0.1:8000/v1) and engine.adapter_model_name / base_model_name")
    if cuda is None and backend in ("vllm", "local-completions"):
        from .serve.vllm import on_cpu

        cuda = not on_cpu()
    if cuda is None:
        from .serve.base import torch_sees_cuda

        cuda = backend == "hf" and torch_sees_cuda()
    dtype = e.dtype if e.dtype != "auto" else ("bfloat16" if cuda else "float32")
    return Settings(backend=backend, device="cuda" if cuda else "cpu", dtype=dtype, batch_size=b.batch_size,
                    bootstrap_iters=b.bootstrap_iters, trust_remote_code=cfg.audit.trust_remote_code, engine=e,
                    session_server=session_server)


def vllm_lora_rank(adapter_dir: str | Path) -> int:
    """``max_lora_rank`` for lm-eval's vllm backend: the adapter's largest rank rounded up to a value vLLM accepts,
    by the rules the vllm engine applies (``lora.py``); BenchmarkError for an adapter vLLM cannot serve."""
    from . import lora
    from .errors import EngineError

    try:
        why = lora.vllm_unservable(adapter_dir)
        if not why:
            return lora.vllm_max_lora_rank([lora.rank(adapter_dir)])
    except EngineError as exc:
        why = str(exc)
    raise BenchmarkError(f"{why}: lm-eval's vllm backend cannot load it. Merge it (llamafactory-cli export) and "
                         "benchmark the merged model, or set benchmarks.backend: hf")


def model_args(s: Settings, side: Side, served: tuple[str, str] | None = None) -> tuple[str, dict]:
    """lm-eval's model type and ``model_args`` for one side; ``served`` = (URL, model name) of the session's vLLM."""
    e = s.engine
    if s.backend == "hf":
        args = {"pretrained": side.base_model, "dtype": s.dtype, "device": s.device,
                "trust_remote_code": s.trust_remote_code}
        return "hf", {**args, "peft": side.adapter} if side.adapter else args
    if s.backend == "vllm":
        args = {"pretrained": side.base_model, "dtype": s.dtype, "tensor_parallel_size": e.tensor_parallel_size,
                "seed": e.seed, "trust_remote_code": s.trust_remote_code}
        if side.adapter:
            args.update(lora_local_path=side.adapter, max_lora_rank=vllm_lora_rank(side.adapter))
        if s.device == "cpu":  # what vLLM needs on CPU (see serve/vllm.py)
            from .serve.vllm import VLLMEngine

            args["max_model_len"] = VLLMEngine(side.base_model, e).max_model_len()
        return "vllm", args
    if served is not None:
        # One prompt per request, one request at a time: vLLM 0.32 (CPU) crashes its engine when prompt logprobs
        # (echo) of several LoRA prompts are computed in one step (einsum size mismatch in the LoRA logits path).
        url, name = served
        return "local-completions", {
            "model": name, "base_url": completions_url(url), "tokenizer_backend": "huggingface",
            "tokenizer": side.base_model, "num_concurrent": 1, "max_retries": e.retries,
            "timeout": int(e.timeout_s), "seed": e.seed}
    name = e.adapter_model_name if side.adapter else e.base_model_name
    if not name:
        which = "adapter_model_name" if side.adapter else "base_model_name"
        raise BenchmarkError(f"local-completions: engine.{which} is empty: name the model the server serves for "
                             f"the {side.label}")
    url = e.base_url if side.adapter else e.base_model_url or e.base_url
    args = {"model": name, "base_url": completions_url(url),
            # tokenizer_backend=auto would ask the hub; the base model's own tokenizer is local
            "tokenizer_backend": "huggingface", "tokenizer": side.base_model, "num_concurrent": e.concurrency,
            "max_retries": e.retries, "timeout": int(e.timeout_s), "seed": e.seed}
    if e.api_key_env and os.environ.get(e.api_key_env):
        args["auth_token"] = os.environ[e.api_key_env]
    return "local-completions", args


# -- results -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MetricValue:
    name: str  # lm-eval's key, e.g. "acc,none"
    value: float
    stderr: float | None  # None: lm-eval reported N/A
    higher_is_better: bool = True


@dataclass(frozen=True)
class TaskResult:
    """One side's lm-eval result for one configured task, as stored in the cache."""

    task: str
    side: str
    data: dict  # results, versions, n-shot, higher_is_better, n-samples, configs, config, git_hash, ftgate
    samples_path: str = ""  # JSONL of lm-eval's per-sample log
    cached: bool = False

    @property
    def scores(self) -> dict:
        return self.data["results"].get(self.task, {})

    def metric_names(self) -> list[str]:
        return [k for k, v in self.scores.items() if "," in k and "_stderr," not in k and _number(v) is not None]

    def metric(self, name: str = "") -> MetricValue:
        """The named metric ("acc" or "acc,none"); the task's first metric when ``name`` is empty."""
        names = self.metric_names()
        if not names:
            raise BenchmarkError(f"lm-eval reported no metric for {self.task!r} on the {self.side}: "
                                 f"{sorted(self.scores)}")
        key = names[0] if not name else name if name in names else next(
            (n for n in names if n.split(",")[0] == name), "")
        if not key:
            raise BenchmarkError(f"task {self.task!r} has no metric {name!r}; it reports {', '.join(names)} "
                                 "(set benchmarks.tasks[].metric to one of them)")
        base, _, filt = key.partition(",")
        hib = self.data.get("higher_is_better", {}).get(self.task, {}).get(base)
        if hib is None:  # a group's metrics: look the direction up in any of its tasks
            hib = next((m[base] for m in self.data.get("higher_is_better", {}).values() if base in m), True)
        return MetricValue(key, float(self.scores[key]), _number(self.scores.get(f"{base}_stderr,{filt}")),
                           bool(hib))


def _number(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


class ResultCache:
    """lm-eval results on disk: ``<dir>/<key>.json`` plus ``<key>.samples.jsonl``, written atomically."""

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)

    def get(self, key: str) -> tuple[dict, str] | None:
        path = self.dir / f"{key}.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        samples = self.dir / f"{key}.samples.jsonl"
        return (data, str(samples)) if data.get("ftgate", {}).get("cache_key") == key and samples.is_file() else None

    def put(self, key: str, data: dict, samples_path: str) -> str:
        self.dir.mkdir(parents=True, exist_ok=True)
        dst = self.dir / f"{key}.samples.jsonl"
        write_atomic(dst, Path(samples_path).read_bytes())
        write_atomic(self.dir / f"{key}.json", json.dumps(data, indent=1, default=str))
        return str(dst)


# -- running ---------------------------------------------------------------------------------------------------
class BenchRunner:
    """Evaluates (task, side) pairs: from the cache, else with lm-eval on a model kept loaded for the next task."""

    def __init__(self, settings: Settings, catalog: TaskCatalog, cache: ResultCache | None, work_dir: str | Path,
                 echo: Callable[[str], None] = print, git_dir: str | Path | None = None):
        self.settings = settings
        self.catalog = catalog
        self.cache = cache
        self.work_dir = Path(work_dir)
        self.echo = echo
        self.git_hash = _git_commit(git_dir) if git_dir else None
        self._lms: OrderedDict[str, Any] = OrderedDict()
        self._memo: Any = None
        self.evaluations = 0  # lm-eval runs done (cache misses), for the tests and the benchmark
        self.engine_pool: Any = None  # serve.EnginePool: its vLLM server answers local-completions (session_server)

    def sides(self, base_model: str, adapter: str) -> tuple[Side, Side]:
        """(candidate, base) for a run, with the digests of their files (per-file sha256 memoised on size/mtime)."""
        b = self._digest(base_model)
        return Side("candidate", base_model, b, adapter, self._digest(adapter)), Side("base", base_model, b)

    def _digest(self, path: str) -> str:
        """The audit record's digest of a directory (``ftgate.adapter_sha256``, ``base_model.hash``)."""
        if not Path(path).is_dir():
            raise BenchmarkError(f"{path}: not a local model directory; lm-eval's hf and vllm backends load "
                                 "local weights here (no hub at run time)")
        self._memo = self._memo or hashing.HashMemo()  # sha256 per file, remembered by size and mtime
        return hashing.tree_digest(path, self._memo)

    def fingerprint(self, name: str) -> tuple[dict, dict | None]:
        """(``task_fingerprint``, the loaded task or None) of a task. Remembered in the result cache's directory,
        keyed by lm-eval's version, the task name and the digest of every file under ``benchmarks.include_path``;
        a remembered one is re-used only while each local data file it names still has its digest."""
        memo_path = self.cache.dir / "fingerprints.json" if self.cache else None
        memo = _read_json(memo_path) if memo_path else {}
        self._memo = self._memo or hashing.HashMemo()
        key = hashing.digest_json({"lm_eval": _lm_eval_version(), "task": name, "include": [
            hashing.tree_digest(p, self._memo) if p.is_dir() else f"missing:{p}" for p in self.catalog.include_paths]})
        entry = memo.get(key)
        if entry and all(_local_digest(p, self._memo) == d for p, d in entry["fingerprint"]["data"].items()):
            return entry["fingerprint"], None
        _, loaded = self.catalog.load(name)
        fingerprint = task_fingerprint(loaded)
        if memo_path:
            memo[key] = {"task": name, "fingerprint": fingerprint}
            try:
                write_atomic(memo_path, json.dumps(memo, indent=1, default=str))
            except OSError:  # a read-only cache only costs loading the task next time
                pass
        return fingerprint, loaded

    def evaluate(self, task: BenchTask, side: Side) -> TaskResult:
        """One (task, side): from the result cache when its key matches (lm-eval is then not even imported: the
        task's fingerprint comes from ``fingerprint``), else run with lm-eval and cached."""
        fingerprint, loaded = self.fingerprint(task.name)
        parts = {"schema": CACHE_SCHEMA, "lm_eval": _lm_eval_version(), "task": task.name,
                 "num_fewshot": task.num_fewshot, "limit": task.limit or None, **self.settings.key(), **side.key(),
                 "task_fingerprint": fingerprint}
        if self.settings.backend == "local-completions" and not self.settings.session_server:  # not ours to hash
            parts["served"] = {k: model_args(self.settings, side)[1][k] for k in ("model", "base_url")}
        key = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
        hit = self.cache.get(key) if self.cache else None
        if hit:
            return TaskResult(task.name, side.label, hit[0], hit[1], cached=True)
        tm, loaded = self.catalog.load(task.name)  # fresh task objects for the run
        data, samples = self._run(task, side, loaded, tm)
        data["ftgate"] = {"cache_key": key, "key": parts, "side": side.label, **side.key(),
                          "task_sha256": parts["task_fingerprint"]["config_sha256"]}
        if self.cache:
            samples = self.cache.put(key, data, samples)
        return TaskResult(task.name, side.label, data, samples)

    def _run(self, task: BenchTask, side: Side, loaded: dict, tm: Any) -> tuple[dict, str]:
        import lm_eval

        t0 = time.monotonic()
        if self.settings.backend == "vllm":
            res = self._run_in_vllm_env(task, side)
        else:
            lm = self._lm(side)
            try:
                res = lm_eval.simple_evaluate(
                    model=lm, tasks=top_level(loaded), task_manager=tm, num_fewshot=task.num_fewshot,
                    limit=task.limit or None, batch_size=self.settings.batch_size, log_samples=True,
                    bootstrap_iters=self.settings.bootstrap_iters, random_seed=self.settings.engine.seed)
            except Exception as exc:
                raise BenchmarkError(f"lm-eval failed on task {task.name!r} for the {side.label} "
                                     f"({type(exc).__name__}: {_first_line(exc)})") from exc
        self.evaluations += 1
        samples = res.pop("samples", {}) or {}
        data = {k: res.get(k) for k in ("results", "versions", "n-shot", "higher_is_better", "n-samples",
                                        "group_subtasks", "configs", "config", "git_hash", "lm_eval_version",
                                        "transformers_version", "date")}
        # lm-eval leaves these empty for local paths (it asks the hub): ours are the files' digests
        args = {k: v for k, v in model_args(self.settings, side, self._served(side))[1].items() if k != "auth_token"}
        data["config"] = {**(data["config"] or {}), "model_sha": side.base_sha256, "model_args": args}
        if side.adapter:
            data["config"]["peft_sha"] = side.adapter_sha256
        data["git_hash"] = data.get("git_hash") or self.git_hash
        data["wall_s"] = round(time.monotonic() - t0, 3)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix=f"{task.name}.{side.label}.", suffix=".jsonl", dir=self.work_dir)
        with os.fdopen(fd, "w") as fh:
            for name, rows in samples.items():
                for row in rows:
                    fh.write(json.dumps({"task": name, **row}, default=_json_default) + "\n")
        return json.loads(json.dumps(data, default=_json_default)), path

    def _served(self, side: Side) -> tuple[str, str] | None:
        """(URL, model name) of ``side`` on the session's vLLM server (started with the adapter on it), or None."""
        if not self.settings.session_server:
            return None
        if self.engine_pool is None:
            raise BenchmarkError("benchmarks.backend auto with engine vllm needs the session's engine pool")
        engine = self.engine_pool.get(side.base_model, {})
        name = ""
        if side.adapter:
            path = str(Path(side.adapter).resolve())
            name = next((n for n, p in engine.adapters.items() if p == path), "")  # served under the run's name
            if not name:
                name = "bench-" + side.adapter_sha256.split(":")[-1][:12]
                engine = self.engine_pool.get(side.base_model, {name: side.adapter})
        if not engine.client:
            raise BenchmarkError("the session's vLLM server is not running")
        return engine.client.base_url, (name or side.base_model)

    def _run_in_vllm_env(self, task: BenchTask, side: Side) -> dict:
        """lm-eval's own ``vllm`` backend, run by the vLLM environment's Python (``_child_main``)."""
        from .serve.vllm import VLLMEngine, vllm_python

        exe = VLLMEngine(side.base_model, self.settings.engine).executable()
        py = vllm_python(exe)
        if py is None:
            raise BenchmarkError(f"benchmarks.backend vllm: no Python next to the vLLM executable {exe[0]!r} to run "
                                 "lm-eval in; run `make vllm` (its .venv-vllm has lm-eval) or use backend auto")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        spec = {"task": task.name, "include_paths": [str(p) for p in self.catalog.include_paths],
                "model_args": model_args(self.settings, side)[1], "num_fewshot": task.num_fewshot,
                "limit": task.limit or None, "batch_size": self.settings.batch_size,
                "bootstrap_iters": self.settings.bootstrap_iters, "seed": self.settings.engine.seed}
        fd, spec_path = tempfile.mkstemp(prefix=f"{task.name}.{side.label}.", suffix=".spec.json", dir=self.work_dir)
        with os.fdopen(fd, "w") as fh:
            json.dump(spec, fh)
        out_path, log_path = spec_path[:-10] + ".out.json", spec_path[:-10] + ".log"
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "HF_HUB_OFFLINE": "1",
               "HF_DATASETS_OFFLINE": "1"}
        if self.settings.device == "cpu":
            env.setdefault("VLLM_CPU_KVCACHE_SPACE", f"{self.settings.engine.cpu_kvcache_gib:g}")
        cmd = [str(py), "-c", "from pytest_ftgate.lmeval import _child_main; _child_main()", spec_path, out_path]
        from .serve.process import run_logged, tail

        code = run_logged(cmd, log_path, env=env)  # Ctrl-C stops lm-eval's vLLM engine and its workers too
        if code != 0 or not Path(out_path).is_file():

            raise BenchmarkError(f"lm-eval's vllm backend failed on task {task.name!r} for the {side.label} (exit "
                                 f"code {code}); command: {' '.join(cmd)}; log: {log_path}\n{tail(log_path, 15)}")
        return json.loads(Path(out_path).read_text())

    def _lm(self, side: Side) -> Any:
        """The lm-eval model for ``side``, kept for the next task (two at most: a run's candidate and its base)."""
        served = self._served(side)
        kind, args = model_args(self.settings, side, served)
        key = json.dumps([kind, args, side.key()], sort_keys=True, default=str)
        if key in self._lms:
            self._lms.move_to_end(key)
            return self._lms[key]
        while len(self._lms) >= (1 if kind == "vllm" else 2):
            self._release(self._lms.popitem(last=False)[1])
        from lm_eval.api.registry import get_model

        try:
            batch = 1 if served else self.settings.batch_size  # see model_args: one prompt per request
            lm = get_model(kind).create_from_arg_obj(args, {"batch_size": batch})
        except Exception as exc:
            shown = {k: v for k, v in args.items() if k != "auth_token"}
            raise BenchmarkError(f"lm-eval could not load the {side.label} with the {kind} backend "
                                 f"({type(exc).__name__}: {_first_line(exc)}); model_args: {shown}") from exc
        self._lms[key] = lm
        return lm

    @staticmethod
    def _release(lm: Any) -> None:
        import gc

        del lm
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def close(self) -> None:
        while self._lms:
            self._release(self._lms.popitem()[1])


def _child_main() -> None:
    """In the vLLM environment: ``python -c ... SPEC OUT``: one lm-eval run with the ``vllm`` backend, its results
    and samples written to OUT as JSON (the parent reads them like ``simple_evaluate``'s return value)."""
    import sys

    import lm_eval

    spec_path, out_path = sys.argv[1], sys.argv[2]
    spec = json.loads(Path(spec_path).read_text())
    tm, loaded = TaskCatalog(spec["include_paths"]).load(spec["task"])
    res = lm_eval.simple_evaluate(model="vllm", model_args=spec["model_args"], tasks=top_level(loaded),
                                  task_manager=tm, num_fewshot=spec["num_fewshot"], limit=spec["limit"],
                                  batch_size=spec["batch_size"], log_samples=True,
                                  bootstrap_iters=spec["bootstrap_iters"], random_seed=spec["seed"])
    res.pop("config", None)  # holds the live model object; the parent writes its own
    write_atomic(out_path, json.dumps(res, default=_json_default))


def _json_default(o: Any) -> Any:
    from lm_eval.utils import handle_non_serializable

    return handle_non_serializable(o)


def _git_commit(path: str | Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _lm_eval_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("lm_eval")
    except metadata.PackageNotFoundError:  # pragma: no cover - lm-eval is a dependency of the eval extra
        return "none"


def _local_digest(path: str, memo: Any) -> str:
    """A task data file's digest as ``task_fingerprint`` records it ("not a local file" for hub data)."""
    return memo.sha256(path) if Path(str(path)).is_file() else "not a local file"


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _first_line(exc: object) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:400] if text else type(exc).__name__


# -- the gate and what goes to MLflow -------------------------------------------------------------------
def metric_key(task: str, metric: str) -> str:
    """``bench.<task>.<metric>`` (``acc,none`` -> ``acc``; other filters kept: ``exact_match.strict-match``)."""
    base, _, filt = metric.partition(",")
    raw = f"bench.{task}.{base}" + (f".{filt}" if filt and filt != "none" else "")
    return "".join(ch if ch.isalnum() or ch in "_-./ " else "_" for ch in raw)


def log_to_run(store: Any, run_id: str, task: str, candidate: TaskResult, base: TaskResult,
               work_dir: str | Path) -> str:
    """Metrics ``bench.<task>.<metric>`` (+ ``_stderr``, + ``.base``), the per-sample log ``bench/<task>.jsonl``
    and both results ``bench/<task>.json`` on the run. Returns "" or what failed: MLflow down must not fail a gate."""
    try:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = []
        for name in candidate.metric_names():
            m = candidate.metric(name)
            metrics.append(Metric(metric_key(task, name), m.value, now, 0))
            if m.stderr is not None:
                metrics.append(Metric(metric_key(task, name) + "_stderr", m.stderr, now, 0))
        for name in base.metric_names():
            metrics.append(Metric(metric_key(task, name) + ".base", base.metric(name).value, now, 0))
        store.client.log_batch(run_id, metrics=metrics)
        Path(work_dir).mkdir(parents=True, exist_ok=True)
        out = Path(tempfile.mkdtemp(prefix="bench-", dir=work_dir))
        safe = metric_key(task, "x").removeprefix("bench.").removesuffix(".x")
        with open(out / f"{safe}.jsonl", "w") as fh:
            for res in (candidate, base):
                for line in Path(res.samples_path).read_text().splitlines():
                    fh.write(json.dumps({"model": res.side, **json.loads(line)}) + "\n")
        (out / f"{safe}.json").write_text(json.dumps({r.side: r.data for r in (candidate, base)}, indent=1))
        store.log_artifact(run_id, out / f"{safe}.jsonl", "bench")
        store.log_artifact(run_id, out / f"{safe}.json", "bench")
    except Exception as exc:  # noqa: BLE001 - MLflow down, disk full, ...: reported, the gate stands
        return f"not written to MLflow run {run_id}: {type(exc).__name__}: {_first_line(exc)}"
    return ""


# -- what the suite calls ----------------------------------------------------------------------------------
def gate_specs(cfg: FtgateConfig) -> list[tuple[str, str, str, BenchTask]]:
    """(label, gate id ``bench:<label>``, severity, task) per configured task; a repeated name is labelled by its
    few-shot count (``mmlu@5shot``)."""
    names = [t.name for t in cfg.benchmarks.tasks]
    out, seen = [], set()
    for t in cfg.benchmarks.tasks:
        label = t.name if names.count(t.name) == 1 else f"{t.name}@{t.num_fewshot}shot"
        label = label if label not in seen else f"{label}#{len(seen)}"
        seen.add(label)
        out.append((label, f"bench:{label}", cfg.severity(f"bench:{label}", t.severity), t))
    return out


def runner_for(cfg: FtgateConfig, engine_kind: str, root: str | Path, work_dir: str | Path,
               echo: Callable[[str], None] = print) -> BenchRunner:
    """The session's runner (``benchmarks`` paths were resolved against ftgate.yaml's directory at load)."""
    here = Path(cfg.source).parent if cfg.source else Path(root)
    b = cfg.benchmarks
    cache = ResultCache(Path(b.cache_dir) if b.cache_dir else Path(root) / ".ftgate" / "bench-cache") \
        if b.cache else None
    return BenchRunner(settings_from_config(cfg, engine_kind), TaskCatalog([Path(p) for p in b.include_path]),
                       cache, work_dir, echo, git_dir=here)


def run_gate(runner: BenchRunner, label: str, task: BenchTask, base_model: str, adapter: str | Path,
             store: Any = None, run_id: str = "") -> Any:
    """Evaluate ``task`` on the adapter and on its base model, gate the difference, log both to the run."""
    from .gates.benchmarks import regression

    candidate, base = runner.sides(str(base_model), str(adapter))
    cand = runner.evaluate(task, candidate)
    ref = runner.evaluate(task, base)
    check = regression(label, cand, ref, task.metric, task.max_stderr_margin)
    if store is not None and run_id:
        problem = log_to_run(store, run_id, label, cand, ref, runner.work_dir)
        if problem:
            runner.echo(f"ftgate: bench:{label}: results {problem}")
        check.details["mlflow"] = problem or "logged"
    return check
