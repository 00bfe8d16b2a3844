"""Quadrant feature extractors: images uint8 [N, S, S, 3] -> embeddings float32 [N, 4, D].

Embedding ``[:, i]`` describes quadrant ``i`` in the fixed order TL, TR, BL, BR
(``conventions.QUADRANT_NAMES``), so that position ``i`` of every image goes into the index of
position ``i``. Chosen by a string (``make_extractor``), so the CLI, the Beam workers and a saved
table's record all name the same thing:

* ``pixels``: each quadrant area-downsampled to 8x8, PCA-whitened (fitted on the data). Cheap,
  no weights, and on flat-colour scenes a strong baseline (measured: see docs/similarity.md).
* ``random_cnn``: a small randomly initialised CNN (fixed seed) on each quadrant crop,
  global-average pooled. Random conv features are a known, weight-free texture/shape descriptor.
* ``random_encoder[:PRESET]``: our encoder architecture, randomly initialised (seeded); the
  thesis's "random encoder" baseline.
* ``encoder:CHECKPOINT``: our trained encoder; chunk ``i`` *is* quadrant ``i``'s embedding. This
  lets the table be rebuilt with learned features between training rounds.
* ``keras_app:NAME[:WEIGHTS_PATH]``: a ``keras.applications`` model (e.g. ResNet50) built with
  ``weights=None``, the user's weights file loaded if given (nothing is downloaded here), run on
  each quadrant crop resized to ``app_image_size`` and average pooled.

Fitted extractors (``pixels``) keep their fitted arrays in ``state()``; the table stores them
(``extractor.npz``) and Beam workers receive them, so every image is embedded the same way.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any, Callable, Mapping

import numpy as np

from lorbms_tf import conventions

DEFAULT_EXTRACTOR = "pixels"  # the measured best on lorbms_scenes, see docs/similarity.md
DEFAULT_BATCH_SIZE = 256


def quadrant_crops(images: np.ndarray) -> np.ndarray:
  """[N, S, S, C] -> [N, 4, S/2, S/2, C] in chunk order (numpy twin of conventions)."""
  n, h, w, c = images.shape
  if h % conventions.GRID or w % conventions.GRID:
    raise ValueError(f"image size must be even to split into quadrants, got {h}x{w}")
  grid = images.reshape(n, conventions.GRID, h // conventions.GRID, conventions.GRID,
                        w // conventions.GRID, c)
  grid = grid.transpose(0, 1, 3, 2, 4, 5)
  return grid.reshape(n, conventions.NUM_QUADRANTS, h // conventions.GRID,
                      w // conventions.GRID, c)


to_unit_range = conventions.uint8_to_unit  # uint8 [0, 255] -> float32 [-1, 1]


def _check_images(images: np.ndarray) -> np.ndarray:
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] != conventions.IMAGE_CHANNELS:
    raise ValueError(f"images must be uint8 [N, S, S, 3], got {images.dtype} {images.shape}")
  if images.dtype != np.uint8:
    raise ValueError(f"images must be uint8 in [0, 255], got {images.dtype}")
  return images


class Extractor:
  """Base: batches the input and checks the output; subclasses implement ``_embed``."""

  spec: str = ""
  needs_fit = False

  def __init__(self, batch_size: int = DEFAULT_BATCH_SIZE):
    self.batch_size = batch_size
    self.details: dict[str, Any] = {}  # extra facts for record.json

  def fit(self, images: np.ndarray) -> "Extractor":
    """Fits data-dependent parts (no-op unless ``needs_fit``); returns self."""
    del images
    return self

  def state(self) -> dict[str, np.ndarray]:
    """Fitted arrays, enough to rebuild the same extractor elsewhere (``load_state``)."""
    return {}

  def load_state(self, state: Mapping[str, np.ndarray]) -> "Extractor":
    del state
    return self

  def describe(self) -> dict[str, Any]:
    """The extractor part of record.json."""
    return {"spec": self.spec, "class": type(self).__name__, **self.details}

  def __call__(self, images: np.ndarray) -> np.ndarray:
    images = _check_images(images)
    if images.shape[0] == 0:
      raise ValueError("no images to embed (empty dataset)")
    outputs = [self._embed(images[i:i + self.batch_size])
               for i in range(0, images.shape[0], self.batch_size)]
    out = np.concatenate(outputs, axis=0).astype(np.float32, copy=False)
    assert out.ndim == 3 and out.shape[:2] == (images.shape[0], conventions.NUM_QUADRANTS)
    return out

  def _embed(self, images: np.ndarray) -> np.ndarray:
    raise NotImplementedError


class PixelsExtractor(Extractor):
  """Downsampled quadrant pixels, PCA-whitened.

  Whitening makes squared L2 weigh every principal direction by its signal rather than by its
  pixel variance, so a large smooth background gradient does not drown the object's shape.
  ``eps`` (relative to the top eigenvalue) keeps near-zero directions from being amplified
  into noise.
  """

  needs_fit = True

  def __init__(self, grid: int = 8, dims: int = 64, whiten: bool = True,
               eps: float = 1e-2, fit_samples: int = 20000, seed: int = 0, **kwargs):
    super().__init__(**kwargs)
    self.spec = "pixels"
    self.grid, self.dims, self.whiten, self.eps = grid, dims, whiten, eps
    self.fit_samples, self.seed = fit_samples, seed
    self.mean: np.ndarray | None = None
    self.projection: np.ndarray | None = None

  def features(self, images: np.ndarray) -> np.ndarray:
    """Raw [N, 4, grid*grid*3] area-downsampled quadrant pixels in [-1, 1]."""
    crops = quadrant_crops(images)
    n, q, h, w, c = crops.shape
    if h % self.grid or w % self.grid:
      raise ValueError(f"quadrant size {h} is not a multiple of the grid {self.grid}")
    fh, fw = h // self.grid, w // self.grid
    small = crops.reshape(n, q, self.grid, fh, self.grid, fw, c).mean(axis=(3, 5),
                                                                      dtype=np.float32)
    return conventions.uint8_to_unit(small).reshape(n, q, -1)

  def fit(self, images: np.ndarray) -> "PixelsExtractor":
    """PCA (numpy SVD) on the quadrants of up to ``fit_samples`` images (all positions)."""
    images = _check_images(images)
    if images.shape[0] == 0:
      raise ValueError("no images to fit the pixels extractor on (empty dataset)")
    if images.shape[0] > self.fit_samples:
      rng = np.random.default_rng(self.seed)
      images = images[np.sort(rng.choice(images.shape[0], self.fit_samples, replace=False))]
    x = self.features(images).reshape(-1, self.grid * self.grid * 3).astype(np.float64)
    mean = x.mean(axis=0)
    _, singular, vt = np.linalg.svd(x - mean, full_matrices=False)
    dims = min(self.dims, vt.shape[0])
    projection = vt[:dims].T  # [F, dims]
    if self.whiten:
      variance = singular[:dims] ** 2 / max(1, x.shape[0] - 1)
      projection = projection / np.sqrt(variance + self.eps * variance[0])
    self.mean = mean.astype(np.float32)
    self.projection = projection.astype(np.float32)
    return self

  def state(self) -> dict[str, np.ndarray]:
    self._check_fitted()
    return {"mean": self.mean, "projection": self.projection}

  def load_state(self, state: Mapping[str, np.ndarray]) -> "PixelsExtractor":
    self.mean = np.asarray(state["mean"], np.float32)
    self.projection = np.asarray(state["projection"], np.float32)
    return self

  def describe(self) -> dict[str, Any]:
    return dict(super().describe(), grid=self.grid, dims=self.dims, whiten=self.whiten,
                eps=self.eps, fit_samples=self.fit_samples)

  def _check_fitted(self):
    if self.mean is None or self.projection is None:
      raise RuntimeError("the pixels extractor is not fitted: call fit(images) or load_state")

  def _embed(self, images: np.ndarray) -> np.ndarray:
    self._check_fitted()
    x = self.features(images)
    return (x - self.mean) @ self.projection


class KerasExtractor(Extractor):
  """Runs a Keras model on fixed-size batches (padded), so one trace serves every batch."""

  def __init__(self, model, preprocess: Callable, **kwargs):
    super().__init__(**kwargs)
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    self.model = model
    self._preprocess = preprocess
    self._fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)

  def _run(self, inputs: np.ndarray, block: int) -> np.ndarray:
    """Model outputs for ``inputs`` [M, ...] in blocks of ``block`` rows, the last one padded.

    Padding keeps one input shape, hence one trace, and the same kernels for every row.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    outputs = []
    for start in range(0, inputs.shape[0], block):
      chunk = inputs[start:start + block]
      pad = block - chunk.shape[0] if inputs.shape[0] > block else 0
      if pad:
        chunk = np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:], chunk.dtype)])
      out = self._fn(tf.convert_to_tensor(self._preprocess(chunk)))
      outputs.append(np.asarray(out)[:chunk.shape[0] - pad])
    return np.concatenate(outputs, axis=0)


class CropCNNExtractor(KerasExtractor):
  """A CNN applied to each quadrant crop separately: [N, 4, h, w, 3] -> [N, 4, D]."""

  def __init__(self, model, preprocess: Callable, input_size: int | None = None, **kwargs):
    super().__init__(model, preprocess, **kwargs)
    self.input_size = input_size  # crops are resized to this before the model (None: as is)

  def _embed(self, images: np.ndarray) -> np.ndarray:
    crops = quadrant_crops(images)
    n, q = crops.shape[:2]
    flat = crops.reshape((n * q,) + crops.shape[2:])
    features = self._run(flat, self.batch_size * conventions.NUM_QUADRANTS)
    return features.reshape(n, q, -1)


def _resize_then(preprocess: Callable, size: int | None) -> Callable:
  """uint8 crops -> float32, resized (area) to ``size`` when given, then ``preprocess``."""
  def fn(crops: np.ndarray):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    x = tf.convert_to_tensor(crops.astype(np.float32))
    if size is not None and crops.shape[1] != size:
      method = "area" if crops.shape[1] > size else "bilinear"
      x = tf.image.resize(x, (size, size), method=method)
    return preprocess(x)
  return fn


def random_cnn_model(seed: int = 0, filters: tuple[int, ...] = (32, 64, 128)):
  """A small conv net with seeded He-normal weights, ReLU, global average pooling.

  Seeded initialisers (not the global seed) make the weights a pure function of ``seed``, so
  every Beam worker and every rerun builds the same network.
  """
  import keras  # pylint: disable=import-outside-toplevel
  from keras import layers  # pylint: disable=import-outside-toplevel
  model = keras.Sequential(name="random_cnn")
  model.add(keras.Input((None, None, 3)))
  for i, f in enumerate(filters):
    model.add(layers.Conv2D(
        f, 3, strides=1 if i == 0 else 2, padding="same", activation="relu",
        kernel_initializer=keras.initializers.HeNormal(seed=seed * 1000 + i),
        bias_initializer="zeros"))
  model.add(layers.GlobalAveragePooling2D())
  return model


class _Chunks:
  """Callable model wrapper: images -> encoder chunks [B, 2, 2, C] -> [B, 4, C]."""

  def __init__(self, encoder):
    self.encoder = encoder

  def __call__(self, images, training=False):
    return conventions.chunks_to_list(self.encoder(images, training=training))


class WholeImageExtractor(KerasExtractor):
  """Our encoder: the whole image in, chunk ``i`` out as quadrant ``i`` (no cropping)."""

  def __init__(self, encoder, image_size: int = conventions.IMAGE_SIZE, **kwargs):
    def preprocess(images):
      import tensorflow as tf  # pylint: disable=import-outside-toplevel
      x = tf.convert_to_tensor(to_unit_range(images))
      if images.shape[1] != image_size:
        x = tf.image.resize(x, (image_size, image_size), method="area")
      return x
    super().__init__(_Chunks(encoder), preprocess, **kwargs)

  def _embed(self, images: np.ndarray) -> np.ndarray:
    return self._run(images, self.batch_size)


def _app_preprocess(app_fn) -> Callable:
  """The application's own ``preprocess_input`` (found in the module that defines it)."""
  module = sys.modules.get(app_fn.__module__)
  preprocess = getattr(module, "preprocess_input", None)
  if preprocess is None:
    return lambda x: x / 127.5 - 1.0
  return preprocess


def _keras_app(name: str, weights_path: str | None, app_image_size: int, **kwargs):
  import keras  # pylint: disable=import-outside-toplevel
  app_fn = getattr(keras.applications, name, None)
  if app_fn is None or not callable(app_fn):
    raise ValueError(f"keras.applications has no model {name!r} (e.g. ResNet50, MobileNetV2)")
  if weights_path and not os.path.exists(weights_path):
    raise FileNotFoundError(f"weights file {weights_path!r} for {name} does not exist")
  model = app_fn(include_top=False, weights=None, pooling="avg",
                 input_shape=(app_image_size, app_image_size, 3))
  if weights_path:
    model.load_weights(weights_path)
  preprocess = _resize_then(_app_preprocess(app_fn), app_image_size)
  extractor = CropCNNExtractor(model, preprocess, input_size=app_image_size, **kwargs)
  extractor.spec = f"keras_app:{name}" + (f":{weights_path}" if weights_path else "")
  extractor.details = {"model": name, "weights": weights_path or "random (none given)",
                       "app_image_size": app_image_size}
  return extractor


def _random_cnn(seed: int = 0, **kwargs):
  extractor = CropCNNExtractor(random_cnn_model(seed),
                               _resize_then(lambda x: x / 127.5 - 1.0, None), **kwargs)
  extractor.spec = "random_cnn"
  return extractor


def _encoder(checkpoint: str, **kwargs):
  from lorbms_tf import checkpoints  # pylint: disable=import-outside-toplevel
  networks = checkpoints.restore_networks(checkpoint)
  extractor = WholeImageExtractor(networks.encoder, **kwargs)
  extractor.spec = f"encoder:{checkpoint}"
  return extractor


def _random_encoder(preset: str = "small", seed: int = 0, **kwargs):
  import keras  # pylint: disable=import-outside-toplevel
  from lorbms_tf import models  # pylint: disable=import-outside-toplevel
  keras.utils.set_random_seed(seed)  # the encoder's initialisers draw from the global seed
  extractor = WholeImageExtractor(models.build_encoder(models.get_preset(preset)), **kwargs)
  extractor.spec = f"random_encoder:{preset}"
  return extractor


@dataclasses.dataclass(frozen=True)
class ExtractorOptions:
  """Knobs shared by the CLI and the Beam workers (all have sensible defaults)."""
  batch_size: int = DEFAULT_BATCH_SIZE
  seed: int = 0
  pixels_grid: int = 8
  pixels_dims: int = 64
  app_image_size: int = 64


def make_extractor(spec: str, options: ExtractorOptions | None = None) -> Extractor:
  """The extractor named by ``spec`` (see the module docstring for the names)."""
  options = options or ExtractorOptions()
  name, _, arg = spec.partition(":")
  common = {"batch_size": options.batch_size}
  if name == "pixels" and not arg:
    return PixelsExtractor(grid=options.pixels_grid, dims=options.pixels_dims,
                           seed=options.seed, **common)
  if name == "random_cnn" and not arg:
    return _random_cnn(seed=options.seed, **common)
  if name == "random_encoder":
    return _random_encoder(arg or "small", seed=options.seed, **common)
  if name == "encoder":
    if not arg:
      raise ValueError("the encoder extractor needs a checkpoint: encoder:CHECKPOINT")
    return _encoder(arg, **common)
  if name == "keras_app":
    model_name, _, weights = arg.partition(":")
    if not model_name:
      raise ValueError("keras_app needs a model name: keras_app:ResNet50[:WEIGHTS_PATH]")
    return _keras_app(model_name, weights or None, options.app_image_size, **common)
  raise ValueError(
      f"unknown extractor {spec!r}; choose pixels, random_cnn, random_encoder[:PRESET], "
      "encoder:CHECKPOINT or keras_app:NAME[:WEIGHTS_PATH]")


def fit_extractor(extractor: Extractor, images: np.ndarray) -> Extractor:
  """Fits when the extractor needs it (a no-op otherwise)."""
  return extractor.fit(images) if extractor.needs_fit else extractor


def from_table(table_dir: str, options: ExtractorOptions | None = None) -> Extractor:
  """The extractor a saved table was built with, fitted state included, for new images."""
  from lorbms_tf.similarity import table as table_lib  # pylint: disable=import-outside-toplevel
  record = table_lib.load_neighbour_table(table_dir).record
  options = options or ExtractorOptions(**record.get("extractor_options", {}))
  extractor = make_extractor(record["extractor"]["spec"], options)
  state_path = os.path.join(table_dir, table_lib.EXTRACTOR_STATE_FILE)
  if extractor.needs_fit:
    if not os.path.exists(state_path):
      raise FileNotFoundError(f"{table_dir!r} has no {table_lib.EXTRACTOR_STATE_FILE}")
    with np.load(state_path) as state:
      extractor.load_state(dict(state))
  return extractor
