"""What every component shares: artifact folders written atomically, with a record.json.

An *artifact* is a folder with ``record.json`` (producer, settings, the inputs' fingerprints,
counts, timing, library versions, and the artifact's own ``fingerprint``). ``write_artifact``
builds it in ``OUTPUT.tmp`` and renames it into place (the previous artifact, if any, is
replaced only then), so a step killed mid-write leaves the old artifact untouched.
``fingerprint`` of a step = hash of its settings (with the content identity of any data it reads
directly), its inputs' fingerprints and the code's version: the local pipeline runner skips a
step whose fingerprint matches the artifact already there.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from typing import Any, Callable, Mapping

from lorbms_tf import atomic, faults, identity

RECORD = "record.json"


def library_versions() -> dict[str, str]:
  from lorbms_tf.similarity import library_versions as versions  # pylint: disable=import-outside-toplevel
  return versions()


def read_record(artifact_dir: str) -> dict[str, Any] | None:
  """The artifact's record, or None when there is no complete artifact there."""
  path = os.path.join(artifact_dir, RECORD)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def _jsonable(value: Any) -> Any:
  if dataclasses.is_dataclass(value):
    return dataclasses.asdict(value)
  return value


def fingerprint(settings: Any, input_fingerprints: Mapping[str, str | None]) -> str:
  """Stable hash of a step's settings, its inputs' fingerprints and the code's version
  (lorbms_tf.identity.code_version: any edit of lorbms_tf/ or components/ reruns the steps)."""
  text = json.dumps({"settings": _jsonable(settings), "inputs": dict(input_fingerprints),
                     "code": identity.code_version()}, sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def with_flagfiles(settings: Any, args: tuple[str, ...]) -> dict[str, Any]:
  """Settings plus the text of every ``--flagfile`` in args (nested ones too), so that an
  edited flagfile changes the step's fingerprint."""
  texts: dict[str, str] = {}
  pending = [a.split("=", 1)[1] for a in args if a.startswith("--flagfile=")]
  while pending:
    path = pending.pop()
    if path in texts or not os.path.exists(path):
      continue
    with open(path) as f:
      texts[path] = f.read()
    pending += [line.strip().split("=", 1)[1] for line in texts[path].splitlines()
                if line.strip().startswith("--flagfile=")]
  return {"settings": _jsonable(settings), "flagfiles": texts}


def flag_values(args: tuple[str, ...], names: tuple[str, ...]) -> dict[str, str]:
  """The last value of each ``--name=value`` in args, reading ``--flagfile``s where they stand
  (absl's rule: later flags win)."""
  values: dict[str, str] = {}

  def read(items, depth=0):
    for item in items:
      item = item.strip()
      if item.startswith("--flagfile=") and depth < 8:
        path = item.split("=", 1)[1]
        if os.path.exists(path):
          with open(path) as f:
            read([line for line in f.read().splitlines() if line.strip().startswith("--")],
                 depth + 1)
      elif item.startswith("--") and "=" in item:
        name, value = item[2:].split("=", 1)
        if name in names:
          values[name] = value
  read(args)
  return values


def args_data_identity(args: tuple[str, ...], default_dataset: str | None = None
                       ) -> dict[str, Any] | None:
  """The content identity of the dataset a child's flags read (``--dataset``/``--data_dir``)."""
  values = flag_values(args, ("dataset", "data_dir"))
  dataset = values.get("dataset", default_dataset)
  return identity.dataset_identity(dataset, values.get("data_dir")) if dataset else None


def input_fingerprint(artifact_dir: str | None) -> str | None:
  """An upstream artifact's fingerprint (its record's), None for no input."""
  if artifact_dir is None:
    return None
  record = read_record(artifact_dir)
  if record is None:
    raise FileNotFoundError(f"input {artifact_dir!r} is not a finished artifact (no {RECORD})")
  return record["fingerprint"]


def is_current(output_dir: str, settings: Any, inputs: Mapping[str, str | None]) -> bool:
  """Whether ``output_dir`` holds the artifact these settings and inputs would produce."""
  record = read_record(output_dir)
  try:
    fps = {name: input_fingerprint(path) for name, path in inputs.items()}
  except FileNotFoundError:
    return False
  return record is not None and record.get("fingerprint") == fingerprint(settings, fps)


def write_artifact(output_dir: str, producer: str, settings: Any,
                   inputs: Mapping[str, str | None],
                   body: Callable[[str], Mapping[str, Any]],
                   resumable: bool = False) -> dict[str, Any]:
  """Runs ``body(tmp_dir) -> record fields`` into ``output_dir.tmp``, then renames it into place.

  ``inputs``: name -> upstream artifact dir (or None). ``resumable``: a ``.tmp`` left by a
  killed run of the *same* step (same fingerprint) is kept for ``body`` to resume (training
  resumes from its checkpoints), never deleted. Returns the record written.
  """
  from lorbms_tf import locks  # pylint: disable=import-outside-toplevel
  # One writer per artifact folder: the folder holding it is locked (re-entrant: the
  # pipeline runner holds its root's lock already; a second runner or CLI stops at once).
  with locks.DirectoryLock(os.path.dirname(os.path.abspath(output_dir.rstrip("/")))):
    return _write_artifact(output_dir, producer, settings, inputs, body, resumable)


def _write_artifact(output_dir, producer, settings, inputs, body, resumable):
  start = time.perf_counter()
  input_fps = {name: input_fingerprint(path) for name, path in inputs.items()}
  step_fingerprint = fingerprint(settings, input_fps)
  if _finish_interrupted_swap(output_dir.rstrip("/"), step_fingerprint):
    return read_record(output_dir)
  tmp = output_dir.rstrip("/") + ".tmp"
  marker = os.path.join(tmp, ".fingerprint")
  same_step = False
  if os.path.exists(marker):
    with open(marker) as f:
      same_step = f.read() == step_fingerprint
  if os.path.exists(tmp) and not (resumable and same_step):
    shutil.rmtree(tmp)
  os.makedirs(tmp, exist_ok=True)
  atomic.write_text(marker, step_fingerprint)
  # Paths the body reports inside OUTPUT.tmp are recorded as they will be after the rename.
  fields = _relocated(dict(body(tmp)), tmp, output_dir.rstrip("/"))
  record = {"producer": producer, "settings": _jsonable(settings),
            "inputs": {name: {"path": path, "fingerprint": input_fps[name]}
                       for name, path in inputs.items()},
            "fingerprint": step_fingerprint,
            "code_version": identity.code_version(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": time.perf_counter() - start,
            "versions": library_versions(), **fields}
  atomic.write_json(os.path.join(tmp, RECORD), record, indent=1, default=str)
  atomic.fsync_tree(tmp)  # the artifact's files are on disk before it is renamed into place
  faults.point(f"artifact.complete:{producer}")
  _swap_in(tmp, output_dir.rstrip("/"), producer)
  return record


def _swap_in(tmp: str, output_dir: str, producer: str = "") -> None:
  """Renames the complete ``tmp`` to ``output_dir``; a previous artifact is moved aside first
  and deleted last. Killed between the two renames, ``output_dir`` is missing and ``tmp``
  complete: ``_finish_interrupted_swap`` completes it on the next run."""
  old = output_dir + ".old"
  if os.path.exists(output_dir):
    if os.path.exists(old):
      shutil.rmtree(old)
    os.rename(output_dir, old)
    faults.point(f"artifact.moved_aside:{producer}")
  os.rename(tmp, output_dir)
  atomic.fsync_dir(os.path.dirname(os.path.abspath(output_dir)))
  faults.point(f"artifact.renamed:{producer}")
  if os.path.exists(old):
    shutil.rmtree(old)


def _finish_interrupted_swap(output_dir: str, step_fingerprint: str) -> bool:
  """A run killed after its artifact was complete but before it was in place left ``.tmp``
  with a record of this very step: rename it in instead of redoing the step."""
  tmp = output_dir + ".tmp"
  record = read_record(tmp) if os.path.isdir(tmp) else None
  if record is None or record.get("fingerprint") != step_fingerprint:
    return False
  _swap_in(tmp, output_dir, record.get("producer", ""))
  return True


def _relocated(value: Any, tmp: str, final: str) -> Any:
  """``value`` with every ``tmp`` path prefix in its strings (nested) replaced by ``final``."""
  if isinstance(value, str):
    return value.replace(tmp + os.sep, final + os.sep) if value != tmp else final
  if isinstance(value, Mapping):
    return {k: _relocated(v, tmp, final) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_relocated(v, tmp, final) for v in value]
  return value


class StepFailed(RuntimeError):
  """A step's child process failed for a reason that is not the user's input."""


class StepInputError(ValueError):
  """A step's child process rejected its input (exit status 2: a bad flag, a missing file)."""


def child_failed(what: str, returncode: int, output: str, log: str | None = None) -> Exception:
  """The error a component raises when its child process (``python -m lorbms_tf.X``) fails:
  its last output line, and a ``ValueError`` for the child's user errors (exit status 2, see
  lorbms_tf/cli.py) so the component's own CLI reports them as one line too."""
  last = " ".join(line.strip() for line in output.strip().splitlines()[-1:])
  where = f" (log: {log})" if log else ""
  kind = StepInputError if returncode == 2 else StepFailed
  return kind(f"{what} failed (exit {returncode}): {last}{where}")


def run_child(what: str, module: str, args: list[str]) -> list[str]:
  """Runs ``python -m module args`` (a library CLI) as the step's child process; raises
  ``child_failed``'s error if it fails; returns the command (for the record)."""
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  command = [sys.executable, "-m", module, *args]
  from lorbms_tf import procs  # pylint: disable=import-outside-toplevel
  result = subprocess.run(command, capture_output=True, text=True, **procs.child_kwargs())
  if result.returncode != 0:
    raise child_failed(what, result.returncode, result.stderr)
  return command

