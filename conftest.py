"""Repository-level settings: no Hugging Face hub at run time (models and data are local paths)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

try:  # imported early on purpose: mlflow pulls the importlib_metadata backport, which patches the stdlib
    import importlib_metadata  # noqa: F401  PathFinder; done mid-session, in-process pytester runs lose
except ImportError:  # pragma: no cover  # their entry points (and our options) after the first run.
    pass

pytest_plugins = ["pytester"]  # the plugin's own tests drive pytest sessions
