"""CLI: ``python -m components.transfer --model=DIR --output_dir=DIR -- [transfer flags]``."""

from __future__ import annotations

import json

from absl import flags

from components.transfer import TransferInputs, run
from lorbms_tf import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Trainer artifact (work dir).")
flags.DEFINE_string("output_dir", None, "The transfer artifact.")
flags.mark_flags_as_required(["model", "output_dir"])


def main(argv):
  record = run(TransferInputs(FLAGS.model, tuple(argv[1:])), FLAGS.output_dir)
  print(json.dumps(record["summary"]))


if __name__ == "__main__":
  cli.run(main)
