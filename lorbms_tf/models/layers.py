"""Building blocks shared by the networks: CoordConv, normalisation, dense blocks."""

from __future__ import annotations

import keras
from keras import layers, ops
# Not re-exported by keras.* (Keras 3.x): the scope under which a layer reads float variables
# in its compute dtype; AutocastScope(None) reads them as stored.
from keras.src.backend.common.variables import AutocastScope

# Normalisations a network can use (ModelConfig.encoder_norm / decoder_norm):
#   instance: per sample and channel over all positions (the thesis). On the encoder's last
#             4x4 map it makes each chunk relative to the other three quadrants of its image.
#   batch:    per channel over the batch (synchronised across replicas); keeps each sample's
#             own statistics, so a chunk describes its quadrant alone.
#   pixel:    per sample and position over channels (layer norm of each feature vector):
#             never mixes positions, so it cannot carry one quadrant into another's chunk.
#   none:     no normalisation.
NORMS = ("instance", "batch", "pixel", "none")


def check_norm(kind: str) -> str:
  if kind not in NORMS:
    raise ValueError(f"unknown normalisation {kind!r}; choose one of {NORMS}")
  return kind


def norm_layer(kind: str, name: str | None = None) -> layers.Layer:
  check_norm(kind)
  if kind == "instance":
    # Instance norm = group norm with one group per channel (tensorflow-addons is end-of-life).
    return layers.GroupNormalization(groups=-1, epsilon=1e-5, name=name)
  if kind == "batch":
    # momentum 0.9, not Keras's 0.99: inference statistics that follow a run of a few hundred
    # steps (0.99 still lags the weights by ~100 steps, and early evaluations suffer).
    return layers.BatchNormalization(momentum=0.9, synchronized=True, name=name)
  if kind == "pixel":
    return layers.LayerNormalization(axis=-1, epsilon=1e-5, name=name)
  return layers.Identity(name=name)


def instance_norm(name: str | None = None) -> layers.Layer:
  return norm_layer("instance", name)


@keras.saving.register_keras_serializable(package="lorbms_tf")
class SpectralNorm(layers.SpectralNormalization):
  """Keras's SpectralNormalization (same variables, same power iteration), with two fixes.

  * Precision: Keras computes the normalised kernel inside the layer's autocast scope, so
    under a mixed policy (bf16 on CPU, fp16 on GPU) it reads the float32 kernel as bf16/fp16
    and writes it back rounded, every training call: the master weights keep only 8 (bf16)
    mantissa bits and Adam updates smaller than that are lost. Here it is computed in float32.
  * Tracing time: Keras wraps the update in `ops.cond(kernel == 0, ...)` (a guard for
    all-zero kernels, which our initialisers never make); under `tf.function` each cond is
    traced as a function with its own gradient, ~40% of the time to trace a training step of
    the `tiny` preset (most of every training test's time).
  In float32 the result is bit-identical to Keras's (tests/test_models.py).
  """

  def call(self, inputs, training=False):
    if training:
      with AutocastScope(None):  # read the variables as stored (float32), not autocast
        new_vector_u, new_kernel = self.normalized_weights()
      self.vector_u.assign(new_vector_u)
      self.kernel.assign(new_kernel)
    return ops.cast(self.layer(inputs), inputs.dtype)


def conv(filters: int, kernel_size: int, strides: int = 1, spectral_norm: bool = False,
         name: str | None = None) -> layers.Layer:
  """A 'same'-padded conv, spectrally normalised when asked (SN layers need `training=`)."""
  layer = layers.Conv2D(filters, kernel_size, strides=strides, padding="same",
                        name=None if spectral_norm else name)
  return SpectralNorm(layer, name=name) if spectral_norm else layer


def call_conv(layer: layers.Layer, x, training=False):
  """Calls a conv from `conv()`: only SpectralNormalization takes `training` (power iteration)."""
  if isinstance(layer, layers.SpectralNormalization):
    return layer(x, training=training)
  return layer(x)


def call_norm(layer: layers.Layer, x, training=False):
  if isinstance(layer, layers.BatchNormalization):
    return layer(x, training=training)
  return layer(x)


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
  The thesis's encoder uses norm="instance"; its decoder norm="none", spectral_norm=True.
  """

  def __init__(self, num_layers: int, growth: int, spectral_norm: bool = False,
               norm: str = "instance", **kwargs):
    super().__init__(**kwargs)
    self.num_layers, self.growth, self.spectral_norm = num_layers, growth, spectral_norm
    self.norm = check_norm(norm)
    self.norms = [norm_layer(norm) for _ in range(num_layers)]
    self.convs = [conv(growth, 3, spectral_norm=spectral_norm) for _ in range(num_layers)]

  def call(self, x, training=False):
    for norm, layer in zip(self.norms, self.convs):
      h = call_conv(layer, ops.relu(call_norm(norm, x, training)), training)
      x = ops.concatenate([x, h], axis=-1)
    return x

  def compute_output_shape(self, input_shape):
    return (*input_shape[:-1], input_shape[-1] + self.num_layers * self.growth)


class TransitionDown(layers.Layer):
  """Norm, ReLU, 1x1 conv (same width), 2x2 max-pool."""

  def __init__(self, filters: int, norm: str = "instance", **kwargs):
    super().__init__(**kwargs)
    self.norm = norm_layer(norm)
    self.conv = layers.Conv2D(filters, 1)
    self.pool = layers.MaxPooling2D(2)

  def call(self, x, training=False):
    return self.pool(self.conv(ops.relu(call_norm(self.norm, x, training))))


def count_params(model: keras.Model, trainable_only: bool = True) -> int:
  weights = model.trainable_weights if trainable_only else model.weights
  return int(sum(int(ops.size(w)) for w in weights))
