"""Deprecated: moved to the audit gates (gates/audit.py) and the audit record (record.py). This stub keeps ``pytest_ftgate.compliance`` importable for one release."""

from ._compat import forward

__getattr__ = forward(__name__, ("pytest_ftgate.gates.audit","pytest_ftgate.record","pytest_ftgate.hashing",))
