"""Deprecated: moved to the lm-eval runner (lmeval.py) and the benchmark gate (gates/benchmarks.py). This stub keeps ``pytest_ftgate.bench`` importable for one release."""

from ._compat import forward

__getattr__ = forward(__name__, ("pytest_ftgate.lmeval","pytest_ftgate.gates.benchmarks",))
