"""Pipelines: batch shapes and ranges, determinism, sharding, eval order, arrays, probes."""

import io

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from lorbms_tf.data import pipeline, sources
from lorbms_tf.data.sources import SkipCounter


def _save(path, h, w, seed, fmt="JPEG", mode="RGB"):
  small = np.random.default_rng(seed).integers(0, 256, (4, 4, 3), dtype=np.uint8)
  image = Image.fromarray(small).resize((w, h), Image.BILINEAR).convert(mode)
  buf = io.BytesIO()
  image.save(buf, fmt)
  path.write_bytes(buf.getvalue())


@pytest.fixture
def folder(tmp_path):
  """10 readable images of assorted sizes and formats, 1 with a broken header, 1 tiny: ids 0..11."""
  root = tmp_path / "photos"
  root.mkdir()
  for i in range(8):
    _save(root / f"img{i:02d}.jpg", 70 + 15 * i, 100 + 7 * i, i)
  _save(root / "img08.png", 90, 90, 8, "PNG", "L")
  _save(root / "img09.png", 100, 80, 9, "PNG", "RGBA")
  (root / "img10.jpg").write_bytes(b"\xff\xd8\xff\xe0broken")
  _save(root / "img11.png", 10, 10, 11, "PNG")
  return f"folder:{root}"


GOOD_IDS = set(range(10))


def _ids(ds):
  return [int(i) for batch in ds for i in batch["id"].numpy()]


def test_train_batches(folder):
  counter = SkipCounter()
  ds = pipeline.train_dataset(folder, batch_size=3, shuffle_buffer=4, repeat=False,
                              skip_counter=counter)
  batches = list(ds)
  assert len(batches) == 3  # 10 good images, drop_remainder
  for batch in batches:
    image = batch["image"].numpy()
    assert image.shape == (3, 64, 64, 3) and image.dtype == np.float32
    assert -1.0 <= image.min() and image.max() <= 1.0 and image.std() > 0
    assert batch["id"].dtype == tf.int64
  assert set(_ids(batches)) <= GOOD_IDS and len(set(_ids(batches))) == 9
  counts = counter.counts(final=True)
  assert (counts["passed"], counts["decode_error"], counts["too_small"]) == (10, 1, 1)
  assert ds.element_spec["image"].shape == (3, 64, 64, 3)


def test_train_is_reproducible_and_repeats(folder):
  def first_batches(seed):
    ds = pipeline.train_dataset(folder, batch_size=4, seed=seed, shuffle_buffer=8)
    return [b["image"].numpy() for b in ds.take(4)]  # 16 > 10 images: crosses an epoch

  a, b, c = first_batches(1), first_batches(1), first_batches(2)
  np.testing.assert_array_equal(np.stack(a), np.stack(b))
  assert not np.array_equal(np.stack(a), np.stack(c))


def test_input_context_per_replica_batches_disjoint_ids(folder):
  ids = []
  for pipeline_id in (0, 1):
    ctx = tf.distribute.InputContext(2, pipeline_id, 2)
    ds = pipeline.train_dataset(folder, batch_size=4, input_context=ctx, repeat=False,
                                shuffle_buffer=1)
    assert ds.element_spec["id"].shape == (2,)
    ids.append(set(_ids(ds)))
  assert not ids[0] & ids[1] and ids[0] | ids[1] <= GOOD_IDS


def test_eval_dataset_is_deterministic_and_keeps_labels(tmp_path, folder):
  ds = pipeline.eval_dataset(folder, batch_size=4)
  first, second = list(ds), list(ds)
  assert _ids(first) == sorted(GOOD_IDS)  # source order, no shuffling, remainder kept
  for a, b in zip(first, second):
    np.testing.assert_array_equal(a["image"], b["image"])
  # Labels and extra features survive; TFRecords written by write_tfrecords read back.
  rng = np.random.default_rng(0)
  written = [{"image": rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), "id": 50 + i,
              "label": i % 2} for i in range(5)]
  prefix = str(tmp_path / "rec" / "test")
  sources.write_tfrecords(written, prefix, num_shards=2)
  batch = next(iter(pipeline.eval_dataset(f"tfrecord:{prefix}-*", batch_size=5)))
  assert batch["id"].numpy().tolist() == [50, 51, 52, 53, 54]
  assert batch["label"].numpy().tolist() == [0, 1, 0, 1, 0]
  expected = np.stack([w["image"] for w in written]).astype(np.float32) / 127.5 - 1
  np.testing.assert_allclose(batch["image"].numpy(), expected, atol=1e-6)


def test_load_images_array_matches_eval(folder):
  ids, images = pipeline.load_images_array(folder, image_size=32, limit=6)
  assert ids.dtype == np.int64 and ids.tolist() == [0, 1, 2, 3, 4, 5]
  assert images.shape == (6, 32, 32, 3) and images.dtype == np.uint8
  batch = next(iter(pipeline.eval_dataset(folder, batch_size=6, image_size=32)))
  np.testing.assert_allclose(images / 127.5 - 1, batch["image"].numpy(), atol=1e-6)


def test_probe_dataset_on_mock_stl10_with_fold(data_dir):
  with tfds.testing.mock_data(num_examples=6):
    train = list(pipeline.probe_dataset("stl10", "train", batch_size=4, training=True,
                                        ids=[1, 3, 4], data_dir=data_dir))
    test = list(pipeline.probe_dataset("stl10", "test", batch_size=4, training=False,
                                       data_dir=data_dir))
  assert sorted(_ids(train)) == [1, 3, 4]
  assert train[0]["image"].shape == (3, 96, 96, 3) and "label" in train[0]
  assert _ids(test) == [0, 1, 2, 3, 4, 5] and test[0]["image"].shape == (4, 96, 96, 3)
  assert max(float(tf.reduce_max(tf.abs(b["image"]))) for b in train + test) <= 1.0
