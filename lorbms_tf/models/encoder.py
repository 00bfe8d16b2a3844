"""Encoder: image -> 2x2 grid of chunks, one per quadrant (the 4-object assumption)."""

from __future__ import annotations

import keras
from keras import layers, ops

from lorbms_tf.models.layers import CoordConv, DenseBlock, TransitionDown
from lorbms_tf.models.presets import ModelConfig


class Encoder(keras.Model):
  """FC-DenseNet103-style down path. [B, 64, 64, 3] -> chunks [B, 2, 2, C].

  Quadrant features come from the spatial cells of the final map, not from image crops;
  at 96 px (STL-10 probes) the same network gives a 3x3 map.
  """

  def __init__(self, config: ModelConfig, **kwargs):
    super().__init__(**kwargs)
    self.config = config
    self.coord = CoordConv()
    self.stem = layers.Conv2D(config.encoder_stem_filters, 3, padding="same")
    self.blocks, self.transitions = [], []
    channels = config.encoder_stem_filters
    for num_layers in config.encoder_blocks:
      self.blocks.append(DenseBlock(num_layers, config.encoder_growth, norm=config.encoder_norm))
      channels += num_layers * config.encoder_growth
      self.transitions.append(TransitionDown(channels, norm=config.encoder_norm))
    self.to_chunks = layers.Conv2D(config.chunk_channels, 1, name="chunks")

  def call(self, images, training=False):
    x = self.stem(self.coord(images))
    for block, transition in zip(self.blocks, self.transitions):
      x = transition(block(x, training=training), training=training)
    return self.to_chunks(x)


def build_encoder(config: ModelConfig, image_size: int = 64) -> Encoder:
  encoder = Encoder(config, name="encoder")
  encoder(ops.zeros((1, image_size, image_size, 3)))  # creates the variables
  return encoder
