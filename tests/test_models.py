"""Network shapes and sizes; presets."""

import numpy as np
import pytest
import tensorflow as tf

from lorbms_tf import conventions
from lorbms_tf.models import (build_classifier, build_decoder, build_discriminator, build_encoder,
                              count_params, get_preset, ModelConfig)


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_shapes(preset):
  config = get_preset(preset)
  images = tf.random.uniform([2, 64, 64, 3], -1, 1)
  chunks = build_encoder(config)(images)
  assert chunks.shape == (2, conventions.GRID, conventions.GRID, config.chunk_channels)
  decoded = build_decoder(config)(chunks)
  assert decoded.shape == (2, 64, 64, 3)
  assert float(tf.reduce_min(decoded)) >= -1 and float(tf.reduce_max(decoded)) <= 1
  discriminator = build_discriminator(config)
  assert discriminator(images).shape == (2, 4, 4, 1)
  assert discriminator.features(images).shape == (2, 4, 4, config.discriminator_filters[-1])
  assert build_classifier(config)(tf.concat([images, images], -1)).shape == (2, 4)


def test_probe_resolution_gives_a_3x3_grid():
  config = get_preset("tiny")
  encoder = build_encoder(config, image_size=96)
  assert encoder(tf.zeros([1, 96, 96, 3])).shape == (1, 3, 3, config.chunk_channels)
  assert build_discriminator(config, 96).features(tf.zeros([1, 96, 96, 3])).shape[1:3] == (6, 6)


def test_coco_preset_has_the_original_sizes():
  config = get_preset("coco")
  assert count_params(build_discriminator(config)) == 1_188_391  # the thesis's number, exactly
  assert 2.7e6 < count_params(build_encoder(config)) < 2.9e6  # ~2.8M
  assert 5.1e6 < count_params(build_decoder(config)) < 5.5e6  # ~5.3M
  assert build_encoder(config)(tf.zeros([1, 64, 64, 3])).shape == (1, 2, 2, 192)


def test_unknown_preset_and_bad_sizes_are_clear_errors():
  with pytest.raises(ValueError, match="unknown model preset 'huge'"):
    get_preset("huge")
  with pytest.raises(ValueError, match="5 dense blocks"):
    ModelConfig(encoder_blocks=(1, 2))
  assert ModelConfig.from_dict(get_preset("coco").to_dict()) == get_preset("coco")


@pytest.mark.parametrize("norm", ["instance", "batch", "pixel", "none"])
def test_every_normalisation_builds_and_keeps_the_sizes(norm):
  base = get_preset("tiny")
  config = ModelConfig(**{**base.to_dict(), "encoder_norm": norm, "decoder_norm": norm,
                          "decoder_spectral_norm": norm != "none"})
  images = tf.random.uniform([2, 64, 64, 3], -1, 1)
  encoder, decoder = build_encoder(config), build_decoder(config)
  chunks = encoder(images, training=True)
  assert chunks.shape == (2, 2, 2, config.chunk_channels)
  assert decoder(chunks, training=True).shape == (2, 64, 64, 3)
  assert ModelConfig.from_dict(config.to_dict()) == config


def test_instance_norm_makes_a_chunk_depend_on_the_other_quadrants():
  """Why the demo's encoder uses batch norm: with the thesis's instance norm, the chunk of an
  unchanged quadrant moves when another quadrant changes (its statistics are per image), so a
  chunk is not a description of its own quadrant; with batch norm (inference) it moves far less."""
  base = get_preset("tiny")
  images = tf.random.uniform([1, 64, 64, 3], -1, 1, seed=1)
  changed = tf.concat([images[:, :32], images[:, 32:] * 0.2], axis=1)  # only BL, BR change
  drift = {}
  for norm in ("instance", "batch"):
    tf.keras.utils.set_random_seed(0)
    encoder = build_encoder(ModelConfig(**{**base.to_dict(), "encoder_norm": norm}))
    before, after = encoder(images), encoder(changed)
    tl_tr = lambda c: c[:, 0].numpy()  # noqa: E731  (top row: TL, TR)
    drift[norm] = float(np.abs(tl_tr(before) - tl_tr(after)).mean()
                        / (np.abs(tl_tr(before)).mean() + 1e-9))
  assert drift["instance"] > 2 * drift["batch"], drift


def test_unknown_normalisation_is_a_clear_error():
  with pytest.raises(ValueError, match="unknown normalisation 'layer'"):
    ModelConfig(encoder_norm="layer")


def _spectral_norm_after_two_training_calls(cls, policy):
  import keras
  previous = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy(policy)
  try:
    keras.utils.set_random_seed(0)
    x = tf.random.normal([2, 8, 8, 3], seed=0)
    layer = cls(keras.layers.Conv2D(4, 3, padding="same"))
    layer.build(x.shape)
    call = tf.function(lambda t: layer(t, training=True))
    outputs = [call(x) for _ in range(2)]
    return [np.asarray(o, np.float32) for o in outputs], layer.kernel.numpy(), layer.vector_u.numpy()
  finally:
    keras.mixed_precision.set_global_policy(previous)


def test_spectral_norm_is_keras_in_float32_and_keeps_float32_weights_under_bf16():
  import keras
  from lorbms_tf.models.layers import SpectralNorm
  keras_out, keras_kernel, keras_u = _spectral_norm_after_two_training_calls(
      keras.layers.SpectralNormalization, "float32")
  ours_out, ours_kernel, ours_u = _spectral_norm_after_two_training_calls(SpectralNorm, "float32")
  for a, b in zip(keras_out + [keras_kernel, keras_u], ours_out + [ours_kernel, ours_u]):
    np.testing.assert_array_equal(a, b)  # no cond, same arithmetic
  # Under mixed bf16 the stored float32 kernel must not be rounded to bf16 (Keras's is: its
  # low 16 mantissa bits are all zero), and it equals the float32 run's.
  _, keras_bf16, _ = _spectral_norm_after_two_training_calls(
      keras.layers.SpectralNormalization, "mixed_bfloat16")
  _, ours_bf16, _ = _spectral_norm_after_two_training_calls(SpectralNorm, "mixed_bfloat16")
  low_bits = lambda w: w.view(np.uint32) & 0xFFFF  # noqa: E731
  assert (low_bits(keras_bf16) == 0).all()  # the Keras behaviour this class fixes
  assert (low_bits(ours_bf16) != 0).any()
  np.testing.assert_allclose(ours_bf16, ours_kernel, rtol=1e-6, atol=1e-7)


def test_discriminator_spectral_norm_is_an_option_over_the_preset():
  from lorbms_tf import train_lib
  from lorbms_tf.models.layers import SpectralNorm
  thesis = build_discriminator(get_preset("tiny"))
  assert [isinstance(c, SpectralNorm) for c in thesis.convs] == [False, True, True, True]
  config = train_lib.TrainConfig(workdir="w", preset="tiny",
                                 discriminator_spectral_norm=False).model_config()
  plain = build_discriminator(config)
  assert not any(isinstance(c, SpectralNorm) for c in plain.convs)
  assert count_params(plain) == count_params(thesis)  # the same convs, only not normalised
  images = tf.random.uniform([2, 64, 64, 3], -1, 1)
  assert plain(images, training=True).shape == (2, 4, 4, 1)
  assert train_lib.TrainConfig(workdir="w").model_config().discriminator_spectral_norm  # preset's


def test_project_chunks_lays_each_chunk_map_over_its_own_quadrant():
  from lorbms_tf.models.decoder import project_chunks
  p, depth = 4, 3
  projected = tf.random.uniform([2, conventions.GRID, conventions.GRID, p * p * depth], seed=3)
  laid_out = project_chunks(projected, p)
  np.testing.assert_array_equal(laid_out.numpy(), tf.nn.depth_to_space(projected, p).numpy())
  # chunk (row 1, col 0) = BL: its map is the p x p block at rows p.., cols ..p
  bl_map = tf.reshape(projected[:, 1, 0], [2, p, p, depth])
  np.testing.assert_array_equal(laid_out[:, p:, :p].numpy(), bl_map.numpy())


@pytest.mark.parametrize("projection,spectral_norm", [(2, False), (4, True), (16, False)])
def test_decoder_projection_replaces_the_first_upsampling_stages(projection, spectral_norm):
  base = get_preset("tiny")
  config = ModelConfig(**{**base.to_dict(), "decoder_projection": projection,
                          "decoder_spectral_norm": spectral_norm})
  decoder = build_decoder(config)
  chunks = tf.random.normal([2, 2, 2, config.chunk_channels], seed=4)
  with tf.GradientTape() as tape:
    images = decoder(chunks, training=True)
    loss = tf.reduce_mean(images ** 2)
  assert images.shape == (2, 64, 64, 3)
  grads = tape.gradient(loss, decoder.trainable_variables)
  assert all(g is not None and float(tf.reduce_sum(tf.abs(g))) > 0 for g in grads)
  replaced = projection.bit_length() - 1
  assert len(decoder.up_convs) == 5 - replaced  # the first log2(p) up-convs are not built
  assert ModelConfig.from_dict(config.to_dict()) == config


def test_bad_decoder_projection_is_a_clear_error():
  with pytest.raises(ValueError, match="decoder_projection must be one of"):
    ModelConfig(decoder_projection=3)
