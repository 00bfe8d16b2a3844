"""Pusher component: export a trained model, validate the export, publish it for TF Serving.

  python -m components.pusher --model=WORKDIR --push_destination=saved_models/lorbms \\
      --output_dir=runs/pipeline/pusher [--blessing=EVALUATOR_DIR]

Only a blessed model is pushed (when a blessing is given: the evaluator's ``blessing.json``),
and only after the export passed ``lorbms_tf.export.validate_export`` (loaded in a fresh
process, every signature compared with the Keras model, bad inputs rejected, and
``saved_model_cli show``/``run`` answering). The new version is copied into
``push_destination/<version>`` atomically; a failed validation leaves the versions there as
they were, so the previous one stays served. ``output_dir/record.json`` says what happened.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from typing import Any

from absl import logging

from lorbms_tf import atomic, export, faults


@dataclasses.dataclass(frozen=True)
class PusherInputs:
  model: str  # a training work dir (latest checkpoint) or a checkpoint prefix
  push_destination: str  # saved_models/<name>: TF Serving's model base path
  blessing: str | None = None  # the evaluator's output dir (blessing.json); None = no gate
  version: int | None = None  # None = the next free integer
  tolerance: float = 1e-4  # max abs difference between the export and the Keras model


@dataclasses.dataclass(frozen=True)
class PusherOutputs:
  pushed: bool
  version: int | None
  path: str | None
  reason: str
  record: str


def _blessed(blessing_dir: str | None) -> tuple[bool, str, str | None]:
  """(blessed, why, the evaluated checkpoint prefix relative to the model or None)."""
  if blessing_dir is None:
    return True, "no blessing required", None
  path = os.path.join(blessing_dir, "blessing.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"no blessing.json in {blessing_dir!r} (the evaluator writes it)")
  with open(path) as f:
    blessing = json.load(f)
  return bool(blessing.get("blessed")), blessing.get("reason", ""), blessing.get("checkpoint")


def export_source(model: str, evaluated: str | None) -> str:
  """What to export: the blessed checkpoint when the blessing names one (it must still be in
  the model dir: a newer one is never pushed in its name), else the model as given."""
  if evaluated is None or not os.path.isdir(model):
    return model
  prefix = os.path.normpath(os.path.join(model, evaluated))
  if not os.path.exists(prefix + ".index"):
    raise FileNotFoundError(f"the blessed checkpoint {evaluated!r} is no longer in {model!r}; "
                            "evaluate the model again")
  return prefix


def run(inputs: PusherInputs, output_dir: str) -> PusherOutputs:
  start = time.perf_counter()
  os.makedirs(output_dir, exist_ok=True)
  record: dict[str, Any] = {"component": "pusher", "inputs": dataclasses.asdict(inputs)}
  blessed, why, evaluated = _blessed(inputs.blessing)
  pushed, version, path = False, None, None
  if not blessed:
    reason = f"not pushed: the model is not blessed ({why})"
  else:
    staging = os.path.join(output_dir, "export")
    if os.path.exists(staging):
      shutil.rmtree(staging)
    source = export_source(inputs.model, evaluated)
    from lorbms_tf import checkpoints  # pylint: disable=import-outside-toplevel
    try:
      prefix = checkpoints.resolve(source)[1]
    except FileNotFoundError:  # the export below names what is missing
      prefix = None
    record["exported_checkpoint"] = prefix
    already = prefix and export.version_of(inputs.push_destination,
                                           export.checkpoint_identity(prefix))
  if blessed and already is not None:
    pushed, version = True, already
    path = os.path.join(os.path.abspath(inputs.push_destination), str(version))
    reason = f"already pushed as version {version} to {inputs.push_destination}"
  elif blessed:
    record["export"] = export.export_saved_model(
        source, staging, model_name=os.path.basename(os.path.normpath(
            inputs.push_destination)))
    # export.ValidationNotRun (a check timed out or was killed: no verdict on the model) is
    # not caught: the step fails (non-zero exit, no record), so the next run tries again.
    try:
      record["validation"] = export.validate_export(staging, source, inputs.tolerance)
    except export.ExportValidationError as e:
      reason = f"not pushed: the export failed validation: {e}"
    else:
      path = export.publish(staging, inputs.push_destination, inputs.version)
      faults.point("pusher.published")
      version, pushed = int(os.path.basename(path)), True
      reason = f"pushed version {version} to {inputs.push_destination}"
  record.update(pushed=pushed, version=version, path=path, reason=reason,
                versions_served=export.list_versions(inputs.push_destination),
                seconds=time.perf_counter() - start)
  record_path = os.path.join(output_dir, "record.json")
  atomic.write_json(record_path, record, indent=1)
  (logging.info if pushed else logging.warning)("pusher: %s", reason)
  return PusherOutputs(pushed, version, path, reason, record_path)
