"""CLI: ``python -m components.example_gen --dataset=scenes --output_dir=DIR``."""

from __future__ import annotations

import json

from absl import flags

from components.example_gen import ExampleGenInputs, run
from lorbms_tf import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", None, "scenes | coco | stl10 | celeb_a | folder:PATH | tfrecord:GLOB")
flags.DEFINE_string("split", None, "Split (default: the source's training split).")
flags.DEFINE_string("data_dir", None, "tfds data dir.")
flags.DEFINE_integer("image_size", 64, "Side of the central square written, in pixels.")
flags.DEFINE_integer("num_shards", 4, "TFRecord shards.")
flags.DEFINE_integer("limit", None, "Write only the first N images.")
flags.DEFINE_float("max_skipped_fraction", 0.1, "Stop when more of the source is bad.")
flags.DEFINE_string("output_dir", None, "The artifact folder (replaced atomically).")
flags.mark_flags_as_required(["dataset", "output_dir"])


def main(argv):
  del argv
  record = run(ExampleGenInputs(FLAGS.dataset, FLAGS.split, FLAGS.data_dir, FLAGS.image_size,
                                FLAGS.num_shards, FLAGS.limit, FLAGS.max_skipped_fraction),
               FLAGS.output_dir)
  print(json.dumps(record["counts"]))


if __name__ == "__main__":
  cli.run(main)
