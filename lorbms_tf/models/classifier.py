"""Quadrant classifier: was quadrant i of I_mix replaced by the donor I_qi?"""

from __future__ import annotations

import keras
from keras import layers, ops

from lorbms_tf import conventions
from lorbms_tf.models.presets import ModelConfig


class QuadrantClassifier(keras.Model):
  """AlexNet-style CNN with batch norm on the 6-channel pair (I_mix, I_qi) -> 4 logits.

  Applied once per quadrant with shared weights; the target for pair i is zero except at
  position i, which is mask[i]. Batch norm is synchronised across replicas so a step under
  MirroredStrategy sees the statistics of the global batch (and equals one-device training).
  """

  def __init__(self, config: ModelConfig, **kwargs):
    super().__init__(**kwargs)
    self.config = config
    f = config.classifier_filters
    # AlexNet's shape at 64 px: a wide strided first conv, pooling after convs 1, 2 and 4.
    self.convs = [layers.Conv2D(f[0], 5, strides=2, padding="same")]
    self.convs += [layers.Conv2D(n, 3, padding="same") for n in f[1:]]
    self.conv_norms = [layers.BatchNormalization(synchronized=True) for _ in f]
    self.pool_after = {0, 1, len(f) - 1}
    self.pool = layers.MaxPooling2D(2)
    self.flatten = layers.Flatten()
    self.dense = [layers.Dense(n) for n in config.classifier_dense]
    self.dense_norms = [layers.BatchNormalization(synchronized=True) for _ in config.classifier_dense]
    self.to_logits = layers.Dense(conventions.NUM_QUADRANTS, name="logits")

  def call(self, pair, training=False):
    x = pair
    for i, (conv, norm) in enumerate(zip(self.convs, self.conv_norms)):
      x = ops.relu(norm(conv(x), training=training))
      if i in self.pool_after:
        x = self.pool(x)
    x = self.flatten(x)
    for dense, norm in zip(self.dense, self.dense_norms):
      x = ops.relu(norm(dense(x), training=training))
    return self.to_logits(x)


def build_classifier(config: ModelConfig, image_size: int = 64) -> QuadrantClassifier:
  classifier = QuadrantClassifier(config, name="classifier")
  classifier(ops.zeros((1, image_size, image_size, 2 * conventions.IMAGE_CHANNELS)))  # creates the variables
  return classifier
