"""Decoder: 2x2 chunk grid -> image in [-1, 1]."""

from __future__ import annotations

import keras
from keras import layers, ops

from lorbms_tf import conventions
from lorbms_tf.models.layers import DenseBlock, call_conv, call_norm, conv, norm_layer
from lorbms_tf.models.presets import ModelConfig


class Decoder(keras.Model):
  """Five stages of nearest-neighbour upsample, 3x3 conv, dense block; 1x1 conv, tanh.

  The thesis: spectral norm on every conv, no normalisation (`decoder_spectral_norm=True`,
  `decoder_norm="none"`). With `decoder_norm` set, each up-conv is followed by that norm: batch
  norm there removes what every sample shares and rescales what the code varies, so the
  decoder's output depends on the chunks from the first steps on (measured: see README).
  """

  def __init__(self, config: ModelConfig, **kwargs):
    super().__init__(**kwargs)
    self.config = config
    self.upsample = layers.UpSampling2D(2, interpolation="nearest")
    sn = config.decoder_spectral_norm
    self.up_convs = [conv(f, 3, spectral_norm=sn) for f in config.decoder_up_filters]
    self.up_norms = [norm_layer(config.decoder_norm) for _ in config.decoder_up_filters]
    # As in the thesis, no normalisation inside the dense blocks: a norm there would run over
    # the whole growing concatenation at every layer (most of a CPU step at 32-64 px).
    self.blocks = [DenseBlock(n, config.decoder_growth, spectral_norm=sn, norm="none")
                   for n in config.decoder_blocks]
    self.to_rgb = conv(conventions.IMAGE_CHANNELS, 1, spectral_norm=sn, name="to_rgb")

  @property
  def output_kernel(self):
    """The kernel of the last conv (for gradient-norm balancing of the losses)."""
    layer = self.to_rgb
    return layer.layer.kernel if isinstance(layer, keras.layers.SpectralNormalization) else layer.kernel

  def call(self, chunks, training=False):
    x = chunks
    for up_conv, up_norm, block in zip(self.up_convs, self.up_norms, self.blocks):
      x = call_conv(up_conv, self.upsample(x), training)
      x = ops.relu(call_norm(up_norm, x, training))
      x = block(x, training=training)
    return ops.tanh(call_conv(self.to_rgb, x, training))


def build_decoder(config: ModelConfig) -> Decoder:
  decoder = Decoder(config, name="decoder")
  decoder(ops.zeros((1, conventions.GRID, conventions.GRID, config.chunk_channels)))  # creates the variables
  return decoder
