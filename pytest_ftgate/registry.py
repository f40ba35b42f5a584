"""Deprecated: moved to registry promotion (promotion.py). This stub keeps ``pytest_ftgate.registry`` importable for one release."""

from ._compat import forward

__getattr__ = forward(__name__, ("pytest_ftgate.promotion",))
