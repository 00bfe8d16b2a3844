"""Scene mixing: partner choice, the three mask constraints, chunk swaps. Pure TF, batched.

Shapes (see conventions.py): chunk grids [B, 2, 2, C]; chunk lists [B, 4, C]; masks [B, 4]
float32 of {0, 1}, 1 = replaced by the donor for that quadrant.
"""

from __future__ import annotations

import tensorflow as tf

from lorbms_tf import conventions


def pairwise_chunk_distances(chunk_list: tf.Tensor) -> tf.Tensor:
  """[B, 4, C] -> [4, B, B] squared L2 between same-position chunks of every image pair."""
  # float32 even under mixed precision: squared norms overflow float16.
  per_position = tf.transpose(tf.cast(chunk_list, tf.float32), [1, 0, 2])  # [4, B, C]
  sq_norms = tf.reduce_sum(tf.square(per_position), axis=-1)  # [4, B]
  dots = tf.matmul(per_position, per_position, transpose_b=True)  # [4, B, B]
  return tf.maximum(sq_norms[:, :, None] + sq_norms[:, None, :] - 2.0 * dots, 0.0)


def batch_partners(chunk_list: tf.Tensor, rank: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """For every image and quadrant, the rank-th nearest *other* image of the batch.

  Args:
    chunk_list: [B, 4, C] chunks of the batch (the current encoder's).
    rank: [B] int32 neighbour rank per sample, 0 = nearest; must be < B - 1.
  Returns:
    donor_index [B, 4] int32 (batch index of the donor for quadrant i) and distances [B, 4].
  """
  distances = pairwise_chunk_distances(chunk_list)
  batch = tf.shape(distances)[1]
  # An image is never its own partner.
  distances = tf.where(tf.eye(batch, dtype=tf.bool)[None], tf.constant(float("inf"), distances.dtype),
                       distances)
  order = tf.argsort(distances, axis=-1, stable=True)  # [4, B, B], nearest first
  rank = tf.broadcast_to(tf.cast(rank, tf.int32)[None, :, None], [conventions.NUM_QUADRANTS, batch, 1])
  donor_index = tf.gather(order, rank, axis=-1, batch_dims=2)[..., 0]  # [4, B]
  donor_distance = tf.gather(distances, donor_index[..., None], axis=-1, batch_dims=2)[..., 0]
  return tf.transpose(donor_index), tf.transpose(donor_distance)


def gather_donor_chunks(chunk_list: tf.Tensor, donor_index: tf.Tensor) -> tf.Tensor:
  """Chunk i of donor donor_index[b, i], for every b and i: [B, 4, C]."""
  per_position = tf.transpose(chunk_list, [1, 0, 2])  # [4, B, C]
  donors = tf.gather(per_position, tf.transpose(donor_index), axis=1, batch_dims=1)  # [4, B, C]
  return tf.transpose(donors, [1, 0, 2])


def select_donor_chunks(candidate_chunks: tf.Tensor) -> tf.Tensor:
  """[B, 4, 2, 2, C] chunk grids of the 4 candidates -> [B, 4, C]: chunk i of candidate i.

  A replacement image for quadrant i is encoded whole; only its chunk i is used.
  """
  channels = candidate_chunks.shape[-1]
  n = conventions.NUM_QUADRANTS
  flat = tf.reshape(candidate_chunks, [-1, n, n, channels])  # [B, candidate, position, C]
  diagonal = tf.linalg.diag_part(tf.transpose(flat, [0, 3, 1, 2]))  # [B, C, 4]
  return tf.transpose(diagonal, [0, 2, 1])


def distance_threshold(distances: tf.Tensor, quantile: float) -> tf.Tensor:
  """The `quantile` of all candidate distances (scale-free replacement for the thesis's 16,000)."""
  values = tf.sort(tf.reshape(distances, [-1]))
  count = tf.shape(values)[0]
  index = tf.cast(tf.round(quantile * tf.cast(count - 1, tf.float32)), tf.int32)
  return values[index]


def mix_mask(distances: tf.Tensor, threshold: tf.Tensor | float) -> tf.Tensor:
  """The thesis's three constraints -> [B, 4] float32 mask of {0, 1} (1 = replaced).

  1. The quadrant whose candidate is farthest is always kept (>= 1 kept).
  2. The quadrant whose candidate is nearest is always replaced (>= 1 replaced).
  3. Any other quadrant is replaced only if its candidate's distance is below `threshold`.
  So 1 to 3 quadrants are replaced, always at the same position.
  """
  distances = tf.convert_to_tensor(distances)
  nearest = tf.argmin(distances, axis=-1, output_type=tf.int32)
  always_replaced = tf.one_hot(nearest, conventions.NUM_QUADRANTS, on_value=True, off_value=False)
  # argmax over the others, so ties (all equal) still keep a different quadrant than they replace.
  others = tf.where(always_replaced, tf.constant(-float("inf"), distances.dtype), distances)
  farthest = tf.argmax(others, axis=-1, output_type=tf.int32)
  always_kept = tf.one_hot(farthest, conventions.NUM_QUADRANTS, on_value=True, off_value=False)
  below = distances < tf.cast(threshold, distances.dtype)
  replaced = always_replaced | (below & ~always_kept)
  return tf.cast(replaced, tf.float32)


def mix_chunks(reference_list: tf.Tensor, donor_list: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
  """Z_mix as a [B, 4, C] list: donor chunk where mask = 1, reference chunk where 0."""
  take_donor = tf.cast(mask, tf.bool)[..., None]
  return tf.where(take_donor, donor_list, reference_list)


def cycle_chunks(reference_list: tf.Tensor, remixed_list: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
  """Rebuilds the reference code after the second encode: chunks of Enc(I_mix) where the
  reference was kept (they should have survived decoding), Z_ref's own chunks where replaced."""
  return mix_chunks(remixed_list, reference_list, mask)


def quadrant_collage(reference: tf.Tensor, donor_images: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
  """The pixel counterpart of Z_mix: quadrant i of donor image i where mask = 1, of the
  reference where 0. reference [B, H, W, C], donor_images [B, 4, H, W, C] -> [B, H, W, C].

  Under the 4-object assumption this is what Dec(Z_mix) should show (the `collage_weight`
  option's target); where objects cross quadrant borders it is a collage with seams.
  """
  donor_images = tf.cast(donor_images, reference.dtype)
  height, width = reference.shape[1], reference.shape[2]
  rows = tf.range(height)[:, None] // (height // conventions.GRID)
  cols = tf.range(width)[None, :] // (width // conventions.GRID)
  pixel_quadrant = tf.one_hot(rows * conventions.GRID + cols, conventions.NUM_QUADRANTS,
                              dtype=reference.dtype)  # [H, W, 4]: the quadrant of each pixel
  donor_pixels = tf.einsum("hwq,bqhwc->bhwc", pixel_quadrant, donor_images)
  replaced_pixels = tf.einsum("hwq,bq->bhw", pixel_quadrant, tf.cast(mask, reference.dtype))
  return tf.where(replaced_pixels[..., None] > 0.5, donor_pixels, reference)
