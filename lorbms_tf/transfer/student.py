"""The student: a fresh AlexNet-style network with batch norm trained on the pseudo labels.

Knowledge transfer step 3 (Noroozi et al. 2018): the student learns to predict each image's
k-means cluster from the image alone, so whatever the teacher's features encoded has to be
re-learned by a standard architecture, which is then probed like any other (its conv layers
frozen). The student is ``models.TransferNet``: the quadrant classifier's family and sizes
(``ModelConfig.classifier_filters`` / ``classifier_dense``) on one 3-channel image with a
K-way head.

Training is ours where the paper's details do not carry over: Adam instead of SGD (a few
thousand steps on a CPU, not 90 epochs on a GPU), no augmentation (the lorbms_scenes
labels are tied to quadrant positions, and crops would move objects across them).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class StudentConfig:
  steps: int = 2000
  batch_size: int = 64
  learning_rate: float = 1e-3
  shuffle_buffer: int = 10000
  seed: int = 0


@dataclasses.dataclass
class TrainedStudent:
  net: Any  # models.TransferNet
  losses: np.ndarray  # [steps] training loss of every step
  accuracies: np.ndarray  # [steps] pseudo-label accuracy of every training batch
  seconds: float

  def summary(self, tail: int = 50) -> dict[str, Any]:
    """First and last losses, and the fit of the pseudo labels over the last ``tail`` steps."""
    last = slice(-min(tail, len(self.losses)), None)
    return {"steps": int(len(self.losses)), "loss_first": float(self.losses[0]),
            "loss_last": float(np.mean(self.losses[last])),
            "pseudo_label_accuracy_last": float(np.mean(self.accuracies[last])),
            "num_params": int(sum(np.prod(w.shape) for w in self.net.trainable_weights)),
            "seconds": self.seconds}


def train_student(model_config, num_classes: int, examples: tf.data.Dataset,
                  config: StudentConfig = StudentConfig()) -> TrainedStudent:
  """Trains a fresh ``TransferNet`` on ``examples``: unbatched (image [64, 64, 3] float32 in
  [-1, 1], pseudo label int64) pairs, reshuffled and repeated as needed for ``config.steps``."""
  import keras  # pylint: disable=import-outside-toplevel
  from lorbms_tf.models import build_transfer_net  # pylint: disable=import-outside-toplevel
  if config.steps < 1:
    raise ValueError(f"--transfer_steps must be >= 1, got {config.steps}")
  keras.utils.set_random_seed(config.seed)
  net = build_transfer_net(model_config, num_classes)
  optimizer = keras.optimizers.Adam(config.learning_rate)
  optimizer.build(net.trainable_variables)
  batches = (examples.shuffle(config.shuffle_buffer, seed=config.seed,
                              reshuffle_each_iteration=True)
             .repeat().batch(config.batch_size, drop_remainder=False).take(config.steps)
             .prefetch(tf.data.AUTOTUNE))

  @tf.function(reduce_retracing=True)
  def step(images, labels):
    with tf.GradientTape() as tape:
      logits = net(images, training=True)
      loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
    optimizer.apply(tape.gradient(loss, net.trainable_variables), net.trainable_variables)
    correct = tf.cast(tf.equal(tf.argmax(logits, -1), labels), tf.float32)
    return loss, tf.reduce_mean(correct)

  start = time.perf_counter()
  losses, accuracies = [], []
  for images, labels in batches:
    loss, accuracy = step(images, tf.cast(labels, tf.int64))
    losses.append(loss)
    accuracies.append(accuracy)
  if not losses:
    raise ValueError("the student's training data is empty")
  return TrainedStudent(net, np.array([float(v) for v in losses]),
                        np.array([float(v) for v in accuracies]),
                        time.perf_counter() - start)
