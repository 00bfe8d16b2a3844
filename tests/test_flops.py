"""FLOP counting used by the throughput benchmark."""

import tensorflow as tf

from lorbms_tf import flops


def test_count_flops_of_a_matmul_is_2mnk():
  b = tf.random.normal([32, 16])
  assert flops.count_flops(lambda a: tf.matmul(a, b), [tf.TensorSpec([8, 32])]) == 2 * 8 * 32 * 16


def test_matmul_peak_is_positive_and_plausible():
  peak = flops.matmul_peak_flops(size=256, repeats=4)
  assert 1e8 < peak < 1e14
