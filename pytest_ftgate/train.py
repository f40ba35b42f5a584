"""Training under the gate: read a LLaMA-Factory config, hash its inputs, re-use or train, return the run id.

Runs in the pytest process (``ensure_trained``) and behind ``ftgate train``: it never imports torch or
LLaMA-Factory. The training itself runs in a child process (``pytest_ftgate.train_worker``) whose output is
streamed to a log file; this module validates the config and the data, finds an identical finished run, starts
the child, and turns its failures into ConfigError / DataError / TrainingError with the log tail.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import demo, hashing, record, rows
from .errors import ConfigError, DataError, FtgateError, TrainingError, did_you_mean
from .fileio import resolve_path
from .jsonstream import data_files
from .serve.process import run_logged, tail

PATH_KEYS = ("model_name_or_path", "adapter_name_or_path", "dataset_dir", "output_dir", "deepspeed", "cache_dir",
             "media_dir", "tokenized_path")
HUB_KEYS = ("model_name_or_path", "adapter_name_or_path")
TAIL_LINES = 40
TRAINED_BY = "pytest-ftgate"


CHECKPOINT_NAMES = ("adapter_model.safetensors", "adapter_model.bin", "model.safetensors",
                    "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
TEST_SET_WAYS = ("`--test-dataset NAME` (ftgate train) / `--ftgate-test-dataset NAME` (pytest): a dataset_info.json entry",
                 "the convention: register `{stem}_test` in {info}",
                 "a file: `quality.test_set: PATH` in ftgate.yaml / `--ftgate-test-set PATH`")


@dataclass(frozen=True)
class TrainingSpec:
    """A validated training config: its file, its text, the LLaMA-Factory arguments with paths resolved."""

    path: Path
    text: str
    args: dict
    cwd: Path = Path(".")  # the directory relative paths were resolved against (recorded for re-training)


def load_spec(config: str | Path, cwd: str | Path | None = None) -> TrainingSpec:
    """Read the YAML config; relative paths are resolved against ``cwd`` (default: the working directory), as
    ``llamafactory-cli train`` resolves them, and ``dataset_dir`` defaults to LLaMA-Factory's ``data``."""
    import yaml

    path = Path(config)
    if not path.is_file():
        raise ConfigError(f"{path}: training config not found (pass an existing LLaMA-Factory YAML file)")
    text = path.read_text()
    try:
        args = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(args, dict):
        raise ConfigError(f"{path}: a LLaMA-Factory config is a mapping of keys, got {type(args).__name__}")
    for key in ("model_name_or_path", "dataset", "output_dir"):
        if not args.get(key):
            raise ConfigError(f"{path}: key {key!r} is required")
    here = Path(cwd or Path.cwd()).resolve()
    resolve_paths(args, here)
    report = args.get("report_to") or []
    report = [report] if isinstance(report, str) else list(report)
    args["report_to"] = [r for r in report if r not in ("none", "mlflow")] + ["mlflow"]
    return TrainingSpec(path.resolve(), text, args, here)


def resolve_paths(args: dict, here: Path) -> dict:
    """The path keys of LLaMA-Factory arguments made absolute (``fileio.resolve_path``: ``~`` expanded, relative
    joined to ``here``), as ``llamafactory-cli train`` run in ``here`` reads them; ``dataset_dir`` defaults to
    LLaMA-Factory's ``data``. Training and its replay (the reproducibility gate) resolve with this one function."""
    args.setdefault("dataset_dir", "data")  # LLaMA-Factory's default (DataArguments.dataset_dir)
    for key in PATH_KEYS:
        value = args.get(key)
        if not isinstance(value, str) or not value or value == "ONLINE" or value.startswith("REMOTE:"):
            continue
        if key not in HUB_KEYS or _looks_local(here, value):  # a model key may name a hub repo: left as is
            args[key] = str(resolve_path(value, here).resolve())
    return args


def _looks_local(here: Path, value: str) -> bool:
    return value.startswith((".", "/", "~")) or (here / value).exists()


def known_keys_path() -> Path:
    """Where the training child leaves the keys LLaMA-Factory's train parser accepts, per installed versions."""
    from importlib import metadata

    try:
        versions = f"{metadata.version('llamafactory')}-{metadata.version('transformers')}"
    except metadata.PackageNotFoundError:
        versions = "none"
    return hashing.cache_dir() / f"llamafactory-train-keys-{versions}.json"


def check_known_keys(spec: TrainingSpec) -> None:
    """Reject an unknown key before starting a child, when a previous child recorded the known ones."""
    try:
        known = sorted(json.loads(known_keys_path().read_text()))
    except (OSError, ValueError, TypeError):
        return  # the child checks every key itself
    for key in spec.args:
        if key not in known:
            raise ConfigError(f"{spec.path}: unknown LLaMA-Factory key {key!r}{did_you_mean(key, known)}")


def base_model_dir(spec: TrainingSpec, echo: Callable[[str], None], log_dir: Path) -> Path:
    """The local base model directory; the bundled demo base is built on demand (in a child process)."""
    value = spec.args["model_name_or_path"]
    p = Path(value)
    if p.name == demo.DEMO_BASE_NAME and not demo.is_built(p):
        echo(f"ftgate: building the demo base model {p} (tokenizer + tiny Llama, local recipe)")
        log = log_dir / "demo-base.log"
        code = run_logged([sys.executable, "-m", "pytest_ftgate.demo", str(p)], log, child_env())
        if code != 0:
            raise TrainingError(f"building the demo base failed (exit code {code})",
                                tail(log, TAIL_LINES, placeholder=False), str(log))
    if not p.is_dir() or not (p / "config.json").is_file():
        raise ConfigError(f"{spec.path}: model_name_or_path {value!r} is not a local model directory with a "
                          "config.json; pytest-ftgate trains from local paths only (no hub at run time)")
    return p


# -- datasets ------------------------------------------------------------------------------------------------
def dataset_inputs(spec: TrainingSpec, test_dataset: str | None = None) -> tuple[list[dict], dict]:
    """``[{name, split, path, sha256, samples, format}]`` and ``{path, sha256}`` of dataset_info.json.

    The test split is ``test_dataset`` or, by convention, ``<train name without _train>_test`` when registered.
    """
    d = Path(spec.args["dataset_dir"])
    info_path = d / "dataset_info.json"
    try:
        info = json.loads(info_path.read_text())
    except OSError as exc:
        raise DataError(f"{info_path}: cannot be read ({exc.strerror}); set dataset_dir in {spec.path}") from None
    except ValueError as exc:
        raise DataError(f"{info_path}: not valid JSON: {exc}") from None
    splits = [(n, "train") for n in _names(spec.args.get("dataset"))]
    splits += [(n, "validation") for n in _names(spec.args.get("eval_dataset"))]
    test = test_dataset or _conventional_test(splits[0][0], info)
    if test:
        splits.append((test, "test"))
    memo = hashing.HashMemo()
    limit = spec.args.get("max_samples")
    out = [_dataset_entry(name, split, info, d, info_path, memo, None if split == "test" else limit)
           for name, split in splits]
    used = sorted({name for name, _ in splits})
    return out, {"path": str(info_path), "entries": used, "sha256": info_entries_sha256(info, used)}


def info_entries_sha256(info: dict, names: list[str]) -> str:
    """The digest of the ``dataset_info.json`` entries a run used (one shared file serves every dataset: adding
    an entry must not change the lineage of earlier runs; changing one they used must)."""
    return hashing.digest_text(json.dumps({n: info.get(n) for n in sorted(names)}, sort_keys=True,
                                        ensure_ascii=False))


def _names(value: Any) -> list[str]:
    if not value:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(n).strip() for n in items if str(n).strip()]


def _conventional_test(train_name: str, info: dict) -> str | None:
    stem = train_name.removesuffix("_train")
    return f"{stem}_test" if f"{stem}_test" in info else None


def _dataset_entry(name: str, split: str, info: dict, d: Path, info_path: Path, memo: hashing.HashMemo,
                   max_samples: int | None = None) -> dict:
    if name not in info:
        raise DataError(f"{info_path}: dataset {name!r} ({split}) is not registered; registered: "
                        f"{', '.join(sorted(info)) or 'none'}")
    attr = info[name]
    if "file_name" not in attr:
        raise DataError(f"{info_path}: dataset {name!r} has no `file_name`; pytest-ftgate trains on local files only")
    path = d / attr["file_name"]
    spec, problems = rows.DatasetSpec.from_info(name, attr, str(info_path))
    if problems:
        raise DataError(f"{'; '.join(problems)}; fix the entry (LLaMA-Factory's data/README.md lists the keys)")
    if not path.exists() or (path.is_dir() and not data_files(path)):
        raise DataError(f"{path}: the file of dataset {name!r} (registered in {info_path}) does not exist")
    n = validate_rows(path, spec)
    sha = hashing.dataset_sha256(path, memo)
    entry = {"name": name, "split": split, "path": str(path), "sha256": sha, "samples": n, "format": spec.formatting}
    if isinstance(max_samples, int) and max_samples < n:  # LLaMA-Factory trains the first max_samples rows
        entry.update(samples=max_samples, rows_in_file=n, max_samples=max_samples)
    return entry


def validate_rows(path: Path, spec: rows.DatasetSpec, listed: int = 3) -> int:
    """The number of rows of a dataset path (a file or a folder of JSON/JSONL files), every one checked with the
    row model the data gates use (``rows.row_problems``); DataError naming the file and the first bad rows (numbered
    from 1) when LLaMA-Factory could not train on one, or when there are none."""
    n, bad, first = 0, 0, []
    for f, row, _, problems in rows.read_rows(path, spec):
        n += 1
        if problems:
            bad += 1
            if len(first) < listed:
                first.append(f"{f.name + ' ' if f != Path(path) else ''}row {row}: {'; '.join(problems)}")
    if bad:
        more = f"; ... and {bad - len(first)} more" if bad > len(first) else ""
        raise DataError(f"{path}: {bad} of {n} {spec.formatting} rows cannot be trained on: {'; '.join(first)}{more}; "
                        "fix the rows, or the dataset's columns/tags in dataset_info.json")
    if not n:
        raise DataError(f"{path}: the dataset has no rows")
    return n


# -- inputs, re-use -----------------------------------------------------------------------------------------
def input_artifacts(spec: TrainingSpec, base: Path, test_dataset: str | None = None) -> dict:
    datasets, info = dataset_inputs(spec, test_dataset)
    files = hashing.tree_files(base, hashing.HashMemo())
    recipe = base / "ftgate_recipe.json"
    return {
        "base_model": {"path": str(base), "source": "pytest_ftgate.demo recipe" if recipe.is_file() else str(base),
                       "hash": hashing.digest_files(files), "files": files},
        "datasets": datasets, "dataset_info": info,
        "config": {"file": str(spec.path), "sha256": hashing.digest_text(spec.text), "content": spec.text,
                   "working_dir": str(spec.cwd), **record.git_commit(spec.path)},
    }


def lineage_params(inputs: dict) -> dict[str, str]:
    """The params a re-use lookup matches on (and that G6 reads)."""
    trained = [d for d in inputs["datasets"] if d["split"] != "test"]
    return {
        "ftgate.config_sha256": inputs["config"]["sha256"],
        "ftgate.dataset_sha256": hashing.digest_files(
            [{"name": f"{d['split']}/{d['name']}", "sha256": d["sha256"]} for d in trained]
            + [{"name": "dataset_info.json", "sha256": inputs["dataset_info"]["sha256"]}]),
        "ftgate.base_model_sha256": inputs["base_model"]["hash"],
    }


def trained_datasets(record: dict | None, params: dict) -> list[str]:
    """The names of the datasets a run trained on: its audit record's train split, else LLaMA-Factory's
    ``dataset`` as ``ftgate train``/``ftgate adopt`` log it (``llamafactory.dataset``)."""
    from .record import AuditRecord

    names = [str(d.get("name")) for d in AuditRecord.of(record).datasets if d.get("split") == "train"]
    return names or _names(params.get("llamafactory.dataset"))


def benchmark_out_of_scope(label: str, trained_on: tuple[str, ...], record: dict | None, params: dict) -> str:
    """Why benchmark ``label`` does not apply to this run ("" when it does): it is scoped to runs trained on
    ``trained_on`` (``benchmarks.tasks[].trained_on``) and this run trained on none of them."""
    if not trained_on:
        return ""
    trained = trained_datasets(record, params)
    if set(trained) & set(trained_on):
        return ""
    return (f"bench:{label} applies to runs trained on {', '.join(trained_on)} (benchmarks.tasks[].trained_on in "
            f"ftgate.yaml); this run trained on {', '.join(trained) or 'datasets that are not recorded'}")


def find_existing(store: Any, experiment_id: str, params: dict[str, str]) -> str | None:
    """The newest FINISHED run trained by pytest-ftgate with the same config, data and base model hashes."""
    clauses = [f"params.`{k}` = '{v}'" for k, v in params.items()]
    clauses += [f"tags.`ftgate.trained_by` = '{TRAINED_BY}'", "attributes.status = 'FINISHED'"]
    runs = store.client.search_runs([experiment_id], filter_string=" and ".join(clauses),
                                    order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0].info.run_id if runs else None


# -- the entry point ----------------------------------------------------------------------------------------
def ensure_trained(config: Path, store: Any, *, retrain: bool, log_dir: Path, echo: Callable[[str], None],
                   test_dataset: str | None = None, test_set: str = "", require_test_set: bool = True,
                   cwd: str | Path | None = None) -> str:
    """The run id of a FINISHED training run of ``config`` in ``store``: an identical one re-used, else trained.

    Relative paths of the config resolve against ``cwd`` (default: the working directory). Before anything is
    trained the held-out test set must be known (``test_dataset``, the ``<name>_test`` entry, or a ``test_set``
    file given to the gates): refused when none, or only warned about with ``require_test_set=False``.
    """
    spec = load_spec(config, cwd)
    check_known_keys(spec)
    log_dir = Path(log_dir)
    base = base_model_dir(spec, echo, log_dir)
    inputs = input_artifacts(spec, base, test_dataset)
    check_test_set(spec, inputs, test_set, require_test_set, echo)
    params = lineage_params(inputs)
    experiment_id = store.experiment_id(create=True)
    if not retrain:
        existing = find_existing(store, experiment_id, params)
        if existing:
            echo(f"ftgate: re-using run {existing}: same config, data and base model hashes as {spec.path.name} "
                 "(--ftgate-retrain trains again)")
            return existing
    check_output_dir(spec)
    return _train(spec, store, experiment_id, inputs, params, log_dir, echo)


def check_test_set(spec: TrainingSpec, inputs: dict, test_set: str, required: bool,
                   echo: Callable[[str], None]) -> None:
    """Refuse (or warn about) a config with no held-out test set before the first training step."""
    if test_set or any(d["split"] == "test" for d in inputs["datasets"]):
        return
    stem = _names(spec.args.get("dataset"))[0].removesuffix("_train")
    ways = "; ".join(f"({i}) {w.format(stem=stem, info=inputs['dataset_info']['path'])}"
                     for i, w in enumerate(TEST_SET_WAYS, 1))
    message = (f"{spec.path}: no held-out test set, so the quality and leakage gates would have nothing to score "
               f"after training. Give one of: {ways}")
    if required:
        raise ConfigError(message + " (or set quality.require_test_set: false to train without one)")
    echo(f"ftgate: warning: {message}")


def check_output_dir(spec: TrainingSpec) -> None:
    """``output_dir`` is used exactly as given; like LLaMA-Factory, refuse one that already holds a model or a
    checkpoint unless ``overwrite_output_dir`` (or ``resume_from_checkpoint``) says what to do with it."""
    out = Path(spec.args["output_dir"])
    if spec.args.get("overwrite_output_dir") or spec.args.get("resume_from_checkpoint") or not out.is_dir():
        return
    found = sorted(p.name for p in out.iterdir() if p.name in CHECKPOINT_NAMES or (
        p.is_dir() and p.name.startswith("checkpoint-")))
    if found:
        raise ConfigError(f"{spec.path}: output_dir {out} already holds {', '.join(found[:3])}: LLaMA-Factory would "
                          "refuse it or resume from its last checkpoint; set overwrite_output_dir: true, or choose "
                          "another output_dir")


def _train(spec: TrainingSpec, store: Any, experiment_id: str, inputs: dict, params: dict, log_dir: Path,
           echo: Callable[[str], None]) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
    run_name = f"{spec.path.stem}-{stamp[:15]}"
    args = dict(spec.args)  # output_dir exactly as configured, as llamafactory-cli train uses it
    work = log_dir / f"train-{run_name}"
    work.mkdir(parents=True, exist_ok=True)
    log_path, result_path = work / "train.log", work / "result.json"
    job = {"config_file": str(spec.path), "args": args, "tracking_uri": store.tracking_uri,
           "experiment_id": experiment_id, "run_name": run_name, "inputs": inputs, "params": params,
           "result_path": str(result_path), "log_path": str(log_path)}
    (work / "job.json").write_text(json.dumps(job, indent=1))
    echo(f"ftgate: training {spec.path} with LLaMA-Factory in a child process (log: {log_path})")
    t0 = time.monotonic()
    try:
        code = run_logged([sys.executable, "-m", "pytest_ftgate.train_worker", str(work / "job.json")], log_path,
                          child_env())
    except KeyboardInterrupt:
        _mark_failed(store, result_path, log_path, "KILLED", "interrupted (Ctrl-C) during training")
        raise
    result = _read_json(result_path)
    if code == 0 and result.get("status") == "ok":
        echo(f"ftgate: trained run {result['run_id']} ({run_name}) in {time.monotonic() - t0:.1f} s")
        return result["run_id"]
    return _raise_failure(spec, store, result, code, result_path, log_path)


def _raise_failure(spec: TrainingSpec, store: Any, result: dict, code: int, result_path: Path,
                   log_path: Path) -> str:
    log_end = tail(log_path, TAIL_LINES, placeholder=False)
    kind, message = result.get("kind"), result.get("message") or ""
    if kind == "config":
        raise ConfigError(message)
    if kind == "data":
        raise DataError(message)
    if not message:
        message = f"the training process exited with code {code}" + (
            f" (killed by signal {-code}: out of memory?)" if code < 0 else "")
    run_id = _mark_failed(store, result_path, log_path, "FAILED", message)
    where = f"; MLflow run {run_id} is marked FAILED" if run_id else ""
    raise TrainingError(f"{spec.path}: {message}{where}", log_end, str(log_path))


def _mark_failed(store: Any, result_path: Path, log_path: Path, status: str, message: str) -> str | None:
    """Mark the child's run FAILED/KILLED with the error and the log tail when the child could not."""
    run_id = _read_json(result_path).get("run_id")
    if not run_id:
        return None
    try:
        run = store.client.get_run(run_id)
        if run.info.status in ("RUNNING", "SCHEDULED"):
            store.set_tags(run_id, {"ftgate.error": message})
            tail_file = log_path.with_name("train_log_tail.txt")
            tail_file.write_text(tail(log_path, 200, placeholder=False))
            store.log_artifact(run_id, tail_file, "logs")
            store.client.set_terminated(run_id, status=status)
    except Exception:  # noqa: BLE001, S110 - the error is raised anyway; MLflow being down must not hide it
        pass
    return run_id


def child_env() -> dict[str, str]:
    """The training child's environment: one BLAS thread and a fixed hash seed unless set, no hub, no stray
    MLflow run settings."""
    env = dict(os.environ)
    defaults = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "MLFLOW_DISABLE_TELEMETRY": "true",
                "DO_NOT_TRACK": "true", "PYTHONUNBUFFERED": "1", "DISABLE_VERSION_CHECK": "1",
                "PYTHONHASHSEED": "0"}  # peft writes target_modules from a set: its order follows the hash seed
    for k, v in defaults.items():
        env.setdefault(k, v)
    for k in ("MLFLOW_RUN_ID", "MLFLOW_NESTED_RUN", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID",
              "HF_MLFLOW_LOG_ARTIFACTS"):
        env.pop(k, None)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    return env


def _read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


# -- ftgate train ---------------------------------------------------------------------------------------------
def cli_store(tracking_uri: str, experiment: str, create: bool = False) -> Any:
    """The store of an ``ftgate`` subcommand: ``--tracking-uri``, else $MLFLOW_TRACKING_URI, else ./.ftgate
    (``create``: a missing store may be created, as training does)."""
    from .store import RunStore, resolve_store

    uri, artifacts, embedded = resolve_store(tracking_uri)
    if embedded:
        Path(".ftgate").mkdir(exist_ok=True)
    return RunStore(uri, experiment or None, artifacts, create=create)


def add_store_args(ap: argparse.ArgumentParser, experiment_help: str) -> None:
    """``--tracking-uri`` and ``--experiment``, as every ``ftgate`` subcommand that reads or writes runs takes them."""
    ap.add_argument("--tracking-uri", default="", metavar="URI",
                    help="MLflow store (default: $MLFLOW_TRACKING_URI, else ./.ftgate/mlflow.db)")
    ap.add_argument("--experiment", default="", metavar="NAME", help=experiment_help)


def add_test_set_args(ap: argparse.ArgumentParser, verb: str, refused: str) -> None:
    """``--test-dataset`` and ``--allow-no-test-set`` (``ftgate train``, ``ftgate adopt``)."""
    ap.add_argument("--test-dataset", default=None, metavar="NAME",
                    help="dataset_info.json entry of the held-out test set (default: <train name>_test)")
    ap.add_argument("--allow-no-test-set", action="store_true",
                    help=f"{verb} even when no held-out test set is known (warned; default: {refused})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="ftgate train", description="Train a LLaMA-Factory config with full "
                                 "lineage in MLflow (or re-use an identical finished run); prints the run id.")
    ap.add_argument("config", metavar="CONFIG", help="LLaMA-Factory YAML, as for `llamafactory-cli train` "
                    "(relative paths: from the working directory)")
    add_store_args(ap, "MLflow experiment (default: ftgate)")
    ap.add_argument("--retrain", action="store_true", help="train even when an identical finished run exists")
    ap.add_argument("--log-dir", default="ftgate-results/logs", metavar="DIR", help="training logs (%(default)s)")
    add_test_set_args(ap, "train", "refused before training")
    ns = ap.parse_args(argv)
    store = cli_store(ns.tracking_uri, ns.experiment, create=True)
    try:
        run_id = ensure_trained(Path(ns.config), store, retrain=ns.retrain, log_dir=Path(ns.log_dir),
                                echo=lambda m: print(m, file=sys.stderr), test_dataset=ns.test_dataset,
                                require_test_set=not ns.allow_no_test_set)
    except FtgateError as exc:
        print(f"ftgate train: {exc}", file=sys.stderr)
        return 1
    print(run_id)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
