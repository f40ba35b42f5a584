"""pytest-ftgate: a release gate for fine-tuned LLM adapters, written as a pytest plugin.

What a suite uses is importable from here, so that moves inside the package do not break users' edited suites::

    from pytest_ftgate import Check, GateFailure, gates
    gates.training.stability(...); gates.quality.baseline_gate(...); gates.audit.integrity(...)

The gate families (``training``, ``quality``, ``serving``, ``benchmarks``, ``audit``, ``data``) are imported on
first use; importing this package imports none of them.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Check", "GateFailure", "labelled", "gates", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("Check", "GateFailure", "labelled"):
        from . import gates

        return getattr(gates, name)
    if name == "gates":
        import importlib

        return importlib.import_module(f"{__name__}.gates")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
