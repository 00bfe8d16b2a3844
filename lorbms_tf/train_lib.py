"""The training run: config object in, trained work dir out. No absl FLAGS here (see train.py)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from lorbms_tf import callbacks as lorbms_callbacks
from lorbms_tf import checkpoints
from lorbms_tf.lorbms import LorbmsConfig, LorbmsModel
from lorbms_tf.models import ModelConfig, get_preset

STRATEGIES = ("default", "mirrored", "multi_worker")
PARTNERS = ("batch", "index")
PREVIEW_IMAGES = 8  # rows of the training image grids


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Everything a run needs. Defaults are the small, fast values (configs/*.flags set presets)."""
  workdir: str
  dataset: str = "scenes"
  data_dir: str | None = None
  preset: str = "small"
  batch_size: int = 32
  total_steps: int = 600
  checkpoint_every: int = 200  # also the Keras "epoch" length: metrics are means over it
  keep_checkpoints: int = 3
  log_every: int = 50
  image_every: int = 200
  steps_per_execution: int = 1
  profile_steps: tuple[int, int] | None = None
  max_train_seconds: float | None = None
  g_learning_rate: float = 2e-4
  d_learning_rate: float = 4e-4
  c_learning_rate: float = 2e-4
  c_decay_steps: int = 20000
  c_decay_rate: float = 0.9
  beta_1: float = 0.5
  objective: LorbmsConfig = LorbmsConfig()
  partners: str = "batch"
  neighbour_table: str | None = None
  strategy: str = "default"
  jit_compile: bool | None = None  # None = auto: on for GPU, off for CPU (slower there)
  mixed_precision: bool | None = None  # None = auto: on for GPU, off for CPU
  flip: bool = True
  seed: int = 0

  def __post_init__(self):
    get_preset(self.preset)  # a clear error for an unknown preset
    if self.strategy not in STRATEGIES:
      raise ValueError(f"unknown strategy {self.strategy!r}; choose one of {STRATEGIES}")
    if self.partners not in PARTNERS:
      raise ValueError(f"unknown partners {self.partners!r}; choose one of {PARTNERS}")
    if self.partners == "index" and not self.neighbour_table:
      raise ValueError("--partners=index needs --neighbour_table=DIR (written by components/similarity)")
    for name in ("batch_size", "total_steps", "checkpoint_every", "log_every", "image_every",
                 "steps_per_execution", "keep_checkpoints"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
    if self.batch_size < 2 and self.partners == "batch":
      raise ValueError("batch partners need batch_size >= 2 (an image is never its own partner)")
    if self.profile_steps is not None and not 0 <= self.profile_steps[0] < self.profile_steps[1]:
      raise ValueError(f"profile_steps must be A,B with 0 <= A < B, got {self.profile_steps}")

  def to_dict(self) -> dict[str, Any]:
    values = dataclasses.asdict(self)
    values["model"] = get_preset(self.preset).to_dict()
    return values


def make_strategy(name: str) -> tf.distribute.Strategy:
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    return tf.distribute.MirroredStrategy()
  if name == "multi_worker":
    if "TF_CONFIG" not in os.environ:
      raise ValueError("--strategy=multi_worker reads the cluster from the TF_CONFIG environment variable, "
                       "which is not set")
    return tf.distribute.MultiWorkerMirroredStrategy()
  raise ValueError(f"unknown strategy {name!r}; choose one of {STRATEGIES}")


def _has_gpu() -> bool:
  return bool(tf.config.list_physical_devices("GPU"))


def _is_chief(strategy) -> bool:
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.task_type:
    return True
  return resolver.task_type == "chief" or (resolver.task_type == "worker" and resolver.task_id == 0
                                           and "chief" not in resolver.cluster_spec().as_dict())


def _checkpoint_dir(config: TrainConfig, strategy) -> str:
  # Multi-worker saves are collective: every worker writes, only the chief into the work dir.
  if _is_chief(strategy):
    return os.path.join(config.workdir, checkpoints.CHECKPOINT_DIR)
  task_id = strategy.cluster_resolver.task_id
  return os.path.join(config.workdir, f"worker_tmp_{task_id}", checkpoints.CHECKPOINT_DIR)


def _check_resume_compatible(config: TrainConfig) -> None:
  path = os.path.join(config.workdir, checkpoints.CONFIG_FILE)
  if not tf.io.gfile.exists(path):
    return
  previous = checkpoints.read_config(config.workdir)
  if ModelConfig.from_dict(previous["model"]) != get_preset(config.preset):
    raise ValueError(f"work dir {config.workdir!r} holds a run with other network sizes "
                     f"(preset {previous.get('preset')!r}); use a new --workdir to start afresh")


def build_model(config: TrainConfig) -> LorbmsModel:
  """Model and optimizers; call inside the strategy scope."""
  model = LorbmsModel(get_preset(config.preset), config.objective)
  c_schedule = keras.optimizers.schedules.ExponentialDecay(
      config.c_learning_rate, config.c_decay_steps, config.c_decay_rate, staircase=True)
  optimizers = [keras.optimizers.Adam(config.g_learning_rate, beta_1=config.beta_1, name="g_adam"),
                keras.optimizers.Adam(config.d_learning_rate, beta_1=config.beta_1, name="d_adam"),
                keras.optimizers.Adam(c_schedule, beta_1=config.beta_1, name="c_adam")]
  if keras.mixed_precision.global_policy().name == "mixed_float16":
    optimizers = [keras.optimizers.LossScaleOptimizer(o) for o in optimizers]
  model.compile(*optimizers, jit_compile=bool(config.jit_compile),
                steps_per_execution=config.steps_per_execution)
  return model


def _datasets(config: TrainConfig, strategy, seed: int):
  """(training dataset, fixed preview batch for image grids, objective with threshold)."""
  from lorbms_tf.data import partners, pipeline  # late: tfds import is slow
  objective = config.objective
  if config.partners == "index":
    from lorbms_tf.similarity.table import load_neighbour_table
    table = load_neighbour_table(config.neighbour_table)
    # split=None: the source's training split, the one the similarity component indexed.
    ids, images = pipeline.load_images_array(config.dataset, None, data_dir=config.data_dir)
    ref_rows, cand_rows = partners.neighbour_rows(ids, table.ids, table.neighbour_ids)
    if objective.threshold is None:
      threshold = partners.table_threshold(table.distances, objective.partner_k,
                                           objective.threshold_quantile)
      objective = dataclasses.replace(objective, threshold=threshold)

    def dataset_fn():
      return partners.index_partner_dataset(images, ref_rows, cand_rows, np.asarray(table.distances),
                                            config.batch_size, objective.partner_k, seed)
  else:
    def dataset_fn():
      return pipeline.train_dataset(config.dataset, config.batch_size, data_dir=config.data_dir,
                                    seed=seed, flip=config.flip)
  # The grids' fixed batch: the first central crops of the training split. (Taking it from
  # dataset_fn() would fill the whole shuffle buffer once more just for 8 images.)
  preview = next(iter(pipeline.eval_dataset(config.dataset, None, batch_size=PREVIEW_IMAGES,
                                            data_dir=config.data_dir)))["image"]
  return dataset_fn, preview, objective


def train(config: TrainConfig) -> dict[str, Any]:
  """Trains (resuming from the work dir's latest checkpoint) and returns a summary dict."""
  strategy = make_strategy(config.strategy)
  use_gpu = _has_gpu()
  jit = use_gpu if config.jit_compile is None else config.jit_compile
  mixed = use_gpu if config.mixed_precision is None else config.mixed_precision
  keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
  _check_resume_compatible(config)
  tf.io.gfile.makedirs(config.workdir)

  # Peek at the saved iteration first: the input stream is re-seeded from it on resume, so a
  # resumed run continues deterministically (the shuffle buffer itself is not checkpointed).
  state = tf.train.get_checkpoint_state(_checkpoint_dir(config, strategy))
  resume_step = int(state.model_checkpoint_path.rsplit("-", 1)[1]) if state else 0
  dataset_fn, preview, objective = _datasets(config, strategy, config.seed + resume_step)
  config = dataclasses.replace(config, objective=objective, jit_compile=jit, mixed_precision=mixed)
  if _is_chief(strategy):
    checkpoints.write_config(config.workdir, config.to_dict())

  with strategy.scope():
    model = build_model(config)
    ckpt = checkpoints.training_checkpoint(
        model, dict(g_optimizer=model.g_optimizer, d_optimizer=model.d_optimizer,
                    c_optimizer=model.c_optimizer))
    manager = tf.train.CheckpointManager(ckpt, _checkpoint_dir(config, strategy),
                                         max_to_keep=config.keep_checkpoints)
    if manager.latest_checkpoint:
      ckpt.restore(manager.latest_checkpoint).assert_existing_objects_matched()
      logging.info("resumed from %s", manager.latest_checkpoint)
  start = int(model.iteration.numpy())
  if start >= config.total_steps:
    logging.info("already trained to step %d of %d", start, config.total_steps)
    return {"step": start, "workdir": config.workdir}

  # A global-batch dataset: Keras distributes it over the replicas (auto-sharding by data for
  # multiple workers). Keras 3.15's fit fails on a DistributedDataset of dicts, so
  # distribute_datasets_from_function is not used here.
  dataset = dataset_fn()
  writer = tf.summary.create_file_writer(os.path.join(config.workdir, checkpoints.TENSORBOARD_DIR))
  learning_rates = {"generator": model.g_optimizer, "discriminator": model.d_optimizer,
                    "classifier": model.c_optimizer}
  callbacks = [
      lorbms_callbacks.MonitorCallback(writer, config.batch_size, config.total_steps,
                                       config.log_every, learning_rates, manager,
                                       config.max_train_seconds),
      lorbms_callbacks.CheckpointCallback(manager),
  ]
  if _is_chief(strategy):
    callbacks.append(lorbms_callbacks.ImageGridCallback(writer, preview, config.workdir,
                                                        config.image_every))
  if config.profile_steps:
    callbacks.append(lorbms_callbacks.ProfilerCallback(
        os.path.join(config.workdir, checkpoints.TENSORBOARD_DIR), *config.profile_steps))

  # A Keras "epoch" is one checkpoint interval; resuming starts at the saved iteration's epoch.
  epochs = math.ceil(config.total_steps / config.checkpoint_every)
  start_time = time.perf_counter()
  history = model.fit(dataset, epochs=epochs, initial_epoch=start // config.checkpoint_every,
                      steps_per_epoch=config.checkpoint_every, callbacks=callbacks, verbose=0)
  seconds = time.perf_counter() - start_time
  end = int(model.iteration.numpy())
  summary = {"step": end, "start_step": start, "seconds": seconds,
             "images_per_second": (end - start) * config.batch_size / max(seconds, 1e-9),
             "final_metrics": {k: float(v[-1]) for k, v in history.history.items()},
             "workdir": config.workdir}
  if _is_chief(strategy):
    with tf.io.gfile.GFile(os.path.join(config.workdir, "train_summary.json"), "w") as f:
      json.dump(summary, f, indent=2)
  else:  # a non-chief worker's copies of the collective saves are not needed after the run
    tf.io.gfile.rmtree(os.path.dirname(_checkpoint_dir(config, strategy)))
  logging.info("trained steps %d -> %d in %.0f s (%.1f img/s)", start, end, seconds,
               summary["images_per_second"])
  return summary
