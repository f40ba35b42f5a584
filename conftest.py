"""Repository-level settings: no Hugging Face hub at run time (models and data are local paths)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

pytest_plugins = ["pytester"]  # the plugin's own tests drive pytest sessions
