"""Generator objectives: each named variant sends exactly its own terms' gradients into G.

The autoencoder baselines of the study (``lorbms_tf.study.BUILTIN_VARIANTS``) must be what
their names say: for ``autoencoder`` no gradient of L_adv, L_cls or the cycle reaches the
encoder or the decoder, while D and C are still trained on the same pass.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from lorbms_tf import mixing, study
from lorbms_tf.lorbms import LorbmsConfig, LorbmsModel, generator_loss_weights
from lorbms_tf.models import get_preset

# Nonzero weights everywhere, so that a term that leaks into L_G changes its gradient.
WEIGHTS = dict(rec_weight=1.5, adv_weight=0.3, cls_weight=0.2, collage_weight=0.5)
# variant -> (LorbmsConfig overrides, the terms L_G must be made of)
VARIANTS = {
    "lorbms": ({}, ("direct", "cycle", "adv", "cls")),
    "autoencoder": ({"generator_losses": "autoencoder"}, ("direct",)),
    "autoencoder_cycle": ({"generator_losses": "autoencoder_cycle"}, ("direct", "cycle")),
    "no_cycle": ({"cycle_weight": 0.0}, ("direct", "adv", "cls")),
    "collage": ({"collage_weight": 0.5}, ("direct", "cycle", "adv", "cls", "collage")),
}
TERM_VALUES = {"direct": "rec_direct", "cycle": "rec_cycle", "adv": "adv_loss", "cls": "cls_loss",
               "collage": "rec_collage"}


def _images(n=4):
  from lorbms_tf.data.scenes import generate_scenes  # pylint: disable=import-outside-toplevel
  return tf.constant(generate_scenes(n, 64, seed=3)["image"].astype(np.float32) / 127.5 - 1.0)


def _model(**overrides):
  keras.utils.set_random_seed(0)
  config = LorbmsConfig(**{**WEIGHTS, "collage_weight": 0.0, **overrides})
  model = LorbmsModel(get_preset("tiny"), config)
  model.compile(*(keras.optimizers.Adam(1e-3) for _ in range(3)))
  return model


def _flat(grads):
  return np.concatenate([np.zeros(0) if g is None else np.ravel(g.numpy()) for g in grads])


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_generator_gradient_is_exactly_the_variants_terms(name):
  overrides, terms = VARIANTS[name]
  model = _model(**overrides)
  g_vars = model.generator_variables
  with tf.GradientTape(persistent=True) as tape:
    _, values = model.compute_losses({"image": _images()}, training=True)
  weights = generator_loss_weights(model.config)
  assert sorted(weights) == sorted(terms)
  total = _flat(tape.gradient(values["g_loss"], g_vars))
  expected = sum(weights[t] * _flat(tape.gradient(values[TERM_VALUES[t]], g_vars)) for t in terms)
  np.testing.assert_allclose(total, expected, rtol=1e-4, atol=1e-6)
  # Each left-out term does reach G on its own: leaving it out is what keeps it away.
  for term in set(TERM_VALUES) - set(terms):
    leak = _flat(tape.gradient(values[TERM_VALUES[term]], model.encoder.trainable_variables))
    assert np.abs(leak).max() > 0, f"{term} has no gradient into the encoder at all"
  # D and C are trained on the same pass whatever reaches G.
  for loss, variables in (("d_loss", model.discriminator.trainable_variables),
                          ("cls_loss", model.classifier.trainable_variables)):
    assert np.abs(_flat(tape.gradient(values[loss], variables))).max() > 0, loss


def test_autoencoder_train_step_moves_g_d_and_c():
  model = _model(generator_losses="autoencoder")
  networks = (model.encoder, model.decoder, model.discriminator, model.classifier)
  before = [[v.numpy().copy() for v in n.trainable_variables] for n in networks]
  model.train_step({"image": _images()})
  for network, old in zip(networks, before):
    assert any(not np.array_equal(o, v.numpy()) for o, v in zip(old, network.trainable_variables)), \
        network.name


@pytest.mark.parametrize("cycle_gradient", ["full", "stop_mixed"])
def test_latent_cycle_trains_the_decoder_only(cycle_gradient):
  """The latent cycle moves the decoder and nothing else: after one step, the encoder (and D, C)
  are where the same step without it leaves them; the decoder is not."""
  images = {"image": _images()}
  after = {}
  model = _model(cycle_weight=0.0, latent_weight=2.0, cycle_gradient=cycle_gradient)
  with tf.GradientTape() as tape:
    _, values = model.compute_losses(images, training=True)
  assert np.abs(_flat(tape.gradient(values["rec_latent"], model.decoder.trainable_variables))).max() > 0
  for weight in (0.0, 2.0):
    # A fresh model each: the step above drew mixing partners from the model's stream.
    model = _model(cycle_weight=0.0, latent_weight=weight, cycle_gradient=cycle_gradient)
    model.train_step(images)
    after[weight] = {n.name: [v.numpy() for v in n.trainable_variables]
                     for n in (model.encoder, model.decoder, model.discriminator, model.classifier)}
  for name, variables in after[0.0].items():
    same = all(np.allclose(a, b, rtol=0, atol=1e-7) for a, b in zip(variables, after[2.0][name]))
    assert same == (name != model.decoder.name), name


def test_latent_cycle_loss_is_relative_to_the_code():
  from lorbms_tf import losses  # pylint: disable=import-outside-toplevel
  code = tf.constant([[1.0, -3.0], [2.0, -2.0]])
  assert float(losses.latent_cycle_loss(code, code)) == 0.0
  np.testing.assert_allclose(float(losses.latent_cycle_loss(code * 0.5, code)), 0.5, rtol=1e-5)
  np.testing.assert_allclose(float(losses.latent_cycle_loss(code * 10, code * 20)), 0.5, rtol=1e-5)


def test_stop_mixed_cuts_the_cycle_gradient_through_i_mix_only():
  for gradient, reaches_mixed in (("full", True), ("stop_mixed", False)):
    model = _model(cycle_gradient=gradient)
    with tf.GradientTape(persistent=True) as tape:
      out, values = model.compute_losses({"image": _images()}, training=True)
    assert (tape.gradient(values["rec_cycle"], out["mixed"]) is not None) == reaches_mixed, gradient
    # The cycle still trains the encoder (its reading of I_mix) and the decoder's second pass.
    grads = tape.gradient(values["rec_cycle"], model.generator_variables)
    assert np.abs(_flat(grads)).max() > 0, gradient


def test_separate_decoder_batches_only_change_batch_statistics():
  images = _images()
  outs = {}
  for batches in ("joint", "separate"):
    model = _model(decoder_batches=batches)
    outs[batches] = model.generator_pass(images, training=False)  # moving statistics: no effect
  np.testing.assert_allclose(outs["joint"]["mixed"], outs["separate"]["mixed"], atol=1e-5)
  np.testing.assert_allclose(outs["joint"]["reconstructed"], outs["separate"]["reconstructed"],
                             atol=1e-5)


def test_quadrant_collage_takes_each_replaced_quadrant_from_its_donor():
  reference = tf.zeros([1, 4, 4, 1])
  donors = tf.reshape(tf.range(1, 5, dtype=tf.float32), [1, 4, 1, 1, 1]) * tf.ones([1, 4, 4, 4, 1])
  collage = mixing.quadrant_collage(reference, donors, tf.constant([[0.0, 1.0, 1.0, 0.0]]))
  np.testing.assert_array_equal(collage[0, :, :, 0].numpy(),
                                [[0, 0, 2, 2], [0, 0, 2, 2], [3, 3, 0, 0], [3, 3, 0, 0]])


def test_default_objective_is_the_thesis_sum():
  weights = generator_loss_weights(LorbmsConfig())
  c = LorbmsConfig()
  assert weights == {"direct": c.rec_weight, "cycle": c.rec_weight, "adv": c.adv_weight,
                     "cls": c.cls_weight}


@pytest.mark.parametrize("bad", [dict(generator_losses="gan"), dict(cycle_gradient="half"),
                                 dict(decoder_batches="two"), dict(cycle_weight=-1.0),
                                 dict(collage_weight=-0.1), dict(latent_weight=-1.0)])
def test_bad_objective_settings_are_refused(bad):
  with pytest.raises(ValueError, match=next(iter(bad))):
    LorbmsConfig(**bad)


def test_study_has_the_autoencoder_baselines_and_no_cycle():
  for name, flag in (("autoencoder", "--generator_losses=autoencoder"),
                     ("autoencoder_cycle", "--generator_losses=autoencoder_cycle"),
                     ("no_cycle", "--cycle_weight=0")):
    assert study.parse_variant(name).flags == (flag,)


def test_objective_flags_reach_the_training_config():
  from absl import flags  # pylint: disable=import-outside-toplevel
  from lorbms_tf import train  # pylint: disable=import-outside-toplevel
  argv = ["train", "--workdir=/tmp/x", "--generator_losses=autoencoder_cycle", "--cycle_weight=0.5",
          "--cycle_gradient=stop_mixed", "--decoder_batches=separate", "--collage_weight=2",
          "--latent_weight=0.5"]
  flags.FLAGS.unparse_flags()
  flags.FLAGS(argv)
  try:
    objective = train.config_from_flags().objective
  finally:
    flags.FLAGS.unparse_flags()
  assert (objective.generator_losses, objective.cycle_weight, objective.cycle_gradient,
          objective.decoder_batches, objective.collage_weight, objective.latent_weight) == (
              "autoencoder_cycle", 0.5, "stop_mixed", "separate", 2.0, 0.5)
