"""Old import paths kept for one release: a module that moved leaves a stub whose ``__getattr__`` forwards each name
to its new home with a DeprecationWarning naming it."""

from __future__ import annotations

import importlib
import warnings
from typing import Any, Callable, Sequence


def forward(old: str, new: Sequence[str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``old``: the name from the first module of ``new`` that has it."""
    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        for target in new:
            module = importlib.import_module(target)
            if hasattr(module, name):
                warnings.warn(f"{old}.{name} moved to {target}.{name}; {old} goes in the next release",
                              DeprecationWarning, stacklevel=2)
                return getattr(module, name)
        raise AttributeError(f"module {old!r} has no attribute {name!r}")
    return __getattr__
