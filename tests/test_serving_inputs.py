"""The serving signatures' input checks (export.ServingModule): every bad request is an
InvalidArgumentError that names the input, in the graph (dynamic shapes, as served)."""

import re
import types

import numpy as np
import pytest
import tensorflow as tf

from lorbms_tf import export


def _stub_networks():
  """Networks with the serving shapes and no weights: the checks are what is tested."""
  def encoder(images, training=False):
    return tf.reduce_mean(images, [1, 2], keepdims=True)[:, :1, :1] * tf.ones([1, 2, 2, 3])

  def decoder(chunks, training=False):
    return tf.zeros([tf.shape(chunks)[0], 64, 64, 3])

  def render(reference_chunks, donor_chunks, mask):
    return tf.zeros([tf.shape(reference_chunks)[0], 64, 64, 3]) + tf.reduce_sum(mask) * 0

  discriminator = types.SimpleNamespace(
      features=lambda images, training=False: tf.zeros([tf.shape(images)[0], 4, 4, 2]))
  return types.SimpleNamespace(encoder=encoder, decoder=decoder, discriminator=discriminator,
                               model=types.SimpleNamespace(render=render))


@pytest.fixture(scope="module")
def signatures():
  module = export.ServingModule(_stub_networks())
  return {name: tf.function(fn, input_signature=specs)
          for name, (fn, specs) in module.endpoints().items()}


def _mix(batch=2, size=64, donors_batch=None, mask_batch=None, dtype=np.float32):
  rng = np.random.default_rng(0)
  if dtype == np.uint8:
    image = lambda *s: rng.integers(0, 256, s).astype(np.uint8)  # noqa: E731
  else:
    image = lambda *s: rng.uniform(-1, 1, s).astype(np.float32)  # noqa: E731
  return {"reference": image(batch, size, size, 3),
          "donors": image(donors_batch or batch, 4, size, size, 3),
          "mask": np.tile(np.array([[0, 1, 0, 1]], np.float32), (mask_batch or batch, 1))}


def _rejects(fn, inputs, message):
  with pytest.raises(tf.errors.InvalidArgumentError) as error:
    fn(**{k: tf.constant(v) for k, v in inputs.items()})
  text = error.value.message.replace("\\'", "'")
  assert re.search(message, text), text[-400:]


def test_good_requests_pass(signatures):
  assert signatures["mix"](**_mix())["image"].shape == (2, 64, 64, 3)
  assert signatures["mix_uint8"](**_mix(dtype=np.uint8))["image"].shape == (2, 64, 64, 3)
  images = tf.zeros([3, 100, 80, 3])  # any size within the limits
  assert signatures["encode"](images=images)["chunks"].shape[0] == 3


def test_a_mask_for_another_batch_is_not_broadcast(signatures):
  _rejects(signatures["mix"], _mix(batch=2, mask_batch=1), "'mask' must have one row per")
  _rejects(signatures["mix_uint8"], _mix(batch=2, mask_batch=1, dtype=np.uint8),
           "'mask' must have one row per")
  _rejects(signatures["mix"], _mix(batch=2, donors_batch=1),
           "'reference' and 'donors' need the same batch")


def test_non_finite_and_out_of_range_floats_are_rejected(signatures):
  bad = _mix()
  bad["reference"][0, 3, 3, 0] = np.nan
  _rejects(signatures["mix"], bad, "'reference' must be finite")
  bad = _mix()
  bad["donors"][1, 2, 0, 0, 1] = np.inf
  _rejects(signatures["mix"], bad, "'donors' must be finite")
  _rejects(signatures["encode"], {"images": np.full([1, 64, 64, 3], 1e6, np.float32)},
           "'images' must be float32 within -1..1")
  _rejects(signatures["reconstruct"], {"images": np.full([1, 64, 64, 3], np.nan, np.float32)},
           "'images' must be finite")


def test_image_size_and_batch_limits(signatures):
  _rejects(signatures["encode"], {"images": np.zeros([1, 3, 3, 3], np.float32)},
           f"'images' must be at least {export.MIN_IMAGE_SIDE}")
  _rejects(signatures["encode_uint8"], {"images": np.zeros([1, 8, 64, 3], np.uint8)},
           "'images' must be at least")
  _rejects(signatures["encode_uint8"],
           {"images": np.zeros([1, 16, export.MAX_IMAGE_SIDE + 1, 3], np.uint8)},
           f"at most {export.MAX_IMAGE_SIDE} pixels")
  _rejects(signatures["discriminator_features_uint8"],
           {"images": np.zeros([export.MAX_BATCH + 1, 16, 16, 3], np.uint8)},
           f"'images' has a batch above the limit of {export.MAX_BATCH}")
  _rejects(signatures["mix"], _mix(size=8), "'reference' must be at least")
