"""Linear probes: synthetic separable features, the STL-10 fold path under tfds mock data."""

import keras
import numpy as np
import pytest
import tensorflow_datasets as tfds

from lorbms_tf.eval import linear_probe


def _blobs(n, dim=10, classes=4, seed=0):
  rng = np.random.default_rng(seed)
  centres = np.random.default_rng(99).normal(scale=4.0, size=(classes, dim))
  labels = rng.integers(0, classes, n)
  return centres[labels] + rng.normal(size=(n, dim)), labels


def test_probe_learns_separable_problem_and_counts_params():
  x_train, y_train = _blobs(400)
  x_test, y_test = _blobs(200, seed=1)
  config = linear_probe.ProbeConfig(epochs=15, batch_size=64, learning_rate=1e-2)
  result = linear_probe.train_linear_probe(x_train, y_train, x_test, y_test, 4, config)
  assert result.accuracy > 0.25 + 0.5  # chance is 25%
  assert result.num_params == 10 * 4 + 4 == linear_probe.probe_param_count(10, 4)
  assert result.feature_dim == 10 and result.num_test == 200
  assert linear_probe.probe_param_count(3 * 3 * 192, 10) == 17_290  # the thesis's encoder probe
  assert linear_probe.probe_param_count(6 * 6 * 336, 10) == 120_970  # ... and discriminator


def test_quadrant_probe_per_position_and_baseline():
  rng = np.random.default_rng(0)
  shapes = rng.integers(0, 3, size=(120, 4))
  chunks = np.eye(3)[shapes] * 3.0 + rng.normal(scale=0.3, size=(120, 4, 3))  # [N, 4, C]
  config = linear_probe.ProbeConfig(epochs=20, batch_size=64, learning_rate=1e-2)
  result = linear_probe.quadrant_probe(chunks[:80], shapes[:80], chunks[80:], shapes[80:], 3,
                                       config)
  assert result.accuracy > 0.9 and result.num_params == 3 * 3 + 3
  assert {f"accuracy_{q}" for q in ("TL", "TR", "BL", "BR")} <= set(result.extra)
  assert 0.2 < result.extra["majority_baseline"] < 0.6
  assert "predictions" not in result.to_dict()


def _tiny_extractor(name, seed):
  keras.utils.set_random_seed(seed)
  net = keras.Sequential([keras.Input([96, 96, 3]),
                          keras.layers.Conv2D(4, 8, strides=8),
                          keras.layers.MaxPool2D(4)])
  return linear_probe.FeatureExtractor(
      name, lambda images, training=False: net(images, training=training), net)


def test_stl10_fold_probes_under_mock_data(data_dir):
  config = linear_probe.ProbeConfig(epochs=2, batch_size=8)
  extractors = [_tiny_extractor("encoder", 0), _tiny_extractor("random encoder", 1)]
  with tfds.testing.mock_data(num_examples=20):
    frozen = linear_probe.stl10_linear_probes(extractors, data_dir, config, num_folds=2)
    tuned = linear_probe.stl10_linear_probes(
        extractors[:1], data_dir, config, num_folds=1, augment=True, fine_tune=("encoder",),
        make_fine_tune_copy=lambda name: _tiny_extractor(name, 2))
  assert set(frozen) == {"encoder", "random encoder"}
  summary = frozen["encoder"]
  assert len(summary.accuracies) == 2 and 0.0 <= summary.mean <= 1.0
  assert summary.num_params == 3 * 3 * 4 * 10 + 10 and summary.feature_dim == 36
  assert set(tuned) == {"encoder", "encoder (fine-tuned)"}
  assert tuned["encoder (fine-tuned)"].num_params == summary.num_params
  assert summary.to_dict()["std"] >= 0


def test_fine_tune_without_copy_factory_is_an_error(data_dir):
  with tfds.testing.mock_data(num_examples=10):
    with pytest.raises(ValueError, match="make_fine_tune_copy"):
      linear_probe.stl10_linear_probes([_tiny_extractor("encoder", 0)], data_dir,
                                       linear_probe.ProbeConfig(epochs=1), num_folds=1,
                                       fine_tune=("encoder",))
