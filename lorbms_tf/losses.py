"""LORBMS losses. Each returns a dict of named parts (``total`` first) so logs show what moved.

All are plain per-replica means; the caller divides by the number of replicas before taking
gradients (gradients are summed across replicas).
"""

from __future__ import annotations

import tensorflow as tf

from lorbms_tf import conventions


def _check_same_shape(a: tf.Tensor, b: tf.Tensor, what: str) -> None:
  if a.shape.rank is not None and b.shape.rank is not None and not a.shape.is_compatible_with(b.shape):
    raise ValueError(f"{what}: shapes {a.shape} and {b.shape} differ")


def _bce(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
  return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
      labels=tf.cast(labels, tf.float32), logits=tf.cast(logits, tf.float32)))


def reconstruction_loss(reference: tf.Tensor, reconstructed: tf.Tensor,
                        cycle_reconstructed: tf.Tensor) -> dict[str, tf.Tensor]:
  """L_rec = |I_ref - I_hat|_1 + |I_ref - I'_ref|_1 (mean absolute errors)."""
  _check_same_shape(reference, reconstructed, "reconstruction")
  _check_same_shape(reference, cycle_reconstructed, "cycle reconstruction")
  reference = tf.cast(reference, tf.float32)
  direct = tf.reduce_mean(tf.abs(reference - tf.cast(reconstructed, tf.float32)))
  cycle = tf.reduce_mean(tf.abs(reference - tf.cast(cycle_reconstructed, tf.float32)))
  return {"total": direct + cycle, "direct": direct, "cycle": cycle}


def generator_adversarial_loss(fake_logits: tf.Tensor) -> dict[str, tf.Tensor]:
  """Non-saturating G loss: -log D(I_mix), as sigmoid cross-entropy against 'real'."""
  return {"total": _bce(tf.ones_like(fake_logits), fake_logits)}


def discriminator_loss(real_logits: tf.Tensor, fake_logits: tf.Tensor) -> dict[str, tf.Tensor]:
  """D sees I_ref as real and I_mix as fake (PatchGAN: every logit of the map counts)."""
  _check_same_shape(real_logits, fake_logits, "discriminator logits")
  real = _bce(tf.ones_like(real_logits), real_logits)
  fake = _bce(tf.zeros_like(fake_logits), fake_logits)
  return {"total": real + fake, "real": real, "fake": fake}


def classifier_targets(mask: tf.Tensor) -> tf.Tensor:
  """[B, 4] mask -> [B, 4, 4] targets: for pair i, zero except position i, which is mask[i]."""
  eye = tf.eye(conventions.NUM_QUADRANTS, dtype=tf.float32)
  return eye[None] * tf.cast(mask, tf.float32)[:, :, None]


def classifier_loss(logits: tf.Tensor, mask: tf.Tensor) -> dict[str, tf.Tensor]:
  """L_cls: C(I_mix, I_qi) predicts the 4-vector target of pair i; sigmoid CE, 0.25 per pair.

  Args:
    logits: [B, 4, 4]: logits[b, i] = C(I_mix[b], I_qi[b]).
    mask: [B, 4] of {0, 1}.
  Also returns `accuracy`: how often C's logit at position i tells replaced from kept.
  """
  targets = classifier_targets(mask)
  _check_same_shape(logits, targets, "classifier logits")
  # The mean over pairs is the thesis's 0.25-weighted sum of the four per-pair losses.
  total = _bce(targets, logits)
  own_position = tf.linalg.diag_part(tf.cast(logits, tf.float32))  # [B, 4]
  accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.cast(own_position > 0, tf.float32),
                                              tf.cast(mask, tf.float32)), tf.float32))
  return {"total": total, "accuracy": accuracy}
