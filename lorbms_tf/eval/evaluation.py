"""The evaluation of a trained run: ``run_evaluation(EvalConfig(workdir=...))``.

The one library entry behind `python -m lorbms_tf.evaluate` and the evaluator component.

Writes WORKDIR/eval/ (or --out_dir): metrics.json, report.md and PNGs (mixed-scene and
object-transfer grids, metrics over the checkpoints, loss curves from WORKDIR/tb). What the
numbers mean and how to read them: docs/evaluation.md.

Parts, each skipped where it cannot apply:

* Image quality of I_mix (one per test image, batch-partner mixing as in training) and of
  I_hat: FID/IS/KID with the Inception SavedModel of --fid_model, and on lorbms_scenes the
  labelled "scenes FID/IS/KID" of a domain classifier trained on the scenes' ground truth.
* Object metrics (lorbms_scenes): object-transfer fidelity, the quadrant classifier's own
  accuracy; mask-classifier accuracy of the model's C (any dataset).
* Linear probes: per-quadrant and whole-image probes on lorbms_scenes (trained vs random
  encoder); the STL-10 protocol with --stl10 (needs STL-10 prepared in --data_dir).
* Over training: cheap metrics at every kept checkpoint, plotted against the step.

No flags here: lorbms_tf/evaluate.py maps its command line onto ``EvalConfig``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np
import tensorflow as tf
from absl import logging

from lorbms_tf import checkpoints, conventions, timing, visualize
from lorbms_tf.eval import (image_metrics, linear_probe, object_metrics, report, scenes_eval,
                            supervised)

_SCENES_SHAPES = scenes_eval.NUM_SHAPE_CLASSES
TRANSFER_MASKS = ("1000", "0100", "0010", "0001", "1001", "0111")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  """Everything an evaluation needs; defaults are the small, fast values.

  Every field with help metadata is a flag of ``lorbms_tf.evaluate`` of the field's name, type
  and default (lorbms_tf/config_flags.py); ``flags`` metadata names those of the sub-configs."""
  workdir: str = dataclasses.field(metadata={
      "help": "Training run directory (config.json, checkpoints/, tb/)."})
  checkpoint: str | None = dataclasses.field(default=None, metadata={  # default: the latest
      "help": "Checkpoint prefix to evaluate (default: the latest)."})
  out_dir: str | None = dataclasses.field(default=None, metadata={  # default WORKDIR/eval
      "help": "Where the report goes (default WORKDIR/eval)."})
  dataset: str | None = dataclasses.field(default=None, metadata={  # default: the run's
      "help": "Evaluation dataset (default: the run's)."})
  data_dir: str | None = dataclasses.field(default=None, metadata={  # default: the run's
      "help": "tensorflow_datasets data dir (default: the run's)."})
  split: str = dataclasses.field(default="test", metadata={
      "help": "Split of the evaluation images."})
  num_eval_images: int = dataclasses.field(default=1000, metadata={
      "help": "Test images (one I_mix each)."})
  # mixing batch (partners come from it); default: run's
  batch_size: int | None = dataclasses.field(default=None, metadata={
      "help": "Mixing batch: partners come from it (default: run's)."})
  fid_model: str | None = dataclasses.field(default=None, metadata={
      "none_as": "",
      "help": "Local SavedModel with the TF-Hub tfgan/eval/inception/1 interface, or 'builtin' "
              "(standard FID pool_3 converted from PyPI: FID/KID, no IS); empty: no Inception "
              "FID (scenes get the labelled 'scenes FID')."})
  scene_classifier: image_metrics.SceneClassifierConfig = dataclasses.field(
      default=image_metrics.SceneClassifierConfig(), metadata={"flags": {
          "train_scenes": ("scene_classifier_scenes",
                           "Ground-truth scenes the scenes-FID / quadrant classifier trains on."),
          "epochs": ("scene_classifier_epochs", "Its training epochs."),
      }})
  # keep it in OUT_DIR for the next evaluation
  scene_classifier_cache: bool = dataclasses.field(default=True, metadata={
      "help": "Keep the trained classifier in OUT_DIR and reuse it."})
  # supervised-ceiling probe row (0 = off)
  supervised_steps: int = dataclasses.field(default=600, metadata={
      "help": "Steps of the supervised-ceiling encoder (trained on the quadrant labels, then "
              "probed like the others); 0 = no such row."})
  probe: linear_probe.ProbeConfig = dataclasses.field(
      default=linear_probe.ProbeConfig(epochs=30), metadata={"flags": {
          "epochs": ("probe_epochs", "Linear-probe epochs (protocol: 200)."),
          "batch_size": ("probe_batch_size", "Linear-probe batch (protocol: 128)."),
          "learning_rate": ("probe_learning_rate", "Probe Adam rate (1e-3)."),
          "seed": "seed",
      }})
  probe_train_images: int = dataclasses.field(default=2000, metadata={
      "help": "Training images of the lorbms_scenes probes."})
  stl10: bool = dataclasses.field(default=False, metadata={
      "help": "Run the STL-10 linear-probe protocol (needs stl10 prepared in --data_dir)."})
  stl10_folds: int = dataclasses.field(default=10, metadata={
      "help": "STL-10 folds to train (protocol: 10)."})
  stl10_augment: bool = dataclasses.field(default=False, metadata={
      "help": "Protocol augmentation (random-area crops, flips) every epoch; slower."})
  stl10_fine_tune: bool = dataclasses.field(default=False, metadata={
      "help": "Add the fine-tuned encoder row."})
  stl10_test_limit: int | None = dataclasses.field(default=None, metadata={
      "help": "Cap on STL-10 test images (protocol: all 8,000)."})
  over_checkpoints: bool = dataclasses.field(default=True, metadata={
      "help": "Also evaluate every kept checkpoint (cheap subset) for the plots."})
  checkpoint_images: int = dataclasses.field(default=500, metadata={
      "help": "Test images per checkpoint in the over-training plots."})
  grid_examples: int = dataclasses.field(default=8, metadata={
      "help": "Rows of the mixed-scenes grid."})
  seed: int = dataclasses.field(default=0, metadata={
      "help": "Seed of the random baselines and probes."})


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------

def load_split(dataset: str, split: str, limit: int | None, data_dir: str | None,
               image_size: int = conventions.IMAGE_SIZE) -> dict[str, np.ndarray]:
  """The first ``limit`` images of a split (central crops, fixed order) and their labels.

  Bad files are skipped by the decoding stage's rules, each named once in the log, and the
  counts logged (docs/data.md, "Bad data").
  """
  from lorbms_tf.data import pipeline, quality, sources  # pylint: disable=import-outside-toplevel
  skips = quality.SkipReport(sources.SkipCounter(f"evaluation {split}"), str(dataset),
                             max_fraction=1.0)
  ds = pipeline.eval_dataset(dataset, split, batch_size=256, image_size=image_size,
                             data_dir=data_dir, skip_counter=skips.counter)
  if limit is not None:
    ds = ds.unbatch().take(limit).batch(256)
  keys = ("image", "id", "shapes", "colors", "label")
  out: dict[str, list[np.ndarray]] = {}
  for batch in ds:
    for key in keys:
      if key in batch:
        out.setdefault(key, []).append(batch[key].numpy())
  counts = skips.update(final=limit is None)
  logging.info("%s %s: %s", dataset, split, skips.line(counts))
  if not out:
    raise skips.no_usable_images()
  return {key: np.concatenate(values) for key, values in out.items()}


# --------------------------------------------------------------------------------------------
# The model under test
# --------------------------------------------------------------------------------------------

def make_mix_fn(networks, compile_fn: bool = True):
  """I_mix, I_hat, mask, donors and C's logits for a batch, exactly as in training."""
  return scenes_eval.make_mix_fn(networks.model, compile_fn)


def _worth_compiling(num_images: int, batch_size: int) -> bool:
  return num_images > 8 * batch_size


_MIX_KEYS = scenes_eval.MIX_KEYS


def _random_networks(run_config: dict[str, Any], seed: int, image_size: int = 64):
  """Freshly initialised encoder and discriminator of the run's sizes: the probe baselines."""
  import keras  # pylint: disable=import-outside-toplevel
  # pylint: disable-next=import-outside-toplevel
  from lorbms_tf.models import ModelConfig, build_discriminator, build_encoder
  keras.utils.set_random_seed(seed)
  model_config = ModelConfig.from_dict(run_config["model"])
  return (build_encoder(model_config, image_size), build_discriminator(model_config, image_size))


def _copy_network(network, builder, run_config, image_size):
  """A trainable copy (fine-tuning must not change the network under evaluation)."""
  from lorbms_tf.models import ModelConfig  # pylint: disable=import-outside-toplevel
  copy = builder(ModelConfig.from_dict(run_config["model"]), image_size)
  copy.set_weights(network.get_weights())
  return copy


# --------------------------------------------------------------------------------------------
# Parts of the evaluation
# --------------------------------------------------------------------------------------------

def scenes_probes(evaluator: scenes_eval.ScenesEvaluator, trained_encoder, random_encoder,
                  run_config: dict[str, Any], config: EvalConfig) -> dict[str, dict[str, Any]]:
  """What the chunks hold: per-quadrant shape and colour probes of the trained encoder, beside
  raw pixels, a random encoder and the supervised ceiling; and the whole-image probe."""
  quadrant = {"trained encoder": evaluator.probes(trained_encoder)}
  quadrant.update(evaluator.baseline_rows(random_encoder))
  if config.supervised_steps:
    from lorbms_tf.models import ModelConfig  # pylint: disable=import-outside-toplevel
    ceiling = supervised.train_supervised_encoder(
        ModelConfig.from_dict(run_config["model"]), evaluator.train,
        supervised.SupervisedConfig(steps=config.supervised_steps, seed=config.seed))
    quadrant[f"supervised encoder ({config.supervised_steps} steps on the labels)"] = (
        evaluator.probes(ceiling))
  whole = {}
  for name, encoder in (("trained encoder", trained_encoder), ("random encoder", random_encoder)):
    features = {split: scenes_eval.chunk_features(encoder, data["image"]).reshape(
        len(data["image"]), -1) for split, data in (("train", evaluator.train),
                                                    ("test", evaluator.test))}
    whole[name] = linear_probe.whole_image_probe(
        features["train"], evaluator.train["label"], features["test"], evaluator.test["label"],
        _SCENES_SHAPES, config.probe).to_dict()
  return {"scenes_quadrant": quadrant, "scenes_image": whole}


def _batches(images: np.ndarray, size: int = 256):
  for begin in range(0, len(images), size):
    yield images[begin:begin + size]


def stl10_probes(networks, config: EvalConfig, data_dir: str | None) -> dict[str, Any]:
  """The thesis's STL-10 table: trained/random encoder and discriminator (+ fine-tuned)."""
  # pylint: disable-next=import-outside-toplevel
  from lorbms_tf.models import build_discriminator, build_encoder
  run_config = networks.config
  random_encoder, random_discriminator = _random_networks(run_config, config.seed + 1, 96)
  extractors = [
      linear_probe.encoder_extractor(networks.encoder, "encoder"),
      linear_probe.discriminator_extractor(networks.discriminator, "discriminator"),
      linear_probe.encoder_extractor(random_encoder, "random encoder"),
      linear_probe.discriminator_extractor(random_discriminator, "random discriminator"),
  ]

  def fine_tune_copy(name):
    if name == "encoder":
      return linear_probe.encoder_extractor(
          _copy_network(networks.encoder, build_encoder, run_config, 96), name)
    return linear_probe.discriminator_extractor(
        _copy_network(networks.discriminator, build_discriminator, run_config, 96), name)

  table = linear_probe.stl10_linear_probes(
      extractors, data_dir, config.probe, num_folds=config.stl10_folds,
      augment=config.stl10_augment,
      fine_tune=("encoder",) if config.stl10_fine_tune else (),
      make_fine_tune_copy=fine_tune_copy, test_limit=config.stl10_test_limit)
  protocol = (f"{config.stl10_folds} folds, {config.probe.epochs} epochs, Adam "
              f"{config.probe.learning_rate} beta1 {config.probe.beta_1}, batch "
              f"{config.probe.batch_size}, "
              + ("random-area crops + flips" if config.stl10_augment else
                 "frozen central-crop features (no augmentation)"))
  return {"protocol": protocol, "table": {k: v.to_dict() for k, v in table.items()}}


def checkpoint_metrics(networks, evaluator: scenes_eval.ScenesEvaluator | None, test,
                       batch_size: int, inception=None) -> dict[str, float]:
  """The light evaluation of one checkpoint (``ScenesEvaluator.run`` on lorbms_scenes)."""
  if evaluator is not None:
    row = evaluator.run(networks.model)
  else:
    mixes = object_metrics.mix_all(make_mix_fn(networks), test["image"], batch_size, _MIX_KEYS)
    row = {"rec_l1": float(np.mean(np.abs(mixes["reconstructed"] - test["image"]))),
           "mask_cls_accuracy": object_metrics.mask_classifier_accuracy(
               mixes["cls_logits"], mixes["mask"])["accuracy"]}
  if inception is not None:
    mixed = object_metrics.mix_all(make_mix_fn(networks), test["image"], batch_size,
                                   ("mixed",))["mixed"]
    row["fid"] = image_metrics.inception_quality(inception, test["image"], mixed)["fid"]
  return row


def render_transfers(networks, images: np.ndarray, pairs: int, masks=TRANSFER_MASKS):
  """Object transfer for consecutive test-image pairs under fixed masks -> [P, M, H, W, 3]."""
  pairs = min(pairs, len(images) // 2)
  references, donors = images[0:2 * pairs:2], images[1:2 * pairs:2]
  results = []
  for text in masks:
    mask = np.tile(conventions.parse_mask(text)[None], [pairs, 1])
    results.append(object_metrics.transfer_objects(networks, references, donors, mask))
  return references, donors, np.stack(results, axis=1)


# --------------------------------------------------------------------------------------------
# The whole evaluation
# --------------------------------------------------------------------------------------------

def run_evaluation(config: EvalConfig) -> dict[str, Any]:
  """Runs every applicable part and writes the report; returns the metrics dict."""
  timer = timing.StageTimer()
  networks = checkpoints.restore_networks(config.checkpoint or config.workdir)
  run_config = networks.config
  dataset = config.dataset or run_config["dataset"]
  data_dir = config.data_dir or run_config.get("data_dir")
  out_dir = config.out_dir or os.path.join(config.workdir, "eval")
  os.makedirs(out_dir, exist_ok=True)
  batch_size = max(2, config.batch_size or int(run_config.get("batch_size", 32)))
  test = load_split(dataset, config.split, config.num_eval_images, data_dir)
  is_scenes = "shapes" in test and "colors" in test
  timer.lap("load")

  metrics: dict[str, Any] = {
      # The prefix actually restored (the blessing ties the pusher to exactly it).
      "run": {"workdir": config.workdir, "checkpoint": networks.checkpoint,
              "step": networks.step, "dataset": dataset, "split": config.split,
              "preset": run_config.get("preset"), "num_eval_images": int(len(test["image"])),
              "mixing_batch_size": batch_size},
      "notes": [],
  }
  notes = metrics["notes"]
  mix_fn = make_mix_fn(networks, _worth_compiling(len(test["image"]), batch_size))
  mixes = object_metrics.mix_all(mix_fn, test["image"], batch_size, _MIX_KEYS)
  metrics["reconstruction"] = {
      "l1_direct": float(np.mean(np.abs(mixes["reconstructed"] - test["image"]))),
      "replaced_quadrants_mean": float(mixes["mask"].sum(-1).mean()),
  }
  metrics["mask_classifier"] = object_metrics.mask_classifier_accuracy(mixes["cls_logits"],
                                                                       mixes["mask"])
  timer.lap("mixing")

  quality: dict[str, Any] = {}
  inception = None
  if config.fid_model:
    inception = image_metrics.SavedModelClassifier(config.fid_model)
    if inception.note:
      notes.append(inception.note)
    for key, images, title in (("mixed", mixes["mixed"], "I_mix vs test images"),
                               ("reconstructed", mixes["reconstructed"], "I_hat vs test images")):
      quality[f"{key} (Inception)"] = {
          "title": title, "classifier": f"Inception SavedModel {config.fid_model}"
          + (" (standard FID pool_3, no logits: FID/KID, no IS)" if inception.note else ""),
          "classifier_kind": "inception",
          **image_metrics.inception_quality(inception, test["image"], images)}
    timer.lap("inception_quality")
  else:
    notes.append("No --fid_model: no Inception FID/IS/KID (pass --fid_model=builtin for "
                 "FID/KID, or a local copy of TF-Hub tfgan/eval/inception/1 for IS too).")

  scene_classifier = None
  if is_scenes:
    scene_classifier = scenes_eval.scene_classifier(
        out_dir if config.scene_classifier_cache else None, config.scene_classifier)
    metrics["scene_classifier"] = {
        **scene_classifier.accuracy(test["image"], test["shapes"], test["colors"]),
        "train_scenes": config.scene_classifier.train_scenes,
        "epochs": config.scene_classifier.epochs}
    timer.lap("scene_classifier")
    for key, images, title in (("mixed", mixes["mixed"], "I_mix vs test scenes"),
                               ("reconstructed", mixes["reconstructed"], "I_hat vs test scenes")):
      quality[f"{key} (scenes)"] = {
          "title": title, "classifier": "lorbms_scenes domain classifier (scenes FID)",
          "classifier_kind": "scenes",
          **image_metrics.scenes_quality(scene_classifier, test["image"], images)}
    metrics["object_transfer"] = scenes_eval.transfer_fidelity(scene_classifier, test, mixes)
    notes.append("'scenes FID/IS/KID' come from a classifier trained on lorbms_scenes ground "
                 "truth, not Inception: they are comparable only with other scenes numbers.")
    timer.lap("scenes_quality_and_objects")
  metrics["image_quality"] = quality

  probes: dict[str, Any] = {}
  evaluator = None
  if is_scenes:
    train = load_split(dataset, "train", config.probe_train_images, data_dir)
    evaluator = scenes_eval.ScenesEvaluator(train, test, scene_classifier, scenes_eval.ScenesEvalConfig(
        num_test=len(test["image"]), num_probe_train=len(train["image"]),
        probe_epochs=config.probe.epochs, mixing_batch_size=batch_size, seed=config.seed))
    random_encoder, _ = _random_networks(run_config, config.seed + 1)
    probes.update(scenes_probes(evaluator, networks.encoder, random_encoder, run_config, config))
    timer.lap("scenes_probes")
  if config.stl10:
    probes["stl10"] = stl10_probes(networks, config, data_dir)
    notes.append("STL-10 folds: **ours**, two fixed permutations of the 5,000 training ids "
                 "(tfds does not keep the official fold indices); each image is in 2 folds.")
    timer.lap("stl10_probes")
  metrics["probes"] = probes

  figures: dict[str, str] = {}
  n = min(config.grid_examples, len(test["image"]))
  if n:
    donors = np.stack([test["image"][mixes["donor_index"][:n, q]]
                       for q in range(conventions.NUM_QUADRANTS)], axis=1)
    figures["mixed scenes (reference, donors, mask, I_mix, I_hat)"] = visualize.mixing_grid(
        test["image"][:n], donors, mixes["mask"][:n], mixes["mixed"][:n],
        os.path.join(out_dir, "mixed_scenes.png"), reconstructed=mixes["reconstructed"][:n],
        labels=[conventions.mask_to_string(m) for m in mixes["mask"][:n]])
    references, donor_images, results = render_transfers(networks, test["image"], max(1, n // 2))
    figures["object transfer (reference, donor, one column per mask)"] = visualize.transfer_grid(
        references, donor_images, [conventions.parse_mask(m) for m in TRANSFER_MASKS], results,
        os.path.join(out_dir, "object_transfer.png"))
  timer.lap("grids")

  if config.over_checkpoints:
    history = []
    subset = {k: v[:config.checkpoint_images] for k, v in test.items()}
    subset_evaluator = None
    if evaluator is not None:
      subset_evaluator = scenes_eval.ScenesEvaluator(
          evaluator.train, subset, scene_classifier,
          dataclasses.replace(evaluator.config, num_test=len(subset["image"])))
    for step, prefix in checkpoints.list_checkpoints(config.workdir):
      logging.info("checkpoint %d", step)
      nets = checkpoints.restore_networks(prefix)
      history.append({"step": step, **checkpoint_metrics(
          nets, subset_evaluator, subset, batch_size, inception)})
    metrics["over_checkpoints"] = history
    if history:
      names = [k for k in history[0] if k != "step"]
      series = {k: ([h["step"] for h in history], [h[k] for h in history]) for k in names}
      figures["metrics over training (one point per checkpoint)"] = report.plot_series(
          series, os.path.join(out_dir, "metrics_over_training.png"),
          f"metrics over checkpoints ({len(subset['image'])} test images)")
    timer.lap("over_checkpoints")

  scalars = report.read_tensorboard_scalars(
      os.path.join(config.workdir, checkpoints.TENSORBOARD_DIR))
  if scalars:
    figures["training curves (TensorBoard)"] = report.plot_loss_curves(
        scalars, os.path.join(out_dir, "loss_curves.png"))
    metrics["training_final"] = {tag: float(values[-1]) for tag, (_, values) in scalars.items()}
  else:
    notes.append(f"No TensorBoard scalars under {config.workdir}/tb: no loss curves.")
  timer.lap("loss_curves")

  metrics["timing"] = timer.seconds
  metrics["run"]["seconds"] = timer.total()
  paths = report.write_report(out_dir, metrics, figures)
  logging.info("wrote %s and %s", paths["metrics"], paths["report"])
  metrics["paths"] = paths
  return metrics
