"""Knowledge transfer of a trained run: ``python -m lorbms_tf.transfer --workdir=RUN``.

    python -m lorbms_tf.transfer --workdir=runs/demo/model --features=encoder --clusters=200 \\
        [--data_dir=...] [--num_images=N] [--transfer_steps=2000] [--output=DIR]

Writes OUTPUT (default WORKDIR/transfer): metrics.json, report.md, the pseudo labels and the
transfer net's weights. What it does: ``lorbms_tf/transfer/experiment.py``.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags

from lorbms_tf import cli, config_flags
from lorbms_tf.transfer import experiment

# Every flag is a field of TransferConfig (name, type, default and help there; its student and
# probe fields' flags in its metadata): lorbms_tf/config_flags.py.
TRANSFER_FLAGS = config_flags.ConfigFlags(experiment.TransferConfig)
FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
  """Defines the command-line flags (once), when run: train.py and evaluate.py share flag
  names (--workdir, --dataset, ...), so importing this module must not define them."""
  if "transfer_steps" in flag_values:
    return
  TRANSFER_FLAGS.define(flag_values)


def config_from_flags(flag_values: flags.FlagValues = FLAGS) -> experiment.TransferConfig:
  return TRANSFER_FLAGS.config(flag_values)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  metrics = experiment.run_transfer(config_from_flags())
  print(f"report: {metrics['paths']['report']}")


def run():
  define_flags()
  cli.run(main)


if __name__ == "__main__":
  run()
