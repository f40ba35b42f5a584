"""Child processes, the one module for them: start a child in its own session with its output streamed to a log
file, stop its whole process group (SIGTERM, then SIGKILL) on Ctrl-C, failure or exit, and read the log's tail.

  run_logged     a job run to completion (training, its replay, the demo base): Ctrl-C stops the child too
  ServerProcess  a local server: launched with a known command, polled (``/v1/models``) until ready, early exit
                 detected; used by the vLLM engine and the tests that start ``llamafactory-cli api``
  tail           the last lines of a log, for every failure message (with the exact command where there is one)

No HTTP beyond the readiness probe; no pytest.
"""

from __future__ import annotations

import atexit
import os
import shlex
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

from ..errors import EngineError


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def tail(path: str | Path, lines: int = 40, placeholder: bool = True) -> str:
    """The last ``lines`` non-blank lines of a log (progress-bar carriage returns read as line ends); when there
    is nothing to show, "(no log)" / "(empty log)", or "" without ``placeholder``."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return "(no log)" if placeholder else ""
    kept = [ln for ln in text.replace("\r", "\n").splitlines() if ln.strip()][-lines:]
    return "\n".join(kept) or ("(empty log)" if placeholder else "")


def run_logged(command: Sequence[str], log_path: str | Path, env: dict[str, str] | None = None,
               cwd: str | Path | None = None, grace_s: float = 10.0) -> int:
    """Run ``command`` to its end with stdout and stderr appended to ``log_path``; its exit code. The child has its
    own session: on Ctrl-C (or any exception while waiting) its process group is stopped, then the error re-raised."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([str(c) for c in command], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, cwd=cwd, start_new_session=True)
    try:
        return proc.wait()
    except BaseException:
        stop_process(proc, grace_s)
        raise


def stop_process(proc: subprocess.Popen, grace_s: float = 15.0) -> None:
    """SIGTERM to the child's process group (and every descendant), SIGKILL what is left after ``grace_s``."""
    family = _descendants(proc.pid)
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    _signal_group(proc.pid, signal.SIGKILL)
    for child in family:
        _kill(child)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL cannot be ignored
        pass


class ServerProcess:
    """One child server; ``start`` returns once ``ready()`` is true, raising EngineError otherwise."""

    def __init__(self, command: Sequence[str], *, name: str, log_path: str | Path | None = None,
                 env: dict[str, str] | None = None, cwd: str | Path | None = None):
        self.command = [str(c) for c in command]
        self.name = name
        self.env = env
        self.cwd = cwd
        if log_path is None:
            fd, log_path = tempfile.mkstemp(prefix=f"ftgate-{name}-", suffix=".log")
            os.close(fd)
        self.log_path = Path(log_path).resolve()
        self.proc: subprocess.Popen | None = None

    @property
    def command_line(self) -> str:
        return shlex.join(self.command)

    def failure(self, what: str) -> EngineError:
        return EngineError(f"{self.name} {what}\ncommand: {self.command_line}\nlog: {self.log_path}\n"
                           f"--- last lines of the log ---\n{tail(self.log_path)}")

    def start(self, ready: Callable[[], bool], timeout_s: float, poll_s: float = 0.5) -> None:
        """Launch and wait until ``ready()`` (a probe that may raise while the server boots) returns True."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=self.env, cwd=self.cwd, start_new_session=True)
        except OSError as exc:
            raise self.failure(f"could not be launched: {exc.strerror or exc}") from None
        finally:
            log.close()
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout_s
        while True:
            code = self.proc.poll()
            if code is not None:
                raise self.failure(f"exited with code {code} before it was ready")
            try:
                if ready():
                    return
            except EngineError as exc:
                self.stop()
                raise self.failure(f"is up but not usable: {exc}") from None
            except Exception:  # connection refused while it boots, 503 while it loads
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise self.failure(f"was not ready after {timeout_s:g} s (engine.startup_timeout_s)")
            time.sleep(poll_s)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM to the process group (and every descendant), SIGKILL what is left after ``grace_s``."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        atexit.unregister(self.stop)
        stop_process(proc, grace_s)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # start_new_session made the child its group's leader
    except (ProcessLookupError, PermissionError):
        pass


def _descendants(pid: int) -> list:
    try:
        import psutil

        return psutil.Process(pid).children(recursive=True)
    except Exception:  # psutil missing, or the process is gone
        return []


def _kill(child) -> None:
    try:
        if child.is_running():
            child.kill()
    except Exception:
        pass
