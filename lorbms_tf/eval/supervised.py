"""The supervised ceiling of the lorbms_scenes probes: the same encoder trained on the labels.

The thesis's probe tables had a supervised row; here it answers "how much of shape and colour
can this architecture's chunks hold at all?". The encoder (the run's sizes, fresh weights) and
two linear heads on each chunk (shape of quadrant i, colour of quadrant i) train with softmax
cross-entropy on training scenes; the encoder is then frozen and probed exactly like the
LORBMS encoder (``scenes_eval.quadrant_probes``).
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np
import tensorflow as tf

from lorbms_tf import conventions
from lorbms_tf.eval import scenes_eval


@dataclasses.dataclass(frozen=True)
class SupervisedConfig:
  steps: int = 600
  batch_size: int = 32
  learning_rate: float = 1e-3
  seed: int = 0


def train_supervised_encoder(model_config, train: Mapping[str, np.ndarray],
                             config: SupervisedConfig = SupervisedConfig()):
  """A fresh encoder of ``model_config`` trained on train["shapes"] and train["colors"]."""
  import keras  # pylint: disable=import-outside-toplevel
  from lorbms_tf.models import build_encoder  # pylint: disable=import-outside-toplevel
  keras.utils.set_random_seed(config.seed)
  encoder = build_encoder(model_config)
  shape_head = keras.layers.Dense(scenes_eval.NUM_SHAPE_CLASSES)
  colour_head = keras.layers.Dense(scenes_eval.NUM_COLOUR_CLASSES)
  for head in (shape_head, colour_head):
    head.build((None, model_config.chunk_channels))
  variables = (encoder.trainable_variables + shape_head.trainable_variables
               + colour_head.trainable_variables)
  optimizer = keras.optimizers.Adam(config.learning_rate)
  optimizer.build(variables)
  images = np.asarray(train["image"], np.float32)
  shapes = np.asarray(train["shapes"], np.int64)
  colours = scenes_eval.colour_classes(train["colors"])
  data = (tf.data.Dataset.from_tensor_slices((images, shapes, colours))
          .shuffle(len(images), seed=config.seed).repeat().batch(config.batch_size)
          .take(config.steps))

  @tf.function
  def step(x, y_shape, y_colour):
    with tf.GradientTape() as tape:
      chunks = conventions.chunks_to_list(encoder(x, training=True))  # [B, 4, C]
      loss = (tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
          y_shape, shape_head(chunks)))
              + tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                  y_colour, colour_head(chunks))))
    optimizer.apply(tape.gradient(loss, variables), variables)
    return loss

  for x, y_shape, y_colour in data:
    step(x, y_shape, y_colour)
  return encoder
