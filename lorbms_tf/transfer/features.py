"""Feature layers of the transfer experiment: the teacher's, the student's, per quadrant.

* The teacher is the trained LORBMS network under test: the encoder's chunks, or the
  discriminator's layer before its logits (``linear_probe.encoder_extractor`` /
  ``discriminator_extractor``, the evaluation's own probe features).
* The student's probe features are its frozen conv trunk (``TransferNet.conv_features``), the
  part of AlexNet that knowledge transfer evaluates.
* The lorbms_scenes probes ask what a feature row says about *its* quadrant, so every map is
  average-pooled to the 2x2 quadrant grid (``quadrant_features``). For the encoder that is the
  identity (its map is the chunk grid); the discriminator and the student get one row per
  quadrant from the same whole-image pass. We chose this over running the student on each
  quadrant crop: the direct probes see the whole 64 px scene too (the encoder's chunks also
  have receptive fields reaching beyond their quadrant), and a 32 px crop would show the
  student objects at a scale it never trained on.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from lorbms_tf import conventions
from lorbms_tf.eval import linear_probe, scenes_eval

TEACHERS = ("encoder", "discriminator")


def teacher_extractor(networks, which: str) -> linear_probe.FeatureExtractor:
  """The restored run's ``which`` network as a feature layer (``checkpoints.Networks``)."""
  if which == "encoder":
    return linear_probe.encoder_extractor(networks.encoder, "encoder")
  if which == "discriminator":
    return linear_probe.discriminator_extractor(networks.discriminator, "discriminator")
  raise ValueError(f"--features must be one of {', '.join(TEACHERS)}, got {which!r}")


def student_extractor(net, name: str) -> linear_probe.FeatureExtractor:
  """A ``TransferNet``'s conv trunk, frozen: its batch norm uses the moving statistics."""
  return linear_probe.FeatureExtractor(
      name, lambda images, training=False: net.conv_features(images, training=training), net)


def pool_to_quadrants(feature_map: tf.Tensor) -> tf.Tensor:
  """[B, H, W, C] -> [B, 2, 2, C]: each quadrant's cells averaged (H, W even)."""
  b, h, w, c = feature_map.shape
  if h % conventions.GRID or w % conventions.GRID:
    raise ValueError(f"a {h}x{w} feature map does not split into {conventions.GRID}x"
                     f"{conventions.GRID} quadrants")
  grid = tf.reshape(feature_map, [-1, conventions.GRID, h // conventions.GRID,
                                  conventions.GRID, w // conventions.GRID, c])
  return tf.reduce_mean(grid, axis=[2, 4])


def quadrant_features(extractor: linear_probe.FeatureExtractor, images: np.ndarray,
                      batch_size: int = 256) -> np.ndarray:
  """[N, 64, 64, 3] -> [N, 4, C]: one feature row per quadrant, in quadrant order."""
  def pooled(x, training=False):
    return pool_to_quadrants(extractor.fn(x, training=training))
  return scenes_eval.chunk_features(pooled, images, batch_size)
