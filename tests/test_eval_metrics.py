"""Image metrics: the TF-GAN compat import, FID/IS/KID math, Inception-interface SavedModels."""

import importlib
import sys

import numpy as np
import pytest
import tensorflow as tf

from lorbms_tf.eval import image_metrics, tfgan_compat


def test_compat_imports_classifier_metrics_without_estimator_and_restores_sys_modules():
  before = {k for k in sys.modules if k.startswith("tensorflow_gan")}
  module = tfgan_compat.classifier_metrics()
  assert module.__name__ == "tensorflow_gan.python.eval.classifier_metrics"
  assert hasattr(module, "frechet_classifier_distance_from_activations")
  after = {k for k in sys.modules if k.startswith("tensorflow_gan")}
  assert after == before  # no bare package left behind for later imports to find
  assert tfgan_compat.classifier_metrics() is module  # cached
  if not hasattr(tf, "estimator"):  # TF >= 2.16: the real package import still fails
    with pytest.raises(Exception):
      importlib.import_module("tensorflow_gan")
    for key in [k for k in sys.modules if k.startswith("tensorflow_gan")]:
      if key not in before:
        del sys.modules[key]


def test_fid_of_mean_shift_with_equal_covariance_is_squared_shift():
  rng = np.random.default_rng(0)
  real = rng.normal(size=(400, 6))
  shift = np.array([1.0, -2.0, 0.5, 0.0, 3.0, 0.0])
  fid = image_metrics.frechet_distance(real, real + shift)
  assert fid == pytest.approx(float(shift @ shift), rel=1e-6, abs=1e-6)
  assert image_metrics.frechet_distance(real, real) == pytest.approx(0.0, abs=1e-6)


def test_fid_uses_unbiased_covariance():
  # Two fixed samples: FID = |m1 - m2|^2 + tr(S1 + S2 - 2 sqrt(S1 S2)) with S = cov(ddof=1).
  rng = np.random.default_rng(1)
  a, b = rng.normal(size=(50, 3)), 2.0 * rng.normal(size=(60, 3)) + 1.0
  s1, s2 = np.cov(a, rowvar=False, ddof=1), np.cov(b, rowvar=False, ddof=1)
  w, v = np.linalg.eigh(s1)
  root1 = v @ np.diag(np.sqrt(w)) @ v.T
  w2 = np.linalg.eigvalsh(root1 @ s2 @ root1)
  expected = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(s1 + s2) - 2 * np.sum(np.sqrt(w2))
  assert image_metrics.frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)


def test_inception_score_and_kid():
  uniform = np.zeros((100, 10))
  assert image_metrics.classifier_score(uniform) == pytest.approx(1.0)
  confident = np.eye(10)[np.arange(100) % 10] * 50.0
  assert image_metrics.classifier_score(confident) == pytest.approx(10.0, rel=1e-3)
  rng = np.random.default_rng(2)
  x = rng.normal(size=(300, 8))
  kid_same, _ = image_metrics.kernel_distance(x[:150], x[150:], max_block_size=50)
  kid_far, std = image_metrics.kernel_distance(x[:150], x[150:] + 2.0, max_block_size=50)
  assert abs(kid_same) < 0.05 < kid_far
  assert np.isfinite(std)


class _TinyInception(tf.Module):
  """Stands in for TF-Hub tfgan/eval/inception/1: same input range and output names/shapes."""

  def __init__(self):
    super().__init__()
    rng = np.random.default_rng(0)
    self.proj = tf.Variable(rng.normal(size=(3, 16)).astype(np.float32))
    self.cls = tf.Variable(rng.normal(size=(16, 5)).astype(np.float32))

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
  def __call__(self, images):
    tf.debugging.assert_equal(tf.shape(images)[1], 299)
    tf.debugging.assert_less_equal(tf.reduce_max(tf.abs(images)), 1.0)
    pooled = tf.reduce_mean(tf.nn.relu(tf.einsum("bhwc,cd->bhwd", images, self.proj)), [1, 2])
    return {"pool_3": pooled[:, None, None, :], "logits": pooled @ self.cls}


@pytest.fixture(scope="module")
def tiny_inception(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("inception") / "saved_model")
  module = _TinyInception()
  tf.saved_model.save(module, path, signatures={"serving_default": module.__call__})
  return path


def test_saved_model_classifier_fn_and_quality(tiny_inception):
  classifier = image_metrics.SavedModelClassifier(tiny_inception)
  images = np.random.default_rng(3).uniform(-1, 1, size=(24, 64, 64, 3)).astype(np.float32)
  out = classifier(tf.constant(images[:4]))
  assert out["pool_3"].shape == (4, 16) and out["logits"].shape == (4, 5)
  quality = image_metrics.inception_quality(classifier, images[:12], images[12:], batch_size=5,
                                            is_splits=2)
  assert quality["fid"] >= 0 and quality["num_images"] == 12
  assert 1.0 <= quality["is"] <= 5.0


class _SignatureOnly(tf.Module):
  """Exposes the interface only as a 'serving_default' signature (loaded object not callable)."""

  def __init__(self):
    super().__init__()
    self.inner = _TinyInception()

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
  def serve(self, images):
    return self.inner(images)


def test_saved_model_signature_only(tmp_path):
  module = _SignatureOnly()
  path = str(tmp_path / "sig")
  tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
  classifier = image_metrics.SavedModelClassifier(path)
  out = classifier(tf.zeros([2, 32, 32, 3]))
  assert out["pool_3"].shape == (2, 16) and out["logits"].shape == (2, 5)


def test_missing_fid_model_says_what_to_do(tmp_path):
  with pytest.raises(FileNotFoundError, match="scenes FID"):
    image_metrics.SavedModelClassifier(str(tmp_path / "nope"))


def test_scene_classifier_tiny_train_and_scenes_quality():
  config = image_metrics.SceneClassifierConfig(filters=(8, 8, 8, 8), feature_dim=8,
                                               train_scenes=64, epochs=1, batch_size=32)
  classifier = image_metrics.train_scene_classifier(config)
  from lorbms_tf.data import scenes
  data = scenes.generate_scenes(40, seed=5)
  pred = classifier.predict(data["image"])
  assert pred["features"].shape == (40, 32) and pred["shapes"].shape == (40, 4)
  acc = classifier.accuracy(data["image"], data["shapes"], data["colors"])
  assert 0.0 <= acc["shape_accuracy"] <= 1.0
  real = data["image"][:20].astype(np.float32) / 127.5 - 1
  fake = data["image"][20:].astype(np.float32) / 127.5 - 1
  quality = image_metrics.scenes_quality(classifier, real, fake, is_splits=2)
  assert set(quality) >= {"scenes_fid", "scenes_is", "scenes_kid", "scenes_fid_real_halves"}
