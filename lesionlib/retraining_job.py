"""One retraining run at a time, in its own process: lock, progress and log files.

Files in ``<weights>.retraining/job/``: ``lock.json`` (who runs what, the process id; created
atomically, so a second start is refused while it exists and its process lives), ``progress.json``
(stage, epoch of epochs, ETA; rewritten as the run goes) and ``log.txt`` (the run's output).
``start`` launches ``python -m lesionlib retrain`` as a separate process (never inside the
dashboard's script thread); the process releases the lock when it ends. A lock left by a process
that died is stale and is cleared by the next start.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from lesionlib.model_versions import retraining_root

LOCK_FILE, PROGRESS_FILE, LOG_FILE = "lock.json", "progress.json", "log.txt"
STARTUP_GRACE_S = 120  # a lock whose process id is not written yet counts as live this long
REPO_ROOT = Path(__file__).resolve().parent.parent


class JobRunning(RuntimeError):
    """A retraining run is already going; the message says which, by whom, since when."""


def job_dir(weights_dir: str | Path) -> Path:
    return retraining_root(weights_dir) / "job"


def _alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a finished child that was never reaped is a zombie: not running
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return True


def read_lock(weights_dir) -> dict | None:
    """The live lock's content, or ``None`` when no run holds it (a stale lock counts as none)."""
    path = job_dir(weights_dir) / LOCK_FILE
    try:
        lock = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if _alive(lock.get("pid")):
        return lock
    if lock.get("pid") is None and time.time() - lock.get("created", 0) < STARTUP_GRACE_S:
        return lock
    return None


def acquire(weights_dir, model_id: str, user: str, token: str | None = None,
            own: bool = True) -> str:
    """Take the lock for this process (or adopt the one ``start`` made with ``token``).

    ``own=False`` (``start``) takes it for a process about to be launched: its id is written
    once known.

    Raises:
        JobRunning: another live run holds it.
    """
    folder = job_dir(weights_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    if token is not None:
        lock = _read(path)
        if lock.get("token") != token:
            raise JobRunning("The retraining lock was taken by another run; this one stops.")
        _write(path, {**lock, "pid": os.getpid()})
        return token
    for _ in range(2):
        lock = {"model_id": model_id, "user": user, "pid": os.getpid() if own else None,
                "created": time.time(), "started_at": _now(), "token": secrets.token_hex(8)}
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = read_lock(weights_dir)
            if holder is not None:
                raise JobRunning(f"A retraining run of {holder.get('model_id')} started by "
                                 f"{holder.get('user')} at {holder.get('started_at')} is still "
                                 "going; wait for it to finish.") from None
            path.unlink(missing_ok=True)  # stale: its process died
            continue
        with os.fdopen(descriptor, "w") as handle:
            json.dump(lock, handle)
        return lock["token"]
    raise JobRunning("Could not take the retraining lock (another start is racing this one).")


def release(weights_dir, token: str) -> None:
    path = job_dir(weights_dir) / LOCK_FILE
    if _read(path).get("token") == token:
        path.unlink(missing_ok=True)


COMMANDS = ("retrain", "rollback", "import-model")


def start(weights_dir, model_id: str, user: str, options: list[str] | None = None,
          env: dict | None = None, command: str = "retrain") -> int:
    """Launch ``python -m lesionlib retrain`` (or ``rollback``, or ``import-model`` with its
    evaluation) in the background; returns its process id.

    Args:
        weights_dir: the weights folder the dashboard uses.
        model_id: the single model to retrain (or roll back).
        user: who started it (checked to be an administrator by the caller).
        options: further options, e.g. ``["--epochs", "2"]`` or ``["--version", "1.0.0"]``.
        env: the process's environment (default: this one's).

    Raises:
        JobRunning: a run is going already.
        RetrainingError: a retraining that could never be promoted here (signed deployment).
    """
    if command not in COMMANDS:
        raise ValueError(f"Unknown job {command!r}; expected one of {COMMANDS}.")
    if command == "retrain":
        from lesionlib.retraining import check_can_promote

        check_can_promote()  # a signed deployment: refused now, not after the whole run
    token = acquire(weights_dir, model_id, user, own=False)
    folder = job_dir(weights_dir)
    (folder / PROGRESS_FILE).unlink(missing_ok=True)
    if command == "import-model":  # options: the file first, then its declarations
        shown = ["python", "-m", "lesionlib", command, *(options or []), "--id", model_id,
                 "--weights", str(Path(weights_dir).resolve()), "--evaluate"]
    else:
        shown = ["python", "-m", "lesionlib", command, "--model", model_id, "--weights",
                 str(Path(weights_dir).resolve()), "--user", user, *(options or [])]
    command = [sys.executable, *shown[1:], "--job-token", token]
    try:
        with open(folder / LOG_FILE, "w") as log:
            log.write(f"$ {' '.join(shown)}\n")
            log.flush()
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, cwd=REPO_ROOT,
                                       env=env, start_new_session=True)
    except OSError:
        release(weights_dir, token)
        raise
    lock = _read(folder / LOCK_FILE)
    if lock.get("token") == token:
        _write(folder / LOCK_FILE, {**lock, "pid": process.pid})
    return process.pid


class Progress:
    """Writes ``progress.json`` for the dashboard: ``Progress(weights_dir)(stage, **details)``."""

    def __init__(self, weights_dir):
        self.path = job_dir(weights_dir) / PROGRESS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.state = {"started_at": _now(), "pid": os.getpid()}

    def __call__(self, stage: str, **details) -> None:
        self.state.update(details, stage=stage, updated_at=_now())
        _write(self.path, self.state)


@dataclasses.dataclass(frozen=True)
class JobStatus:
    running: bool
    lock: dict | None
    progress: dict
    log_tail: str


def status(weights_dir, log_lines: int = 40) -> JobStatus:
    """Whether a run is going, its latest progress and the end of its log."""
    folder = job_dir(weights_dir)
    lock = read_lock(weights_dir)
    try:
        lines = (folder / LOG_FILE).read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    return JobStatus(lock is not None, lock, _read(folder / PROGRESS_FILE),
                     "\n".join(lines[-log_lines:]))


def _read(path: Path) -> dict:
    try:
        content = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return content if isinstance(content, dict) else {}


def _write(path: Path, content: dict) -> None:
    temporary = Path(path).with_name(Path(path).name + ".tmp")
    temporary.write_text(json.dumps(content, default=str))
    temporary.replace(path)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


__all__ = ["JobRunning", "JobStatus", "Progress", "acquire", "release", "start", "status",
           "read_lock", "job_dir"]
