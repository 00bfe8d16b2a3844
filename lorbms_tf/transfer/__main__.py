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

from lorbms_tf import cli
from lorbms_tf.eval import linear_probe
from lorbms_tf.transfer import experiment, features, pseudo_labels, student

_T = experiment.TransferConfig(workdir="")
_S = student.StudentConfig()
FLAGS = flags.FLAGS

flags.DEFINE_string("workdir", None, "Training run directory (config.json, checkpoints/).")
flags.DEFINE_enum("features", _T.features, list(features.TEACHERS),
                  "The teacher: the encoder's chunks or the discriminator's layer before its "
                  "logits.")
flags.DEFINE_integer("clusters", _T.clusters, "K: k-means clusters = pseudo classes (thesis: "
                     "2,000).")
flags.DEFINE_string("output", None, "Where the results go (default WORKDIR/transfer).")
flags.DEFINE_string("dataset", None, "Images to cluster and learn from, and the probes' data "
                    "(default: the run's training dataset).")
flags.DEFINE_string("data_dir", None, "tensorflow_datasets data dir (default: the run's).")
flags.DEFINE_string("split", None, "Split of those images (default: the dataset's training split).")
flags.DEFINE_integer("num_images", None, "Use only the first N images (default: all).")
flags.DEFINE_integer("kmeans_iterations", _T.kmeans_iterations, "k-means (Lloyd) iterations.")
flags.DEFINE_enum("kmeans_init", _T.kmeans_init, list(pseudo_labels.INIT_METHODS),
                  "Centroid initialisation.")
flags.DEFINE_boolean("kmeans_normalize", _T.kmeans_normalize,
                     "L2-normalise the feature rows before k-means.")
flags.DEFINE_integer("transfer_steps", _S.steps, "Training steps of the transfer net.")
flags.DEFINE_integer("transfer_batch_size", _S.batch_size, "Its batch size.")
flags.DEFINE_float("transfer_learning_rate", _S.learning_rate, "Its Adam rate.")
flags.DEFINE_integer("probe_epochs", _T.probe.epochs, "Linear-probe epochs (protocol: 200).")
flags.DEFINE_integer("probe_train_images", _T.probe_train_images,
                     "Training scenes of the lorbms_scenes probes.")
flags.DEFINE_integer("num_test", _T.num_test, "Test scenes of the lorbms_scenes probes.")
flags.DEFINE_boolean("stl10", None, "Run the STL-10 probe protocol (default: when --dataset is "
                     "stl10; needs stl10 prepared in --data_dir).")
flags.DEFINE_integer("stl10_folds", _T.stl10_folds, "STL-10 folds (protocol: 10).")
flags.DEFINE_integer("stl10_test_limit", None, "Cap on STL-10 test images (protocol: all 8,000).")
flags.DEFINE_integer("seed", _T.seed, "Seed of k-means, the transfer net and the probes.")
flags.mark_flag_as_required("workdir")


def config_from_flags() -> experiment.TransferConfig:
  return experiment.TransferConfig(
      workdir=FLAGS.workdir, features=FLAGS.features, clusters=FLAGS.clusters,
      output=FLAGS.output, dataset=FLAGS.dataset, data_dir=FLAGS.data_dir, split=FLAGS.split,
      num_images=FLAGS.num_images, kmeans_iterations=FLAGS.kmeans_iterations,
      kmeans_init=FLAGS.kmeans_init, kmeans_normalize=FLAGS.kmeans_normalize,
      student=student.StudentConfig(steps=FLAGS.transfer_steps,
                                    batch_size=FLAGS.transfer_batch_size,
                                    learning_rate=FLAGS.transfer_learning_rate, seed=FLAGS.seed),
      probe=linear_probe.ProbeConfig(epochs=FLAGS.probe_epochs, seed=FLAGS.seed),
      probe_train_images=FLAGS.probe_train_images, num_test=FLAGS.num_test, stl10=FLAGS.stl10,
      stl10_folds=FLAGS.stl10_folds, stl10_test_limit=FLAGS.stl10_test_limit, seed=FLAGS.seed)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  metrics = experiment.run_transfer(config_from_flags())
  print(f"report: {metrics['paths']['report']}")


if __name__ == "__main__":
  cli.run(main)
