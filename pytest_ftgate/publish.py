"""The end of a gating session: gather each run's evidence (record, audit record, the digests of the adapter bytes
this session gated), then, once the HTML report exists, record its sha256 in every verdict, write the
attestations, push the evidence to MLflow, promote, and write ``report.json`` and ``summary.md``.

Only a complete verdict speaks for a run: a partial one (a selection, Ctrl-C, a crash) is written to disk and the
report, but never attested, never promoted and never written to MLflow. A complete session's evidence on the run is
immutable: it goes under ``ftgate/sessions/<session id>/`` and the run's tags point at the latest complete session,
so a registry version keeps pointing at the evidence it was promoted with.

No pytest (``plugin.py`` calls this from its hooks) and no HTML (``report.py`` builds it). Every failure here is
reported and the rest goes on: a session's verdicts must never be lost to a report or registry problem; what could
not be done is in ``failures`` (the session then exits non-zero).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
from pathlib import Path
from typing import Callable

from . import __version__, attest, promotion, report
from .errors import FtgateError
from .record import AuditRecord
from .redact import Redactor
from .report import RunEvidence
from .session import FtgateSession, RunRef
from .verdict import utcnow, write_json_atomic, write_text_atomic

SESSIONS_ARTIFACT = "ftgate/sessions"  # ftgate/sessions/<session id>/{<run>.json, report.html, <run>.intoto.json}


class Publisher:
    """One per session: ``evidence()`` (cached), ``html()`` for the report, ``finish()`` after it is written."""

    def __init__(self, sess: FtgateSession, args: list[str] | None = None, echo: Callable[[str], None] = print):
        self.sess = sess
        self.echo = echo
        self.redactor = Redactor()
        self.meta = {"version": __version__, "started_at": sess.started_at, "finished_at": "", "interrupted": False,
                     "tracking_uri": self.redactor.text(sess.tracking_uri), "out": str(sess.out),
                     "args": [self.redactor.text(a) for a in args or []], "report": "", "report_sha256": ""}
        self._evidence: list[RunEvidence] | None = None
        self._fresh = False  # the redacted verdicts reflect FtgateSession.finish
        self._raw: dict[str, tuple] = {}
        self.failures: list[str] = []  # what could not be done (promotion refused, MLflow not written): exit non-zero
        self.recorded: set[str] = set()  # runs whose complete verdict MLflow now holds

    # -- evidence ------------------------------------------------------------------------------------------------
    def refs(self) -> list[RunRef]:
        return self.sess.run_refs() if self.sess.verdicts else []  # resolved already: no training here

    def evidence(self) -> list[RunEvidence]:
        if self._evidence is None:
            for ref in self.refs():
                self._raw[ref.key] = self._gather(ref)
            for record, audit, files, notes in self._raw.values():
                if record is not None:
                    self.redactor.learn(record.params)
                    self.redactor.learn(record.tags)
            self._evidence = [self._redacted(ref) for ref in self.refs()]
        return self._evidence

    def _gather(self, ref: RunRef) -> tuple:
        notes: list[str] = []
        record = ref.record
        if record is None and not ref.error:
            try:
                record = self.sess.load(ref)
            except FtgateError as exc:
                notes.append(str(exc))
        audit, files = None, []
        if record is not None:
            audit = self._audit(ref, record.params, notes)
            files = self._adapter(ref, notes)
        return record, audit, files, notes

    def _audit(self, ref: RunRef, params: dict, notes: list[str]) -> dict | None:
        """The run's audit record as the session's gates read it (one download per run per session); a run without
        one has none in the report, a record that cannot be read is a note (the gates judge it)."""
        loaded = self.sess.audit_record(ref.run_id, params)
        if loaded.record is None and not loaded.absent:
            notes.append(f"the audit record could not be read: {loaded.problem}")
        return loaded.record

    def _adapter(self, ref: RunRef, notes: list[str]) -> list[dict]:
        """The digests of the adapter bytes this session gated (downloaded once, see ``artifacts``)."""
        copy = self.sess.adapters.get(ref.key)
        if copy is None and self.sess.verdicts[ref.key].complete:
            copy = self.sess.adapter(ref.run_id)
        if copy is None:
            return []
        if copy.path is None:
            notes.append(f"nothing to attest or promote: the run {copy.problem}")
            return []
        return [dict(f) for f in copy.files]  # {name, sha256 ("sha256:<hex>"), size}: one format everywhere

    def _redacted(self, ref: RunRef) -> RunEvidence:
        record, audit, files, notes = self._raw[ref.key]
        r = self.redactor
        if record is not None:
            record = dataclasses.replace(record, run_name=r.text(record.run_name), params=r.deep(record.params),
                                         tags=r.deep(record.tags))
        return RunEvidence(verdict={"run_id": ref.key}, record=record,  # the verdict itself: refresh()
                           audit=r.deep(audit), adapter_files=files, notes=[r.text(n) for n in notes])

    def refresh(self, interrupted: bool) -> list[RunEvidence]:
        """The evidence with the verdicts as they are now (after ``FtgateSession.finish``), redacted."""
        self.meta["interrupted"] = bool(interrupted)
        self.meta["finished_at"] = utcnow()
        evs = self.evidence()
        self._compare()
        for ev in evs:
            ev.verdict = self.redactor.deep(self.sess.verdicts[ev.run_id].to_dict())
            ev.checklist = self._checklist(ev)
        self._fresh = True
        return evs

    def _checklist(self, ev: RunEvidence) -> dict:
        """The run's seed 003 checklist from its gates and ``compliance:``; its registry items are answered when
        this session registers the run (``--ftgate-promote``), and again from the registry at `ftgate promote`."""
        from . import checklist

        name = self.sess.options.promote
        registers = name and promotion.refusal(ev.verdict, bool(ev.adapter_files)) is None
        return checklist.build(ev.verdict.get("gates", []), self.sess.cfg.compliance,
                               {"name": name} if registers else None)

    def _compare(self) -> None:
        """The comparisons of the session's runs (``compare.py``), from the answers the session kept: each run's
        into its verdict (``comparison``), the whole table into ``meta["comparison"]`` (report and report.json)."""
        from . import compare

        verdicts = {k: v.to_dict() for k, v in self.sess.verdicts.items()}
        inputs = {k: ((raw[0].params if raw[0] is not None else None), raw[1]) for k, raw in self._raw.items()}
        try:
            summary = compare.session_comparison(verdicts, inputs, self.sess.answers,
                                                 compare.Settings.of(self.sess.cfg), self.sess.compare_key)
        except Exception as exc:  # a comparison must never cost the session its verdicts
            self.failures.append("comparison of the session's runs")
            summary = {"notes": [f"the runs could not be compared: {type(exc).__name__}: {_first(exc)}"]}
        for key, comparison in (summary.get("pairs") or {}).items():
            if key in self.sess.verdicts:
                self.sess.verdicts[key].comparison = comparison
        self.meta["comparison"] = self.redactor.deep(summary)

    def html(self, interrupted: bool) -> str:
        return report.session_html(self.refresh(interrupted), self.meta)

    # -- after the HTML exists -----------------------------------------------------------------------------------
    def finish(self, html_path: Path | None, interrupted: bool, write_html: bool = False) -> list[str]:
        """Everything that needs the written report; returns lines for the terminal summary."""
        evs = self.evidence() if self._fresh else self.refresh(interrupted)  # the verdicts are final already
        lines: list[str] = []
        if write_html and html_path is not None:
            html_path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(html_path, report.standalone_page("pytest-ftgate release report",
                                                               report.session_html(evs, self.meta)))
        sha = self._seal(html_path)
        for ev in evs:
            self.sess.verdicts[ev.run_id].report_sha256 = sha
            ev.verdict["report_sha256"] = sha
            write_json_atomic(self.sess.verdict_path(ev.run_id), ev.verdict)
        complete = [ev for ev in evs if ev.verdict.get("complete")]
        lines += self._attest(complete)
        lines += self._push(complete, html_path)
        if self.sess.options.promote:
            lines += self._promote(evs)
        out = self.sess.out
        self._write(out / "report.json", report.session_json_text(evs, self.meta))
        self._write(out / "summary.md", report.summary_md(evs, self.meta))
        partial = [ev.verdict.get("run_name") for ev in evs if not ev.verdict.get("complete")]
        if partial:
            lines.append(f"ftgate: PARTIAL session for {', '.join(map(str, partial))}: not every gate ran, so "
                         "nothing was written to MLflow, attested or promoted; run the whole suites for a verdict")
        if html_path is not None and html_path.is_file():
            lines.insert(0, f"report: {html_path} (sha256 {sha[:16]}…), {out / 'report.json'}, {out / 'summary.md'}")
        return lines

    def _seal(self, html_path: Path | None) -> str:
        """Scrub secrets from the written HTML (pytest-html's parts too), then hash it."""
        if html_path is None or not html_path.is_file():
            return ""
        text = html_path.read_text(encoding="utf-8")
        clean = self.redactor.scrub(text)
        if clean != text:
            self._write(html_path, clean)
        sha = hashlib.sha256(html_path.read_bytes()).hexdigest()
        self.meta.update(report=str(html_path), report_sha256=sha)
        return sha

    def _write(self, path: Path, text: str) -> None:
        write_text_atomic(path, self.redactor.scrub(text))

    def _attest(self, evs: list[RunEvidence]) -> list[str]:
        """An attestation per complete verdict whose adapter this session gated; the key was checked at start."""
        key = attest.configured_key()
        lines = []
        for ev in evs:
            if not ev.adapter_files:
                continue
            path = self.sess.verdict_path(ev.run_id).with_suffix(".intoto.json")
            statement = attest.statement(ev.adapter_files, attest.predicate(
                ev.verdict, self._run_info(ev), attest.lineage(ev.record.params if ev.record else {}, ev.audit),
                self._versions(ev)))
            env = attest.envelope(self.redactor.deep(statement), key)
            self._write(path, json.dumps(env, indent=1))
            ev.attestation = {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                              "signed": bool(env["signatures"]),
                              "keyid": env["signatures"][0]["keyid"] if env["signatures"] else ""}
            lines.append(f"attestation: {path} ({'signed' if key else 'unsigned'})")
        return lines

    def _run_info(self, ev: RunEvidence) -> dict:
        rec = ev.record
        return {"run_id": ev.run_id, "run_name": ev.verdict.get("run_name"), "tracking_uri": self.meta["tracking_uri"],
                "experiment_id": rec.experiment_id if rec else None,
                "artifact_uri": self.redactor.text(rec.artifact_uri) if rec else None}

    def _versions(self, ev: RunEvidence) -> dict:
        from importlib import metadata

        gating = {"python": platform.python_version(), "pytest_ftgate": __version__}
        for dist in ("pytest", "mlflow", "pytest-html"):
            try:
                gating[dist.replace("-", "_")] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                pass
        env = AuditRecord.of(ev.audit).environment
        return {"training": env, "gating": gating}

    def _promote(self, evs: list[RunEvidence]) -> list[str]:
        name = self.sess.options.promote
        lines = []
        try:
            client = promotion.client_for(self.sess.tracking_uri)
        except Exception as exc:
            self.failures.append("promotion")
            return [f"ftgate: ERROR promotion to {name!r} failed: {type(exc).__name__}: {_first(exc)}"]
        for ev in evs:
            run = ev.verdict.get("run_name")
            refusal = promotion.refusal(ev.verdict, bool(ev.adapter_files))
            if refusal is None and ev.run_id not in self.recorded:
                refusal = "MLflow does not hold this session's verdict for the run (see above)"
            if refusal is not None:
                if ev.verdict.get("complete") and ev.run_id in self.recorded:
                    try:  # a run that does not pass any more must not stay the candidate
                        promotion.withdraw(client, name, ev.run_id, ev.verdict.get("verdict", "block"))
                    except Exception as exc:
                        lines.append(f"ftgate: ERROR the candidate alias of {run} could not be withdrawn: "
                                     f"{type(exc).__name__}: {_first(exc)}")
                ev.promotion = {"name": name, "skipped": refusal}
                self.failures.append(f"promotion of {run}")
                lines.append(f"ftgate: promotion REFUSED: {run} not registered in {name!r} ({refusal})")
                continue
            params = ev.record.params if ev.record else {}
            tags = promotion.candidate_tags(ev.verdict, params.get("ftgate.dataset_sha256", "") or _train_hash(ev),
                                           self.meta["report_sha256"], ev.attestation.get("sha256", ""),
                                           self._evidence_uri(ev.run_id))
            try:
                ev.promotion = promotion.promote_candidate(client, name, ev.verdict, tags, bool(ev.adapter_files))
            except Exception as exc:
                ev.promotion = {"name": name, "skipped": f"registry error: {type(exc).__name__}: {_first(exc)}"}
            p = ev.promotion
            if p.get("version") and ev.checklist:  # report.json: the registry items with the version now held
                from .checklist import with_registry

                ev.checklist = with_registry(ev.checklist, {"name": name, "version": p["version"]})
            if not p.get("version"):
                self.failures.append(f"promotion of {run}")
            lines.append(f"registry: {run} -> {name} version {p['version']}, alias {p['alias']}" if p.get("version")
                         else f"ftgate: promotion REFUSED: {run} not registered in {name!r} ({p['skipped']})")
        return lines

    def _evidence_uri(self, run_id: str) -> str:
        return f"runs:/{run_id}/{SESSIONS_ARTIFACT}/{self.sess.session_id}"

    def _push(self, evs: list[RunEvidence], html_path: Path | None) -> list[str]:
        """Each complete verdict's evidence under ``ftgate/sessions/<id>/`` on its run, then the run's tags (the
        verdict, each gate's outcome; tags of gates this session did not define are removed)."""
        lines = []
        sid = self.sess.session_id
        for ev in evs:
            if not ev.run_id or ev.record is None:
                continue
            v = ev.verdict
            where = f"{SESSIONS_ARTIFACT}/{sid}"
            try:
                store = self.sess.store
                store.log_artifact(ev.run_id, self.sess.verdict_path(ev.run_id), where)
                if ev.attestation:
                    store.log_artifact(ev.run_id, ev.attestation["path"], where)
                if ev.checklist:  # read by `ftgate promote --to production` (promotion.move)
                    from .checklist import SUFFIX

                    # beside the verdicts, not among them: verdicts/*.json are verdicts only
                    path = self.sess.out / "checklists" / (self.sess.verdict_path(ev.run_id).stem + SUFFIX)
                    self._write(path, json.dumps(ev.checklist, indent=1, ensure_ascii=False))
                    store.log_artifact(ev.run_id, path, where)
                if html_path is not None and html_path.is_file():
                    store.log_artifact(ev.run_id, html_path, where)
                tags = {"ftgate.verdict": v.get("verdict"), "ftgate.session_id": sid, "ftgate.evidence": where,
                        "ftgate.verdict_at": v.get("finished_at") or utcnow(), "ftgate.version": __version__,
                        "ftgate.report_sha256": self.meta["report_sha256"] or "none",
                        "ftgate.attestation_sha256": ev.attestation.get("sha256", "") or "none",
                        "ftgate.checklist_open": ",".join(ev.checklist.get("open_required", ())) or "none"}
                gate_tags = {f"ftgate.gate.{_tag_key(g.get('id', ''))}": g.get("outcome") for g in v.get("gates", [])}
                store.set_tags(ev.run_id, {**tags, **gate_tags})
                stale = [k for k in (ev.record.tags or {}) if (k.startswith("ftgate.gate.") and k not in gate_tags)
                         or k == "ftgate.incomplete"]
                store.delete_tags(ev.run_id, stale)
                self.recorded.add(ev.run_id)
            except Exception as exc:  # on disk already; say loudly that MLflow does not hold it
                self.failures.append(f"MLflow record of {v.get('run_name')}")
                lines.append(f"ftgate: ERROR MLflow does NOT hold this verdict for run {ev.run_id} "
                             f"({v.get('verdict', '?').upper()}): {type(exc).__name__}: {_first(exc)}; it is on disk "
                             f"only: {self.sess.verdict_path(ev.run_id)}")
        return lines


def _tag_key(gate_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_./ " else "_" for c in gate_id)


def _train_hash(ev: RunEvidence) -> str:
    return AuditRecord(ev.audit).train_sha256


def _first(exc: object) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else ""
