"""CLI: ``python -m components.evaluator --model=DIR --output_dir=DIR -- [evaluate flags]``."""

from __future__ import annotations

import json

from absl import flags

from components.evaluator import DEFAULT_THRESHOLDS, EvaluatorInputs, run
from lorbms_tf import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Trainer artifact (work dir).")
flags.DEFINE_multi_string("threshold", list(DEFAULT_THRESHOLDS),
                          "Blessing condition METRIC<=VALUE or METRIC>=VALUE (repeatable; a "
                          "dotted path into metrics.json).")
flags.DEFINE_string("output_dir", None, "The evaluation artifact.")
flags.mark_flags_as_required(["model", "output_dir"])


def main(argv):
  record = run(EvaluatorInputs(FLAGS.model, tuple(argv[1:]), tuple(FLAGS.threshold)),
               FLAGS.output_dir)
  print(json.dumps(record["blessing"]))


if __name__ == "__main__":
  cli.run(main)
