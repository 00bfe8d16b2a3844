"""PatchGAN discriminator: 64 px image -> 4x4 map of real/fake logits."""

from __future__ import annotations

import keras
from keras import layers, ops

from lorbms_tf.models.layers import call_conv, conv
from lorbms_tf.models.presets import ModelConfig


class Discriminator(keras.Model):
  """Four 4x4 stride-2 convs with LeakyReLU (spectral norm on convs 2-4), then 1x1 conv.

  With `discriminator_spectral_norm=False` no conv is spectrally normalised.
  """

  def __init__(self, config: ModelConfig, **kwargs):
    super().__init__(**kwargs)
    self.config = config
    filters = config.discriminator_filters
    self.convs = [layers.Conv2D(filters[0], 4, strides=2, padding="same")]
    self.convs += [conv(f, 4, strides=2, spectral_norm=config.discriminator_spectral_norm)
                   for f in filters[1:]]
    self.activation = layers.LeakyReLU(0.2)
    self.to_logits = layers.Conv2D(1, 1, name="logits")

  def features(self, images, training=False):
    """The layer before the logits ([B, 4, 4, 336] at 64 px; 6x6 at 96 px): probe features."""
    x = images
    for conv in self.convs:
      x = self.activation(call_conv(conv, x, training))
    return x

  def call(self, images, training=False):
    return self.to_logits(self.features(images, training=training))


def build_discriminator(config: ModelConfig, image_size: int = 64) -> Discriminator:
  discriminator = Discriminator(config, name="discriminator")
  discriminator(ops.zeros((1, image_size, image_size, 3)))  # creates the variables
  return discriminator
