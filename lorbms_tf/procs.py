"""Child processes that die with their parent.

A step's child (a training, a validation) started with ``subprocess`` keeps running when its
parent is killed (SIGKILL gives the parent no chance to stop it): the orphan then trains on
into a folder that a rerun of the parent also writes. ``child_kwargs()`` gives the
``subprocess`` keyword arguments that make the kernel send the child SIGTERM as soon as its
parent dies (Linux ``prctl(PR_SET_PDEATHSIG)``; elsewhere nothing).
"""

from __future__ import annotations

import functools
import os
import signal
import sys
from typing import Any

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int | None = None) -> None:
  """``preexec_fn``: in the child, between fork and exec, ask for SIGTERM on parent death.

  ``parent_pid``: the parent that forked us; if it died before the request took effect (the
  child was re-parented already), the child exits at once instead of running orphaned.
  """
  import ctypes  # pylint: disable=import-outside-toplevel
  try:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
  except (OSError, AttributeError):
    return
  if parent_pid is not None and os.getppid() != parent_pid:
    os._exit(1)  # pylint: disable=protected-access


def child_kwargs() -> dict[str, Any]:
  """Extra ``subprocess.Popen/run/call`` keyword arguments for a child that dies with us."""
  if sys.platform.startswith("linux"):
    parent = os.getpid()
    return {"preexec_fn": functools.partial(die_with_parent, parent)}
  return {}
