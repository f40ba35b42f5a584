"""The adapter a run ships, as this session saw it: its ``adapter/`` artifact downloaded once per run per session,
hashed from the downloaded bytes and kept in a cache addressed by that content.

Every gate that scores, checks or attests the adapter uses this one copy, so what was gated is what ships: a cache
entry is named by the sha256 of the bytes on the run, never by a hash recorded at training (an adapter swapped on
the run after training is scored, attested and blocked by ``integrity`` as what it is). Whether the bytes match the
audit record is the integrity gate's question, not this module's. No pytest; mlflow only through ``RunStore``.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .hashing import HashMemo, digest_files, tree_files
from .errors import IntegrityError, RunUnavailable

ADAPTER_ARTIFACT = "adapter"


@dataclass(frozen=True)
class AdapterCopy:
    """The run's adapter as downloaded in this session; ``path`` is None when the run has none (``problem``)."""

    run_id: str
    path: Path | None
    files: list[dict] = field(default_factory=list)  # [{name, sha256 ("sha256:<hex>"), size}] of the bytes on the run
    digest: str = ""  # hashing.digest_files(files): the adapter's one content digest
    problem: str = ""  # why there is no adapter to gate ("" when there is)

    def require(self) -> Path:
        """The local directory; RunUnavailable naming the problem when the run has no adapter."""
        if self.path is None:
            raise RunUnavailable(self.run_id, self.problem)
        return self.path


def download_adapter(store: Any, run_id: str, cache_root: str | Path) -> AdapterCopy:
    """Download ``adapter/`` from the run, hash the bytes, and keep them under ``<cache_root>/<sha256 hex>``.

    An existing cache entry is re-hashed before it is re-used: one whose files were altered is replaced.
    Never raises for a run without an adapter: the copy says why (``problem``).
    """
    cache_root = Path(cache_root)
    try:
        listed = store.list_artifacts(run_id, ADAPTER_ARTIFACT)
    except Exception as exc:  # the store went away: the gates that need the adapter say so
        return AdapterCopy(run_id, None, problem=f"its adapter artifact cannot be listed: {type(exc).__name__}: "
                                                 f"{_first(exc)}")
    if f"{ADAPTER_ARTIFACT}/adapter_config.json" not in listed:
        return AdapterCopy(run_id, None, problem=(
            "has no `adapter/` artifact (adapter_config.json missing): log the adapter on the run (`ftgate train` "
            "does; for a run trained by plain LLaMA-Factory, `ftgate adopt RUN --config train.yaml`)"))
    cache_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=cache_root))
    try:
        local = store.download(run_id, ADAPTER_ARTIFACT, tmp / "dl")
        files = tree_files(local, HashMemo(tmp / "memo.json"))
        digest = digest_files(files)
        dst = cache_root / digest.removeprefix("sha256:")
        if not _holds(dst, digest):
            stale = dst.with_name(f".stale-{dst.name}-{tmp.name}")
            if dst.exists():
                dst.rename(stale)
            local.rename(dst)
            shutil.rmtree(stale, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return AdapterCopy(run_id, dst, files, digest)


def _holds(directory: Path, digest: str) -> bool:
    """Whether ``directory`` holds exactly the files of ``digest`` (hashed now, no memo)."""
    if not directory.is_dir():
        return False
    with tempfile.TemporaryDirectory() as memo_dir:
        return digest_files(tree_files(directory, HashMemo(Path(memo_dir) / "memo.json"))) == digest


def compare_to_record(copy: AdapterCopy, recorded: list[dict] | None, expected_digest: str = "") -> list[str]:
    """What differs between the downloaded bytes and what training recorded ([] = they match)."""
    actual = {f["name"]: f["sha256"] for f in copy.files}
    problems = []
    if recorded is not None:
        want = {f.get("name"): f.get("sha256") for f in recorded}
        problems += [f"{n}: recorded {h}, downloaded {actual.get(n, 'missing')}" for n, h in sorted(want.items())
                     if actual.get(n) != h]
        problems += [f"{n}: not in the audit record" for n in sorted(set(actual) - set(want))]
    if expected_digest and copy.digest != expected_digest:
        problems.append(f"the adapter's digest {copy.digest} is not the recorded ftgate.adapter_sha256 "
                        f"{expected_digest}")
    return problems


def fetch_verified(store: Any, run_id: str, cache_root: str | Path) -> Path:
    """The run's adapter, downloaded, when it matches its audit record and ``ftgate.adapter_sha256``
    (IntegrityError otherwise; RunUnavailable for a run without the digest or the artifact). For tools and tests
    that want a trusted copy; the gates use ``download_adapter`` and let the integrity gate judge."""
    from .record import load_record

    params = store.client.get_run(run_id).data.params
    expected = params.get("ftgate.adapter_sha256")
    if not expected:
        raise RunUnavailable(run_id, "has no `ftgate.adapter_sha256` param, so its adapter cannot be verified: "
                                     "train it with `ftgate train` / `pytest --ftgate-train`, or attach it with "
                                     "`ftgate adopt RUN --config CONFIG`")
    copy = download_adapter(store, run_id, cache_root)
    path = copy.require()
    with tempfile.TemporaryDirectory() as tmp:
        loaded = load_record(store, run_id, Path(tmp), dict(params))
    if loaded.record is None and not loaded.absent:
        raise IntegrityError(f"run {run_id}: its audit record cannot be read ({loaded.problem}), so its adapter "
                             "cannot be verified against it")
    problems = compare_to_record(copy, loaded.view.adapter_files or None, expected)
    if problems:
        raise IntegrityError(f"run {run_id}: the adapter artifact does not match its audit record: "
                             + "; ".join(problems))
    return path


def _first(exc: object) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else ""
