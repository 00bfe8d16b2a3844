"""Losses: named parts, values on hand-made inputs."""

import numpy as np
import pytest
import tensorflow as tf

from lorbms_tf import losses


def test_reconstruction_is_two_mean_absolute_errors():
  ref = tf.zeros([2, 4, 4, 3])
  out = losses.reconstruction_loss(ref, tf.fill([2, 4, 4, 3], 0.5), tf.fill([2, 4, 4, 3], -0.25))
  np.testing.assert_allclose([out["direct"], out["cycle"], out["total"]], [0.5, 0.25, 0.75])
  with pytest.raises(ValueError, match="shapes"):
    losses.reconstruction_loss(ref, tf.zeros([2, 8, 8, 3]), ref)


def test_squared_reconstruction_weighs_large_errors_more():
  ref = tf.zeros([2, 4, 4, 3])
  out = losses.reconstruction_loss(ref, tf.fill([2, 4, 4, 3], 0.5), tf.fill([2, 4, 4, 3], -0.25),
                                   distance="l2")
  np.testing.assert_allclose([out["direct"], out["cycle"], out["total"]], [0.25, 0.0625, 0.3125])
  # The property the option is for: the gradient grows with the error under l2 (a silhouette
  # error of 1 pulls 10x harder than a texture error of 0.1); under l1 both pull equally.
  rendered = tf.Variable(tf.constant([[1.0, 0.1]]))
  for distance, ratio in (("l1", 1.0), ("l2", 10.0)):
    with tf.GradientTape() as tape:
      loss = losses.pixel_distance(tf.zeros([1, 2]), rendered, distance)
    grad = tape.gradient(loss, rendered).numpy()[0]
    np.testing.assert_allclose(grad[0] / grad[1], ratio, rtol=1e-5)
  with pytest.raises(ValueError, match="unknown reconstruction distance 'l3'"):
    losses.pixel_distance(ref, ref, "l3")


def test_adversarial_losses():
  big = tf.fill([2, 4, 4, 1], 20.0)
  assert float(losses.generator_adversarial_loss(big)["total"]) < 1e-6  # D fooled: no G loss
  d = losses.discriminator_loss(real_logits=big, fake_logits=-big)
  assert float(d["total"]) < 1e-6
  np.testing.assert_allclose(float(losses.discriminator_loss(0 * big, 0 * big)["total"]),
                             2 * np.log(2), rtol=1e-6)


def test_classifier_targets_and_accuracy():
  mask = tf.constant([[0, 0, 1, 0]], tf.float32)
  targets = losses.classifier_targets(mask).numpy()[0]
  expected = np.zeros((4, 4))
  expected[2, 2] = 1  # pair 2 (donor for BL) was used: target 1 at position 2 only
  np.testing.assert_array_equal(targets, expected)
  perfect = tf.constant((expected * 40 - 20)[None], tf.float32)
  out = losses.classifier_loss(perfect, mask)
  assert float(out["total"]) < 1e-6 and float(out["accuracy"]) == 1.0
  assert float(losses.classifier_loss(-perfect, mask)["accuracy"]) == 0.0

