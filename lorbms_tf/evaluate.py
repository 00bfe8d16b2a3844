"""Evaluates a trained run: `python -m lorbms_tf.evaluate --workdir=runs/x [--flagfile=...]`.

Writes WORKDIR/eval/ (or --out_dir): metrics.json, report.md and PNGs. A thin absl wrapper, like
train.py: the flags map onto ``lorbms_tf.eval.evaluation.EvalConfig`` and the work is
``run_evaluation`` (also what the evaluator component runs). What each part measures: the
docstring of lorbms_tf/eval/evaluation.py.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags

from lorbms_tf import cli, config_flags
from lorbms_tf.eval.evaluation import EvalConfig, run_evaluation

# Every flag is a field of EvalConfig (name, type, default and help there; its probe and scene
# classifier fields' flags in its metadata): lorbms_tf/config_flags.py.
EVAL_FLAGS = config_flags.ConfigFlags(EvalConfig)
FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
  """Defines the command-line flags (once). Not at import time: train.py, evaluate.py and
  render.py share flag names (--workdir, --dataset, ...), and absl refuses a second definition,
  so importing this module for ``run_evaluation`` must not define anything."""
  if "fid_model" in flag_values:
    return
  EVAL_FLAGS.define(flag_values)


def config_from_flags(flag_values: flags.FlagValues = FLAGS) -> EvalConfig:
  return EVAL_FLAGS.config(flag_values)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  metrics = run_evaluation(config_from_flags())
  print(f"report: {metrics['paths']['report']}")


def run():
  define_flags()
  cli.run(main)


if __name__ == "__main__":
  run()
