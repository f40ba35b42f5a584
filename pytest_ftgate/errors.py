"""The exceptions of pytest-ftgate; each message names the thing at fault and the fix.

FtgateError
 ├── ConfigError          ftgate.yaml or an option is invalid (the file and key are named)
 ├── RunUnavailable       a training run cannot be gated (missing, unreachable store, RUNNING, FAILED)
 ├── StoreError           the MLflow tracking store is missing, not a database, or cannot be written
 ├── TrainingError        LLaMA-Factory training failed (the log tail is attached)
 ├── DataError            a dataset file or row is invalid (file and row are named)
 ├── EngineError          an inference engine did not start or stopped answering
 ├── BenchmarkError       an lm-eval task is unknown or its data is missing
 └── IntegrityError       a file does not match its recorded sha256
"""

from __future__ import annotations


class FtgateError(Exception):
    """Base class of every error pytest-ftgate raises on purpose."""


class ConfigError(FtgateError):
    """A configuration file, key or option value is invalid."""


class RunUnavailable(FtgateError):
    """A training run cannot be read or is not in a state that can be gated."""

    def __init__(self, ref: str, reason: str):
        self.ref = ref
        self.reason = reason
        super().__init__(f"run {ref!r}: {reason}")


class StoreError(FtgateError):
    """The MLflow tracking store cannot be used: its file is missing or not a database, or it cannot be written."""


class TrainingError(FtgateError):
    """A training job failed; ``log_tail`` holds the end of its log."""

    def __init__(self, message: str, log_tail: str = "", log_path: str | None = None):
        self.log_tail = log_tail
        self.log_path = log_path
        text = message
        if log_path:
            text += f"\n(full log: {log_path})"
        if log_tail:
            text += "\n--- last lines of the training log ---\n" + log_tail
        super().__init__(text)


class DataError(FtgateError):
    """A dataset file, registration or row is invalid."""


class EngineError(FtgateError):
    """An inference engine failed to start, died, or answered with errors."""


class BenchmarkError(FtgateError):
    """An lm-eval task cannot be run (unknown name, missing data)."""


class IntegrityError(FtgateError):
    """A file's content does not match the sha256 recorded for it."""


def did_you_mean(name: object, known, *, cutoff: float = 0.6, listed: bool = False, n: int = 1) -> str:
    """The hint every "unknown X" message ends with: ``; did you mean 'y'?`` for the closest known name (``n`` > 1:
    ``; closest names: y, z``), or, with ``listed``, ``; known: a, b, c`` when nothing is close ("" when there is
    nothing to say)."""
    import difflib

    known = [str(k) for k in known]
    close = difflib.get_close_matches(str(name), known, n=n, cutoff=cutoff)
    if close:
        return f"; did you mean {close[0]!r}?" if n == 1 else f"; closest names: {', '.join(close)}"
    return f"; known: {', '.join(known)}" if listed and known else ""
