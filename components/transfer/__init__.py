"""Transfer component: a trained work dir -> the knowledge-transfer metrics.json and report.md.

  python -m components.transfer --model=runs/pipeline/model --output_dir=runs/pipeline/transfer \\
      -- --features=encoder --clusters=200 [lorbms_tf.transfer flags]

Runs ``lorbms_tf.transfer`` (child process, the same library entry as the CLI, as an
orchestrator would run it) into the artifact: metrics.json, report.md, the pseudo labels and the
transfer net's weights, plus ``record.json`` with the headline numbers (``headline``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from components import base


@dataclasses.dataclass(frozen=True)
class TransferInputs:
  model: str  # a trainer artifact (work dir)
  transfer_args: tuple[str, ...] = ()  # lorbms_tf.transfer flags


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
  """What the record keeps of metrics.json: the setting, the clusters, and every probe row."""
  probes = metrics.get("probes", {})
  rows = {name: {k: row[k] for k in ("shape_probe", "colour_probe")}
          for name, row in probes.get("scenes_quadrant", {}).items()}
  stl10 = {name: s["mean"] for name, s in probes.get("stl10", {}).get("table", {}).items()}
  return {"features": metrics["run"]["features"], "clusters": metrics["run"]["clusters"],
          "num_images": metrics["run"]["num_images"],
          "used_clusters": metrics["pseudo_labels"]["used_clusters"],
          "transfer_loss_last": metrics["transfer_net"]["loss_last"],
          "scenes_quadrant": rows, "stl10": stl10}


def run(inputs: TransferInputs, output_dir: str) -> dict:
  def body(tmp):
    command = base.run_child("transfer", "lorbms_tf.transfer",
                             [*inputs.transfer_args, f"--workdir={inputs.model}", f"--output={tmp}"])
    with open(os.path.join(tmp, "metrics.json")) as f:
      metrics = json.load(f)
    return {"command": command, "summary": headline(metrics)}

  return base.write_artifact(output_dir, "transfer", *step(inputs), body)


def step(inputs: TransferInputs) -> tuple[object, dict]:
  """(settings, upstream artifacts): what the step's fingerprint is made of."""
  return ({**base.with_flagfiles(inputs, inputs.transfer_args),
           "data": base.args_data_identity(inputs.transfer_args)}, {"model": inputs.model})
