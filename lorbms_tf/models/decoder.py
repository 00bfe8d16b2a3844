"""Decoder: 2x2 chunk grid -> image in [-1, 1]."""

from __future__ import annotations

import keras
from keras import layers, ops

from lorbms_tf import conventions
from lorbms_tf.models.layers import (DenseBlock, SpectralNorm, call_conv, call_norm, conv,
                                     norm_layer)
from lorbms_tf.models.presets import ModelConfig


class Decoder(keras.Model):
  """Five stages of nearest-neighbour upsample, 3x3 conv, dense block; 1x1 conv, tanh.

  The thesis: spectral norm on every conv, no normalisation (`decoder_spectral_norm=True`,
  `decoder_norm="none"`). With `decoder_norm` set, each up-conv is followed by that norm: batch
  norm there removes what every sample shares and rescales what the code varies, so the
  decoder's output depends on the chunks from the first steps on (measured:
  docs/experiments/2026-11-26-ablation.md).

  With `decoder_projection=p` (ours; 0 = the thesis), one dense layer, shared by the four
  positions, maps each chunk to a p x p map of its quadrant, in place of the first log2(p)
  upsampling convs (and the dense blocks between them). A conv that upsamples a 1x1 chunk can
  vary its output within the quadrant only through zero padding and the neighbouring chunks;
  the dense layer has its own weights for every position, so where in its quadrant an object
  is drawn is a linear function of the chunk from the first step on.
  """

  def __init__(self, config: ModelConfig, **kwargs):
    super().__init__(**kwargs)
    self.config = config
    self.upsample = layers.UpSampling2D(2, interpolation="nearest")
    sn = config.decoder_spectral_norm
    # A stage is (up-conv, norm, dense block). The projection's p x p maps enter stage
    # log2(p) - 1 in place of its up-conv; the stages before it are not built.
    p = config.decoder_projection
    replaced = p.bit_length() - 1  # log2(p): 0 for the thesis's decoder
    first_stage = max(replaced - 1, 0)
    stages = range(first_stage, len(config.decoder_up_filters))
    self.projection = None
    if p:
      dense = layers.Dense(p * p * config.decoder_up_filters[first_stage], name="projection")
      self.projection = SpectralNorm(dense) if sn else dense
    self.up_convs = [conv(config.decoder_up_filters[i], 3, spectral_norm=sn)
                     for i in stages if i >= replaced]
    self.up_norms = [norm_layer(config.decoder_norm) for _ in stages]
    # As in the thesis, no normalisation inside the dense blocks: a norm there would run over
    # the whole growing concatenation at every layer (most of a CPU step at 32-64 px).
    self.blocks = [DenseBlock(config.decoder_blocks[i], config.decoder_growth, spectral_norm=sn,
                              norm="none") for i in stages]
    self.to_rgb = conv(conventions.IMAGE_CHANNELS, 1, spectral_norm=sn, name="to_rgb")

  @property
  def output_kernel(self):
    """The kernel of the last conv (for gradient-norm balancing of the losses)."""
    layer = self.to_rgb
    return layer.layer.kernel if isinstance(layer, keras.layers.SpectralNormalization) else layer.kernel

  def call(self, chunks, training=False):
    x = chunks
    projected = self.projection is not None
    if projected:
      x = project_chunks(call_conv(self.projection, x, training), self.config.decoder_projection)
    for stage, (up_norm, block) in enumerate(zip(self.up_norms, self.blocks)):
      if stage > 0 or not projected:  # the projection's output enters its stage after the up-conv
        x = call_conv(self.up_convs[stage - projected], self.upsample(x), training)
      x = ops.relu(call_norm(up_norm, x, training))
      x = block(x, training=training)
    return ops.tanh(call_conv(self.to_rgb, x, training))


def project_chunks(projected, p: int):
  """[B, G, G, p*p*F] (each chunk's p x p map, row-major) -> [B, G*p, G*p, F]: each chunk's map
  laid out over its quadrant (tf.nn.depth_to_space's order, in backend-neutral ops)."""
  _, grid, _, depth = projected.shape
  features = depth // (p * p)
  x = ops.reshape(projected, (-1, grid, grid, p, p, features))
  x = ops.transpose(x, (0, 1, 3, 2, 4, 5))  # [B, row, p_row, col, p_col, F]
  return ops.reshape(x, (-1, grid * p, grid * p, features))


def build_decoder(config: ModelConfig) -> Decoder:
  decoder = Decoder(config, name="decoder")
  decoder(ops.zeros((1, conventions.GRID, conventions.GRID, config.chunk_channels)))  # creates the variables
  return decoder
