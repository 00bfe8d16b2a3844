"""One LORBMS step on 1 device vs MirroredStrategy on 2 logical CPUs: same weights after.

Run as a separate process (logical devices must be set before TF starts; importing this module
sets them), alone or from mirrored_fit.py; prints JSON.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

import keras  # noqa: E402

from lorbms_tf.lorbms import LorbmsConfig, LorbmsModel  # noqa: E402
from lorbms_tf.models import get_preset  # noqa: E402

GLOBAL_BATCH = 4


def batch():
  rng = np.random.default_rng(0)
  return {
      "image": rng.uniform(-1, 1, (GLOBAL_BATCH, 64, 64, 3)).astype(np.float32),
      "candidates": rng.uniform(-1, 1, (GLOBAL_BATCH, 4, 64, 64, 3)).astype(np.float32),
      "candidate_distances": rng.uniform(0, 1, (GLOBAL_BATCH, 4)).astype(np.float32),
  }


def one_step(strategy, initial_weights=None):
  """-> (all weights before, all weights after, trainable weights before, trainable after)."""
  with strategy.scope():
    keras.utils.set_random_seed(0)
    model = LorbmsModel(get_preset("tiny"), LorbmsConfig(threshold=0.5))
    # SGD, not Adam: Adam's first step is ~lr * sign(g) and would hide a gradient scaled by
    # the wrong replica count; SGD's step is proportional to the gradient.
    model.compile(*(keras.optimizers.SGD(0.5) for _ in range(3)))
  if initial_weights is not None:
    model.set_weights(initial_weights)
  all_before = [w.copy() for w in model.get_weights()]
  trainable_before = [v.numpy().copy() for v in model.trainable_variables]
  dataset = tf.data.Dataset.from_tensors(batch())
  if strategy.num_replicas_in_sync > 1:
    dataset = strategy.experimental_distribute_dataset(dataset)
  data = next(iter(dataset))

  @tf.function
  def step(data):
    return strategy.run(model.train_step, args=(data,))

  step(data)
  return all_before, model.get_weights(), trainable_before, [v.numpy() for v in model.trainable_variables]


def _max_abs(a, b):
  return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))


def report() -> dict:
  start, single_all, t_start, single_trainable = one_step(tf.distribute.get_strategy())
  mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  _, mirrored_all, _, mirrored_trainable = one_step(mirrored, initial_weights=start)
  return {
      "replicas": mirrored.num_replicas_in_sync,
      "trainable_change": _max_abs(t_start, single_trainable),
      "trainable_diff": _max_abs(single_trainable, mirrored_trainable),
      "all_weights_diff": _max_abs(single_all, mirrored_all),
      "num_trainable": len(single_trainable)}


if __name__ == "__main__":
  print(json.dumps(report()))
