"""Input pipelines: training batches, deterministic evaluation batches, in-memory arrays.

All three sit on ``sources.load_source`` (decoding, filtering, ids) and ``preprocess``. The
training pipeline crops and resizes *before* its shuffle buffer, so the buffer holds 64x64
uint8 images (12 KB each) instead of full photos, and converts to float in [-1, 1] per batch.
Randomness is reproducible: file order, crops, flips and the buffer all derive from ``seed``
(and the input pipeline id, so replicas see different crops).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import tensorflow as tf

from lorbms_tf import conventions
from lorbms_tf.data import preprocess
from lorbms_tf.data.sources import DatasetSpec, DecodeOptions, SkipCounter, load_source

AUTOTUNE = tf.data.AUTOTUNE
DEFAULT_SHUFFLE_BUFFER = 8192  # of 64x64 uint8 images: ~100 MB


def _pipeline_seed(seed: int, input_context) -> int:
  pipeline_id = input_context.input_pipeline_id if input_context is not None else 0
  return int(seed) + 7919 * pipeline_id


def _per_replica(batch_size: int, input_context) -> int:
  if input_context is None:
    return batch_size
  return input_context.get_per_replica_batch_size(batch_size)


def _to_unit_range(batch: dict) -> dict:
  return {**batch, "image": preprocess.to_unit_range(batch["image"])}


def train_dataset(spec: str | DatasetSpec, batch_size: int,
                  image_size: int = conventions.IMAGE_SIZE, data_dir: str | None = None,
                  input_context: tf.distribute.InputContext | None = None, seed: int = 0,
                  shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER, flip: bool = True,
                  skip_counter: SkipCounter | None = None, repeat: bool = True,
                  split: str | None = None, dct_downscale: bool = True,
                  min_size: int | None = None) -> tf.data.Dataset:
  """Batches ``{"image": float32 [B, S, S, 3] in [-1, 1], "id": int64 [B]}`` for training.

  Random square crop (side = short edge), area resize to ``image_size``, random flip.
  ``batch_size`` is global: with ``input_context`` (``distribute_datasets_from_function``) the
  batch is the per-replica share and the source is sharded. drop_remainder=True keeps shapes
  static. min_size: skip images with a shorter side (default ``image_size``: no upscaling).
  dct_downscale=False decodes JPEGs at full size (slower, for comparison).
  """
  pipeline_seed = _pipeline_seed(seed, input_context)
  options = DecodeOptions(min_size=image_size if min_size is None else min_size,
                          decode_min_side=image_size if dct_downscale else None)
  ds = load_source(spec, split, data_dir, input_context, skip_counter, options,
                   shuffle_seed=pipeline_seed)
  if repeat:
    ds = ds.repeat()
  # One stateless seed per example; new ones every pass when the dataset is iterated again.
  seeds = tf.data.Dataset.random(seed=pipeline_seed, rerandomize_each_iteration=True).batch(2)

  def crop(ex, example_seed):
    image = preprocess.train_crop(ex["image"], image_size, example_seed, flip)
    return {"image": tf.ensure_shape(image, [image_size, image_size, 3]), "id": ex["id"]}

  ds = tf.data.Dataset.zip(ds, seeds).map(crop, num_parallel_calls=AUTOTUNE)
  if shuffle_buffer > 1:
    ds = ds.shuffle(shuffle_buffer, seed=pipeline_seed, reshuffle_each_iteration=True)
  ds = ds.batch(_per_replica(batch_size, input_context), drop_remainder=True)
  return ds.map(_to_unit_range, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def center_examples(spec: str | DatasetSpec, split: str | None = None,
                    image_size: int = conventions.IMAGE_SIZE, data_dir: str | None = None,
                    input_context: tf.distribute.InputContext | None = None,
                    crop_fraction: float = 1.0, skip_counter: SkipCounter | None = None,
                    min_size: int | None = None) -> tf.data.Dataset:
  """Unbatched examples with a deterministic view: central square crop resized, uint8.

  Keeps "id" and every label the source has, in the source's fixed order (no shuffling).
  """
  options = DecodeOptions(min_size=image_size if min_size is None else min_size,
                          decode_min_side=int(np.ceil(image_size / crop_fraction)))

  def view(ex):
    image = preprocess.resize_area(
        preprocess.center_square_crop(ex["image"], crop_fraction), image_size)
    return {**ex, "image": tf.ensure_shape(image, [image_size, image_size, 3])}

  ds = load_source(spec, split, data_dir, input_context, skip_counter, options)
  return ds.map(view, num_parallel_calls=AUTOTUNE)


def eval_dataset(spec: str | DatasetSpec, split: str | None = None, batch_size: int = 64,
                 image_size: int = conventions.IMAGE_SIZE, data_dir: str | None = None,
                 input_context: tf.distribute.InputContext | None = None,
                 crop_fraction: float = 1.0, skip_counter: SkipCounter | None = None,
                 min_size: int | None = None, drop_remainder: bool = False
                 ) -> tf.data.Dataset:
  """Deterministic batches ``{"image": float32 [B, S, S, 3] in [-1, 1], "id", labels...}``."""
  ds = center_examples(spec, split, image_size, data_dir, input_context, crop_fraction,
                       skip_counter, min_size)
  ds = ds.batch(_per_replica(batch_size, input_context), drop_remainder=drop_remainder)
  return ds.map(_to_unit_range, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def image_batches(spec: str | DatasetSpec, split: str | None = None,
                  image_size: int = conventions.IMAGE_SIZE, limit: int | None = None,
                  data_dir: str | None = None, crop_fraction: float = 1.0,
                  skip_counter: SkipCounter | None = None, batch_size: int = 256
                  ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Yields (ids int64 [b], images uint8 [b, S, S, 3]): central crops in the source's fixed
  order, a batch at a time (``partners.write_image_bank`` streams them to disk)."""
  ds = center_examples(spec, split, image_size, data_dir, None, crop_fraction, skip_counter)
  if limit is not None:
    ds = ds.take(limit)
  for ids, images in ds.map(lambda ex: (ex["id"], ex["image"])).batch(batch_size).prefetch(2):
    yield ids.numpy().astype(np.int64), images.numpy()


def load_images_array(spec: str | DatasetSpec, split: str | None = None,
                      image_size: int = conventions.IMAGE_SIZE, limit: int | None = None,
                      data_dir: str | None = None, crop_fraction: float = 1.0,
                      skip_counter: SkipCounter | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
  """-> (ids int64 [N], images uint8 [N, S, S, 3]), central crops in the source's fixed order.

  For the similarity component (embedding every image). ``limit`` caps N (the first
  ``limit`` kept images).
  """
  ids, images = [], []
  for batch_ids, batch_images in image_batches(spec, split, image_size, limit, data_dir,
                                               crop_fraction, skip_counter):
    ids.append(batch_ids)
    images.append(batch_images)
  if not ids:
    return np.zeros([0], np.int64), np.zeros([0, image_size, image_size, 3], np.uint8)
  return np.concatenate(ids), np.concatenate(images)


def probe_dataset(spec: str | DatasetSpec = "stl10", split: str = "train",
                  batch_size: int = 128, training: bool = True,
                  image_size: int = preprocess.PROBE_SIZE, seed: int = 0,
                  ids: np.ndarray | None = None, data_dir: str | None = None,
                  shuffle_buffer: int = 5000) -> tf.data.Dataset:
  """Linear-probe batches ``{"image", "id", "label"}`` with the thesis's STL-10 augmentations.

  training=True: random-area crop + flip, shuffled, one pass (call it per epoch);
  False: central crop 0.85. ``ids`` restricts to a subset, e.g. ``stl10_fold_ids(k)``.
  """
  options = DecodeOptions(min_size=1, decode_min_side=image_size)
  ds = load_source(spec, split, data_dir, options=options,
                   shuffle_seed=seed if training else None)
  if ids is not None:
    wanted = tf.constant(np.unique(np.asarray(ids, np.int64)))
    ds = ds.filter(lambda ex: tf.reduce_any(tf.equal(ex["id"], wanted)))
  if training:
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    ds = tf.data.Dataset.zip(ds, seeds).map(
        lambda ex, s: {**ex, "image": preprocess.probe_train_preprocess(ex["image"], s,
                                                                        image_size)},
        num_parallel_calls=AUTOTUNE)
    if shuffle_buffer > 1:
      ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
  else:
    ds = ds.map(lambda ex: {**ex, "image": preprocess.probe_eval_preprocess(ex["image"],
                                                                            image_size)},
                num_parallel_calls=AUTOTUNE)
  ds = ds.map(lambda ex: {**ex, "image": tf.ensure_shape(ex["image"],
                                                         [image_size, image_size, 3])})
  return ds.batch(batch_size).prefetch(AUTOTUNE)
