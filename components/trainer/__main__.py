"""CLI: ``python -m components.trainer --examples=DIR --output_dir=DIR -- TRAINING FLAGS``."""

from __future__ import annotations

import json

from absl import flags

from components.trainer import TrainerInputs, run
from lorbms_tf import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("examples", None, "ExampleGen artifact (none: the training flags' dataset).")
flags.DEFINE_string("neighbours", None, "Similarity artifact: train with --partners=index.")
flags.DEFINE_string("output_dir", None, "The trained work dir artifact.")
flags.mark_flags_as_required(["output_dir"])


def main(argv):
  record = run(TrainerInputs(FLAGS.examples, FLAGS.neighbours, tuple(argv[1:])), FLAGS.output_dir)
  print(json.dumps({k: record["train_summary"].get(k) for k in ("step", "images_per_second")}))


if __name__ == "__main__":
  cli.run(main)
