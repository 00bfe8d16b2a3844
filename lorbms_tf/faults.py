"""Named kill points, for the fault-injection test (tests/test_faults.py).

Code that writes or renames artifacts calls ``point("what:which")`` at the moments a crash
would be worst (a temporary file written but not renamed, an artifact moved aside but the new
one not yet in place, a version copied but not claimed). Normally a point costs one dict lookup.
With ``LORBMS_KILL_AT=NAME`` in the environment, the first process that passes ``NAME`` kills
the pipeline with SIGKILL (the process named by ``LORBMS_KILL_ROOT``, a pid, when set: the
root of the process tree, whose children die with it, lorbms_tf/procs.py) and then itself, as
a power cut would. ``LORBMS_POINTS_LOG=FILE`` appends every point passed (one line each), so a
test can list them.
"""

from __future__ import annotations

import os
import signal

_KILL_AT = os.environ.get("LORBMS_KILL_AT")
_LOG = os.environ.get("LORBMS_POINTS_LOG")


def point(name: str) -> None:
  if _LOG:
    with open(_LOG, "a") as f:
      f.write(name + "\n")
  if _KILL_AT is not None and name == _KILL_AT:
    root = os.environ.get("LORBMS_KILL_ROOT")
    if root and int(root) != os.getpid():
      try:
        os.kill(int(root), signal.SIGKILL)
      except ProcessLookupError:
        pass
    os.kill(os.getpid(), signal.SIGKILL)
