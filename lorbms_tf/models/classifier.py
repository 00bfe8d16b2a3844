"""AlexNet-style CNNs with batch norm: the quadrant classifier C, and the knowledge-transfer net.

Both are one family (``AlexNetStyle``): the same conv trunk and dense layers, sized by
``ModelConfig.classifier_filters`` / ``classifier_dense``, differing only in what goes in and
how many logits come out.
"""

from __future__ import annotations

from typing import Sequence

import keras
from keras import layers, ops

from lorbms_tf import conventions
from lorbms_tf.models.presets import ModelConfig


class AlexNetStyle(keras.Model):
  """AlexNet's shape at 64 px with batch norm: conv trunk -> dense layers -> ``num_logits``.

  Batch norm is synchronised across replicas so a step under MirroredStrategy sees the
  statistics of the global batch (and equals one-device training).
  """

  def __init__(self, filters: Sequence[int], dense: Sequence[int], num_logits: int, **kwargs):
    super().__init__(**kwargs)
    # The attributes are assigned in this order on purpose: Keras lists a model's weights in
    # the order its layers were tracked, and checkpoints store C's weights as that ordered
    # list, so reordering them would break every existing checkpoint.
    # AlexNet's shape at 64 px: a wide strided first conv, pooling after convs 1, 2 and 4.
    self.convs = [layers.Conv2D(filters[0], 5, strides=2, padding="same")]
    self.convs += [layers.Conv2D(n, 3, padding="same") for n in filters[1:]]
    self.conv_norms = [layers.BatchNormalization(synchronized=True) for _ in filters]
    self.pool_after = {0, 1, len(filters) - 1}
    self.pool = layers.MaxPooling2D(2)
    self.flatten = layers.Flatten()
    self.dense = [layers.Dense(n) for n in dense]
    self.dense_norms = [layers.BatchNormalization(synchronized=True) for _ in dense]
    self.to_logits = layers.Dense(num_logits, name="logits")

  def conv_features(self, images, training=False):
    """The conv trunk's output, after its last pooling: [B, 4, 4, filters[-1]] at 64 px."""
    x = images
    for i, (conv, norm) in enumerate(zip(self.convs, self.conv_norms)):
      x = ops.relu(norm(conv(x), training=training))
      if i in self.pool_after:
        x = self.pool(x)
    return x

  def call(self, images, training=False):
    x = self.flatten(self.conv_features(images, training=training))
    for dense, norm in zip(self.dense, self.dense_norms):
      x = ops.relu(norm(dense(x), training=training))
    return self.to_logits(x)


class QuadrantClassifier(AlexNetStyle):
  """C: was quadrant i of I_mix replaced by the donor I_qi? The 6-channel pair (I_mix, I_qi)
  -> 4 logits.

  Applied once per quadrant with shared weights; the target for pair i is zero except at
  position i, which is mask[i].
  """

  def __init__(self, config: ModelConfig, **kwargs):
    super().__init__(config.classifier_filters, config.classifier_dense,
                     conventions.NUM_QUADRANTS, **kwargs)
    self.config = config


class TransferNet(AlexNetStyle):
  """The knowledge-transfer student (Noroozi et al. 2018): one image -> ``num_classes`` logits
  (the k-means pseudo labels of a teacher's features)."""

  def __init__(self, config: ModelConfig, num_classes: int, **kwargs):
    super().__init__(config.classifier_filters, config.classifier_dense, num_classes, **kwargs)
    self.config = config
    self.num_classes = num_classes


def build_classifier(config: ModelConfig, image_size: int = 64) -> QuadrantClassifier:
  classifier = QuadrantClassifier(config, name="classifier")
  classifier(ops.zeros((1, image_size, image_size, 2 * conventions.IMAGE_CHANNELS)))  # creates the variables
  return classifier


def build_transfer_net(config: ModelConfig, num_classes: int,
                       image_size: int = conventions.IMAGE_SIZE) -> TransferNet:
  net = TransferNet(config, num_classes, name="transfer_net")
  net(ops.zeros((1, image_size, image_size, conventions.IMAGE_CHANNELS)))  # creates the variables
  return net
