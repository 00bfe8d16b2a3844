"""The light lorbms_scenes evaluation: free baselines, probes, the evaluator, the supervised row."""

import keras
import numpy as np
import pytest

from lorbms_tf import conventions
from lorbms_tf.data.scenes import generate_scenes
from lorbms_tf.eval import image_metrics, linear_probe, scenes_eval, supervised
from lorbms_tf.lorbms import LorbmsModel
from lorbms_tf.models import build_encoder, get_preset


def _scenes(n, seed):
  data = generate_scenes(n, 64, seed=seed)
  return {"image": conventions.uint8_to_unit(data["image"]), "shapes": data["shapes"],
          "colors": data["colors"]}


def test_pixel_features_are_each_quadrant_pooled_on_its_own():
  images = np.zeros([1, 64, 64, 3], np.float32)
  images[0, 32:, :32] = 1.0  # only the bottom-left quadrant is lit
  features = scenes_eval.pixel_features(images)
  assert features.shape == (1, 4, 8 * 8 * 3)
  np.testing.assert_allclose(features[0].max(-1), [0, 0, 1, 0])


def test_colour_classes_put_empty_first():
  np.testing.assert_array_equal(scenes_eval.colour_classes([[-1, 0, 7, 3]]), [[0, 1, 8, 4]])


def test_probes_read_colour_from_pixels_and_not_from_noise():
  train, test = _scenes(300, 11), _scenes(100, 12)
  config = linear_probe.ProbeConfig(epochs=40)
  pixels = scenes_eval.quadrant_probes(
      scenes_eval.pixel_features(train["image"]), train,
      scenes_eval.pixel_features(test["image"]), test, config)
  rng = np.random.default_rng(0)
  noise = scenes_eval.quadrant_probes(rng.normal(size=[300, 4, 16]), train,
                                      rng.normal(size=[100, 4, 16]), test, config)
  assert pixels["colour_probe"] > 0.8  # colour is linear in the pixels
  assert noise["colour_probe"] < pixels["colour_majority"] + 0.1  # noise: about the majority
  assert 0.1 < pixels["shape_majority"] < 0.4


def test_standardizing_uses_training_statistics_only():
  train = np.array([[0.0, 10.0], [2.0, 30.0]])
  test = np.array([[1.0, 20.0]])
  train_z, test_z = linear_probe.standardize(train, test)
  np.testing.assert_allclose(train_z.mean(0), 0, atol=1e-6)
  np.testing.assert_allclose(test_z, [[0.0, 0.0]], atol=1e-6)


def test_evaluator_runs_every_headline_metric_on_a_tiny_model():
  train, test = _scenes(64, 21), _scenes(32, 22)
  classifier = image_metrics.SceneClassifier(image_metrics.SceneClassifierConfig(
      train_scenes=32, epochs=1))
  classifier.fit(test["image"], test["shapes"], test["colors"])
  evaluator = scenes_eval.ScenesEvaluator(train, test, classifier, scenes_eval.ScenesEvalConfig(
      num_test=32, num_probe_train=64, probe_epochs=2, mixing_batch_size=8))
  keras.utils.set_random_seed(0)
  model = LorbmsModel(get_preset("tiny"))
  row = evaluator.run(model)
  assert set(scenes_eval.HIGHER_IS_BETTER) <= set(row)
  for name in ("shape_probe", "colour_probe", "fidelity_shape", "fidelity_object",
               "mask_cls_accuracy"):
    assert 0.0 <= row[name] <= 1.0, name
  assert row["rec_l1"] > 0 and np.isfinite(row["scenes_fid"])
  assert 1 <= row["replaced_quadrants"] <= 3
  assert evaluator.run(model) == row  # deterministic for fixed weights
  baselines = evaluator.baseline_rows(build_encoder(get_preset("tiny")))
  assert set(baselines) == {"raw pixels (8x8x3 per quadrant)", "random encoder"}


@pytest.mark.slow
def test_supervised_ceiling_learns_colour_that_a_random_encoder_lacks():
  train, test = _scenes(512, 31), _scenes(128, 32)
  config = get_preset("tiny")
  trained = supervised.train_supervised_encoder(
      config, train, supervised.SupervisedConfig(steps=150, batch_size=32, learning_rate=3e-3))
  keras.utils.set_random_seed(0)
  random_encoder = build_encoder(config)
  probe = linear_probe.ProbeConfig(epochs=30)

  def probes(encoder):
    return scenes_eval.quadrant_probes(
        scenes_eval.chunk_features(encoder, train["image"]), train,
        scenes_eval.chunk_features(encoder, test["image"]), test, probe)
  supervised_row, random_row = probes(trained), probes(random_encoder)
  assert supervised_row["colour_probe"] > random_row["colour_probe"] + 0.1, (supervised_row,
                                                                             random_row)
