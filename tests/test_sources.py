"""Sources: spec parsing, robust decoding with skip counts, folder/TFRecord/tfds loading, ids."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from lorbms_tf.data import sources
from lorbms_tf.data.sources import DecodeOptions, SkipCounter

import image_files


_encode, _rgb = image_files.encode, image_files.smooth_rgb


def _collect(ds):
  return [{k: v.numpy() for k, v in ex.items()} for ex in ds]


@pytest.fixture
def messy_folder(tmp_path):
  """Good images, convertible ones and broken ones; returns (path, names of readable ones)."""
  return image_files.write_messy_folder(tmp_path / "imgs")


# Spec parsing -------------------------------------------------------------------------------

def test_parse_dataset_spec():
  assert sources.parse_dataset_spec("coco").location == "coco/2017"
  assert sources.parse_dataset_spec("coco/2017").name == "coco"
  stl = sources.parse_dataset_spec("stl10")
  assert (stl.train_split, stl.extra_keys) == ("unlabelled", ("label",))
  assert sources.parse_dataset_spec("celeb_a").location == "celeb_a"
  assert sources.parse_dataset_spec("scenes").location == "lorbms_scenes/64"
  assert sources.parse_dataset_spec("scenes/96").location == "lorbms_scenes/96"
  folder = sources.parse_dataset_spec("folder:/x/y")
  assert (folder.kind, folder.location, str(folder)) == ("folder", "/x/y", "folder:/x/y")
  assert sources.parse_dataset_spec("tfrecord:gs://b/*.tfrecord").location == "gs://b/*.tfrecord"


@pytest.mark.parametrize("bad", ["imagenet", "folder:", "COCO", ""])
def test_parse_dataset_spec_errors_name_value_and_choices(bad):
  with pytest.raises(ValueError) as err:
    sources.parse_dataset_spec(bad)
  assert repr(bad.strip()) in str(err.value) or "needs a path" in str(err.value)
  if bad != "folder:":
    assert "stl10" in str(err.value) and "folder:PATH" in str(err.value)


# Folder source and the decoding stage --------------------------------------------------------

def test_folder_decodes_convertible_and_counts_skips(messy_folder):
  path, readable = messy_folder
  files = sources.list_image_files(path)
  names = [f[len(path) + 1:] for f in files]
  assert "notes.txt" not in names and names == sorted(names)
  counter = SkipCounter()
  examples = _collect(sources.load_source("folder:" + path, skip_counter=counter,
                                          options=DecodeOptions(min_size=32)))
  got = {names[ex["id"]]: ex["image"] for ex in examples}
  assert sorted(got) == sorted(readable)
  for image in got.values():
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
  # Gray is replicated; CMYK comes out as RGB close to the original colours.
  gray = got["c_gray.png"]
  assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
  cmyk_ref = np.asarray(_rgb(100, 100, 4), np.float32)
  assert np.abs(got["e_cmyk.jpg"].astype(np.float32) - cmyk_ref).mean() < 12
  counts = counter.counts(final=True)
  expected = {reason: 0 for reason in SkipCounter.REASONS}
  for reason in image_files.MESSY_FILES.values():
    if reason:
      expected[reason] += 1
  assert counts == {**expected, "passed": len(readable)}
  assert counter.skipped == 6
  counter.log()
  # Ids are positions in the sorted listing, identical on a second read.
  again = _collect(sources.load_source("folder:" + path, options=DecodeOptions(min_size=32)))
  assert [ex["id"] for ex in again] == [ex["id"] for ex in examples]


def test_size_limits_and_dct_ratio(tmp_path):
  root = tmp_path / "sizes"
  root.mkdir()
  (root / "big.jpg").write_bytes(_encode(_rgb(400, 520), "JPEG"))
  (root / "big.png").write_bytes(_encode(_rgb(300, 300), "PNG"))
  counter = SkipCounter()
  options = DecodeOptions(min_size=64, max_pixels=200 * 200, decode_min_side=64)
  examples = _collect(sources.load_source(f"folder:{root}", skip_counter=counter,
                                          options=options))
  # JPEG: 400 px short side -> ratio 4 (100 px >= 64; ratio 8 would give 50); PNG too large.
  assert [ex["image"].shape for ex in examples] == [(100, 130, 3)]
  assert counter.counts()["too_large"] == 1
  full = _collect(sources.load_source(f"folder:{root}", options=DecodeOptions(
      decode_min_side=None)))
  assert sorted(ex["image"].shape for ex in full) == [(300, 300, 3), (400, 520, 3)]


def test_sniff_image_reads_header_sizes():
  for fmt, h, w in [("JPEG", 33, 47), ("PNG", 21, 13), ("GIF", 17, 300), ("BMP", 40, 30)]:
    data = _encode(_rgb(h, w).convert("P") if fmt == "GIF" else _rgb(h, w), fmt)
    code, height, width = sources.sniff_image(tf.constant(data))
    assert (int(height), int(width)) == (h, w), fmt
    assert int(code) == ["JPEG", "PNG", "GIF", "BMP"].index(fmt) + 1
  assert int(sources.sniff_image(tf.constant(b""))[0]) == 0


def test_clear_errors(tmp_path):
  missing = str(tmp_path / "nope")
  with pytest.raises(FileNotFoundError, match="nope"):
    sources.load_source("folder:" + missing)
  empty = tmp_path / "empty"
  empty.mkdir()
  (empty / "readme.txt").write_text("no images here")
  with pytest.raises(FileNotFoundError, match="empty.*holds no images"):
    sources.load_source(f"folder:{empty}")
  with pytest.raises(FileNotFoundError, match=r"no TFRecord files match .*x-\*"):
    sources.load_source(f"tfrecord:{tmp_path}/x-*")
  with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
    sources.load_source("mnist")


# TFRecords ----------------------------------------------------------------------------------

def _examples(n, size=64):
  rng = np.random.default_rng(1)
  return [{"image": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
           "id": np.int64(100 + i), "label": np.int64(i % 3),
           "bboxes": rng.random((4, 4)).astype(np.float32)} for i in range(n)]


def test_tfrecord_round_trip_keeps_order_ids_and_extras(tmp_path):
  written = _examples(7)
  prefix = str(tmp_path / "shards" / "train")
  paths = sources.write_tfrecords(written, prefix, num_shards=3)
  assert len(paths) == 3 and paths[0].endswith("train-00000-of-00003.tfrecord")
  for _ in range(2):  # two reads, same result
    read = _collect(sources.load_source(f"tfrecord:{prefix}-*"))
    assert [ex["id"] for ex in read] == [ex["id"] for ex in written]
    for got, want in zip(read, written):
      np.testing.assert_array_equal(got["image"], want["image"])  # PNG: lossless
      assert got["label"] == want["label"]
      np.testing.assert_allclose(got["bboxes"], want["bboxes"])
  # A tf.data.Dataset works as input too, and JPEG encoding is accepted.
  ds = tf.data.Dataset.from_tensor_slices({"image": np.stack([e["image"] for e in written])})
  sources.write_tfrecords(ds, str(tmp_path / "jpeg"), 2, image_format="jpeg")
  read = _collect(sources.load_source(f"tfrecord:{tmp_path}/jpeg-*"))
  assert [ex["id"] for ex in read] == list(range(7))  # no ids given: running index


def test_tfrecord_without_id_uses_read_position(tmp_path):
  path = str(tmp_path / "plain.tfrecord")
  with tf.io.TFRecordWriter(path) as writer:
    for i in range(5):
      data = _encode(_rgb(64, 64, i), "PNG")
      feature = {"image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[data]))}
      writer.write(tf.train.Example(
          features=tf.train.Features(feature=feature)).SerializeToString())
  read = _collect(sources.load_source(f"tfrecord:{path}"))
  assert [ex["id"] for ex in read] == [0, 1, 2, 3, 4]
  parts = [_collect(sources.load_source(
      f"tfrecord:{path}", input_context=tf.distribute.InputContext(2, i, 2))) for i in (0, 1)]
  assert sorted(ex["id"] for part in parts for ex in part) == [0, 1, 2, 3, 4]


def test_input_context_shards_are_disjoint(tmp_path, messy_folder):
  path, readable = messy_folder
  contexts = [tf.distribute.InputContext(2, i, 2) for i in (0, 1)]
  ids = [{ex["id"] for ex in _collect(sources.load_source(
      "folder:" + path, input_context=ctx, options=DecodeOptions(min_size=32)))}
         for ctx in contexts]
  assert not ids[0] & ids[1] and len(ids[0] | ids[1]) == len(readable)
  prefix = str(tmp_path / "rec")
  sources.write_tfrecords(_examples(8), prefix, num_shards=4)
  ids = [{ex["id"] for ex in _collect(sources.load_source(f"tfrecord:{prefix}-*",
                                                          input_context=ctx))}
         for ctx in contexts]
  assert not ids[0] & ids[1] and ids[0] | ids[1] == set(range(100, 108))


def test_shuffled_file_order_keeps_ids(messy_folder):
  path, _ = messy_folder
  options = DecodeOptions(min_size=32)
  plain = {ex["id"]: ex["image"] for ex in _collect(
      sources.load_source("folder:" + path, options=options))}
  shuffled = _collect(sources.load_source("folder:" + path, options=options, shuffle_seed=3))
  assert [ex["id"] for ex in shuffled] != sorted(plain)
  for ex in shuffled:
    np.testing.assert_array_equal(ex["image"], plain[ex["id"]])


# tfds sources, under tfds.testing.mock_data -----------------------------------------------------

def test_stl10_and_celeb_a_through_tfds(data_dir):
  with tfds.testing.mock_data(num_examples=4):
    for split in ("unlabelled", "train"):
      examples = _collect(sources.load_source("stl10", split, data_dir=data_dir))
      assert [ex["id"] for ex in examples] == [0, 1, 2, 3]
      assert all(ex["image"].shape == (96, 96, 3) and 0 <= ex["label"] < 10
                 for ex in examples)
    examples = _collect(sources.load_source("celeb_a", "test", data_dir=data_dir))
    assert [ex["image"].shape for ex in examples] == [(109, 89, 3)] * 4  # 218x178, ratio 2
    assert sorted(examples[0]) == ["id", "image"]


def test_coco_filter_short_side_and_boxes(data_dir):
  # (height, width, boxes): kept only with short side >= 200 and >= 4 boxes.
  cases = [(240, 320, 5), (150, 400, 6), (300, 300, 2), (200, 260, 4)]

  def as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
    del self, decoders, shuffle_files
    assert read_config.add_tfds_id

    def gen():
      for i, (h, w, boxes) in enumerate(cases):
        yield {"image": _encode(_rgb(h, w, i), "JPEG"),
               "objects": {"bbox": np.zeros([boxes, 4], np.float32)},
               "tfds_id": f"coco-{split}.tfrecord-00000-of-00001__{i}"}

    return tf.data.Dataset.from_generator(gen, output_signature={
        "image": tf.TensorSpec([], tf.string),
        "objects": {"bbox": tf.TensorSpec([None, 4], tf.float32)},
        "tfds_id": tf.TensorSpec([], tf.string)})

  counter = SkipCounter()
  with tfds.testing.mock_data(as_dataset_fn=as_dataset):
    examples = _collect(sources.load_source("coco", "train", data_dir=data_dir,
                                            skip_counter=counter))
  assert [ex["id"] for ex in examples] == [0, 3]
  # DCT downscaling: 240 -> ratio 2 (120 >= 64), 200 -> ratio 2 (100).
  assert [ex["image"].shape for ex in examples] == [(120, 160, 3), (100, 130, 3)]
  assert counter.counts()["filtered"] == 2 and counter.skipped == 0


def test_tfds_missing_dataset_is_a_fast_clear_error(data_dir):
  with pytest.raises(FileNotFoundError, match="stl10.*not prepared"):
    sources.load_source("stl10", "train", data_dir=data_dir)
  with pytest.raises(ValueError, match="one split at a time"):
    sources.load_source("stl10", "train+test", data_dir=data_dir)


def test_stl10_folds():
  folds = [sources.stl10_fold_ids(k) for k in range(10)]
  assert all(len(f) == 1000 and len(np.unique(f)) == 1000 for f in folds)
  counts = np.bincount(np.concatenate(folds), minlength=5000)
  assert (counts == 2).all()  # every training image in exactly two folds
  np.testing.assert_array_equal(folds[3], sources.stl10_fold_ids(3))
  with pytest.raises(ValueError, match="0..9"):
    sources.stl10_fold_ids(10)


def test_scenes_through_the_real_builder(data_dir):
  from lorbms_tf.data import scenes_builder  # pylint: disable=g-import-not-at-top
  config = scenes_builder.ScenesConfig(name="sources12", num_train=12, num_test=3)
  scenes_builder.LorbmsScenes(config=config, data_dir=data_dir).download_and_prepare()
  for seed in (None, 5):  # ordered dataset: file shuffling is skipped, not an error
    examples = _collect(sources.load_source("scenes/sources12", data_dir=data_dir,
                                            shuffle_seed=seed))
    assert [ex["id"] for ex in examples] == list(range(12))
  assert examples[0]["image"].shape == (64, 64, 3)
  assert examples[0]["shapes"].shape == (4,) and examples[0]["bboxes"].shape == (4, 4)


class _ShardedImages(tfds.core.GeneratorBasedBuilder):
  """A real (unmocked) tfds dataset in 3 hash-shuffled shards without an id feature: the
  case of coco/stl10, where ids come from tfds_id (shard offset + index in shard)."""
  VERSION = tfds.core.Version("1.0.0")

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls):  # see scenes_builder.LorbmsScenes.code_path
    from etils import epath  # pylint: disable=g-import-not-at-top
    return epath.Path(__file__)

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(64, 64, 3)), "label": tf.int64}))

  def _split_generators(self, dl_manager):
    return {"train": self._generate_examples()}

  def _generate_examples(self):
    for i in range(10):
      yield i, {"image": np.full([64, 64, 3], i * 20, np.uint8), "label": i}


def test_tfds_ids_from_shard_offsets(data_dir, monkeypatch):
  builder = _ShardedImages(data_dir=data_dir)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(num_shards=3))
  assert builder.info.splits["train"].num_shards == 3
  spec = sources.DatasetSpec("tfds", "sharded", builder.name, extra_keys=("label",))
  monkeypatch.setattr(tfds, "builder", lambda name, data_dir=None: builder)
  full = _collect(sources.load_source(spec, "train"))
  assert sorted(ex["id"] for ex in full) == list(range(10))
  label_of = {ex["id"]: ex["label"] for ex in full}
  # Same id -> same example under file shuffling, split slicing and input sharding.
  shuffled = _collect(sources.load_source(spec, "train", shuffle_seed=1))
  assert {ex["id"]: ex["label"] for ex in shuffled} == label_of
  sliced = _collect(sources.load_source(spec, "train[3:7]"))
  assert [ex["id"] for ex in sliced] == [3, 4, 5, 6]
  assert all(label_of[ex["id"]] == ex["label"] for ex in sliced)
  parts = [{ex["id"] for ex in _collect(sources.load_source(
      spec, "train", input_context=tf.distribute.InputContext(2, i, 2)))} for i in (0, 1)]
  assert not parts[0] & parts[1] and parts[0] | parts[1] == set(range(10))
