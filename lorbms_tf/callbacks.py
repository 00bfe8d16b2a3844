"""Keras callbacks of a training run: checkpoints, logging/TensorBoard, image grids, light
evaluation, profiler."""

from __future__ import annotations

import json
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from lorbms_tf import checkpoints, faults, visualize


class NonFiniteLossError(RuntimeError):
  """A loss became NaN or infinite; the run stops and keeps its last good checkpoint."""


def _iteration(model) -> int:
  return int(model.iteration.numpy())


class CheckpointCallback(keras.callbacks.Callback):
  """Saves at the end of every epoch (an epoch is `checkpoint_every` iterations) and at the end."""

  def __init__(self, manager: tf.train.CheckpointManager):
    super().__init__()
    self.manager = manager

  def save(self):
    step = _iteration(self.model)
    if self.manager.latest_checkpoint and self.manager.latest_checkpoint.endswith(f"-{step}"):
      return
    path = self.manager.save(checkpoint_number=step)
    logging.info("saved checkpoint %s", path)
    faults.point(f"checkpoint.saved:{step}")

  def on_epoch_end(self, epoch, logs=None):
    self.save()

  def on_train_end(self, logs=None):
    if not getattr(self.model, "stopped_on_non_finite", False):
      self.save()


class MonitorCallback(keras.callbacks.Callback):
  """Per-N-iterations log line (losses, img/s, ETA), TensorBoard scalars, non-finite check,
  and an optional wall-clock budget."""

  def __init__(self, writer, batch_size: int, total_steps: int, log_every: int,
               learning_rates: dict, manager: tf.train.CheckpointManager,
               max_seconds: float | None = None, data_report=None):
    super().__init__()
    self.writer, self.batch_size, self.total_steps = writer, batch_size, total_steps
    self.log_every, self.learning_rates, self.manager = log_every, learning_rates, manager
    self.max_seconds, self.data_report = max_seconds, data_report
    self.last_logs: dict[str, float] = {}  # the newest logged window means (the run's summary)
    self.data_counts: dict[str, int] = {}  # passed / skipped by reason (quality.SkipReport)

  def on_train_begin(self, logs=None):
    self.start_time = self.last_time = time.perf_counter()
    self.start_step = self.last_step = _iteration(self.model)

  def on_train_batch_end(self, batch, logs=None):
    step = _iteration(self.model)
    for name, value in (logs or {}).items():
      if not math.isfinite(float(value)):
        self.model.stop_training = True
        self.model.stopped_on_non_finite = True
        raise NonFiniteLossError(
            f"loss '{name}' became {float(value)} at training step {step}; stopping. The last "
            f"good checkpoint is {self.manager.latest_checkpoint or 'none (no checkpoint yet)'}.")
    if step - self.last_step >= self.log_every or step >= self.total_steps:
      self._log(step, logs)
    if step >= self.total_steps:  # total_steps need not be a multiple of the epoch length
      self.model.stop_training = True
    if self.max_seconds is not None and time.perf_counter() - self.start_time > self.max_seconds:
      logging.info("time budget of %.0f s reached at step %d; stopping", self.max_seconds, step)
      self.model.stop_training = True

  def _log(self, step, logs):
    now = time.perf_counter()
    images_per_second = (step - self.last_step) * self.batch_size / max(now - self.last_time, 1e-9)
    remaining = max(self.total_steps - step, 0) * self.batch_size / max(images_per_second, 1e-9)
    parts = " ".join(f"{k}={float(v):.4f}" for k, v in (logs or {}).items())
    if self.data_report is not None:  # names new bad files once; stops past the share limit
      self.data_counts = self.data_report.update(self.writer, step)
      parts += f"  data: {self.data_report.line(self.data_counts)}"
    logging.info("step %d/%d  %.1f img/s  ETA %s  %s", step, self.total_steps, images_per_second,
                 time.strftime("%H:%M:%S", time.gmtime(remaining)), parts)
    with self.writer.as_default(step=step):
      for name, value in (logs or {}).items():
        tf.summary.scalar(f"train/{name}", float(value))
      tf.summary.scalar("perf/images_per_second", images_per_second)
      for name, optimizer in self.learning_rates.items():
        tf.summary.scalar(f"learning_rate/{name}", float(optimizer.learning_rate.numpy()))
    self.writer.flush()
    self.last_time, self.last_step = now, step
    self.last_logs = {name: float(value) for name, value in (logs or {}).items()}
    # The next line's losses are the mean over the next `log_every` iterations, not since
    # the epoch began (Keras resets its trackers only per epoch).
    for metric in self.model.metrics:
      metric.reset_state()


class ImageGridCallback(keras.callbacks.Callback):
  """Every `every` iterations: reference, donors, mask, I_mix, I'_ref of a fixed batch, to
  TensorBoard and to WORKDIR/grids/ (mixed_scenes.png is always the newest)."""

  def __init__(self, writer, images, workdir: str, every: int):
    super().__init__()
    self.writer, self.images, self.every = writer, images, every
    self.grids_dir = os.path.join(workdir, checkpoints.GRIDS_DIR)
    self.last_step = None

  def write(self):
    step = _iteration(self.model)
    if step == self.last_step:
      return
    out = self.model.mix_batch(self.images, training=False)
    grid = visualize.mix_grid({k: np.asarray(v) for k, v in out.items()})
    tf.io.gfile.makedirs(self.grids_dir)
    visualize.save_png(os.path.join(self.grids_dir, f"step_{step:07d}.png"), grid)
    visualize.save_png(os.path.join(self.grids_dir, "mixed_scenes.png"), grid)
    with self.writer.as_default(step=step):
      tf.summary.image("mixed_scenes (ref | donors TL TR BL BR | mask | I_mix | I'_ref)", grid[None])
    self.last_step = step

  def on_train_batch_end(self, batch, logs=None):
    if _iteration(self.model) % self.every == 0:
      self.write()

  def on_train_end(self, logs=None):
    if not getattr(self.model, "stopped_on_non_finite", False):
      self.write()


EVAL_HISTORY_FILE = "eval_history.jsonl"


def read_eval_history(workdir: str) -> list[dict]:
  """The rows EvalCallback wrote, one per evaluated step (a re-evaluated step: the last row)."""
  path = os.path.join(workdir, EVAL_HISTORY_FILE)
  if not tf.io.gfile.exists(path):
    return []
  rows = {}
  with tf.io.gfile.GFile(path) as f:
    for line in f:
      if line.strip():
        try:
          row = json.loads(line)
        except ValueError:  # a line torn by a kill mid-append: that evaluation is redone
          continue
        rows[row["step"]] = row
  return [rows[step] for step in sorted(rows)]


class EvalCallback(keras.callbacks.Callback):
  """Every `every` iterations and at the end: the light evaluation (``ScenesEvaluator``) of the
  current networks, to the log, TensorBoard (``eval/*``) and WORKDIR/eval_history.jsonl, so a
  collapse shows while the run goes on."""

  def __init__(self, evaluator, writer, workdir: str, every: int):
    super().__init__()
    self.evaluator, self.writer, self.every = evaluator, writer, every
    self.path = os.path.join(workdir, EVAL_HISTORY_FILE)
    self.last_step = None

  def evaluate(self):
    step = _iteration(self.model)
    if step == self.last_step:
      return
    start = time.perf_counter()
    row = self.evaluator.run(self.model)
    seconds = time.perf_counter() - start
    logging.info("eval step %d (%.1f s): %s", step, seconds,
                 " ".join(f"{k}={v:.4f}" for k, v in row.items()))
    with self.writer.as_default(step=step):
      for name, value in row.items():
        tf.summary.scalar(f"eval/{name}", value)
      tf.summary.scalar("perf/eval_seconds", seconds)
    self.writer.flush()
    # A row torn by a kill mid-append is left alone (read_eval_history skips it): this row
    # starts on a line of its own.
    torn = False
    if tf.io.gfile.exists(self.path):
      with tf.io.gfile.GFile(self.path) as f:
        text = f.read()
      torn = bool(text) and not text.endswith("\n")
    with tf.io.gfile.GFile(self.path, "a") as f:
      f.write(("\n" if torn else "") + json.dumps({"step": step, **row,
                                                   "seconds": round(seconds, 2)}) + "\n")
    self.last_step = step

  def on_train_batch_end(self, batch, logs=None):
    if _iteration(self.model) % self.every == 0:
      self.evaluate()

  def on_train_end(self, logs=None):
    if not getattr(self.model, "stopped_on_non_finite", False):
      self.evaluate()


class ProfilerCallback(keras.callbacks.Callback):
  """A TensorBoard profiler trace of iterations [start, stop) (the Profile tab)."""

  def __init__(self, logdir: str, start: int, stop: int):
    super().__init__()
    self.logdir, self.start, self.stop = logdir, start, stop
    self.active = False

  def on_train_batch_begin(self, batch, logs=None):
    step = _iteration(self.model)
    if not self.active and self.start <= step < self.stop:
      tf.profiler.experimental.start(self.logdir)
      self.active = True

  def on_train_batch_end(self, batch, logs=None):
    if self.active and _iteration(self.model) >= self.stop:
      tf.profiler.experimental.stop()
      self.active = False
      logging.info("profiler trace written to %s", self.logdir)

  def on_train_end(self, logs=None):
    if self.active:
      tf.profiler.experimental.stop()
      self.active = False
