"""Preprocessing ops: shapes, ranges, determinism, and eager == inside Dataset.map."""

import numpy as np
import pytest
import tensorflow as tf

from lorbms_tf import conventions
from lorbms_tf.data import preprocess as pp


def _image(h=80, w=120, seed=0):
  return tf.constant(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


SEED = tf.constant([3, 4], tf.int64)
OPS = {
    "random_square_crop": lambda x: pp.random_square_crop(x, SEED),
    "center_square_crop": lambda x: pp.center_square_crop(x, 0.7),
    "resize_area": lambda x: pp.resize_area(x, 64),
    "to_unit_range": pp.to_unit_range,
    "random_flip": lambda x: pp.random_flip(x, SEED),
    "train_crop": lambda x: pp.train_crop(x, 64, SEED),
    "five_versions": lambda x: pp.five_versions(x, 32, SEED),
    "probe_train_preprocess": lambda x: pp.probe_train_preprocess(x, SEED),
    "probe_eval_preprocess": pp.probe_eval_preprocess,
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_eager_equals_dataset_map(name):
  op = OPS[name]
  image = _image()
  eager = op(image).numpy()
  (mapped,) = list(tf.data.Dataset.from_tensors(image).map(op).as_numpy_iterator())
  np.testing.assert_array_equal(eager, mapped)


def test_square_crops():
  image = _image(80, 120)
  crop = pp.random_square_crop(image, SEED).numpy()
  assert crop.shape == (80, 80, 3)
  full = image.numpy()
  # The crop is a window of the original at some x offset.
  assert any((full[:, x:x + 80] == crop).all() for x in range(41))
  offsets = {tuple(pp.random_square_crop(image, [s, 0]).numpy()[0, 0]) for s in range(12)}
  assert len(offsets) > 3  # different seeds, different windows
  np.testing.assert_array_equal(pp.random_square_crop(image, SEED), crop)  # same seed
  center = pp.center_square_crop(image).numpy()
  np.testing.assert_array_equal(center, full[:, 20:100])
  assert pp.center_square_crop(image, 0.5).shape == (40, 40, 3)
  assert pp.random_square_crop(_image(50, 30)).shape == (30, 30, 3)  # stateful path


def test_resize_keeps_dtype_and_constants():
  const = tf.fill([90, 130, 3], tf.constant(77, tf.uint8))
  out = pp.resize_area(const, 64)
  assert out.dtype == tf.uint8 and out.shape == (64, 64, 3)
  assert (out.numpy() == 77).all()
  assert pp.resize_area(tf.cast(const, tf.float32), 16).dtype == tf.float32


def test_unit_range():
  values = tf.constant([0, 128, 255], tf.uint8)
  out = pp.to_unit_range(values).numpy()
  assert out.dtype == np.float32
  np.testing.assert_allclose(out[[0, 2]], [conventions.IMAGE_MIN, conventions.IMAGE_MAX])
  np.testing.assert_array_equal(pp.from_unit_range(out).numpy(), [0, 128, 255])


def test_flip_and_five_versions():
  image = _image(64, 64)
  flips = [pp.random_flip(image, [s, 1]).numpy() for s in range(16)]
  flipped = [(f == image.numpy()[:, ::-1]).all() for f in flips]
  assert 0 < sum(flipped) < 16
  versions = pp.five_versions(_image(70, 100), 32, SEED).numpy()
  assert versions.shape == (5, 32, 32, 3) and versions.dtype == np.uint8
  np.testing.assert_array_equal(versions[1], versions[0][:, ::-1])
  assert not (versions[2] == versions[3]).all()


def test_train_crop_and_probe_views():
  train = pp.train_crop(_image(200, 300), 64, SEED)
  assert train.shape == (64, 64, 3) and train.dtype == tf.uint8
  stl = _image(96, 96)
  for view in (pp.probe_train_preprocess(stl, SEED), pp.probe_train_preprocess(stl),
               pp.probe_eval_preprocess(stl)):
    values = view.numpy()
    assert values.shape == (96, 96, 3) and values.dtype == np.float32
    assert values.min() >= -1.0 and values.max() <= 1.0
  crops = {pp.probe_train_preprocess(stl, [s, 2]).numpy().tobytes() for s in range(4)}
  assert len(crops) == 4
