"""Command-line entry points: errors a user can cause end in one line, not a traceback.

A missing folder, an unknown dataset, a bad flag value or a work dir from another run raise
ValueError / OSError subclasses with a message that says what to do; ``run`` prints that
message as one line and exits with status 2. ``--verbosity=1`` (absl) shows the traceback.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Callable

from absl import app, logging

from lorbms_tf.locks import DirectoryInUse

USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, PermissionError,
               FileExistsError, DirectoryInUse)
EXIT_USER_ERROR = 2


def one_line(error: BaseException) -> str:
  return " ".join(str(error).split()) or type(error).__name__


def program_name(main: Callable | None = None) -> str:
  """What the user typed: the module of ``python -m MODULE`` (``components.trainer``, not its
  ``__main__``), else the script's file name."""
  spec = getattr(sys.modules.get("__main__"), "__spec__", None)
  if spec is not None and spec.name:
    return spec.name.removesuffix(".__main__")
  program = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
  if program in ("", "__main__.py", "-m", "-c"):
    return getattr(main, "__module__", None) or "lorbms_tf"
  return program


def guard(main: Callable[[list[str]], object]) -> Callable[[list[str]], object]:
  """Wraps an absl ``main`` so that user errors print one line and exit with status 2."""

  @functools.wraps(main)
  def wrapped(argv):
    try:
      return main(argv)
    except (app.UsageError, *USER_ERRORS) as error:
      if logging.level_debug():  # --verbosity=1 or more: the traceback
        raise
      print(f"{program_name(main)}: error: {one_line(error)} (--verbosity=1 shows the traceback)",
            file=sys.stderr, flush=True)
      sys.exit(EXIT_USER_ERROR)

  return wrapped


def run(main: Callable[[list[str]], object], **kwargs) -> None:
  """``absl.app.run`` with one-line user errors."""
  app.run(guard(main), **kwargs)
