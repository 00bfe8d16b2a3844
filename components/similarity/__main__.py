"""CLI of the similarity component: ``python -m components.similarity --dataset=... --output_dir=...``."""

from __future__ import annotations

import dataclasses
import json
from typing import Sequence

from absl import app
from absl import flags

from components.similarity import SimilarityInputs, run
from lorbms_tf import cli
from lorbms_tf import conventions
from lorbms_tf import similarity
from lorbms_tf.similarity import extractors as extractors_lib

FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_string("dataset", None, "scenes | folder:PATH | tfrecord:GLOB | coco | stl10 ...")
  flags.DEFINE_string("split", None, "Split (default: the dataset's training split).")
  flags.DEFINE_string("data_dir", None, "tfds data dir.")
  flags.DEFINE_string("extractor", extractors_lib.DEFAULT_EXTRACTOR,
                      "pixels | random_cnn | random_encoder[:PRESET] | encoder:CHECKPOINT | "
                      "keras_app:NAME[:WEIGHTS_PATH]")
  flags.DEFINE_integer("k", similarity.DEFAULT_K, "Neighbours per image and quadrant.")
  flags.DEFINE_string("output_dir", None, "The neighbour table directory (replaced).")
  flags.DEFINE_integer("limit", None, "Use only the first N images.")
  flags.DEFINE_integer("image_size", conventions.IMAGE_SIZE, "Central crop size in pixels.")
  flags.DEFINE_bool("use_beam", False, "Embed with the Apache Beam pipeline.")
  flags.DEFINE_list("beam_options", [], "Beam pipeline flags, e.g. --runner=DataflowRunner.")
  flags.DEFINE_integer("num_shards", 4, "Embedding shards written by the Beam pipeline.")
  flags.DEFINE_integer("recall_queries", 1000, "Sampled queries per position for recall@k.")
  flags.DEFINE_float("target_recall", 0.98, "Tune the ScaNN index for the fastest search "
                     "reaching this recall@k on a held-out sample (0 = rule-of-thumb settings).")
  flags.DEFINE_integer("batch_size", extractors_lib.DEFAULT_BATCH_SIZE, "Embedding batch size.")
  flags.DEFINE_integer("seed", 0, "Seed of random extractors and samples.")
  flags.DEFINE_bool("save_searchers", True, "Save the ScaNN searchers with the table.")
  flags.mark_flags_as_required(["dataset", "output_dir"])


def inputs_from_flags() -> SimilarityInputs:
  return SimilarityInputs(
      dataset=FLAGS.dataset, split=FLAGS.split, data_dir=FLAGS.data_dir,
      extractor=FLAGS.extractor, k=FLAGS.k, image_size=FLAGS.image_size, limit=FLAGS.limit,
      use_beam=FLAGS.use_beam, beam_options=tuple(FLAGS.beam_options),
      num_shards=FLAGS.num_shards, recall_queries=FLAGS.recall_queries,
      target_recall=FLAGS.target_recall,
      batch_size=FLAGS.batch_size, seed=FLAGS.seed, save_searchers=FLAGS.save_searchers)


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  outputs = run(inputs_from_flags(), FLAGS.output_dir)
  print(json.dumps(dataclasses.asdict(outputs), indent=2))


if __name__ == "__main__":
  define_flags()
  cli.run(main)
