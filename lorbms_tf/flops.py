"""Analytic FLOP counts from the TF profiler (for throughput reports as a fraction of peak)."""

from __future__ import annotations

from typing import Callable, Sequence

import tensorflow as tf


def count_flops(fn: Callable, input_specs: Sequence[tf.TensorSpec]) -> int:
  """FLOPs (multiply-adds count 2) of one call of `fn` on inputs of the given static shapes."""
  concrete = tf.function(fn).get_concrete_function(*input_specs)
  # The v1 profiler walks the graph's registered per-op FLOP statistics (conv, matmul, ...).
  options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
  options["output"] = "none"
  info = tf.compat.v1.profiler.profile(graph=concrete.graph, options=options)
  return int(info.total_float_ops)


def matmul_peak_flops(size: int = 2048, repeats: int = 10, dtype=tf.float32) -> float:
  """Measured FLOP/s of a square matmul on the default device: the practical peak."""
  import time
  a = tf.random.normal([size, size], dtype=dtype)
  # Scaled so the chain neither explodes nor vanishes.
  b = tf.random.normal([size, size], dtype=dtype) / size**0.5

  @tf.function
  def run(a, b):
    # A dependent chain: identical independent matmuls would be merged by grappler's CSE.
    x = a
    for _ in range(repeats):
      x = tf.matmul(x, b)
    return x

  run(a, b).numpy()  # trace and warm up
  best = float("inf")
  for _ in range(3):
    start = time.perf_counter()
    run(a, b).numpy()
    best = min(best, time.perf_counter() - start)
  return 2.0 * size**3 * repeats / best
