"""Trains LORBMS: `python -m lorbms_tf.train --flagfile=configs/scenes.flags --workdir=runs/x`.

The only place (with evaluate.py and render.py) that reads absl FLAGS: they become a
TrainConfig here and the library takes it from there. Re-running with the same --workdir
resumes from the latest checkpoint.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging

from lorbms_tf import cli, config_flags, train_lib

# Every flag is a field of TrainConfig or of its objective (LorbmsConfig): name, type, default
# and help live there, an option is one field (lorbms_tf/config_flags.py).
TRAIN_FLAGS = config_flags.ConfigFlags(train_lib.TrainConfig)
FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
  """The training flags (once), on absl's FLAGS at import (or on another FlagValues)."""
  if "generator_losses" in flag_values:
    return
  TRAIN_FLAGS.define(flag_values)


define_flags()


def config_from_flags(flag_values: flags.FlagValues = FLAGS) -> train_lib.TrainConfig:
  """The TrainConfig of the parsed flags (ValueError for a bad combination)."""
  return TRAIN_FLAGS.config(flag_values)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    config = config_from_flags()
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  logging.info("training config: %s", config)
  train_lib.train(config)


def run():
  cli.run(main)


if __name__ == "__main__":
  run()
