"""Image-quality metrics of mixed scenes: FID, Inception score and KID through TF-GAN.

Two classifiers can supply the activations:

* The standard FID Inception (TF-Hub ``tfgan/eval/inception/1``, or a local copy of it passed
  as a path): a SavedModel whose call maps [B, 299, 299, 3] images in [-1, 1] to
  ``{"pool_3": [B, 1, 1, 2048], "logits": [B, 1008]}``. TF-GAN's own ``classifier_fn_from_tfhub``
  flattens with ``tf.compat.v1.layers.flatten``, which Keras 3 rejects, and needs tensorflow_hub,
  so ``SavedModelClassifier`` loads the SavedModel with ``tf.saved_model.load`` and flattens with
  a reshape. Numbers from it are comparable with the thesis's FID/IS.
* ``--fid_model=builtin`` (``BUILTIN_FID_MODEL``): the same network's pool_3, converted offline
  from a PyPI wheel by ``fid_inception``. It has no logits: FID and KID, no IS.
* Where no Inception exists (this workplace cannot download one), a *domain classifier* trained
  on ``lorbms_scenes`` ground truth (``SceneClassifier``): a small CNN predicting every
  quadrant's shape and colour. Its penultimate layer gives a **"scenes FID"** and its per-quadrant
  shape logits a "scenes IS". These numbers measure the same thing on the scenes domain but
  are on a different scale from Inception FIDs: every report labels them "scenes FID/IS/KID".

The metric math is TF-GAN's (via ``tfgan_compat``): float64, unbiased covariance for FID,
polynomial-kernel block estimator for KID.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Mapping

import numpy as np
import tensorflow as tf

from lorbms_tf import conventions
from lorbms_tf.eval import tfgan_compat

INCEPTION_TFHUB_HANDLE = "tfgan/eval/inception/1"
INCEPTION_IMAGE_SIZE = 299
ACTIVATIONS_KEY = "pool_3"
LOGITS_KEY = "logits"
BUILTIN_FID_MODEL = "builtin"  # path alias: fid_inception.builtin_fid_model()

ClassifierFn = Callable[[tf.Tensor], Mapping[str, tf.Tensor]]


# --------------------------------------------------------------------------------------------
# Metric math (TF-GAN)
# --------------------------------------------------------------------------------------------

def frechet_distance(real_activations: np.ndarray, fake_activations: np.ndarray) -> float:
  """FID between two [N, D] activation sets (TF-GAN, float64, unbiased covariance)."""
  real = tf.constant(np.asarray(real_activations, np.float64))
  fake = tf.constant(np.asarray(fake_activations, np.float64))
  return float(tfgan_compat.frechet_distance(real, fake).numpy())


def classifier_score(logits: np.ndarray) -> float:
  """Inception score exp(E_x KL(p(y|x) || p(y))) from [N, K] logits (TF-GAN, float64)."""
  return float(tfgan_compat.classifier_score(tf.constant(np.asarray(logits, np.float64))).numpy())


def kernel_distance(real_activations: np.ndarray, fake_activations: np.ndarray,
                    max_block_size: int = 1024) -> tuple[float, float]:
  """KID and its standard error (NaN with a single block, i.e. fewer than 2 blocks of data)."""
  real = tf.constant(np.asarray(real_activations, np.float64))
  fake = tf.constant(np.asarray(fake_activations, np.float64))
  kid, std = tfgan_compat.kernel_distance_and_std(real, fake, max_block_size=max_block_size)
  return float(kid.numpy()), float(std.numpy())


def inception_score_splits(logits: np.ndarray, splits: int = 10) -> tuple[float, float]:
  """IS as mean +- SD over ``splits`` equal parts, the way the thesis (and Salimans) report it."""
  logits = np.asarray(logits)
  splits = max(1, min(splits, len(logits) // 2))
  scores = [classifier_score(part) for part in np.array_split(logits, splits)]
  return float(np.mean(scores)), float(np.std(scores))


def image_quality(real: Mapping[str, np.ndarray], fake: Mapping[str, np.ndarray],
                  prefix: str = "", is_splits: int = 10,
                  kid_block_size: int = 1024) -> dict[str, float]:
  """FID, IS (of ``fake``; also of ``real`` as the ceiling) and KID from classifier outputs.

  ``real``/``fake`` hold ``ACTIVATIONS_KEY`` [N, D] and ``LOGITS_KEY`` [N, K] (K may be
  absent: no IS then). ``prefix`` names the classifier, e.g. "scenes_" for the domain one.
  """
  result = {
      f"{prefix}fid": frechet_distance(real[ACTIVATIONS_KEY], fake[ACTIVATIONS_KEY]),
      f"{prefix}fid_real_halves": _split_half_fid(real[ACTIVATIONS_KEY]),
  }
  kid, kid_std = kernel_distance(real[ACTIVATIONS_KEY], fake[ACTIVATIONS_KEY], kid_block_size)
  result[f"{prefix}kid"], result[f"{prefix}kid_std"] = kid, kid_std
  if LOGITS_KEY in fake and LOGITS_KEY in real:
    result[f"{prefix}is"], result[f"{prefix}is_std"] = inception_score_splits(
        fake[LOGITS_KEY], is_splits)
    result[f"{prefix}is_real"], result[f"{prefix}is_real_std"] = inception_score_splits(
        real[LOGITS_KEY], is_splits)
  result[f"{prefix}num_images"] = int(len(fake[ACTIVATIONS_KEY]))
  return result


def _split_half_fid(activations: np.ndarray) -> float:
  """FID between two halves of the real set: the floor a perfect generator would reach at
  this sample size (FID is biased upward for small N), so a reader can judge the numbers."""
  activations = np.asarray(activations)
  half = len(activations) // 2
  if half < 2:
    return float("nan")
  return frechet_distance(activations[:half], activations[half:2 * half])


# --------------------------------------------------------------------------------------------
# Running a classifier
# --------------------------------------------------------------------------------------------

def run_classifier(classifier_fn: ClassifierFn, images: np.ndarray | tf.data.Dataset,
                   batch_size: int = 64) -> dict[str, np.ndarray]:
  """Applies ``classifier_fn`` batch by batch; returns its outputs concatenated, as numpy.

  ``images``: float [N, H, W, 3] in [-1, 1] (numpy) or a dataset of such batches.
  """
  if isinstance(images, tf.data.Dataset):
    batches = images
  else:
    batches = tf.data.Dataset.from_tensor_slices(np.asarray(images, np.float32)).batch(batch_size)
  outputs: dict[str, list[np.ndarray]] = {}
  for batch in batches:
    if isinstance(batch, Mapping):
      batch = batch["image"]
    for key, value in classifier_fn(tf.convert_to_tensor(batch, tf.float32)).items():
      outputs.setdefault(key, []).append(np.asarray(value))
  return {key: np.concatenate(values) for key, values in outputs.items()}


class SavedModelClassifier:
  """An Inception-interface SavedModel (TF-Hub ``tfgan/eval/inception/1`` layout) as classifier_fn.

  The model's call (or, failing that, its ``serving_default``/``default`` signature) takes
  [B, S, S, 3] float images in [-1, 1] and returns a dict with ``pool_3`` and ``logits``.
  We resize from our 64 px to ``image_size`` bilinearly (as TF-GAN's ``preprocess_image``
  does) and flatten every output to [B, -1] with a reshape (not ``tf.compat.v1.layers``).

  ``path="builtin"``: the converted standard FID Inception (``fid_inception``), built into its
  cache on first use. It resizes to 299 itself, the original graph's way (``image_size`` is
  ignored), and returns pool_3 only: no logits, so ``inception_quality`` gives FID and KID and
  no IS; ``note`` says so for the report.
  """

  def __init__(self, path: str, image_size: int = INCEPTION_IMAGE_SIZE,
               output_keys: tuple[str, ...] = (ACTIVATIONS_KEY, LOGITS_KEY)):
    self.note: str | None = None
    if path == BUILTIN_FID_MODEL:
      from lorbms_tf.eval import fid_inception  # pylint: disable=import-outside-toplevel
      path, image_size = fid_inception.builtin_fid_model(), None
      self.note = fid_inception.BUILTIN_NOTE
    if not tf.io.gfile.exists(path):
      raise FileNotFoundError(
          f"no SavedModel at {path!r}. The FID Inception cannot be downloaded here: pass a "
          f"local copy of TF-Hub '{INCEPTION_TFHUB_HANDLE}' (e.g. unpacked from "
          "https://tfhub.dev/tensorflow/tfgan/eval/inception/1?tf-hub-format=compressed), "
          f"--fid_model={BUILTIN_FID_MODEL} (its pool_3 converted from a PyPI wheel: FID/KID, "
          "no IS), or leave --fid_model empty to get the labelled 'scenes FID' on "
          "lorbms_scenes.")
    self.path = path
    self.image_size = image_size
    self.output_keys = output_keys
    self._loaded = tf.saved_model.load(path)
    if callable(self._loaded):
      self._call = self._loaded
    else:
      signatures = getattr(self._loaded, "signatures", {})
      for name in ("serving_default", "default"):
        if name in signatures:
          self._call = _signature_caller(signatures[name])
          break
      else:
        raise ValueError(f"SavedModel at {path!r} is neither callable nor has a default signature")

  def __call__(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
    images = tf.convert_to_tensor(images, tf.float32)
    if self.image_size:
      images = tf.image.resize(images, [self.image_size, self.image_size], method="bilinear")
    images = tf.clip_by_value(images, conventions.IMAGE_MIN, conventions.IMAGE_MAX)
    outputs = self._call(images)
    if not isinstance(outputs, Mapping):
      outputs = {ACTIVATIONS_KEY: outputs}
    batch = tf.shape(images)[0]
    return {key: tf.reshape(outputs[key], [batch, -1]) for key in self.output_keys
            if key in outputs}


def _signature_caller(signature):
  """A concrete signature takes keyword inputs: call it with the only one it has."""
  (name,) = signature.structured_input_signature[1].keys()
  return lambda images: signature(**{name: images})


# --------------------------------------------------------------------------------------------
# The "scenes FID" domain classifier
# --------------------------------------------------------------------------------------------

SCENE_CLASSIFIER_SIZE = 64


@dataclasses.dataclass(frozen=True)
class SceneClassifierConfig:
  """Size and training budget of the scenes domain classifier (small: it trains on CPU).

  The defaults reach ~99.6% per-quadrant shape accuracy on held-out scenes in ~40 s on two
  CPU cores (measured); the tests shrink ``train_scenes``/``epochs``.
  """
  num_shapes: int = 7           # scenes.NUM_SHAPES (incl. "empty")
  num_colors: int = 9           # scenes.NUM_COLORS + 1 ("empty" = class 0)
  filters: tuple[int, ...] = (32, 64, 96, 128)
  feature_dim: int = 128        # per quadrant; FID activations are 4 * feature_dim
  train_scenes: int = 6000
  epochs: int = 5
  batch_size: int = 64
  learning_rate: float = 2e-3
  seed: int = 0


class SceneClassifier:
  """Small CNN labelling every quadrant of a 64 px scene with its shape and colour.

  Why a whole-image network and not a classifier of quadrant crops: objects jitter across
  their quadrant's border, so a conv stack over the whole image, max-pooled per quadrant
  cell, reads a quadrant's object more reliably than its crop. The per-quadrant features
  (post-ReLU, like Inception's pool_3), concatenated, feed the "scenes FID"/KID; the shape
  logits the "scenes IS" (each quadrant one sample of a ``num_shapes``-way distribution).
  """

  def __init__(self, config: SceneClassifierConfig = SceneClassifierConfig()):
    import keras  # pylint: disable=import-outside-toplevel
    self.config = config
    q = conventions.NUM_QUADRANTS
    inputs = keras.Input([SCENE_CLASSIFIER_SIZE, SCENE_CLASSIFIER_SIZE, 3], name="image")
    x = inputs
    # float32 whatever the global dtype policy (a bf16 training run evaluates with it): its
    # outputs are the yardstick, and FID statistics need the precision.
    f32 = {"dtype": "float32"}
    strides = [2] * (len(config.filters) - 1) + [1]  # 64 -> 8 px grid
    for i, (filters, stride) in enumerate(zip(config.filters, strides)):
      x = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False,
                              name=f"conv{i}", **f32)(x)
      x = keras.layers.BatchNormalization(name=f"bn{i}", **f32)(x)
      x = keras.layers.ReLU(**f32)(x)
    cell = x.shape[1] // conventions.GRID
    x = keras.layers.MaxPool2D(cell, name="quadrant_pool", **f32)(x)  # [B, 2, 2, C], chunk order
    x = keras.layers.Reshape([q, config.filters[-1]], **f32)(x)
    quadrant_features = keras.layers.Dense(config.feature_dim, activation="relu",
                                           name="quadrant_features", **f32)(x)
    features = keras.layers.Flatten(name="features", **f32)(quadrant_features)
    shapes = keras.layers.Dense(config.num_shapes, name="shapes", **f32)(quadrant_features)
    colors = keras.layers.Dense(config.num_colors, name="colors", **f32)(quadrant_features)
    self.model = keras.Model(inputs, {"features": features, "shapes": shapes, "colors": colors},
                             name="scene_classifier")

  @staticmethod
  def _prepare(images) -> tf.Tensor:
    """uint8 0..255 or float [-1, 1] images of any size -> float [-1, 1] at 64 px."""
    images = tf.convert_to_tensor(images)
    if images.dtype == tf.uint8:
      images = tf.cast(images, tf.float32) / 127.5 - 1.0
    images = tf.cast(images, tf.float32)
    if images.shape[1] != SCENE_CLASSIFIER_SIZE or images.shape[2] != SCENE_CLASSIFIER_SIZE:
      images = tf.image.resize(images, [SCENE_CLASSIFIER_SIZE] * 2, method="area")
    return images

  def fit(self, images: np.ndarray, shapes: np.ndarray, colors: np.ndarray,
          verbose: int = 0) -> dict[str, float]:
    """Trains on ground truth: images [N, R, R, 3], shapes/colors [N, 4] (colour -1 = empty)."""
    import keras  # pylint: disable=import-outside-toplevel
    cfg = self.config
    x = self._prepare(images).numpy()
    y = {"shapes": np.asarray(shapes, np.int64),
         "colors": np.asarray(colors, np.int64) + 1}  # -1 (empty) -> class 0
    dataset = (tf.data.Dataset.from_tensor_slices((x, y))
               .shuffle(len(x), seed=cfg.seed).batch(cfg.batch_size))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    self.model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate),
                       loss={"shapes": loss, "colors": loss}, jit_compile=False)
    history = self.model.fit(dataset, epochs=cfg.epochs, verbose=verbose, shuffle=False)
    return {key: float(values[-1]) for key, values in history.history.items()}

  def predict(self, images, batch_size: int = 256) -> dict[str, np.ndarray]:
    """{"features": [N, F], "shapes": [N, 4] argmax, "colors": [N, 4] (-1 = empty),
    "shape_logits": [N, 4, S]} for float [-1, 1] (or uint8) images."""
    images = np.asarray(images)
    if images.dtype == np.uint8:  # run_classifier feeds float32: convert the range first
      images = conventions.uint8_to_unit(images)
    outputs = run_classifier(self._forward, images, batch_size)
    return {
        "features": outputs["features"],
        "shape_logits": outputs["shapes"],
        "shapes": outputs["shapes"].argmax(-1),
        "colors": outputs["colors"].argmax(-1) - 1,
    }

  def _forward(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
    return self.model(self._prepare(images), training=False)

  def classifier_fn(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
    """The FID interface (``pool_3`` = penultimate features) for generic callers. No
    ``logits``: the scenes IS is per quadrant (see ``scenes_quality``), not per image."""
    return {ACTIVATIONS_KEY: self._forward(images)["features"]}

  def accuracy(self, images, shapes, colors) -> dict[str, float]:
    """Per-quadrant accuracy on real scenes: how much its labels of I_mix can be trusted."""
    pred = self.predict(images)
    shape_ok = pred["shapes"] == np.asarray(shapes)
    color_ok = pred["colors"] == np.asarray(colors)
    return {"shape_accuracy": float(shape_ok.mean()),
            "color_accuracy": float(color_ok.mean()),
            "object_accuracy": float((shape_ok & color_ok).mean())}

  def save(self, path: str) -> None:
    """Saves the weights to ``path`` atomically (a temporary sibling, then a rename): the
    cache is shared by runs, which trust a file that exists, so it must never be half-written."""
    from lorbms_tf import atomic  # pylint: disable=import-outside-toplevel
    if atomic.is_remote(path):
      self.model.save_weights(path)
      return
    tmp = atomic.temp_path(path)
    try:
      self.model.save_weights(tmp)
      atomic.commit(tmp, path)
    except BaseException:
      if os.path.exists(tmp):
        os.unlink(tmp)
      raise

  def load(self, path: str) -> "SceneClassifier":
    self.model.load_weights(path)
    return self


def train_scene_classifier(config: SceneClassifierConfig = SceneClassifierConfig(),
                           cache_path: str | None = None, data_seed: int = 1234,
                           verbose: int = 0) -> SceneClassifier:
  """Trains the domain classifier on freshly generated ground-truth scenes (or loads it).

  ``data_seed`` picks a scene stream different from the model's train/test streams; the
  scenes generator is deterministic, so the same config always gives the same classifier,
  which is what lets ``cache_path`` reuse it across checkpoints and runs.
  """
  from lorbms_tf.data import scenes  # pylint: disable=import-outside-toplevel
  classifier = SceneClassifier(config)
  if cache_path and tf.io.gfile.exists(cache_path):
    return classifier.load(cache_path)
  data = scenes.generate_scenes(config.train_scenes, resolution=SCENE_CLASSIFIER_SIZE,
                                seed=data_seed)
  classifier.fit(data["image"], data["shapes"], data["colors"], verbose=verbose)
  if cache_path:
    classifier.save(cache_path)
  return classifier


def scenes_quality(classifier: SceneClassifier, real_images: np.ndarray,
                   fake_images: np.ndarray, is_splits: int = 10) -> dict[str, float]:
  """The labelled "scenes FID/IS/KID" of ``fake_images`` against ``real_images``."""
  real = classifier.predict(real_images)
  fake = classifier.predict(fake_images)
  num_shapes = classifier.config.num_shapes

  def outputs(pred):  # IS over quadrants: each quadrant one sample of the shape distribution
    return {ACTIVATIONS_KEY: pred["features"],
            LOGITS_KEY: pred["shape_logits"].reshape(-1, num_shapes)}
  return image_quality(outputs(real), outputs(fake), prefix="scenes_", is_splits=is_splits)


def inception_quality(classifier_fn: ClassifierFn, real_images, fake_images,
                      batch_size: int = 64, is_splits: int = 10) -> dict[str, float]:
  """FID/IS/KID with the Inception (or any Inception-interface classifier_fn)."""
  real = run_classifier(classifier_fn, real_images, batch_size)
  fake = run_classifier(classifier_fn, fake_images, batch_size)
  return image_quality(real, fake, prefix="", is_splits=is_splits)
