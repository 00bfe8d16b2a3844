"""Trainer component: examples (+ optional neighbour table) -> a trained work dir.

  python -m components.trainer --examples=runs/pipeline/examples --output_dir=runs/pipeline/model \\
      [--neighbours=runs/pipeline/neighbours] -- --flagfile=configs/scenes.flags [training flags]

A thin step over ``python -m lorbms_tf.train`` (run as a child process, as an orchestrator
would: the dtype policy and op determinism it sets stay inside it). The work dir is the
artifact (checkpoints, config.json, TensorBoard, grids, train_summary.json) plus
``record.json``. Training runs in ``OUTPUT.tmp``; a killed step resumes there from its last
checkpoint (same settings) and the folder is renamed into place when training is done.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

from components import base
from lorbms_tf import atomic, procs
from components.example_gen import examples_spec


@dataclasses.dataclass(frozen=True)
class TrainerInputs:
  examples: str | None  # an ExampleGen artifact; None: the training flags name the dataset
  neighbours: str | None = None  # a similarity artifact (its table/): --partners=index
  train_args: tuple[str, ...] = ()  # lorbms_tf.train flags, e.g. ("--flagfile=...",)


def train_command(inputs: TrainerInputs, workdir: str) -> list[str]:
  args = [sys.executable, "-m", "lorbms_tf.train", *inputs.train_args, f"--workdir={workdir}"]
  if inputs.examples:
    # Flags after the flagfile win: the examples replace its dataset. The light evaluation
    # needs lorbms_scenes' per-quadrant labels: when the examples were written from
    # lorbms_scenes, it reads that dataset (from --data_dir); otherwise it is off and the
    # evaluator step does the evaluation.
    args.append(f"--dataset={examples_spec(inputs.examples)}")
    from lorbms_tf.data import sources  # pylint: disable=import-outside-toplevel
    settings = (base.read_record(inputs.examples) or {}).get("settings", {})
    source = settings.get("inputs", settings).get("dataset")
    if source and sources.parse_dataset_spec(source).location.startswith("lorbms_scenes"):
      args.append(f"--eval_dataset={source}")
    else:
      args.append("--eval_every=0")
  if inputs.neighbours:
    args += ["--partners=index", f"--neighbour_table={os.path.join(inputs.neighbours, 'table')}"]
  return args


def run(inputs: TrainerInputs, output_dir: str) -> dict:
  def body(tmp):
    command = train_command(inputs, tmp)
    with open(os.path.join(tmp, "train.log"), "a") as log:
      # The child dies with this process (no orphan training on into OUTPUT.tmp beside a
      # rerun) and locks the work dir itself (lorbms_tf/train_lib.py).
      code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT,
                             **procs.child_kwargs())
    if code != 0:
      with open(os.path.join(tmp, "train.log")) as log:
        raise base.child_failed("training", code, log.read(), log.name)
    # The run trained in OUTPUT.tmp, which base.write_artifact renames to OUTPUT: record that.
    summary = _point_records_at(tmp, output_dir)
    return {"command": command, "train_summary": summary}

  return base.write_artifact(output_dir, "trainer", *step(inputs), body, resumable=True)


def _point_records_at(tmp: str, output_dir: str) -> dict:
  """Sets ``workdir`` to ``output_dir`` in the run's config.json and train_summary.json
  (plain JSON: this parent process never imports TensorFlow); returns the summary."""
  records = {}
  for name in ("config.json", "train_summary.json"):
    path = os.path.join(tmp, name)
    with open(path) as f:
      records[name] = {**json.load(f), "workdir": os.path.abspath(output_dir)}
    atomic.write_json(path, records[name], indent=2, sort_keys=name == "config.json")
  return records["train_summary.json"]


def step(inputs: TrainerInputs) -> tuple[object, dict]:
  """(settings, upstream artifacts): what the step's fingerprint is made of."""
  return (base.with_flagfiles(inputs, inputs.train_args),
          {"examples": inputs.examples, "neighbours": inputs.neighbours})
