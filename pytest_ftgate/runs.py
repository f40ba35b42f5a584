"""Deprecated: moved to the MLflow store (store.py). This stub keeps ``pytest_ftgate.runs`` importable for one release."""

from ._compat import forward

__getattr__ = forward(__name__, ("pytest_ftgate.store",))
