"""Deprecated: the serving_parity gate moved to ``pytest_ftgate.gates.serving``; kept importable for one release."""

from .._compat import forward

__getattr__ = forward(__name__, ("pytest_ftgate.gates.serving",))
