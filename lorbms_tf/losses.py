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


# Per-pixel distances of L_rec: "l1" = the thesis's mean absolute error; "l2" = mean squared
# error (ours). L2's gradient grows with the error, so it pulls hardest where a saturated object
# and the muted background disagree (the silhouette) and barely at the texture no 2x2 code can
# carry; L1 pulls every pixel equally (docs/experiments/2026-11-27-reconstruction-distance.md).
REC_DISTANCES = ("l1", "l2")


def pixel_distance(a: tf.Tensor, b: tf.Tensor, distance: str = "l1") -> tf.Tensor:
  """Mean over all elements of |a - b| ("l1") or (a - b)^2 ("l2"), in float32."""
  diff = tf.cast(a, tf.float32) - tf.cast(b, tf.float32)
  if distance == "l1":
    return tf.reduce_mean(tf.abs(diff))
  if distance == "l2":
    return tf.reduce_mean(tf.square(diff))
  raise ValueError(f"unknown reconstruction distance {distance!r}; choose one of {REC_DISTANCES}")


def reconstruction_loss(reference: tf.Tensor, reconstructed: tf.Tensor,
                        cycle_reconstructed: tf.Tensor, distance: str = "l1") -> dict[str, tf.Tensor]:
  """L_rec = d(I_ref, I_hat) + d(I_ref, I'_ref); d = mean absolute error (the thesis) or squared."""
  _check_same_shape(reference, reconstructed, "reconstruction")
  _check_same_shape(reference, cycle_reconstructed, "cycle reconstruction")
  direct = pixel_distance(reference, reconstructed, distance)
  cycle = pixel_distance(reference, cycle_reconstructed, distance)
  return {"total": direct + cycle, "direct": direct, "cycle": cycle}


def latent_cycle_loss(remixed_chunks: tf.Tensor, mixed_chunks: tf.Tensor) -> tf.Tensor:
  """mean |Enc(I_mix) - Z_mix| / mean |Z_mix|, Z_mix a constant: scale-free, so the weight does
  not depend on the encoder's feature scale, and 1.0 means an error as large as the code."""
  _check_same_shape(remixed_chunks, mixed_chunks, "latent cycle")
  target = tf.stop_gradient(tf.cast(mixed_chunks, tf.float32))
  error = tf.reduce_mean(tf.abs(tf.cast(remixed_chunks, tf.float32) - target))
  return error / (tf.reduce_mean(tf.abs(target)) + 1e-6)


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
