"""The data gates (seeds 003/004), pure, on one streaming pass over a run's data files (``data.scan``): schema,
pii, leakage and duplicates. Verdict texts name files, rows and kinds, never row contents (PII must not leak into a
report). No pytest, no MLflow, no file reading here.
"""

from __future__ import annotations

from pathlib import Path

from ..data import DataScan
from . import Check, family

gate = family("data", "Data checks", 50)


def _name(path: str) -> str:
    return Path(path).name


def _rows(rows: list[int], total: int) -> str:
    listed = ", ".join(map(str, rows))
    return f"row{'s' if total > 1 else ''} {listed}{', …' if total > len(rows) else ''}"


def _unread(scan: DataScan, splits: tuple[str, ...] = ("train", "validation", "test")) -> list[str]:
    return [f.error for f in scan.files if f.error and f.split in splits]


@gate("schema", "invalid rows")
def schema_check(scan: DataScan) -> Check:
    """``schema``: every row of every file is a valid alpaca/sharegpt example as dataset_info.json declares."""
    threshold = "every row valid"
    if not scan.files:
        return Check(False, None, threshold, "the run records no dataset files: there is nothing to check")
    problems = list(dict.fromkeys(p for f in scan.files for p in f.problems)) + _unread(scan)
    bad = sum(f.bad_rows for f in scan.files)
    for f in scan.files:
        for row, why in f.bad:
            problems.append(f"{_name(f.path)} row {row}: {why}")
        if f.bad_rows > len(f.bad):
            problems.append(f"{_name(f.path)}: {f.bad_rows - len(f.bad)} more invalid rows")
    details = {"files": [{"name": f.name, "split": f.split, "path": f.path, "formatting": f.formatting,
                          "rows": f.rows, "invalid_rows": f.bad_rows, "invalid": f.bad, "error": f.error}
                         for f in scan.files]}
    if problems:
        head = f"{bad} invalid row(s) in {scan.rows}" if bad else "the data cannot be fully checked"
        return Check(False, bad, threshold, f"{head}: " + "; ".join(problems), details)
    listed = ", ".join(f"{f.split} {_name(f.path)} ({f.formatting}, {f.rows} rows"
                       f"{f' trained: max_samples {f.max_rows}' if f.max_rows else ''})" for f in scan.files)
    return Check(True, 0, threshold, f"all {scan.rows} rows valid: {listed}", details)


@gate("pii", "PII findings per kind")
def pii_check(scan: DataScan) -> Check:
    """``pii``: no e-mail, phone, IBAN, card or national id in the data. Counts and row numbers only."""
    threshold = "no PII found"
    totals: dict[str, int] = {}
    parts = []
    for f in scan.files:
        for kind, e in f.pii.items():
            totals[kind] = totals.get(kind, 0) + e["count"]
        if f.pii:
            kinds = ", ".join(f"{k} ×{e['count']} ({_rows(e['rows'], e['count'])})" for k, e in sorted(f.pii.items()))
            parts.append(f"{f.split} {_name(f.path)}: {kinds}")
    details = {"files": [{"path": f.path, "split": f.split, "rows_with_pii": f.pii_rows, "kinds": f.pii}
                         for f in scan.files], "totals": totals}
    rows = sum(f.pii_rows for f in scan.files)
    unread = _unread(scan)
    if parts:
        return Check(False, totals, threshold,
                     f"possible PII in {rows} of {scan.rows} rows: " + "; ".join(parts) + ". The values are not "
                     "shown; remove or pseudonymise them before training (GDPR data minimisation)"
                     + (f". Not scanned: {'; '.join(unread)}" if unread else ""), details)
    if unread:
        return Check(False, None, threshold, "PII cannot be ruled out: " + "; ".join(unread), details)
    return Check(True, {}, threshold, f"no PII found in {scan.rows} rows of {len(scan.files)} file(s)", details)


@gate("leakage", "share of test prompts found in the training data (0-1)")
def leakage_check(scan: DataScan, max_share: float) -> Check:
    """``leakage``: test prompts that appear in the training data, exactly or after normalisation."""
    threshold = f"<= {max_share:.1%} of test prompts"
    if not any(f.split == "test" for f in scan.files):
        return Check(False, None, threshold, "the run records no test split: leakage cannot be checked (record a "
                                             "held-out test file, or pass --ftgate-test-set)")
    if not any(f.split == "train" for f in scan.files):
        return Check(False, None, threshold, "the run records no training data: leakage cannot be checked")
    unread = _unread(scan, ("train", "test"))
    if unread:
        return Check(False, None, threshold, "leakage cannot be ruled out: " + "; ".join(unread))
    if not scan.test_prompts:
        return Check(False, None, threshold, "the test split has no valid prompts: leakage cannot be checked")
    n = len(scan.leaks)
    share = n / scan.test_prompts
    exact = sum(1 for *_, how in scan.leaks.values() if how == "exact")
    pairs = [f"{_name(t[0])} row {t[1]} = {_name(tr)} row {r}" for t, (tr, r, _) in list(scan.leaks.items())
             [: scan.max_listed]]
    details = {"leaked": n, "test_prompts": scan.test_prompts, "exact": exact, "normalised": n - exact,
               "pairs": [{"test": list(t), "train": [tr, r], "match": how} for t, (tr, r, how) in
                         list(scan.leaks.items())[: scan.max_listed]]}
    if share > max_share:
        return Check(False, round(share, 6), threshold,
                     f"{n} of {scan.test_prompts} test prompts ({share:.1%}) appear in the training data ({exact} "
                     f"exactly, {n - exact} after normalising case, whitespace and punctuation): "
                     f"{'; '.join(pairs)}{' …' if n > len(pairs) else ''}. Remove them from the training data (or "
                     f"the test set) and retrain: test scores on seen prompts overstate quality", details)
    found = f"{n} of {scan.test_prompts} test prompts ({share:.1%}) found in {scan.train_rows} training rows"
    return Check(True, round(share, 6), threshold, found, details)


@gate("duplicates", "share of duplicate training rows (0-1)")
def duplicates_check(scan: DataScan, max_share: float) -> Check:
    """``duplicates``: the share of training rows that repeat an earlier row (normalised prompt + answer)."""
    threshold = f"<= {max_share:.1%} of training rows"
    if not scan.train_rows:
        why = "; ".join(_unread(scan, ("train",))) or "the run records no training data"
        return Check(False, None, threshold, f"duplicates cannot be counted: {why}")
    share = scan.duplicate_rows / scan.train_rows
    pairs = [f"{_name(a[0])} row {a[1]} = row {b[1]}" + ("" if a[0] == b[0] else f" of {_name(b[0])}")
             for a, b in scan.duplicate_examples]
    details = {"duplicate_rows": scan.duplicate_rows, "train_rows": scan.train_rows,
               "examples": [{"row": list(a), "first": list(b)} for a, b in scan.duplicate_examples]}
    text = (f"{scan.duplicate_rows} of {scan.train_rows} training rows ({share:.1%}) repeat an earlier row "
            f"(prompt and answer equal after normalising case, whitespace and punctuation)")
    unread = _unread(scan, ("train",))
    if share > max_share or unread:
        more = f": {'; '.join(pairs)}{' …' if scan.duplicate_rows > len(pairs) else ''}" if pairs else ""
        tail = f". Not counted: {'; '.join(unread)}" if unread else ". Deduplicate the training data"
        return Check(False, round(share, 6), threshold, text + more + tail, details)
    return Check(True, round(share, 6), threshold, text, details)
