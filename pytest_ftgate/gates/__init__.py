"""Where gates live: one module per family, each a set of pure functions returning a ``Check``.

  training    G1 stability, G2 convergence, G3 generalization, resources      (metric histories)
  quality     G4 baseline, G5 task quality, adapter_applied, determinism       (the served adapter's answers)
  serving     serving_parity                                                    (the serving engine vs hf)
  benchmarks  bench:<task>                                                      (lm-evaluation-harness)
  audit       G6 audit record, integrity, adapter_format, reproducibility       (the audit record)
  data        schema, pii, leakage, duplicates                                  (the training and test data)
  human       human_eval                                                        (imported human ratings)

A new gate goes into its family's module (a new family: a new module here, named in ``FAMILIES``). Each family
declares its report section once (``family(...)``) and registers its gate ids with ``@gate(id, label)``; the
report groups gates by that registration, so it needs no table of ids. A suite may still name another section
with ``@pytest.mark.gate(ID, section="...")``. No pytest, no I/O; the families are imported on first use.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

FAMILIES = ("training", "quality", "serving", "benchmarks", "audit", "data", "human", "safety")


class GateFailure(AssertionError):
    """Raised by a suite test when its gate does not pass; the plugin turns it into FAILED, WARN or INFO."""


@dataclass(frozen=True)
class Check:
    """The result of evaluating one gate on one run."""

    passed: bool
    value: Any = None
    threshold: Any = None
    message: str = ""
    details: dict = field(default_factory=dict)
    label: str = ""  # what ``value`` is, with its unit: "improvement_pct (%)"; shown beside the value


@dataclass(frozen=True)
class Section:
    """A report section: the gates of one family. ``view`` says how the report lays their details out
    (``findings``, the default, works for any gate)."""

    key: str
    title: str
    order: int = 50
    view: str = "findings"  # training | comparisons | benchmarks | audit | findings


OTHER = Section("other", "Other gates", 90)
_SECTIONS: dict[str, Section] = {OTHER.key: OTHER}
_GATES: dict[str, str] = {}  # gate id (or an id prefix ending in ":") -> section key


def labelled(label: str):
    """Decorator for a gate function: its Check says what its value is (``label``) unless it said so itself."""
    def wrap(fn):
        @functools.wraps(fn)
        def gate(*args, **kwargs) -> Check:
            check = fn(*args, **kwargs)
            return check if check.label else dataclasses.replace(check, label=label)
        return gate
    return wrap


def family(key: str, title: str, order: int, view: str = "findings") -> Callable[[str, str], Callable]:
    """Declare a family's report section; returns its ``gate(gate_id, label)`` decorator, which registers the gate
    id in that section and labels the gate's value. ``gate_id`` ending in ":" registers a prefix (``bench:``)."""
    section = Section(key, title, order, view)
    _SECTIONS[key] = section

    def gate(gate_id: str, label: str = "") -> Callable:
        _GATES[gate_id] = key

        def wrap(fn):
            return labelled(label)(fn) if label else fn
        return wrap
    return gate


def load_families() -> None:
    """Import every family module, so that their sections and gate ids are registered (once: every gate's
    section asks)."""
    if not _LOADED:
        for name in FAMILIES:
            importlib.import_module(f"{__name__}.{name}")
        _LOADED.append(True)


_LOADED: list[bool] = []


def section_of(gate_id: str, declared: str = "") -> Section:
    """The report section of a gate: ``declared`` (the marker's ``section=``) when it names one, else its
    family's, else "Other gates"."""
    load_families()
    if declared:
        return _SECTIONS.get(declared) or Section(declared, declared.replace("_", " ").capitalize(), 80)
    key = _GATES.get(gate_id) or next((k for p, k in _GATES.items() if p.endswith(":") and gate_id.startswith(p)),
                                      OTHER.key)
    return _SECTIONS[key]


def sections() -> list[Section]:
    """Every registered section, in report order."""
    load_families()
    return sorted(_SECTIONS.values(), key=lambda s: (s.order, s.key))


# Names that lived in the old ``pytest_ftgate.gates`` module: still importable from here for one release.
_MOVED = {name: "training" for name in ("stability", "convergence", "generalization", "resources", "History",
                                        "G1_LABEL", "G2_LABEL", "G3_LABEL", "RESOURCES_LABEL")}


def __getattr__(name: str) -> Any:
    if name in FAMILIES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _MOVED:
        new = f"{__name__}.{_MOVED[name]}"
        warnings.warn(f"pytest_ftgate.gates.{name} moved to {new}.{name}; the old name goes in the next release",
                      DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(new), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
