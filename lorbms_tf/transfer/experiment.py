"""The knowledge-transfer experiment, end to end: ``TransferConfig`` -> metrics.json, report.md.

1. Restore the trained networks of a work dir; the teacher is its encoder or discriminator.
2. Teacher features of the training images (flattened), k-means -> K pseudo labels.
3. A fresh AlexNet-style student learns the pseudo labels from the images.
4. The student's conv layers, frozen, get the evaluation's linear probes, beside the same
   probes on the teacher's own features (the direct probes), a random-initialised student
   and (lorbms_scenes) raw pixels: per-quadrant shape and colour probes on lorbms_scenes,
   the STL-10 fold protocol with ``stl10`` (default: when the images are STL-10).

The images stream from the dataset twice (features, then student training, in the same fixed
order, so the labels line up by position); only the [N, D] features are held in memory.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np
import tensorflow as tf
from absl import logging

from lorbms_tf import checkpoints, timing
from lorbms_tf.eval import linear_probe, scenes_eval
from lorbms_tf.transfer import features as features_lib
from lorbms_tf.transfer import pseudo_labels, report
from lorbms_tf.transfer import student as student_lib

DEFAULT_OUTPUT = "transfer"  # under the work dir
PSEUDO_LABELS_FILE = "pseudo_labels.npz"
STUDENT_WEIGHTS_FILE = "transfer_net.weights.h5"


@dataclasses.dataclass(frozen=True)
class TransferConfig:
  """Everything one transfer experiment needs; the defaults are the small, CPU-sized ones.

  Every field with help metadata is a flag of ``lorbms_tf.transfer`` of the field's name, type
  and default (lorbms_tf/config_flags.py); ``flags`` metadata names those of the sub-configs."""
  workdir: str = dataclasses.field(metadata={
      "help": "Training run directory (config.json, checkpoints/)."})
  features: str = dataclasses.field(default="encoder", metadata={  # the teacher
      "choices": features_lib.TEACHERS,
      "help": "The teacher: the encoder's chunks or the discriminator's layer before its "
              "logits."})
  clusters: int = dataclasses.field(default=2000, metadata={  # K (the thesis: 2,000)
      "help": "K: k-means clusters = pseudo classes (thesis: 2,000)."})
  output: str | None = dataclasses.field(default=None, metadata={  # default WORKDIR/transfer
      "help": "Where the results go (default WORKDIR/transfer)."})
  # default: the run's training dataset
  dataset: str | None = dataclasses.field(default=None, metadata={
      "help": "Images to cluster and learn from, and the probes' data (default: the run's "
              "training dataset)."})
  data_dir: str | None = dataclasses.field(default=None, metadata={  # default: the run's
      "help": "tensorflow_datasets data dir (default: the run's)."})
  # default: the dataset's training split
  split: str | None = dataclasses.field(default=None, metadata={
      "help": "Split of those images (default: the dataset's training split)."})
  # cap on the images clustered and learned from
  num_images: int | None = dataclasses.field(default=None, metadata={
      "help": "Use only the first N images (default: all)."})
  kmeans_iterations: int = dataclasses.field(default=20, metadata={
      "help": "k-means (Lloyd) iterations."})
  kmeans_init: str = dataclasses.field(default="kmeans++", metadata={
      "choices": pseudo_labels.INIT_METHODS, "help": "Centroid initialisation."})
  kmeans_normalize: bool = dataclasses.field(default=True, metadata={
      "help": "L2-normalise the feature rows before k-means."})
  student: student_lib.StudentConfig = dataclasses.field(
      default=student_lib.StudentConfig(), metadata={"flags": {
          "steps": ("transfer_steps", "Training steps of the transfer net."),
          "batch_size": ("transfer_batch_size", "Its batch size."),
          "learning_rate": ("transfer_learning_rate", "Its Adam rate."),
          "seed": "seed",
      }})
  probe: linear_probe.ProbeConfig = dataclasses.field(
      default=linear_probe.ProbeConfig(epochs=30), metadata={"flags": {
          "epochs": ("probe_epochs", "Linear-probe epochs (protocol: 200)."),
          "seed": "seed",
      }})
  # lorbms_scenes probes: training scenes
  probe_train_images: int = dataclasses.field(default=2000, metadata={
      "help": "Training scenes of the lorbms_scenes probes."})
  num_test: int = dataclasses.field(default=1000, metadata={  # lorbms_scenes probes: test scenes
      "help": "Test scenes of the lorbms_scenes probes."})
  stl10: bool | None = dataclasses.field(default=None, metadata={  # None: when it is STL-10
      "help": "Run the STL-10 probe protocol (default: when --dataset is stl10; needs stl10 "
              "prepared in --data_dir)."})
  stl10_folds: int = dataclasses.field(default=10, metadata={
      "help": "STL-10 folds (protocol: 10)."})
  stl10_test_limit: int | None = dataclasses.field(default=None, metadata={
      "help": "Cap on STL-10 test images (protocol: all 8,000)."})
  seed: int = dataclasses.field(default=0, metadata={
      "help": "Seed of k-means, the transfer net and the probes."})

  def validate(self) -> None:
    """The checks that need no data, so a bad flag fails before minutes of work."""
    if self.features not in features_lib.TEACHERS:
      raise ValueError(f"--features must be one of {', '.join(features_lib.TEACHERS)}, "
                       f"got {self.features!r}")
    if self.num_images is not None and self.num_images < 1:
      raise ValueError(f"--num_images must be >= 1, got {self.num_images}")
    # Against --num_images now; against the images actually read once they are.
    pseudo_labels.check_clusters(self.num_images, self.clusters)
    if self.student.steps < 1:
      raise ValueError(f"--transfer_steps must be >= 1, got {self.student.steps}")
    if self.kmeans_init not in pseudo_labels.INIT_METHODS:
      raise ValueError(f"--kmeans_init must be one of {pseudo_labels.INIT_METHODS}, "
                       f"got {self.kmeans_init!r}")


def _image_batches(dataset: str, split: str | None, limit: int | None, data_dir: str | None,
                   batch_size: int = 256) -> tf.data.Dataset:
  """The images in the source's fixed order, {"image": [B, 64, 64, 3] in [-1, 1], ...}."""
  from lorbms_tf.data import pipeline  # pylint: disable=import-outside-toplevel
  ds = pipeline.eval_dataset(dataset, split, batch_size=batch_size, data_dir=data_dir)
  if limit is not None:
    ds = ds.unbatch().take(limit).batch(batch_size)
  return ds


def _examples(dataset, split, limit, data_dir, labels: np.ndarray) -> tf.data.Dataset:
  """(image, pseudo label) pairs: the second pass over the same images, in the same order."""
  images = _image_batches(dataset, split, limit, data_dir).unbatch().map(lambda ex: ex["image"])
  return tf.data.Dataset.zip(images, tf.data.Dataset.from_tensor_slices(labels))


def scenes_probe_rows(teacher, trained, random_student, config: TransferConfig,
                      dataset: str, data_dir: str | None) -> dict[str, dict[str, float]]:
  """Per-quadrant shape and colour probes of every feature layer, on the same scenes."""
  train = scenes_eval.load_scenes("train", config.probe_train_images, data_dir, dataset)
  test = scenes_eval.load_scenes("test", config.num_test, data_dir, dataset)

  def probes(train_rows, test_rows):
    return scenes_eval.quadrant_probes(train_rows, train, test_rows, test, config.probe)

  rows = {}
  for extractor in (teacher, trained, random_student):
    rows[extractor.name] = probes(features_lib.quadrant_features(extractor, train["image"]),
                                  features_lib.quadrant_features(extractor, test["image"]))
  rows["raw pixels (8x8x3 per quadrant)"] = probes(
      scenes_eval.pixel_features(train["image"]), scenes_eval.pixel_features(test["image"]))
  return rows


def run_transfer(config: TransferConfig) -> dict[str, Any]:
  """Runs the experiment and writes OUTPUT/metrics.json and OUTPUT/report.md; returns metrics."""
  from lorbms_tf.data import sources  # pylint: disable=import-outside-toplevel
  from lorbms_tf.models import ModelConfig, build_transfer_net  # pylint: disable=import-outside-toplevel
  config.validate()
  timer = timing.StageTimer()
  networks = checkpoints.restore_networks(config.workdir)
  run_config = networks.config
  model_config = ModelConfig.from_dict(run_config["model"])
  dataset = config.dataset or run_config["dataset"]
  spec = sources.parse_dataset_spec(dataset)
  data_dir = config.data_dir or run_config.get("data_dir")
  output = config.output or os.path.join(config.workdir, DEFAULT_OUTPUT)
  os.makedirs(output, exist_ok=True)
  teacher = features_lib.teacher_extractor(networks, config.features)
  timer.lap("restore")

  features, _ = linear_probe.extract_features(
      teacher, _image_batches(dataset, config.split, config.num_images, data_dir), label_key=None)
  num_images = len(features)
  timer.lap("teacher_features")
  logging.info("teacher %s: %d images x %d features", teacher.name, num_images,
               features.shape[1])
  clusters = pseudo_labels.kmeans_pseudo_labels(features, pseudo_labels.KMeansConfig(
      clusters=config.clusters, iterations=config.kmeans_iterations, init=config.kmeans_init,
      normalize=config.kmeans_normalize, seed=config.seed))
  del features
  np.savez(os.path.join(output, PSEUDO_LABELS_FILE), labels=clusters.labels,
           centroids=clusters.centroids)
  timer.lap("kmeans")

  trained = student_lib.train_student(
      model_config, config.clusters,
      _examples(dataset, config.split, config.num_images, data_dir, clusters.labels),
      config.student)
  from lorbms_tf import atomic  # pylint: disable=import-outside-toplevel
  weights_tmp = atomic.temp_path(os.path.join(output, STUDENT_WEIGHTS_FILE))
  trained.net.save_weights(weights_tmp)
  atomic.commit(weights_tmp, os.path.join(output, STUDENT_WEIGHTS_FILE))
  timer.lap("student_training")

  import keras  # pylint: disable=import-outside-toplevel
  keras.utils.set_random_seed(config.seed + 1)
  random_student = build_transfer_net(model_config, config.clusters)
  extractors = {
      "teacher": dataclasses.replace(teacher, name=f"{teacher.name} (direct)"),
      "student": features_lib.student_extractor(trained.net, "transfer net (frozen conv)"),
      "random": features_lib.student_extractor(random_student,
                                               "random-init transfer net (frozen conv)"),
  }
  probes: dict[str, Any] = {}
  notes: list[str] = []
  # The scenes probes need lorbms_scenes' per-quadrant labels: the dataset itself, or the
  # scenes a run on exported scenes (the pipeline's TFRecord examples) evaluated on.
  probe_dataset = dataset if spec.name.startswith("scenes/") else (
      None if config.dataset else run_config.get("eval_dataset"))
  if probe_dataset:
    probes["scenes_quadrant"] = scenes_probe_rows(
        extractors["teacher"], extractors["student"], extractors["random"], config,
        probe_dataset, data_dir)
    timer.lap("scenes_probes")
  stl10 = config.stl10 if config.stl10 is not None else spec.name == "stl10"
  if stl10:
    table = linear_probe.stl10_linear_probes(
        list(extractors.values()), data_dir, config.probe, num_folds=config.stl10_folds,
        test_limit=config.stl10_test_limit)
    probes["stl10"] = {
        "protocol": (f"{config.stl10_folds} folds, {config.probe.epochs} epochs, frozen "
                     "central-crop features at 96 px (no augmentation)"),
        "table": {name: summary.to_dict() for name, summary in table.items()}}
    timer.lap("stl10_probes")
  if not probes:
    notes.append(f"No probes: {dataset!r} is neither lorbms_scenes nor STL-10 (pass --stl10 "
                 "to probe on STL-10).")

  metrics = {
      "run": {"workdir": config.workdir, "step": networks.step, "preset": run_config.get("preset"),
              "features": config.features, "dataset": str(spec),
              "split": config.split or spec.train_split, "num_images": num_images,
              "clusters": config.clusters, "seed": config.seed},
      "teacher": {"name": teacher.name, "feature_dim": clusters.stats["feature_dim"]},
      "pseudo_labels": clusters.stats,
      "transfer_net": {**trained.summary(), "config": dataclasses.asdict(config.student)},
      "probe_config": dataclasses.asdict(config.probe),
      "probes": probes,
      "notes": notes,
      "timing": timer.seconds,
  }
  metrics["run"]["seconds"] = timer.total()
  metrics["paths"] = report.write_transfer_report(output, metrics)
  logging.info("wrote %s", metrics["paths"]["report"])
  return metrics
