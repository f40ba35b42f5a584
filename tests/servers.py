"""Waiting for a real server the tests started (``mlflow server``) to answer ``/health``."""

from __future__ import annotations

import os
import signal
import time
import urllib.request
from pathlib import Path

import pytest


def wait_healthy(proc, url: str, log: Path, seconds: float = 180) -> None:
    """Return once ``url``/health answers 200; fail with the log tail when the process exits or time runs out."""
    deadline = time.monotonic() + seconds
    while True:
        if proc.poll() is not None:
            pytest.fail(f"mlflow server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"mlflow server not healthy after {seconds:.0f} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)


def stop(proc, grace_s: float = 15) -> None:
    """SIGTERM to the server's process group, SIGKILL after ``grace_s``."""
    import subprocess

    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
