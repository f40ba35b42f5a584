"""Thin fixtures that hand the suites plain values: the run under test, the gate recorder, the config.

Lifecycle only (session scope, teardown); the work is done by the core modules they call.
"""

from __future__ import annotations

from typing import Any

import pytest

from .config import FtgateConfig
from .gates import Check, GateFailure
from .runs import RunRecord
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
            label = f"{gate_id or self.id} {self.name}".strip()
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
    return ftgate_session.load(ref)


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
