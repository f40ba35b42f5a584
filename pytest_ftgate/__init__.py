"""pytest-ftgate: a release gate for fine-tuned LLM adapters, written as a pytest plugin."""

__version__ = "0.1.0"
