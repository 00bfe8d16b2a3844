"""Light evaluation on lorbms_scenes: what the chunks hold and what the decoder draws.

One evaluator for three callers: the training loop (every ``--eval_every`` iterations, into
TensorBoard and the log), the ablation runner (``lorbms_tf.ablate``) and the evaluation
(``lorbms_tf.eval.evaluation``).

Metrics (``ScenesEvaluator.run``), on a fixed subset of test scenes:

* ``rec_l1``: mean |I_hat - I| of plain autoencoding, I_hat = Dec(Enc(I)).
* ``shape_probe`` / ``colour_probe``: per-quadrant linear probes on frozen chunks (shape of
  quadrant i, 7 classes incl. empty; colour of quadrant i, 9 classes incl. empty), trained on
  chunks of training scenes, standardized features (see ``linear_probe.standardize``).
* ``fidelity_shape`` / ``fidelity_object``: object-transfer fidelity of I_mix (batch-partner
  mixing as in training) read by the scenes domain classifier, by shape and by shape + colour.
* ``mask_cls_accuracy``: the model's own classifier C telling replaced from kept quadrants.
* ``scenes_fid``: the domain classifier's FID of I_mix against the test scenes (small-sample:
  compare only at the same ``num_test``).

``baseline_rows`` gives the probes of features that cost nothing: raw pixels (each quadrant
area-pooled to 8x8x3) and a random-initialised encoder of the same sizes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Any, Callable, Mapping

import numpy as np
import tensorflow as tf

from lorbms_tf import conventions
from lorbms_tf.eval import image_metrics, linear_probe, object_metrics

NUM_SHAPE_CLASSES = 7    # scenes.NUM_SHAPES, incl. "empty" (literal: importing tfds is slow)
NUM_COLOUR_CLASSES = 9   # scenes.NUM_COLORS + 1: class 0 = empty (colour -1)
PIXEL_POOL = 8           # raw-pixel baseline: each quadrant area-pooled to 8x8x3
MIX_KEYS = ("mixed", "reconstructed", "mask", "donor_index", "cls_logits")

# The headline metrics, in report order, and which way is better.
HIGHER_IS_BETTER = {"rec_l1": False, "shape_probe": True, "colour_probe": True,
                    "fidelity_shape": True, "fidelity_object": True,
                    "fidelity_informative": True, "mask_cls_accuracy": True,
                    "scenes_fid": False}


@dataclasses.dataclass(frozen=True)
class ScenesEvalConfig:
  num_test: int = 500          # test scenes: I_hat, I_mix, fidelity, FID, probe test rows
  num_probe_train: int = 2000  # training scenes the probes learn from
  probe_epochs: int = 30
  mixing_batch_size: int = 32  # partners come from the batch, as in training
  seed: int = 0
  classifier: image_metrics.SceneClassifierConfig = image_metrics.SceneClassifierConfig()

  @classmethod
  def from_dict(cls, values: Mapping[str, Any]) -> "ScenesEvalConfig":
    """Inverse of dataclasses.asdict (e.g. from a run's config.json)."""
    values = dict(values)
    classifier = values.pop("classifier", None)
    if isinstance(classifier, Mapping):
      classifier = image_metrics.SceneClassifierConfig(**{
          k: tuple(v) if isinstance(v, list) else v for k, v in classifier.items()})
    return cls(**values, **({"classifier": classifier} if classifier is not None else {}))


def load_scenes(split: str, limit: int, data_dir: str | None = None,
                dataset: str = "scenes") -> dict[str, np.ndarray]:
  """The first ``limit`` scenes of a split, images in [-1, 1] with per-quadrant labels."""
  from lorbms_tf.data import pipeline  # pylint: disable=import-outside-toplevel
  ds = pipeline.eval_dataset(dataset, split, batch_size=256, data_dir=data_dir)
  ds = ds.unbatch().take(limit).batch(256)
  out: dict[str, list[np.ndarray]] = {}
  for batch in ds:
    for key in ("image", "shapes", "colors", "label"):
      out.setdefault(key, []).append(batch[key].numpy())
  if not out:
    raise ValueError(f"{dataset!r} split {split!r} yielded no scenes")
  return {key: np.concatenate(values) for key, values in out.items()}


def classifier_cache_name(config: image_metrics.SceneClassifierConfig) -> str:
  """Weights file name that changes whenever the classifier's settings do."""
  key = hashlib.sha1(repr(dataclasses.astuple(config)).encode()).hexdigest()[:8]
  return f"scene_classifier_{config.train_scenes}x{config.epochs}_{key}.weights.h5"


def scene_classifier(cache_dir: str | None,
                     config: image_metrics.SceneClassifierConfig =
                     image_metrics.SceneClassifierConfig()) -> image_metrics.SceneClassifier:
  """The domain classifier that reads I_mix's quadrants, trained once and cached in cache_dir."""
  cache = os.path.join(cache_dir, classifier_cache_name(config)) if cache_dir else None
  return image_metrics.train_scene_classifier(config, cache)


# --------------------------------------------------------------------------------------------
# Features and probes
# --------------------------------------------------------------------------------------------

def pixel_features(images: np.ndarray) -> np.ndarray:
  """[N, 64, 64, 3] -> [N, 4, 8*8*3]: each quadrant area-pooled to 8x8 (the free baseline)."""
  quadrants = conventions.image_quadrants(tf.convert_to_tensor(images, tf.float32))
  n, q, h, w, c = quadrants.shape
  pooled = tf.image.resize(tf.reshape(quadrants, [-1, h, w, c]), [PIXEL_POOL, PIXEL_POOL],
                           method="area")
  return tf.reshape(pooled, [n, q, -1]).numpy()


def chunk_features(encoder: Callable, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
  """[N, 64, 64, 3] -> [N, 4, C]: the encoder's chunks in quadrant order."""
  out = []
  for begin in range(0, len(images), batch_size):
    chunks = encoder(tf.convert_to_tensor(images[begin:begin + batch_size], tf.float32),
                     training=False)
    out.append(tf.cast(conventions.chunks_to_list(chunks), tf.float32).numpy())
  return np.concatenate(out)


def colour_classes(colors: np.ndarray) -> np.ndarray:
  """Scene colour labels (-1 = empty quadrant) -> classes 0..8 (0 = empty)."""
  return np.asarray(colors, np.int64) + 1


def quadrant_probes(train_features: np.ndarray, train: Mapping[str, np.ndarray],
                    test_features: np.ndarray, test: Mapping[str, np.ndarray],
                    probe_config: linear_probe.ProbeConfig) -> dict[str, float]:
  """Shape and colour of quadrant i from its own features alone ([N, 4, D] each)."""
  shape = linear_probe.quadrant_probe(train_features, train["shapes"], test_features,
                                      test["shapes"], NUM_SHAPE_CLASSES, probe_config,
                                      standardized=True)
  colour = linear_probe.quadrant_probe(train_features, colour_classes(train["colors"]),
                                       test_features, colour_classes(test["colors"]),
                                       NUM_COLOUR_CLASSES, probe_config, standardized=True)
  return {"shape_probe": shape.accuracy, "colour_probe": colour.accuracy,
          "shape_majority": shape.extra["majority_baseline"],
          "colour_majority": colour.extra["majority_baseline"]}


# --------------------------------------------------------------------------------------------
# Mixing as in training
# --------------------------------------------------------------------------------------------

def make_mix_fn(model, compile_fn: bool = True):
  """I_mix for a batch exactly as in training (batch partners), plus I_hat and C's logits.

  ``model``: a ``LorbmsModel``. ``compile_fn=False`` runs eagerly: cheaper than tracing the
  generator pass for a handful of batches.
  """
  def mix(images):
    out = model.mix_batch(images, training=False)
    mixed = out["mixed"]
    return {"mixed": mixed, "reconstructed": out["reconstructed"], "mask": out["mask"],
            "donor_index": out["donor_index"],
            "cls_logits": model.classifier_logits(mixed, out["donor_images"], training=False)}
  return tf.function(mix, reduce_retracing=True) if compile_fn else mix


def transfer_fidelity(classifier: image_metrics.SceneClassifier, test: Mapping[str, np.ndarray],
                      mixes: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
  """Object-transfer fidelity of I_mix, by shape and by shape + colour."""
  pred = classifier.predict(mixes["mixed"])
  donor_shapes = object_metrics.donor_labels(test["shapes"], mixes["donor_index"])
  donor_colors = object_metrics.donor_labels(test["colors"], mixes["donor_index"])
  return {
      "shape": object_metrics.object_transfer_fidelity(
          pred["shapes"], test["shapes"], donor_shapes, mixes["mask"]),
      "shape + colour": object_metrics.object_transfer_fidelity(
          object_metrics.object_ids(pred["shapes"], pred["colors"]),
          object_metrics.object_ids(test["shapes"], test["colors"]),
          object_metrics.object_ids(donor_shapes, donor_colors), mixes["mask"]),
  }


# --------------------------------------------------------------------------------------------
# The evaluator
# --------------------------------------------------------------------------------------------

class ScenesEvaluator:
  """Runs the light evaluation of a ``LorbmsModel`` on fixed scenes (see the module doc).

  Built once per run (data, domain classifier); ``run(model)`` is then a few seconds.
  """

  def __init__(self, train: Mapping[str, np.ndarray], test: Mapping[str, np.ndarray],
               classifier: image_metrics.SceneClassifier,
               config: ScenesEvalConfig = ScenesEvalConfig()):
    self.config = config
    self.train = {k: np.asarray(v)[:config.num_probe_train] for k, v in train.items()}
    self.test = {k: np.asarray(v)[:config.num_test] for k, v in test.items()}
    for name, data in (("train", self.train), ("test", self.test)):
      if len(data["image"]) < 2:
        raise ValueError(f"the scenes evaluator needs >= 2 {name} scenes, got {len(data['image'])}")
    self.classifier = classifier
    self.probe_config = linear_probe.ProbeConfig(epochs=config.probe_epochs, seed=config.seed)
    self._real_features = classifier.predict(self.test["image"])["features"]
    self._mix_fns: dict[int, Callable] = {}

  @classmethod
  def for_scenes(cls, config: ScenesEvalConfig = ScenesEvalConfig(), data_dir: str | None = None,
                 cache_dir: str | None = None, dataset: str = "scenes") -> "ScenesEvaluator":
    """Loads the scenes and the (cached) domain classifier."""
    return cls(load_scenes("train", config.num_probe_train, data_dir, dataset),
               load_scenes("test", config.num_test, data_dir, dataset),
               scene_classifier(cache_dir, config.classifier), config)

  def probes(self, encoder: Callable) -> dict[str, float]:
    return quadrant_probes(chunk_features(encoder, self.train["image"]), self.train,
                           chunk_features(encoder, self.test["image"]), self.test,
                           self.probe_config)

  def baseline_rows(self, random_encoder: Callable | None = None) -> dict[str, dict[str, float]]:
    """Probe rows of features that cost nothing: raw pixels and (if given) a random encoder."""
    rows = {"raw pixels (8x8x3 per quadrant)": quadrant_probes(
        pixel_features(self.train["image"]), self.train, pixel_features(self.test["image"]),
        self.test, self.probe_config)}
    if random_encoder is not None:
      rows["random encoder"] = self.probes(random_encoder)
    return rows

  def mixes(self, model) -> dict[str, np.ndarray]:
    # One compiled mixing function per model (a retrace per call would cost more than mixing).
    key = id(model)
    if key not in self._mix_fns:
      self._mix_fns = {key: make_mix_fn(model)}
    return object_metrics.mix_all(self._mix_fns[key], self.test["image"],
                                  self.config.mixing_batch_size, MIX_KEYS)

  def run(self, model) -> dict[str, Any]:
    """The headline metrics (``HIGHER_IS_BETTER``'s keys) and a few details, as floats."""
    mixes = self.mixes(model)
    fidelity = transfer_fidelity(self.classifier, self.test, mixes)
    fake_features = self.classifier.predict(mixes["mixed"])["features"]
    row = {
        "rec_l1": float(np.mean(np.abs(mixes["reconstructed"] - self.test["image"]))),
        **self.probes(model.encoder),
        "fidelity_shape": fidelity["shape"]["fidelity"],
        "fidelity_object": fidelity["shape + colour"]["fidelity"],
        "fidelity_object_replaced": fidelity["shape + colour"]["fidelity_replaced"],
        # Only quadrants whose donor and reference objects differ: there, copying the reference
        # (an autoencoder that ignores the swap) scores nothing.
        "fidelity_informative": fidelity["shape + colour"]["fidelity_informative"],
        "mask_cls_accuracy": object_metrics.mask_classifier_accuracy(
            mixes["cls_logits"], mixes["mask"])["accuracy"],
        "scenes_fid": image_metrics.frechet_distance(self._real_features, fake_features),
        "replaced_quadrants": float(mixes["mask"].sum(-1).mean()),
    }
    return {k: float(v) for k, v in row.items()}
