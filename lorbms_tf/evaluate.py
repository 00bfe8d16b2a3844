"""Evaluates a trained run: `python -m lorbms_tf.evaluate --workdir=runs/x [--flagfile=...]`.

Writes WORKDIR/eval/ (or --out_dir): metrics.json, report.md and PNGs. A thin absl wrapper, like
train.py: the flags map onto ``lorbms_tf.eval.evaluation.EvalConfig`` and the work is
``run_evaluation`` (also what the evaluator component runs). What each part measures: the
docstring of lorbms_tf/eval/evaluation.py.
"""

from __future__ import annotations

import dataclasses
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags

from lorbms_tf import cli
from lorbms_tf.eval import image_metrics, linear_probe
from lorbms_tf.eval.evaluation import EvalConfig, run_evaluation

_E = EvalConfig(workdir="")
_S = image_metrics.SceneClassifierConfig()
FLAGS = flags.FLAGS


def define_flags() -> None:
  """Defines the command-line flags (once). Not at import time: train.py, evaluate.py and
  render.py share flag names (--workdir, --dataset, ...), and absl refuses a second definition,
  so importing this module for ``run_evaluation`` must not define anything."""
  if "fid_model" in FLAGS:
    return
  flags.DEFINE_string("workdir", None, "Training run directory (config.json, checkpoints/, tb/).")
  flags.DEFINE_string("checkpoint", None, "Checkpoint prefix to evaluate (default: the latest).")
  flags.DEFINE_string("out_dir", None, "Where the report goes (default WORKDIR/eval).")
  flags.DEFINE_string("dataset", None, "Evaluation dataset (default: the run's).")
  flags.DEFINE_string("data_dir", None, "tensorflow_datasets data dir (default: the run's).")
  flags.DEFINE_string("split", _E.split, "Split of the evaluation images.")
  flags.DEFINE_integer("num_eval_images", _E.num_eval_images, "Test images (one I_mix each).")
  flags.DEFINE_integer("batch_size", None, "Mixing batch: partners come from it (default: run's).")
  flags.DEFINE_string("fid_model", None,
                      "Local SavedModel with the TF-Hub tfgan/eval/inception/1 interface, or "
                      "'builtin' (standard FID pool_3 converted from PyPI: FID/KID, no IS); "
                      "empty: no Inception FID (scenes get the labelled 'scenes FID').")
  flags.DEFINE_integer("scene_classifier_scenes", _S.train_scenes,
                       "Ground-truth scenes the scenes-FID / quadrant classifier trains on.")
  flags.DEFINE_integer("scene_classifier_epochs", _S.epochs, "Its training epochs.")
  flags.DEFINE_boolean("scene_classifier_cache", _E.scene_classifier_cache,
                       "Keep the trained classifier in OUT_DIR and reuse it.")
  flags.DEFINE_integer("probe_epochs", _E.probe.epochs, "Linear-probe epochs (protocol: 200).")
  flags.DEFINE_integer("probe_batch_size", _E.probe.batch_size,
                       "Linear-probe batch (protocol: 128).")
  flags.DEFINE_float("probe_learning_rate", _E.probe.learning_rate, "Probe Adam rate (1e-3).")
  flags.DEFINE_integer("probe_train_images", _E.probe_train_images,
                       "Training images of the lorbms_scenes probes.")
  flags.DEFINE_integer("supervised_steps", _E.supervised_steps,
                       "Steps of the supervised-ceiling encoder (trained on the quadrant "
                       "labels, then probed like the others); 0 = no such row.")
  flags.DEFINE_boolean("stl10", _E.stl10, "Run the STL-10 linear-probe protocol (needs stl10 "
                       "prepared in --data_dir).")
  flags.DEFINE_integer("stl10_folds", _E.stl10_folds, "STL-10 folds to train (protocol: 10).")
  flags.DEFINE_boolean("stl10_augment", _E.stl10_augment,
                       "Protocol augmentation (random-area crops, flips) every epoch; slower.")
  flags.DEFINE_boolean("stl10_fine_tune", _E.stl10_fine_tune, "Add the fine-tuned encoder row.")
  flags.DEFINE_integer("stl10_test_limit", None, "Cap on STL-10 test images (protocol: all 8,000).")
  flags.DEFINE_boolean("over_checkpoints", _E.over_checkpoints,
                       "Also evaluate every kept checkpoint (cheap subset) for the plots.")
  flags.DEFINE_integer("checkpoint_images", _E.checkpoint_images,
                       "Test images per checkpoint in the over-training plots.")
  flags.DEFINE_integer("grid_examples", _E.grid_examples, "Rows of the mixed-scenes grid.")
  flags.DEFINE_integer("seed", _E.seed, "Seed of the random baselines and probes.")
  flags.mark_flag_as_required("workdir")


def config_from_flags() -> EvalConfig:
  return EvalConfig(
      workdir=FLAGS.workdir, checkpoint=FLAGS.checkpoint, out_dir=FLAGS.out_dir,
      dataset=FLAGS.dataset, data_dir=FLAGS.data_dir, split=FLAGS.split,
      num_eval_images=FLAGS.num_eval_images, batch_size=FLAGS.batch_size,
      fid_model=FLAGS.fid_model or None,
      scene_classifier=dataclasses.replace(_S, train_scenes=FLAGS.scene_classifier_scenes,
                                           epochs=FLAGS.scene_classifier_epochs),
      scene_classifier_cache=FLAGS.scene_classifier_cache,
      probe=linear_probe.ProbeConfig(epochs=FLAGS.probe_epochs, batch_size=FLAGS.probe_batch_size,
                                     learning_rate=FLAGS.probe_learning_rate, seed=FLAGS.seed),
      probe_train_images=FLAGS.probe_train_images, supervised_steps=FLAGS.supervised_steps,
      stl10=FLAGS.stl10,
      stl10_folds=FLAGS.stl10_folds, stl10_augment=FLAGS.stl10_augment,
      stl10_fine_tune=FLAGS.stl10_fine_tune, stl10_test_limit=FLAGS.stl10_test_limit,
      over_checkpoints=FLAGS.over_checkpoints, checkpoint_images=FLAGS.checkpoint_images,
      grid_examples=FLAGS.grid_examples, seed=FLAGS.seed)


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
