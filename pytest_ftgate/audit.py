"""Deprecated: moved to the audit record (record.py) and hashing (hashing.py). This stub keeps ``pytest_ftgate.audit`` importable for one release."""

from ._compat import forward

__getattr__ = forward(__name__, ("pytest_ftgate.record","pytest_ftgate.hashing",))
