"""Image preprocessing: pure TF functions on one image [H, W, 3], usable eagerly and in tf.data.

Random ops take an explicit ``seed`` (a shape-[2] integer tensor, or an int) and then use the
stateless kernels, so a pipeline that feeds per-element seeds is reproducible whatever its
parallelism; ``seed=None`` falls back to the global stateful RNG. Crops and resizes keep the
input dtype (uint8 in, uint8 out), so that cheap uint8 images fill shuffle buffers; the
conversion to float in [-1, 1] (``to_unit_range``) happens last, per batch.
"""

from __future__ import annotations

import tensorflow as tf

from lorbms_tf import conventions

PROBE_SIZE = 96  # STL-10 probe resolution
PROBE_AREA_RANGE = (0.33, 1.0)
PROBE_ASPECT_RANGE = (0.75, 1.33)
PROBE_CENTRAL_FRACTION = 0.85
FIVE_VERSION_CROP_RANGE = (0.6, 1.0)  # ours: side of the three random crops / short edge


def _seed(seed) -> tf.Tensor | None:
  if seed is None:
    return None
  if isinstance(seed, int):
    return tf.constant([seed, 0], tf.int64)
  return tf.cast(seed, tf.int64)


def _uniform(shape, seed, minval=0.0, maxval=1.0):
  seed = _seed(seed)
  if seed is None:
    return tf.random.uniform(shape, minval, maxval)
  return tf.random.stateless_uniform(shape, seed, minval, maxval)


def _split(seed, n):
  seed = _seed(seed)
  if seed is None:
    return [None] * n
  return tf.unstack(tf.random.experimental.stateless_split(seed, n), num=n)


def _square_at(image, side, fy, fx):
  """Square crop of ``side`` px at relative position (fy, fx) in [0, 1] of the free range."""
  shape = tf.shape(image)

  def offset(f, free):  # uniform over 0..free when f is uniform in [0, 1)
    return tf.minimum(tf.cast(f * tf.cast(free + 1, tf.float32), tf.int32), free)

  y, x = offset(fy, shape[0] - side), offset(fx, shape[1] - side)
  return image[y:y + side, x:x + side]


def random_square_crop(image: tf.Tensor, seed=None) -> tf.Tensor:
  """The largest square (side = short edge) at a uniformly random offset: the thesis's crop."""
  shape = tf.shape(image)
  offset = _uniform([2], seed)
  return _square_at(image, tf.minimum(shape[0], shape[1]), offset[0], offset[1])


def center_square_crop(image: tf.Tensor, fraction: float = 1.0) -> tf.Tensor:
  """Central square of side ``fraction`` x short edge (deterministic, for evaluation)."""
  shape = tf.shape(image)
  short = tf.cast(tf.minimum(shape[0], shape[1]), tf.float32)
  side = tf.maximum(1, tf.cast(tf.math.floor(short * fraction), tf.int32))
  return _square_at(image, side, 0.5, 0.5)


def resize_area(image: tf.Tensor, size: int) -> tf.Tensor:
  """Area (box-filter) resize to size x size, as the thesis; uint8 stays uint8 (rounded)."""
  resized = tf.image.resize(image, [size, size], method="area", antialias=True)
  if image.dtype == tf.uint8:
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)
  return tf.cast(resized, image.dtype)


def _resize_bilinear(image, size):
  """Bilinear with antialias: probe crops are often *up*sampled, where area is blocky."""
  resized = tf.image.resize(image, [size, size], method="bilinear", antialias=True)
  if image.dtype == tf.uint8:
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)
  return tf.cast(resized, image.dtype)


def to_unit_range(image: tf.Tensor) -> tf.Tensor:
  """uint8 (or float in [0, 255]) -> float32 in [IMAGE_MIN, IMAGE_MAX] = [-1, 1]."""
  scale = (conventions.IMAGE_MAX - conventions.IMAGE_MIN) / 255.0
  return tf.cast(image, tf.float32) * scale + conventions.IMAGE_MIN


def from_unit_range(image: tf.Tensor) -> tf.Tensor:
  """Inverse of ``to_unit_range``: float in [-1, 1] -> uint8 (rounded, clipped)."""
  scale = 255.0 / (conventions.IMAGE_MAX - conventions.IMAGE_MIN)
  values = (tf.cast(image, tf.float32) - conventions.IMAGE_MIN) * scale
  return tf.cast(tf.clip_by_value(tf.round(values), 0, 255), tf.uint8)


def random_flip(image: tf.Tensor, seed=None) -> tf.Tensor:
  """Left-right flip with probability 1/2."""
  seed = _seed(seed)
  if seed is None:
    return tf.image.random_flip_left_right(image)
  return tf.image.stateless_random_flip_left_right(image, seed)


def train_crop(image: tf.Tensor, size: int = conventions.IMAGE_SIZE, seed=None,
               flip: bool = True) -> tf.Tensor:
  """Training view: random square crop, area resize to ``size``, optional flip; dtype kept."""
  crop_seed, flip_seed = _split(seed, 2)
  out = resize_area(random_square_crop(image, crop_seed), size)
  return random_flip(out, flip_seed) if flip else out


def five_versions(image: tf.Tensor, size: int = conventions.IMAGE_SIZE, seed=None,
                  crop_range: tuple[float, float] = FIVE_VERSION_CROP_RANGE) -> tf.Tensor:
  """The thesis's offline 5-fold augmentation -> [5, size, size, 3], same dtype.

  Versions: the central square (the "original"), its mirror image, and three random squares
  of side uniform in ``crop_range`` x short edge at random positions (**ours**: the thesis
  stores "three random crops" without a stated size), each area-resized to ``size``.
  """
  shape = tf.shape(image)
  short = tf.cast(tf.minimum(shape[0], shape[1]), tf.float32)
  original = resize_area(center_square_crop(image), size)
  versions = [original, tf.image.flip_left_right(original)]
  for crop_seed in _split(seed, 3):
    u = _uniform([3], crop_seed)
    side = tf.cast(short * (crop_range[0] + (crop_range[1] - crop_range[0]) * u[0]), tf.int32)
    versions.append(resize_area(_square_at(image, tf.maximum(side, 1), u[1], u[2]), size))
  return tf.stack(versions)


def probe_train_preprocess(image: tf.Tensor, seed=None, size: int = PROBE_SIZE) -> tf.Tensor:
  """STL-10 probe training view: random crop (area 0.33-1, aspect 0.75-1.33) -> size, flip.

  Returns float32 in [-1, 1].
  """
  box_seed, flip_seed = _split(seed, 2)
  kwargs = dict(image_size=tf.shape(image), bounding_boxes=tf.constant([[[0.0, 0, 1, 1]]]),
                min_object_covered=0.0, aspect_ratio_range=PROBE_ASPECT_RANGE,
                area_range=PROBE_AREA_RANGE, max_attempts=100,
                use_image_if_no_bounding_boxes=True)
  if box_seed is None:
    begin, crop_size, _ = tf.image.sample_distorted_bounding_box(**kwargs)
  else:
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        seed=box_seed, **kwargs)
  crop = tf.slice(image, begin, crop_size)
  return to_unit_range(random_flip(_resize_bilinear(crop, size), flip_seed))


def probe_eval_preprocess(image: tf.Tensor, size: int = PROBE_SIZE,
                          central_fraction: float = PROBE_CENTRAL_FRACTION) -> tf.Tensor:
  """STL-10 probe test view: central crop (0.85 of each side) resized to ``size``; [-1, 1]."""
  crop = tf.image.central_crop(image, central_fraction)
  return to_unit_range(_resize_bilinear(crop, size))
