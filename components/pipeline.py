"""The chain, run locally: example_gen -> [similarity] -> trainer -> evaluator -> pusher.

  python -m components.pipeline --pipeline_root=runs/pipeline --dataset=scenes \\
      --train_flagfile=configs/scenes.flags --push_destination=saved_models/lorbms

Each step writes one artifact under ``pipeline_root`` (``examples``, ``neighbours``, ``model``,
``evaluation``, ``pusher``), atomically (components/base.py). A step whose settings and inputs'
fingerprints match the artifact already there is skipped; a changed step and everything
downstream of it runs again (their inputs' fingerprints changed). Every step is also its own
CLI (``python -m components.<step>``), which is how an orchestrator runs them.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any, Callable

from components import base
from components import evaluator as evaluator_lib
from components import example_gen as example_gen_lib
from components import trainer as trainer_lib


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  pipeline_root: str
  dataset: str = "scenes"
  data_dir: str | None = None
  example_limit: int | None = None
  use_index_partners: bool = False  # run the similarity step and train with --partners=index
  train_args: tuple[str, ...] = ("--flagfile=configs/scenes.flags",)
  eval_args: tuple[str, ...] = ("--flagfile=configs/eval_scenes.flags", "--dataset=scenes")
  thresholds: tuple[str, ...] = evaluator_lib.DEFAULT_THRESHOLDS
  push_destination: str = "saved_models/lorbms"


def _similarity_step(examples: str, config: PipelineConfig):
  from components import similarity  # pylint: disable=import-outside-toplevel
  inputs = similarity.SimilarityInputs(dataset=example_gen_lib.examples_spec(examples))

  def run(output_dir):
    def body(tmp):
      outputs = similarity.run(inputs, os.path.join(tmp, "table"))
      return {"similarity": dataclasses.asdict(outputs)}
    return base.write_artifact(output_dir, "similarity", inputs, {"examples": examples}, body)
  return (inputs, {"examples": examples}), run


def _pusher_step(model: str, evaluation: str, config: PipelineConfig):
  from components import pusher  # pylint: disable=import-outside-toplevel
  inputs = pusher.PusherInputs(model, config.push_destination, blessing=evaluation)

  def run(output_dir):
    def body(tmp):
      return {"push": dataclasses.asdict(pusher.run(inputs, tmp))}
    return base.write_artifact(output_dir, "pusher", inputs,
                               {"model": model, "blessing": evaluation}, body)
  return (inputs, {"model": model, "blessing": evaluation}), run


def run_pipeline(config: PipelineConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
  """Runs (or skips) every step in order; returns {step: record}.

  The pipeline root is locked meanwhile: a second pipeline on it stops at once with one line
  naming this one (lorbms_tf/locks.py). The trainer's child locks its own work dir inside.
  """
  from lorbms_tf import locks  # pylint: disable=import-outside-toplevel
  with locks.DirectoryLock(config.pipeline_root):
    return _run_pipeline(config, log)


def blessed_but_not_pushed(records: dict[str, Any]) -> bool:
  """Whether the evaluator blessed the model and the pusher did not publish it."""
  blessing = (records.get("evaluation") or {}).get("blessing") or {}
  push = (records.get("pusher") or {}).get("push") or {}
  return bool(blessing.get("blessed")) and not push.get("pushed")


def _run_pipeline(config: PipelineConfig, log: Callable[[str], None]) -> dict[str, Any]:
  root = config.pipeline_root
  path = {name: os.path.join(root, name)
          for name in ("examples", "neighbours", "model", "evaluation", "pusher")}
  records: dict[str, Any] = {}

  def step(name, fingerprint_parts, run):
    settings, inputs = fingerprint_parts
    if base.is_current(path[name], settings, inputs):
      log(f"[pipeline] {name}: unchanged, skipped")
      records[name] = base.read_record(path[name])
    else:
      log(f"[pipeline] {name}: running")
      records[name] = run(path[name])
      log(f"[pipeline] {name}: done in {records[name]['seconds']:.0f} s")

  examples_inputs = example_gen_lib.ExampleGenInputs(config.dataset, data_dir=config.data_dir,
                                                     limit=config.example_limit)
  step("examples", example_gen_lib.step(examples_inputs),
       lambda out: example_gen_lib.run(examples_inputs, out))
  neighbours = None
  if config.use_index_partners:
    parts, run = _similarity_step(path["examples"], config)
    step("neighbours", parts, run)
    neighbours = path["neighbours"]
  trainer_inputs = trainer_lib.TrainerInputs(path["examples"], neighbours, config.train_args)
  step("model", trainer_lib.step(trainer_inputs), lambda out: trainer_lib.run(trainer_inputs, out))
  evaluator_inputs = evaluator_lib.EvaluatorInputs(path["model"], config.eval_args,
                                                   config.thresholds)
  step("evaluation", evaluator_lib.step(evaluator_inputs),
       lambda out: evaluator_lib.run(evaluator_inputs, out))
  parts, run = _pusher_step(path["model"], path["evaluation"], config)
  step("pusher", parts, run)
  return records


def main() -> None:
  from absl import flags  # pylint: disable=import-outside-toplevel
  from lorbms_tf import cli  # pylint: disable=import-outside-toplevel
  flags.DEFINE_string("pipeline_root", "runs/pipeline", "Where the steps' artifacts go.")
  flags.DEFINE_string("dataset", "scenes", "ExampleGen's source.")
  flags.DEFINE_string("data_dir", None, "tfds data dir.")
  flags.DEFINE_integer("example_limit", None, "Write only the first N examples.")
  flags.DEFINE_boolean("use_index_partners", False, "Similarity step + --partners=index.")
  flags.DEFINE_string("train_flagfile", "configs/scenes.flags", "The trainer's flagfile.")
  flags.DEFINE_list("train_flags", [], "More training flags, e.g. --total_steps=100.")
  flags.DEFINE_string("eval_flagfile", "configs/eval_scenes.flags", "The evaluator's flagfile.")
  flags.DEFINE_list("eval_flags", [], "More evaluation flags.")
  flags.DEFINE_multi_string("threshold", list(evaluator_lib.DEFAULT_THRESHOLDS),
                            "Blessing conditions METRIC<=VALUE / METRIC>=VALUE.")
  flags.DEFINE_string("push_destination", "saved_models/lorbms", "TF Serving base path.")
  FLAGS = flags.FLAGS

  def run(argv):
    del argv
    data = [f"--data_dir={FLAGS.data_dir}"] if FLAGS.data_dir else []
    config = PipelineConfig(
        FLAGS.pipeline_root, FLAGS.dataset, FLAGS.data_dir, FLAGS.example_limit,
        FLAGS.use_index_partners,
        (f"--flagfile={FLAGS.train_flagfile}", *data, *FLAGS.train_flags),
        (f"--flagfile={FLAGS.eval_flagfile}", "--dataset=scenes", *data, *FLAGS.eval_flags),
        tuple(FLAGS.threshold), FLAGS.push_destination)
    records = run_pipeline(config)
    push = records["pusher"]["push"]
    print(f"pipeline done: {push['reason']}; report: "
          f"{os.path.join(config.pipeline_root, 'evaluation', 'report.md')}")
    if blessed_but_not_pushed(records):  # an orchestrator must see that nothing was served
      print("pipeline: error: the model is blessed but was not pushed", file=sys.stderr)
      raise SystemExit(1)

  cli.run(run)


if __name__ == "__main__":
  main()
