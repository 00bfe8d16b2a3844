"""Procedural scenes: deterministic bytes, labels that match the pixels, a working tfds builder."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from lorbms_tf import conventions
from lorbms_tf.data import scenes
from lorbms_tf.data import scenes_builder

RES = 64
KEYS = ("image", "shapes", "colors", "bboxes", "label")


@pytest.fixture(scope="module")
def sample():
  """200 scenes with per-object coverage masks, shared by the label checks."""
  return scenes.generate_scenes(200, RES, seed=7, return_masks=True)


def assert_same_scenes(a, b):
  for key in KEYS:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_outputs_have_documented_shapes_dtypes_and_ranges(sample):
  n, q = 200, conventions.NUM_QUADRANTS
  expected = {"image": (np.uint8, (n, RES, RES, 3)), "shapes": (np.int64, (n, q)),
              "colors": (np.int64, (n, q)), "bboxes": (np.float32, (n, q, 4)),
              "label": (np.int64, (n,)), "masks": (np.float32, (n, q, RES, RES))}
  assert {k: (v.dtype, v.shape) for k, v in sample.items()} == {
      k: (np.dtype(t), s) for k, (t, s) in expected.items()}
  empty = sample["shapes"] == scenes.EMPTY_SHAPE
  assert sample["shapes"].min() >= 0 and sample["shapes"].max() < scenes.NUM_SHAPES
  np.testing.assert_array_equal(sample["colors"] == scenes.EMPTY_COLOR, empty)
  assert sample["colors"].max() < scenes.NUM_COLORS
  boxes = sample["bboxes"]
  assert (boxes[empty] == 0).all()
  assert (boxes >= 0).all() and (boxes <= 1).all()
  assert (boxes[~empty][:, 2:] > boxes[~empty][:, :2]).all()  # ymax > ymin, xmax > xmin
  np.testing.assert_array_equal(sample["masks"].max(axis=(2, 3)) > 0, ~empty)


def test_same_seed_same_bytes_and_other_seed_differs():
  first = scenes.generate_scenes(12, RES, seed=5)
  assert_same_scenes(first, scenes.generate_scenes(12, RES, seed=5))
  other = scenes.generate_scenes(12, RES, seed=6)
  assert not np.array_equal(first["image"], other["image"])
  assert not np.array_equal(first["shapes"], other["shapes"])


def test_chunked_generation_equals_whole():
  whole = scenes.generate_scenes(300, RES, seed=2)  # crosses an internal render block
  for start, count in ((5, 10), (250, 50)):
    part = scenes.generate_scenes(count, RES, seed=2, start_index=start)
    assert_same_scenes(part, {k: whole[k][start:start + count] for k in KEYS})


def test_other_resolution_draws_the_same_layout():
  low, high = scenes.generate_scenes(8, 64, seed=1), scenes.generate_scenes(8, 96, seed=1)
  np.testing.assert_array_equal(low["shapes"], high["shapes"])
  np.testing.assert_array_equal(low["colors"], high["colors"])
  np.testing.assert_allclose(low["bboxes"], high["bboxes"], atol=2.5 / 64)
  assert high["image"].shape == (8, 96, 96, 3)


def test_each_object_lies_inside_its_bbox_near_its_quadrant(sample):
  scale = RES / 64
  # Jitter, plus the triangle's bbox centre sitting off its centroid, plus a pixel.
  tolerance = (scenes.JITTER_64 + 0.3 * scenes.RADIUS_RANGE_64[1]) * scale + 1.0
  for n, q in zip(*np.nonzero(sample["shapes"])):
    ys, xs = np.nonzero(sample["masks"][n, q] > 0)
    # The box is exactly the span of the pixels the object touches (exclusive max edges).
    touched = np.array([ys.min(), xs.min(), ys.max() + 1, xs.max() + 1]) / RES
    np.testing.assert_allclose(sample["bboxes"][n, q], touched, atol=1e-6, err_msg=f"{n, q}")
    ymin, xmin, ymax, xmax = sample["bboxes"][n, q]
    y0, x0, y1, x1 = conventions.quadrant_box(q, RES)
    assert abs((ymin + ymax) / 2 * RES - (y0 + y1) / 2) <= tolerance, (n, q)
    assert abs((xmin + xmax) / 2 * RES - (x0 + x1) / 2) <= tolerance, (n, q)


def test_visible_object_pixels_have_the_labelled_colour(sample):
  masks, image = sample["masks"], sample["image"]
  checked = 0
  for n, q in zip(*np.nonzero(sample["shapes"])):
    hidden_by_later = masks[n, q + 1:].sum(axis=0) > 0
    solid = (masks[n, q] == 1.0) & ~hidden_by_later
    expected = scenes.COLOR_VALUES[sample["colors"][n, q]].astype(np.uint8)
    assert (image[n][solid] == expected).all(), (n, q)
    checked += solid.sum()
  assert checked > 100 * 200


def test_background_and_empty_quadrants_hold_no_object_colours(sample):
  """Uncovered pixels are muted (low chroma); every palette colour is strongly saturated."""
  palette_chroma = np.ptp(scenes.COLOR_VALUES, axis=1)
  assert palette_chroma.min() >= 120
  uncovered = sample["masks"].sum(axis=1) == 0  # [N, R, R]
  pixels = sample["image"][uncovered].astype(np.int32)
  assert np.ptp(pixels, axis=1).max() <= 40
  empty_n, empty_q = np.nonzero(sample["shapes"] == scenes.EMPTY_SHAPE)
  assert empty_n.size > 0
  for n, q in zip(empty_n, empty_q):  # an empty quadrant is mostly background
    y0, x0, y1, x1 = conventions.quadrant_box(q, RES)
    assert uncovered[n, y0:y1, x0:x1].mean() > 0.5, (n, q)


def test_label_is_the_shape_of_the_largest_object(sample):
  areas = sample["masks"].sum(axis=(2, 3))  # [N, 4]
  largest = sample["shapes"][np.arange(200), areas.argmax(axis=1)]
  np.testing.assert_array_equal(sample["label"], largest)


def test_occupancy_and_shape_and_colour_frequencies():
  draws = scenes.generate_scenes(500, 32, seed=11)
  occupied = draws["shapes"] > 0
  assert 0.76 <= occupied.mean() <= 0.84
  shape_share = np.bincount(draws["shapes"][occupied], minlength=scenes.NUM_SHAPES)[1:]
  shape_share = shape_share / occupied.sum()
  assert np.all(np.abs(shape_share - 1 / (scenes.NUM_SHAPES - 1)) < 0.05), shape_share
  colour_share = np.bincount(draws["colors"][occupied], minlength=scenes.NUM_COLORS)
  assert np.all(colour_share / occupied.sum() > 0.5 / scenes.NUM_COLORS), colour_share
  assert len(scenes.SHAPE_NAMES) == scenes.NUM_SHAPES >= 5 and len(scenes.COLOR_NAMES) >= 6


def test_tiny_builder_prepares_offline_in_generation_order(data_dir):
  config = scenes_builder.ScenesConfig(name="test64", resolution=RES, num_train=64, num_test=16)
  builder = scenes_builder.LorbmsScenes(config=config, data_dir=data_dir)
  builder.download_and_prepare()
  assert builder.info.splits["train"].num_examples == 64
  assert builder.info.splits["test"].num_examples == 16
  assert builder.info.supervised_keys == ("image", "label")

  def read(split):
    return tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))

  train, test = read("train"), read("test")
  assert train["image"].shape == (64, RES, RES, 3) and train["image"].dtype == np.uint8
  assert train["shapes"].shape == (64, 4) and train["bboxes"].shape == (64, 4, 4)
  assert train["bboxes"].dtype == np.float32 and train["colors"].dtype == np.int64
  np.testing.assert_array_equal(train["id"], np.arange(64))
  np.testing.assert_array_equal(test["id"], np.arange(16))
  assert not np.array_equal(train["image"][:16], test["image"])
  # id k is scene k of the split's stream, stored losslessly.
  expected = scenes.generate_scenes(
      64, RES, seed=scenes_builder.split_seed(config.seed, "train"))
  for key in KEYS:
    np.testing.assert_array_equal(train[key], expected[key], err_msg=key)


def test_registered_configs_by_name(data_dir):
  default = tfds.builder("lorbms_scenes", data_dir=data_dir)
  assert default.builder_config.name == "64"
  assert default.info.features["image"].shape == (64, 64, 3)
  large = tfds.builder("lorbms_scenes/96", data_dir=data_dir)
  assert large.builder_config.resolution == 96
  assert large.info.features["image"].shape == (96, 96, 3)
  assert (large.builder_config.num_train, large.builder_config.num_test) == (20000, 2000)
