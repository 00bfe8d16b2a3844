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
from lorbms_tf.data import quality, sources
from lorbms_tf.eval.scenes_eval import ScenesEvalConfig
from lorbms_tf.lorbms import LorbmsConfig, LorbmsModel
from lorbms_tf.models import PRESETS, ModelConfig, get_preset
from lorbms_tf.models.layers import NORMS
from lorbms_tf.models.presets import DECODER_PROJECTIONS

STRATEGIES = ("default", "mirrored", "multi_worker")
# ModelConfig fields a run may set over its preset (None = the preset's value).
MODEL_OVERRIDES = ("encoder_norm", "decoder_norm", "decoder_spectral_norm",
                   "decoder_projection", "discriminator_spectral_norm")
PARTNERS = ("batch", "index")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
PREVIEW_IMAGES = 8  # rows of the training image grids
# What a resumed run must share with the run in its work dir (besides the data's content
# identity): continuing another run's checkpoint with other data, objective, batch, partners
# or rates would silently train a model nobody asked for. (total_steps, the schedule's tail,
# logging and evaluation may change: extending a run is a resume.)
RESUME_FIELDS = ("dataset", "batch_size", "partners", "neighbour_table", "seed", "flip",
                 "objective", "g_learning_rate", "d_learning_rate", "c_learning_rate", "beta_1",
                 "c_decay_steps", "c_decay_rate")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Everything a run needs. Defaults are the small, fast values (configs/*.flags set presets).

  Every field with help metadata is a flag of ``lorbms_tf.train`` of the field's name, type and
  default (lorbms_tf/config_flags.py): an option is one field here (or in LorbmsConfig)."""
  workdir: str = dataclasses.field(metadata={
      "help": "Run directory: checkpoints, TensorBoard logs, grids. Resumes if present."})
  dataset: str = dataclasses.field(default="scenes", metadata={
      "help": "coco | stl10 | celeb_a | scenes | folder:PATH | tfrecord:GLOB"})
  data_dir: str | None = dataclasses.field(default=None, metadata={
      "help": "tensorflow_datasets data dir (default: tfds's own)"})
  preset: str = dataclasses.field(default="small", metadata={
      "choices": tuple(sorted(PRESETS)), "help": "Network sizes: coco = the thesis's original."})
  # MODEL_OVERRIDES: None (on the command line "preset") = the preset's value.
  encoder_norm: str | None = dataclasses.field(default=None, metadata={
      "choices": NORMS, "help": "Encoder normalisation over the preset's (thesis: instance)."})
  decoder_norm: str | None = dataclasses.field(default=None, metadata={
      "choices": NORMS, "help": "Decoder normalisation over the preset's (thesis: none)."})
  decoder_spectral_norm: bool | None = dataclasses.field(default=None, metadata={
      "none_as": "preset", "help": "Spectral norm on the decoder's convs (thesis: true)."})
  decoder_projection: int | None = dataclasses.field(default=None, metadata={
      "none_as": "preset", "choices": DECODER_PROJECTIONS,
      "help": "Each chunk -> a p x p map of its quadrant by one shared dense layer, in place of "
              "the decoder's first log2(p) upsampling convs (thesis: 0, none)."})
  discriminator_spectral_norm: bool | None = dataclasses.field(default=None, metadata={
      "none_as": "preset",
      "help": "Spectral norm on the discriminator's convs 2-4 (thesis: true)."})
  batch_size: int = dataclasses.field(default=32, metadata={
      "help": "Global batch size (split across replicas)."})
  total_steps: int = dataclasses.field(default=600, metadata={
      "help": "Training iterations in all."})
  # also the Keras "epoch" length: metrics are means over it
  checkpoint_every: int = dataclasses.field(default=200, metadata={
      "help": "Iterations between checkpoints."})
  keep_checkpoints: int = dataclasses.field(default=3, metadata={"help": "Checkpoints kept."})
  log_every: int = dataclasses.field(default=50, metadata={
      "help": "Iterations between log lines / TensorBoard scalars."})
  image_every: int = dataclasses.field(default=200, metadata={
      "help": "Iterations between image grids."})
  steps_per_execution: int = dataclasses.field(default=1, metadata={
      "help": "Iterations per tf.function call."})
  profile_steps: tuple[int, int] | None = dataclasses.field(default=None, metadata={
      "help": "A,B: profiler trace of iterations [A, B) into WORKDIR/tb."})
  max_train_seconds: float | None = dataclasses.field(default=None, metadata={
      "help": "Stop (and checkpoint) after this wall-clock budget."})
  g_learning_rate: float = dataclasses.field(default=2e-4, metadata={
      "help": "Adam rate of encoder + decoder."})
  d_learning_rate: float = dataclasses.field(default=4e-4, metadata={
      "help": "Adam rate of the discriminator."})
  c_learning_rate: float = dataclasses.field(default=2e-4, metadata={
      "help": "Adam rate of the classifier (decayed)."})
  c_decay_steps: int = dataclasses.field(default=20000, metadata={
      "help": "Classifier rate x c_decay_rate every N steps."})
  c_decay_rate: float = dataclasses.field(default=0.9, metadata={
      "help": "Classifier rate decay factor."})
  # Ours (0 = constant rates, the thesis): G and D rates fall linearly to 0 over the last N
  # iterations, so a short run ends on settled weights instead of mid-oscillation.
  lr_decay_steps: int = dataclasses.field(default=0, metadata={
      "help": "Ours: G and D rates fall linearly to 0 over the last N iterations "
              "(0 = constant, the thesis)."})
  beta_1: float = dataclasses.field(default=0.5, metadata={
      "help": "Adam beta_1 of all three optimizers."})
  # Its fields with help are flags of their own names; its seed is --seed.
  objective: LorbmsConfig = dataclasses.field(default=LorbmsConfig(), metadata={
      "flags": {"seed": "seed"}})
  partners: str = dataclasses.field(default="batch", metadata={
      "choices": PARTNERS,
      "help": "batch: nearest chunks within the batch; index: the similarity component's table."})
  neighbour_table: str | None = dataclasses.field(default=None, metadata={
      "help": "Neighbour table dir for --partners=index."})
  strategy: str = dataclasses.field(default="default", metadata={
      "choices": STRATEGIES, "help": "tf.distribute strategy (multi_worker reads TF_CONFIG)."})
  # None = auto: on for GPU, off for CPU (slower there)
  jit_compile: bool | None = dataclasses.field(default=None, metadata={
      "none_as": "auto", "help": "XLA (auto: GPU only)."})
  # Keras dtype policy: "float32", "mixed_float16" or "mixed_bfloat16"; None = auto:
  # mixed_float16 on a GPU, mixed_bfloat16 on a CPU with native bf16 (AMX or AVX512-BF16:
  # measured 1.9x the float32 step here), else float32.
  precision: str | None = dataclasses.field(default=None, metadata={
      "none_as": "auto", "choices": PRECISIONS,
      "help": "Keras dtype policy (auto: mixed_float16 on a GPU, mixed_bfloat16 on a CPU with "
              "native bf16, else float32)."})
  flip: bool = dataclasses.field(default=True, metadata={
      "help": "Random horizontal flips (batch partners only)."})
  seed: int = dataclasses.field(default=0, metadata={
      "help": "Seed of initial weights, data order, crops and mixing draws."})
  # tf.config.experimental.enable_op_determinism()
  deterministic: bool = dataclasses.field(default=False, metadata={
      "help": "Deterministic ops: same flags and seed give the same losses (CPU)."})
  # light evaluation (lorbms_scenes only) every N iterations; 0 = off
  eval_every: int = dataclasses.field(default=0, metadata={
      "help": "Light evaluation (lorbms_scenes: I_hat L1, shape/colour probes, fidelity, scenes "
              "FID) every N iterations and at the end; 0 = off."})
  # The lorbms_scenes config the light evaluation reads (None = the training dataset): lets a
  # run that trains on exported scenes (the pipeline's TFRecord examples) still evaluate.
  eval_dataset: str | None = dataclasses.field(default=None, metadata={
      "help": "lorbms_scenes config of --eval_every (default: --dataset)."})
  eval_config: ScenesEvalConfig = dataclasses.field(default=ScenesEvalConfig(), metadata={
      "flags": {
          "num_test": ("eval_test_scenes", "Test scenes of --eval_every."),
          "num_probe_train": ("eval_probe_scenes",
                              "Training scenes the --eval_every probes learn from."),
          "classifier.train_scenes": (
              "eval_classifier_scenes",
              "Scenes the --eval_every domain classifier (fidelity, scenes FID) trains on."),
          "classifier.epochs": ("eval_classifier_epochs",
                                "Its epochs (it is trained once and cached)."),
      }})
  # Stop when more than this share of the source's files are bad (unreadable, truncated...).
  max_skipped_fraction: float = dataclasses.field(
      default=quality.DEFAULT_MAX_SKIPPED_FRACTION, metadata={
          "help": "Stop when more than this share of the source's files are bad (unreadable, "
                  "truncated, undecodable, too small or too large); each is named once in the "
                  "log."})
  # A resume whose data or RESUME_FIELDS differ from the work dir's run is refused unless this
  # is set; it is then recorded in config.json ("resume_changes").
  allow_resume_changes: bool = dataclasses.field(default=False, metadata={
      "help": "Resume a work dir's run even when the data, objective, batch, partners or rates "
              "differ (recorded in config.json); by default that is refused."})

  def __post_init__(self):
    self.model_config()  # a clear error for an unknown preset or a bad override
    if self.strategy not in STRATEGIES:
      raise ValueError(f"unknown strategy {self.strategy!r}; choose one of {STRATEGIES}")
    if self.partners not in PARTNERS:
      raise ValueError(f"unknown partners {self.partners!r}; choose one of {PARTNERS}")
    if self.partners == "index" and not self.neighbour_table:
      raise ValueError("--partners=index needs --neighbour_table=DIR (written by components/similarity)")
    if self.precision not in (None, *PRECISIONS):
      raise ValueError(f"unknown precision {self.precision!r}; choose one of {PRECISIONS}")
    if not 0.0 <= self.max_skipped_fraction <= 1.0:
      raise ValueError(f"max_skipped_fraction must be in [0, 1], got {self.max_skipped_fraction}")
    if self.eval_every < 0:
      raise ValueError(f"eval_every must be >= 0 (0 = off), got {self.eval_every}")
    if not 0 <= self.lr_decay_steps <= self.total_steps:
      raise ValueError(f"lr_decay_steps must be in [0, total_steps={self.total_steps}], got "
                       f"{self.lr_decay_steps}")
    spec = sources.parse_dataset_spec(self.dataset)  # a clear error for an unknown dataset
    eval_spec = sources.parse_dataset_spec(self.eval_dataset) if self.eval_dataset else spec
    if self.eval_every and not eval_spec.location.startswith("lorbms_scenes"):
      raise ValueError(f"--eval_every needs lorbms_scenes (per-quadrant labels), not "
                       f"{self.eval_dataset or self.dataset!r}; use --eval_dataset=scenes, or "
                       "--eval_every=0 and lorbms_tf.evaluate instead")
    for name in ("batch_size", "total_steps", "checkpoint_every", "log_every", "image_every",
                 "steps_per_execution", "keep_checkpoints"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
    if self.batch_size < 2 and self.partners == "batch":
      raise ValueError("batch partners need batch_size >= 2 (an image is never its own partner)")
    if self.profile_steps is not None and not 0 <= self.profile_steps[0] < self.profile_steps[1]:
      raise ValueError(f"profile_steps must be A,B with 0 <= A < B, got {self.profile_steps}")

  def model_config(self) -> ModelConfig:
    """The preset's sizes with this run's overrides (MODEL_OVERRIDES) applied."""
    overrides = {name: getattr(self, name) for name in MODEL_OVERRIDES
                 if getattr(self, name) is not None}
    return dataclasses.replace(get_preset(self.preset), **overrides)

  def to_dict(self) -> dict[str, Any]:
    values = dataclasses.asdict(self)
    values["model"] = self.model_config().to_dict()
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


def cpu_has_native_bfloat16() -> bool:
  """True where oneDNN runs bf16 convolutions natively (AMX-BF16 or AVX512-BF16)."""
  try:
    with open("/proc/cpuinfo") as f:
      flags = f.read()
  except OSError:
    return False
  return " amx_bf16" in flags or " avx512_bf16" in flags


def auto_precision() -> str:
  if _has_gpu():
    return "mixed_float16"
  return "mixed_bfloat16" if cpu_has_native_bfloat16() else "float32"


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
  if ModelConfig.from_dict(previous["model"]) != config.model_config():
    raise ValueError(f"work dir {config.workdir!r} holds a run with other networks "
                     f"(preset {previous.get('preset')!r}); use a new --workdir to start afresh")


def resume_changes(previous: dict[str, Any], current: dict[str, Any]) -> dict[str, list]:
  """{field: [before, now]} of RESUME_FIELDS and the data identity that differ between a work
  dir's config.json and this run's (fields the older run did not record are not compared)."""
  from lorbms_tf import identity  # pylint: disable=import-outside-toplevel
  changed = {name: [previous[name], current[name]] for name in RESUME_FIELDS
             if name in previous and previous[name] != current[name]}
  if not identity.same_data(previous.get("data_identity"), current.get("data_identity")):
    changed["data_identity"] = [previous["data_identity"], current["data_identity"]]
  return changed


def _check_resume_same_run(config: TrainConfig, values: dict[str, Any], step: int) -> None:
  """Refuses (one line) to resume another run's checkpoint, unless allow_resume_changes; then
  the changes are recorded in ``values`` (the config.json about to be written)."""
  if not step or not tf.io.gfile.exists(os.path.join(config.workdir, checkpoints.CONFIG_FILE)):
    return
  previous = checkpoints.read_config(config.workdir)
  values["resume_changes"] = list(previous.get("resume_changes", []))
  changed = resume_changes(previous, json.loads(json.dumps(values, default=str)))
  if not changed:
    return
  if not config.allow_resume_changes:
    names = ", ".join(f"{k} ({_short(v[0])} -> {_short(v[1])})" for k, v in changed.items())
    raise ValueError(f"work dir {config.workdir!r} holds a run at step {step} with other "
                     f"settings: {names}; use a new --workdir, or --allow_resume_changes to "
                     "continue it anyway (recorded in config.json)")
  logging.warning("resuming %s at step %d with changed %s", config.workdir, step, sorted(changed))
  values["resume_changes"].append({"step": step, "changed": changed})


def _short(value: Any, limit: int = 60) -> str:
  text = json.dumps(value, sort_keys=True, default=str)
  return text if len(text) <= limit else text[:limit - 3] + "..."


class LinearTailDecay(keras.optimizers.schedules.LearningRateSchedule):
  """``rate`` until ``total - decay`` updates, then linearly down to 0 at ``total`` updates."""

  def __init__(self, rate: float, total: int, decay: int):
    self.rate, self.total, self.decay = float(rate), int(total), int(decay)

  def __call__(self, step):
    done = (tf.cast(step, tf.float32) - (self.total - self.decay)) / max(self.decay, 1)
    return self.rate * (1.0 - tf.clip_by_value(done, 0.0, 1.0))

  def get_config(self):
    return {"rate": self.rate, "total": self.total, "decay": self.decay}


def _rate(rate: float, config: TrainConfig, updates_per_iteration: int = 1):
  if not config.lr_decay_steps:
    return rate
  return LinearTailDecay(rate, config.total_steps * updates_per_iteration,
                         config.lr_decay_steps * updates_per_iteration)


def build_model(config: TrainConfig) -> LorbmsModel:
  """Model and optimizers; call inside the strategy scope. Initial weights follow config.seed."""
  keras.utils.set_random_seed(config.seed)
  model = LorbmsModel(config.model_config(), config.objective)
  c_schedule = keras.optimizers.schedules.ExponentialDecay(
      config.c_learning_rate, config.c_decay_steps, config.c_decay_rate, staircase=True)
  g_rate = _rate(config.g_learning_rate, config, config.objective.generator_steps)
  optimizers = [keras.optimizers.Adam(g_rate, beta_1=config.beta_1, name="g_adam"),
                keras.optimizers.Adam(_rate(config.d_learning_rate, config), beta_1=config.beta_1,
                                      name="d_adam"),
                keras.optimizers.Adam(c_schedule, beta_1=config.beta_1, name="c_adam")]
  if keras.mixed_precision.global_policy().name == "mixed_float16":
    optimizers = [keras.optimizers.LossScaleOptimizer(o) for o in optimizers]
  model.compile(*optimizers, jit_compile=bool(config.jit_compile),
                steps_per_execution=config.steps_per_execution)
  return model


def check_table_data(record: dict[str, Any], config: TrainConfig) -> None:
  """Refuses a neighbour table built for other data than this run's (its ids would pair
  unrelated images, or silently miss). Tables older than the record of their data pass."""
  from lorbms_tf import identity  # pylint: disable=import-outside-toplevel
  built_for = record.get("data_identity")
  if built_for is None:
    logging.warning("neighbour table %s does not record its data: not checked", config.neighbour_table)
    return
  now = identity.dataset_identity(config.dataset, config.data_dir)
  if not identity.same_data(built_for, now):
    raise ValueError(
        f"neighbour table {config.neighbour_table!r} was built for {built_for.get('dataset')!r} "
        f"({identity.describe(built_for)}), but training reads {now.get('dataset')!r} "
        f"({identity.describe(now)}); rebuild it with `python -m components.similarity "
        f"--dataset={config.dataset}`")


def _datasets(config: TrainConfig, strategy, seed: int):
  """(training dataset, fixed preview batch for image grids, objective with threshold, the
  training data's SkipReport)."""
  from lorbms_tf.data import partners, pipeline  # late: tfds import is slow
  objective = config.objective
  # The grids' fixed batch: the first central crops of the training split. (Taking it from
  # dataset_fn() would fill the whole shuffle buffer once more just for 8 images.) It is read
  # first: a source without a single usable image stops here, with its counts.
  preview_report = quality.SkipReport(sources.SkipCounter("preview"), str(config.dataset),
                                      config.max_skipped_fraction)
  try:
    preview = next(iter(pipeline.eval_dataset(
        config.dataset, None, batch_size=PREVIEW_IMAGES, data_dir=config.data_dir,
        skip_counter=preview_report.counter)))["image"]
  except StopIteration:
    raise preview_report.no_usable_images() from None
  report = quality.SkipReport(sources.SkipCounter("train"), str(config.dataset),
                              config.max_skipped_fraction)
  if config.partners == "index":
    from lorbms_tf.similarity.table import load_neighbour_table
    table = load_neighbour_table(config.neighbour_table)
    check_table_data(table.record, config)
    # split=None: the source's training split, the one the similarity component indexed.
    # The training images as a memory-mapped bank on disk, written once per work dir.
    bank_dir = os.path.join(os.path.dirname(_checkpoint_dir(config, strategy)), "image_bank")
    try:
      ids, images = partners.open_image_bank(bank_dir)
    except FileNotFoundError:
      partners.write_image_bank(bank_dir, pipeline.image_batches(
          config.dataset, None, data_dir=config.data_dir, skip_counter=report.counter))
      report.update(final=True)  # the whole source has been read: the share is known
      ids, images = partners.open_image_bank(bank_dir)
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
                                    seed=seed, flip=config.flip, skip_counter=report.counter)
  return dataset_fn, preview, objective, report


def _scenes_evaluator(config: TrainConfig):
  """The light evaluator of --eval_every: lorbms_scenes only (it needs per-quadrant labels)."""
  from lorbms_tf.eval import scenes_eval  # pylint: disable=import-outside-toplevel
  eval_config = dataclasses.replace(config.eval_config, mixing_batch_size=config.batch_size,
                                    seed=config.seed)
  # The domain classifier is trained once and cached beside the data (or in the work dir).
  cache_dir = os.path.join(config.data_dir or config.workdir, "lorbms_scenes_classifier")
  return scenes_eval.ScenesEvaluator.for_scenes(eval_config, config.data_dir, cache_dir,
                                                 dataset=config.eval_dataset or config.dataset)


def serialize_ops() -> bool:
  """Runs TF ops one at a time (an inter-op pool of one thread); False if TF had already started.

  Measured (docs/experiments/2026-11-27-determinism.md): 100 demo training steps on one fixed
  batch ended in different weights in different processes when ops may run concurrently, and in
  the same weights in every process with this, while each process repeats its own step bit-exactly
  either way. The likely mechanism: oneDNN fixes a kernel's threading (so its summation
  order) when it first builds it, from the threads free at that moment, and caches it.
  """
  if tf.config.threading.get_inter_op_parallelism_threads() == 1:
    return True
  try:
    tf.config.threading.set_inter_op_parallelism_threads(1)
  except RuntimeError:  # the runtime is up already (e.g. a second run in one process)
    return False
  return True


def train(config: TrainConfig) -> dict[str, Any]:
  """Trains (resuming from the work dir's latest checkpoint) and returns a summary dict.

  The work dir is locked for the run (lorbms_tf/locks.py): a second training on it stops at
  once with one line naming this one. A run that had reached its last step but was killed
  before its summary (during the final light evaluation) completes here: it evaluates the
  final step if that is missing and writes ``train_summary.json``.
  """
  from lorbms_tf import locks  # pylint: disable=import-outside-toplevel
  if config.strategy == "multi_worker":  # the chief locks the shared work dir, in _train
    return _train(config)
  with locks.DirectoryLock(config.workdir):
    return _train(config)


def _train(config: TrainConfig) -> dict[str, Any]:
  if config.deterministic:
    # Same flags and seed -> the same losses: ops pick deterministic kernels and run one at a
    # time (no measured cost: docs/experiments/2026-11-27-determinism.md), and tf.data keeps its
    # order (it does by default).
    # (Not under a distribution strategy: its replicas' collectives run side by side.)
    if config.strategy == "default" and not serialize_ops():
      logging.warning("--deterministic: TensorFlow was already running, so its ops may run "
                      "concurrently; runs are bit-identical within this process only")
    tf.config.experimental.enable_op_determinism()
  strategy = make_strategy(config.strategy)
  if config.strategy == "multi_worker" and _is_chief(strategy):
    from lorbms_tf import locks  # pylint: disable=import-outside-toplevel
    locks.DirectoryLock(config.workdir).acquire()  # held until this process exits
  jit = _has_gpu() if config.jit_compile is None else config.jit_compile
  precision = config.precision or auto_precision()
  keras.mixed_precision.set_global_policy(precision)
  _check_resume_compatible(config)
  tf.io.gfile.makedirs(config.workdir)

  # Peek at the saved iteration first: the input stream is re-seeded from it on resume, so a
  # resumed run continues deterministically (the shuffle buffer itself is not checkpointed).
  state = tf.train.get_checkpoint_state(_checkpoint_dir(config, strategy))
  resume_step = int(state.model_checkpoint_path.rsplit("-", 1)[1]) if state else 0
  dataset_fn, preview, objective, data_report = _datasets(config, strategy,
                                                          config.seed + resume_step)
  config = dataclasses.replace(config, objective=objective, jit_compile=jit, precision=precision)
  from lorbms_tf import identity  # pylint: disable=import-outside-toplevel
  values = {**config.to_dict(), "data_identity": identity.dataset_identity(
      config.dataset, config.data_dir), "code_version": identity.code_version()}
  _check_resume_same_run(config, values, resume_step)
  if _is_chief(strategy):
    checkpoints.write_config(config.workdir, values)

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
    if _is_chief(strategy) and not tf.io.gfile.exists(os.path.join(config.workdir,
                                                                   checkpoints.SUMMARY_FILE)):
      return _complete_finished_run(config, model, start, data_report)
    return {"step": start, "workdir": config.workdir}

  # A global-batch dataset: Keras distributes it over the replicas (auto-sharding by data for
  # multiple workers). Keras 3.15's fit fails on a DistributedDataset of dicts, so
  # distribute_datasets_from_function is not used here.
  dataset = dataset_fn()
  writer = tf.summary.create_file_writer(os.path.join(config.workdir, checkpoints.TENSORBOARD_DIR))
  learning_rates = {"generator": model.g_optimizer, "discriminator": model.d_optimizer,
                    "classifier": model.c_optimizer}
  monitor = lorbms_callbacks.MonitorCallback(writer, config.batch_size, config.total_steps,
                                             config.log_every, learning_rates, manager,
                                             config.max_train_seconds, data_report)
  callbacks = [
      monitor,
      lorbms_callbacks.CheckpointCallback(manager),
  ]
  if _is_chief(strategy):
    callbacks.append(lorbms_callbacks.ImageGridCallback(writer, preview, config.workdir,
                                                        config.image_every))
  if config.eval_every and _is_chief(strategy):
    callbacks.append(lorbms_callbacks.EvalCallback(
        _scenes_evaluator(config), writer, config.workdir, config.eval_every))
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
             # Epoch-end logs come after the monitor's window reset: report its last window.
             "final_metrics": monitor.last_logs or {k: float(v[-1])
                                                    for k, v in history.history.items()},
             "data": monitor.data_counts, "workdir": config.workdir,
             "ops_one_at_a_time": tf.config.threading.get_inter_op_parallelism_threads() == 1}
  if _is_chief(strategy):
    _write_summary(config.workdir, summary)
  else:  # a non-chief worker's copies of the collective saves are not needed after the run
    tf.io.gfile.rmtree(os.path.dirname(_checkpoint_dir(config, strategy)))
  logging.info("trained steps %d -> %d in %.0f s (%.1f img/s)", start, end, seconds,
               summary["images_per_second"])
  return summary


def _write_summary(workdir: str, summary: dict[str, Any]) -> None:
  from lorbms_tf import atomic  # pylint: disable=import-outside-toplevel
  atomic.write_json(os.path.join(workdir, checkpoints.SUMMARY_FILE), summary, indent=2)


def _complete_finished_run(config: TrainConfig, model, step: int,
                           data_report=None) -> dict[str, Any]:
  """A run at its last step without a summary (killed after the final checkpoint): the final
  light evaluation if it is missing, then the summary (speed unknown: not measured again)."""
  logging.warning("%s: trained to step %d but has no %s (killed before it was written): "
                  "completing the run", config.workdir, step, checkpoints.SUMMARY_FILE)
  if config.eval_every:
    history = lorbms_callbacks.read_eval_history(config.workdir)
    if not history or history[-1]["step"] != step:
      writer = tf.summary.create_file_writer(
          os.path.join(config.workdir, checkpoints.TENSORBOARD_DIR))
      callback = lorbms_callbacks.EvalCallback(_scenes_evaluator(config), writer,
                                               config.workdir, config.eval_every)
      callback.set_model(model)
      callback.evaluate()
  summary = {"step": step, "start_step": step, "seconds": 0.0, "images_per_second": None,
             "final_metrics": {}, "data": {},
             "workdir": config.workdir, "completed_after_interruption": True,
             "ops_one_at_a_time": tf.config.threading.get_inter_op_parallelism_threads() == 1}
  _write_summary(config.workdir, summary)
  return summary
