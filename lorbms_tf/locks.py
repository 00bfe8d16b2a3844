"""One writer per directory: an advisory exclusive lock with the holder's identity.

``with DirectoryLock(path):`` takes ``fcntl.flock(LOCK_EX | LOCK_NB)`` on ``path/.lock`` and
writes the holder (pid, host, command line) into it. A second process on the same directory
stops at once with ``DirectoryInUse``: one line, ``"<dir> is in use by pid N on HOST: CMD"``.
The kernel drops the lock when its holder exits, however it exits (SIGKILL included), so a
stale ``.lock`` file never blocks a rerun. Locks are per directory: a pipeline root's lock
does not cover the training work dir inside it, which its child process locks itself.
Within one process, the same directory may be locked again (re-entrant, counted), so a
library call that locks (``train``) can run under a caller that holds the lock already.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time

LOCK_FILE = ".lock"

_held: dict[str, list] = {}  # real path -> [fd, depth] held by this process
_guard = threading.Lock()


class DirectoryInUse(RuntimeError):
  """Another process holds the directory's lock."""


def _holder() -> dict:
  return {"pid": os.getpid(), "host": socket.gethostname(),
          "command": " ".join(sys.argv) or sys.executable}


def describe_holder(path: str) -> str:
  """"pid N on HOST: CMD" of the holder written in a lock file (or a directory's .lock)."""
  lock = os.path.join(path, LOCK_FILE) if os.path.isdir(path) else path
  try:
    with open(lock) as f:
      info = json.loads(f.read() or "{}")
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')}: {info.get('command', '?')}"
  except (OSError, ValueError):
    return "another process (holder unknown)"


class DirectoryLock:
  """Exclusive advisory lock on a directory (created if missing); see the module docstring."""

  def __init__(self, path: str, wait: float = 0.0, lock_file: str | None = None):
    """``wait``: seconds to wait for a holder to finish (0: refuse at once). ``lock_file``:
    the lock's file (default ``path/.lock``), e.g. beside a folder that must hold nothing
    else (a TF Serving base path)."""
    if "://" in str(path):
      raise ValueError(f"cannot lock the remote directory {path!r}; locks are local")
    self.path = os.fspath(path)
    self.wait = wait
    self.lock_file = lock_file or os.path.join(self.path, LOCK_FILE)
    self._key: str | None = None

  def acquire(self) -> "DirectoryLock":
    import fcntl  # pylint: disable=import-outside-toplevel
    os.makedirs(self.path, exist_ok=True)
    os.makedirs(os.path.dirname(os.path.abspath(self.lock_file)), exist_ok=True)
    key = os.path.realpath(self.lock_file)
    with _guard:
      if key in _held:
        _held[key][1] += 1
        self._key = key
        return self
      fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
      deadline = time.monotonic() + self.wait
      try:
        while True:
          try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
          except BlockingIOError:
            if time.monotonic() >= deadline:
              raise DirectoryInUse(f"{self.path} is in use by "
                                   f"{describe_holder(self.lock_file)}") from None
            time.sleep(0.05)
      except BaseException:
        os.close(fd)
        raise
      os.ftruncate(fd, 0)
      os.pwrite(fd, json.dumps(_holder()).encode(), 0)
      os.fsync(fd)
      _held[key] = [fd, 1]
      self._key = key
    return self

  def release(self) -> None:
    if self._key is None:
      return
    with _guard:
      entry = _held.get(self._key)
      if entry is not None:
        entry[1] -= 1
        if entry[1] == 0:
          del _held[self._key]
          os.close(entry[0])  # drops the flock (the file stays: removing it would race)
      self._key = None

  def __enter__(self) -> "DirectoryLock":
    return self.acquire()

  def __exit__(self, *exc) -> None:
    self.release()


def lock_directory(path: str) -> DirectoryLock:
  """``with lock_directory(path):`` (``DirectoryLock(path)``)."""
  return DirectoryLock(path)
