"""Decoder: 2x2 chunk grid -> image in [-1, 1]."""

from __future__ import annotations

import keras
from keras import layers, ops

from lorbms_tf import conventions
from lorbms_tf.models.layers import DenseBlock, sn_conv
from lorbms_tf.models.presets import ModelConfig


class Decoder(keras.Model):
  """Five stages of nearest-neighbour upsample, 3x3 SN conv, SN dense block; 1x1 SN conv, tanh."""

  def __init__(self, config: ModelConfig, **kwargs):
    super().__init__(**kwargs)
    self.config = config
    self.upsample = layers.UpSampling2D(2, interpolation="nearest")
    self.up_convs = [sn_conv(f, 3) for f in config.decoder_up_filters]
    self.blocks = [DenseBlock(n, config.decoder_growth, spectral_norm=True)
                   for n in config.decoder_blocks]
    self.to_rgb = sn_conv(conventions.IMAGE_CHANNELS, 1, name="to_rgb")

  def call(self, chunks, training=False):
    x = chunks
    for up_conv, block in zip(self.up_convs, self.blocks):
      x = ops.relu(up_conv(self.upsample(x), training=training))
      x = block(x, training=training)
    return ops.tanh(self.to_rgb(x, training=training))


def build_decoder(config: ModelConfig) -> Decoder:
  decoder = Decoder(config, name="decoder")
  decoder(ops.zeros((1, conventions.GRID, conventions.GRID, config.chunk_channels)))  # creates the variables
  return decoder
