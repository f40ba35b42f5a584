"""Thin fixtures that hand the suites plain values: the run under test, the gate recorder, the config.

Lifecycle only (session scope, teardown); the work is done by the core modules they call.
"""

from __future__ import annotations

from typing import Any

import pytest

from .config import FtgateConfig
from .gates import Check, GateFailure
from .errors import RunUnavailable
from .store import RunRecord
from .session import FtgateSession


class GateRecorder:
    """What a suite test calls with its gate's result: ``gate.check(Check(...))``.

    It records the result for the verdict and raises ``GateFailure`` when the gate does not pass; the plugin
    then reports FAILED (block), WARN (warn) or INFO (info). ``gate_id``/``severity`` override the marker's,
    for tests parametrized over several gates (``bench:<task>``).
    """

    def __init__(self, store: dict[str, Any], gate_id: str, name: str):
        self._store = store
        self.id = gate_id
        self.name = name

    def check(self, result: Check, gate_id: str | None = None, severity: str | None = None) -> Check:
        override = {}
        if gate_id:
            override["id"] = gate_id
        if severity:
            override["severity"] = severity
        self._store["check"] = result
        self._store["override"] = override
        if not result.passed:
            gid = gate_id or self.id
            label = gid if self.name in ("", gid) else f"{gid} {self.name}"
            raise GateFailure(f"{label}: {result.message} (value: {result.value}; threshold: {result.threshold})")
        return result


@pytest.fixture(scope="session")
def ftgate_session(request: pytest.FixtureRequest) -> FtgateSession:
    from .plugin import SESSION_KEY

    return request.config.stash[SESSION_KEY]


@pytest.fixture(scope="session")
def ftgate_config(ftgate_session: FtgateSession) -> FtgateConfig:
    """The validated ``ftgate.yaml`` (defaults when none is given)."""
    return ftgate_session.cfg


@pytest.fixture(scope="session")
def ft_run(request: pytest.FixtureRequest, ftgate_session: FtgateSession) -> RunRecord:
    """The training run under test, read from MLflow once per session (params, tags, every metric history).

    Parametrized by the plugin over ``--run-id`` / ``--ftgate-train`` / the bundled demo. A run that cannot
    be read (missing, store down, RUNNING, FAILED) errors every gate of that run, and the others go on.
    """
    ref = getattr(request, "param", None)
    if ref is None:
        pytest.fail("ft_run is parametrized by pytest-ftgate; request it from a test under the suites", False)
    try:
        return ftgate_session.load(ref)
    except RunUnavailable as exc:
        problem = str(exc)
    pytest.fail(problem, pytrace=False)  # an error of this run's gates, without a traceback


@pytest.fixture
def gate(request: pytest.FixtureRequest) -> GateRecorder:
    """The recorder of the ``@pytest.mark.gate`` this test carries."""
    from .plugin import GATE_KEY

    marker = request.node.get_closest_marker("gate")
    if marker is None:
        pytest.fail(f"{request.node.nodeid} uses the `gate` fixture without @pytest.mark.gate('ID')", False)
    store: dict[str, Any] = {}
    request.node.stash[GATE_KEY] = store
    return GateRecorder(store, str(marker.args[0]), marker.kwargs.get("name", request.node.originalname))


# --- audit and data fixtures (issue 6) ---
@pytest.fixture(scope="session")
def audit_record(ft_run: RunRecord, ftgate_session: FtgateSession):
    """The run's audit record (artifact ``record.ARTIFACT``) as a ``record.LoadedRecord`` (``.view`` is the typed
    ``AuditRecord``), downloaded once per run per session (``FtgateSession.audit_record``). Never raises: a missing
    or corrupt record comes back with ``problem`` set, which G6 reports and the gates that need the record error on
    (naming it), while the other gates go on."""
    return ftgate_session.audit_record(ft_run.run_id, ft_run.params)


@pytest.fixture(scope="session")
def adapter_artifact_dir(ft_run: RunRecord, ftgate_session: FtgateSession):
    """The run's adapter as stored on the run (what would be released), downloaded once per session: the same
    directory the quality gates score and the attestation names; None when the run has none."""
    return ftgate_session.adapter(ft_run.run_id).path


@pytest.fixture(scope="session")
def datasets(audit_record, ftgate_session: FtgateSession, ftgate_config: FtgateConfig):
    """The run's data files (``data.DataFile``) from the audit record's lineage; the test split is
    ``--ftgate-test-set`` / ``quality.test_set`` when given. DataError when the run records no lineage."""
    from pathlib import Path

    from . import data
    from .errors import DataError

    if audit_record.record is None:
        raise DataError(f"the run's datasets are unknown: {audit_record.problem} (see gate G6); the data checks "
                        "read the lineage recorded there")
    view = audit_record.view
    test_set = ftgate_session.options.test_set or ftgate_config.quality.test_set
    return data.from_lineage(view.datasets, view.dataset_info_path, test_set, Path(ftgate_session.options.root))


@pytest.fixture(scope="session")
def data_scan(datasets, ftgate_config: FtgateConfig):
    """One streaming pass over the run's data files, shared by the schema, pii, leakage and duplicates gates."""
    from . import data

    return data.scan(datasets, ftgate_config.data.pii_kinds, ftgate_config.data.max_listed)


# --- serving and scoring fixtures (issue 4) ---
@pytest.fixture(scope="session")
def engine_pool(ftgate_session: FtgateSession, ftgate_config: FtgateConfig):
    """One engine per base model for the whole session (kind: --ftgate-engine, else engine.kind), shared by every
    run on that base; every engine (and server process tree) is stopped at session end."""
    from .serve import EnginePool

    cfg = ftgate_config
    pool = EnginePool(ftgate_session.options.engine or cfg.engine.kind, cfg.engine,
                      log_dir=ftgate_session.out / "logs",
                      allow_pickle=ftgate_session.options.allow_pickle or cfg.audit.allow_pickle,
                      trust_remote_code=cfg.audit.trust_remote_code)
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def prediction_cache(ftgate_session: FtgateSession, ftgate_config: FtgateConfig):
    """The on-disk prediction cache (``quality.cache_dir``, default ``<rootdir>/.ftgate/cache``); None when off."""
    from pathlib import Path

    from .serve.cache import PredictionCache

    q = ftgate_config.quality
    if not q.cache:
        yield None
        return
    cache = PredictionCache(q.cache_dir or Path(ftgate_session.options.root) / ".ftgate" / "cache")
    yield cache
    cache.close()


@pytest.fixture(scope="session")
def base_model(ft_run: RunRecord, audit_record, adapter, ftgate_session: FtgateSession,
               ftgate_config: FtgateConfig) -> str:
    """The run's base model: ``quality.base_model``, else the audit record's path, else its ``model_name_or_path``,
    else the adapter's (an engine that loads it here needs it on this machine)."""
    from . import predict

    kind = ftgate_session.options.engine or ftgate_config.engine.kind
    return predict.base_model_path(audit_record.view, ft_run.params, adapter, ftgate_config.quality.base_model,
                                   required=kind != "openai")


@pytest.fixture(scope="session")
def served(engine_pool, base_model: str, adapter, ft_run: RunRecord):
    """The engine serving this run's base model, with its adapter attached as ``run-<run_id>``; started on its
    first answer that is not in the prediction cache (``EnginePool.lazy``)."""
    from . import predict

    return engine_pool.lazy(base_model, {predict.adapter_name(ft_run.run_id): adapter})


@pytest.fixture(scope="session")
def engine(test_set, served):
    """``served``, for the quality gates: ``test_set`` comes first, so a bad test set errors them (one line each)
    before any model is loaded."""
    return served


@pytest.fixture(scope="session")
def test_set(ftgate_session: FtgateSession, ftgate_config: FtgateConfig, audit_record):
    """The held-out test set (``predict.HeldOutSet``): --ftgate-test-set / quality.test_set, else the run's recorded
    test file (hash-checked against the audit record)."""
    from . import predict

    q = ftgate_config.quality
    return predict.resolve_test_set(ftgate_session.options.test_set or q.test_set, audit_record.record,
                                    q.max_samples, q.bad_rows)


@pytest.fixture(scope="session")
def scorer(test_set, adapter, base_model: str, prediction_cache, ftgate_config: FtgateConfig, audit_record):
    """Prompts (encoded with the run's LLaMA-Factory template), greedy settings and the cache shared by every model
    scored for this run."""
    from . import predict, record

    return predict.Scorer.create(test_set, adapter, base_model, ftgate_config.quality, ftgate_config.engine.seed,
                                 prediction_cache, record.training_config(audit_record.view))


@pytest.fixture(scope="session")
def predictions(engine, scorer, base_model: str, adapter, ft_run: RunRecord, ftgate_session: FtgateSession):
    """The adapter's greedy answers to the test set, scored (``predict.Answers``); kept in the session per run
    (``FtgateSession.answers``) for the A/B comparison of the session's runs when it ends."""
    from . import compare, predict

    answers = scorer.answers("candidate", engine, predict.adapter_name(ft_run.run_id), base_model, adapter)
    ftgate_session.answers[ft_run.run_id] = compare.snapshot(ft_run.run_id, answers, scorer)
    return answers


@pytest.fixture(scope="session")
def production(served, engine_pool, base_model: str, ft_run: RunRecord, ftgate_session: FtgateSession,
               ftgate_config: FtgateConfig, tmp_path_factory: pytest.TempPathFactory):
    """The registry's ``production`` version, downloaded once per run and attached to an engine, that G4 and the
    safety gates compare with (``predict.production_model``: (model or None, version info, note))."""
    from . import predict

    q = ftgate_config.quality
    return predict.production_model(served, engine_pool, base_model, ftgate_session.store, ft_run.run_id,
                                    q.registered_model or ftgate_session.options.promote, q.baseline_alias,
                                    tmp_path_factory.mktemp("production"), ftgate_session.audit_record)


@pytest.fixture(scope="session")
def baseline(engine, scorer, base_model: str, production):
    """The base model's answers on the same prompts, and the registry's ``production`` version's when there is
    one (``predict.Baselines``)."""
    from . import predict

    return predict.baselines(scorer, engine, base_model, production)


# --- benchmark fixtures (issue 5) ---
@pytest.fixture(scope="session")
def bench_runner(ftgate_session: FtgateSession, ftgate_config: FtgateConfig, engine_pool):
    """lm-eval runs of ``benchmarks.tasks`` (``lmeval.BenchRunner``): task catalog, result cache, and the models
    kept loaded between tasks, freed at session end; with the vllm engine, lm-eval asks the pool's server."""
    from . import lmeval

    runner = lmeval.runner_for(ftgate_config, ftgate_session.options.engine, ftgate_session.options.root,
                              ftgate_session.out / "bench", echo=ftgate_session.echo)
    runner.engine_pool = engine_pool
    yield runner
    runner.close()


# --- training fixtures (issue 3) ---
@pytest.fixture(scope="session")
def adapter(ft_run: RunRecord, ftgate_session: FtgateSession) -> str:
    """The local directory of the run's adapter: the bytes of its ``adapter/`` artifact, downloaded once per session
    into ``<root>/.ftgate/cache/adapters/<sha256 of those bytes>``. Whether they match what training recorded is the
    integrity gate's verdict; every gate scores these bytes (RunUnavailable when the run has no adapter)."""
    return str(ftgate_session.adapter(ft_run.run_id).require())


# --- human evaluation fixtures (issue 13) ---
@pytest.fixture(scope="session")
def human_ratings(ft_run: RunRecord, ftgate_session: FtgateSession, ftgate_config: FtgateConfig,
                  tmp_path_factory: pytest.TempPathFactory):
    """The run's imported human ratings, validated again against their export and summarized
    (``human_eval.GateInput``: ``summary`` None with a ``hint`` naming the commands when none are imported yet)."""
    from . import human_eval

    return human_eval.for_gate(ftgate_session.store, ft_run.run_id, tmp_path_factory.mktemp("human-eval"),
                               ftgate_config.human_eval)


# --- safety fixtures (issue 13) ---
@pytest.fixture(scope="session")
def safety_classifier(ftgate_config: FtgateConfig, prediction_cache):
    """The toxicity classifier (``safety.classifier``: alt-profanity-check, or a local text-classification model),
    loaded once per session on its first text not in the prediction cache (``safety.cached_classifier``)."""
    from . import safety

    s = ftgate_config.safety
    return safety.cached_classifier(s.classifier, s.toxic_label, prediction_cache)


@pytest.fixture(scope="session")
def safety_run(served, base_model: str, adapter, production, ft_run: RunRecord, prediction_cache, audit_record,
               ftgate_config: FtgateConfig):
    """The candidate's and each baseline's answers to the safety prompt sets (``safety.SafetyRun``): the same
    engine, prompt encoding (the run's LLaMA-Factory template), greedy settings and prediction cache as the quality
    gates; the baselines are G4's (the base model, the ``production`` version)."""
    from . import predict, record, safety

    cfg = ftgate_config
    training_config = record.training_config(audit_record.view)

    def make_scorer(held_out):
        return predict.Scorer.create(held_out, adapter, base_model, cfg.quality, cfg.engine.seed, prediction_cache,
                                     training_config)

    baselines, notes = safety.baseline_models(served, base_model, production)
    candidate = safety.Model("candidate", served, predict.adapter_name(ft_run.run_id), base_model, adapter)
    return safety.SafetyRun(candidate, baselines, make_scorer, notes)
