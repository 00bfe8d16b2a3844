"""Scene mixing: the three constraints, partner choice, chunk swaps, mask format."""

import numpy as np
import pytest
import tensorflow as tf

from lorbms_tf import conventions, mixing


def test_constraints_hold_over_many_random_batches():
  rng = np.random.default_rng(0)
  for trial in range(200):
    distances = rng.gamma(2.0, 5.0, size=(16, 4)).astype(np.float32)
    if trial % 10 == 0:  # ties, including all-equal rows
      distances[:4] = 3.0
    threshold = float(mixing.distance_threshold(distances, rng.uniform()))
    mask = mixing.mix_mask(distances, threshold).numpy()
    replaced = mask.sum(axis=1)
    assert set(np.unique(mask)) <= {0.0, 1.0}
    assert replaced.min() >= 1, "constraint 2: at least one quadrant replaced"
    assert replaced.max() <= 3, "constraint 1: at least one quadrant kept"
    rows = np.arange(len(distances))
    assert (mask[rows, distances.argmin(1)] == 1).all(), "nearest candidate is always replaced"
    # Constraint 3: a replaced quadrant other than the forced one is below the threshold.
    forced = np.zeros_like(mask, bool)
    forced[rows, distances.argmin(1)] = True
    assert (distances[(mask == 1) & ~forced] < threshold).all()
    # And every quadrant below the threshold is replaced unless it is the one kept.
    below_not_replaced = (distances < threshold) & (mask == 0)
    assert (below_not_replaced.sum(1) <= 1).all()


def test_threshold_extremes():
  distances = tf.constant([[1.0, 2.0, 3.0, 4.0]])
  assert mixing.mix_mask(distances, 0.0).numpy().tolist() == [[1, 0, 0, 0]]
  assert mixing.mix_mask(distances, 100.0).numpy().tolist() == [[1, 1, 1, 0]]
  assert conventions.mask_to_string(mixing.mix_mask(distances, 2.5).numpy()[0]) == "1100"


def test_distance_threshold_is_the_quantile():
  values = tf.constant(np.arange(101, dtype=np.float32).reshape(1, 101))
  assert float(mixing.distance_threshold(values, 0.5)) == 50.0
  assert float(mixing.distance_threshold(values, 0.0)) == 0.0
  assert float(mixing.distance_threshold(values, 1.0)) == 100.0


def test_mask_string_format_round_trips_and_rejects_bad_input():
  assert conventions.mask_to_string([0, 0, 1, 0]) == "0010"
  np.testing.assert_array_equal(conventions.parse_mask("0010"), [0, 0, 1, 0])
  for bad in ("001", "0020", "00100", "abcd"):
    with pytest.raises(ValueError, match="TL,TR,BL,BR"):
      conventions.parse_mask(bad)


def test_batch_partners_are_the_nearest_other_image_per_quadrant():
  rng = np.random.default_rng(1)
  chunks = rng.normal(size=(6, 4, 8)).astype(np.float32)
  donor, dist = mixing.batch_partners(tf.constant(chunks), tf.zeros([6], tf.int32))
  donor, dist = donor.numpy(), dist.numpy()
  for b in range(6):
    for q in range(4):
      d = ((chunks[:, q] - chunks[b, q]) ** 2).sum(-1)
      d[b] = np.inf
      assert donor[b, q] == d.argmin() and donor[b, q] != b
      np.testing.assert_allclose(dist[b, q], d.min(), rtol=1e-4, atol=1e-4)
  # rank 1 = second nearest
  donor1, dist1 = mixing.batch_partners(tf.constant(chunks), tf.ones([6], tf.int32))
  assert (dist1.numpy() >= dist - 1e-5).all() and (donor1.numpy() != np.arange(6)[:, None]).all()


def test_chunk_selection_and_swaps_follow_the_quadrant_order():
  b, c = 2, 3
  # Candidate j's chunk grid holds the value 10*j + position everywhere.
  grid = np.zeros((b, 4, 2, 2, c), np.float32)
  for j in range(4):
    for pos in range(4):
      grid[:, j, pos // 2, pos % 2] = 10 * j + pos
  donors = mixing.select_donor_chunks(tf.constant(grid)).numpy()  # [B, 4, C]
  np.testing.assert_array_equal(donors[0, :, 0], [0, 11, 22, 33])  # chunk i of candidate i
  reference = tf.fill([b, 4, c], -1.0)
  mask = tf.constant([[0, 0, 1, 0], [1, 0, 0, 1]], tf.float32)
  mixed = mixing.mix_chunks(reference, tf.constant(donors), mask).numpy()
  np.testing.assert_array_equal(mixed[0, :, 0], [-1, -1, 22, -1])
  np.testing.assert_array_equal(mixed[1, :, 0], [0, -1, -1, 33])
  # Cycle: Enc(I_mix)'s chunks where kept, the reference's own chunks where replaced.
  remixed = tf.fill([b, 4, c], 7.0)
  cycle = mixing.cycle_chunks(reference, remixed, mask).numpy()
  np.testing.assert_array_equal(cycle[0, :, 0], [7, 7, -1, 7])


def test_chunk_grid_and_image_quadrants_share_one_order():
  grid = tf.reshape(tf.range(4, dtype=tf.float32), [1, 2, 2, 1])
  np.testing.assert_array_equal(conventions.chunks_to_list(grid).numpy().ravel(), [0, 1, 2, 3])
  np.testing.assert_array_equal(conventions.list_to_chunks(conventions.chunks_to_list(grid)), grid)
  image = np.zeros((1, 4, 4, 1), np.float32)
  for i in range(4):
    y0, x0, y1, x1 = conventions.quadrant_box(i, 4)
    image[0, y0:y1, x0:x1] = i
  quads = conventions.image_quadrants(tf.constant(image)).numpy()
  for i, name in enumerate(conventions.QUADRANT_NAMES):
    assert (quads[0, i] == i).all(), name


def test_mixing_runs_inside_tf_function_with_dynamic_batch():
  @tf.function(input_signature=[tf.TensorSpec([None, 4, 8])])
  def mix(chunks):
    donor, dist = mixing.batch_partners(chunks, tf.zeros(tf.shape(chunks)[:1], tf.int32))
    return mixing.mix_mask(dist, mixing.distance_threshold(dist, 0.5))
  assert mix(tf.random.normal([5, 4, 8])).shape == (5, 4)
