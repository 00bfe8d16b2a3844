"""Building blocks shared by the networks: CoordConv, instance norm, dense blocks."""

from __future__ import annotations

import keras
from keras import layers, ops


def instance_norm(name: str | None = None) -> layers.Layer:
  # Instance norm = group norm with one group per channel (tensorflow-addons is end-of-life).
  return layers.GroupNormalization(groups=-1, epsilon=1e-5, name=name)


def sn_conv(filters: int, kernel_size: int, strides: int = 1, name: str | None = None) -> layers.Layer:
  return layers.SpectralNormalization(
      layers.Conv2D(filters, kernel_size, strides=strides, padding="same"), name=name)


class CoordConv(layers.Layer):
  """Appends y and x coordinate channels in [-1, 1] (CoordConv, Liu et al. 2018)."""

  def call(self, images):
    shape = ops.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    ys = ops.linspace(-1.0, 1.0, height)
    xs = ops.linspace(-1.0, 1.0, width)
    grid_y, grid_x = ops.meshgrid(ys, xs, indexing="ij")
    coords = ops.stack([grid_y, grid_x], axis=-1)[None]
    coords = ops.cast(ops.broadcast_to(coords, (batch, height, width, 2)), images.dtype)
    return ops.concatenate([images, coords], axis=-1)

  def compute_output_shape(self, input_shape):
    return (*input_shape[:-1], input_shape[-1] + 2)


class DenseBlock(layers.Layer):
  """`num_layers` layers of [norm], ReLU, 3x3 conv (growth channels), each fed all earlier maps.

  Returns the input concatenated with every layer's output (FC-DenseNet down path).
  `spectral_norm=True` gives the decoder's variant: no norm, spectrally normalised convs.
  """

  def __init__(self, num_layers: int, growth: int, spectral_norm: bool = False, **kwargs):
    super().__init__(**kwargs)
    self.num_layers, self.growth, self.spectral_norm = num_layers, growth, spectral_norm
    self.norms = [] if spectral_norm else [instance_norm() for _ in range(num_layers)]
    self.convs = [
        sn_conv(growth, 3) if spectral_norm else layers.Conv2D(growth, 3, padding="same")
        for _ in range(num_layers)
    ]

  def call(self, x, training=False):
    for i, conv in enumerate(self.convs):
      h = x if self.spectral_norm else self.norms[i](x)
      h = conv(ops.relu(h), training=training) if self.spectral_norm else conv(ops.relu(h))
      x = ops.concatenate([x, h], axis=-1)
    return x

  def compute_output_shape(self, input_shape):
    return (*input_shape[:-1], input_shape[-1] + self.num_layers * self.growth)


class TransitionDown(layers.Layer):
  """Instance norm, ReLU, 1x1 conv (same width), 2x2 max-pool."""

  def __init__(self, filters: int, **kwargs):
    super().__init__(**kwargs)
    self.norm = instance_norm()
    self.conv = layers.Conv2D(filters, 1)
    self.pool = layers.MaxPooling2D(2)

  def call(self, x):
    return self.pool(self.conv(ops.relu(self.norm(x))))


def count_params(model: keras.Model, trainable_only: bool = True) -> int:
  weights = model.trainable_weights if trainable_only else model.weights
  return int(sum(int(ops.size(w)) for w in weights))
