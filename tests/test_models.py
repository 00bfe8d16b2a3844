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
