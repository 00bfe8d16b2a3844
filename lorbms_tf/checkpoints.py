"""Work-dir layout, the training checkpoint, and restoring trained networks for other tools.

    WORKDIR/config.json          the run's settings (model sizes included), written once
    WORKDIR/checkpoints/ckpt-N   tf.train.Checkpoint at training iteration N
    WORKDIR/tb/                  TensorBoard logs (scalars, images, profiler traces)
    WORKDIR/grids/               PNG grids of mixed scenes

TF writes a checkpoint's data under a temporary name and then renames it, and the
`checkpoint` index file is replaced atomically, so a run killed mid-save keeps the last
complete checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any

import tensorflow as tf

CONFIG_FILE = "config.json"
SUMMARY_FILE = "train_summary.json"  # written when a training run finishes
CHECKPOINT_DIR = "checkpoints"
TENSORBOARD_DIR = "tb"
GRIDS_DIR = "grids"
NETWORKS = ("encoder", "decoder", "discriminator", "classifier")


def _variables(holder, attribute: str = "weights") -> tf.train.Checkpoint:
  # Keras 3 layers kept in Python lists (dense blocks, conv stacks) are invisible to
  # tf.train.Checkpoint's object graph, so each network's (or optimizer's) variables are saved
  # as one ordered list. The order is fixed by the architecture; restore checks every shape.
  return tf.train.Checkpoint(variables=list(getattr(holder, attribute)))


def network_checkpoint(model) -> dict[str, tf.train.Checkpoint]:
  return {name: _variables(getattr(model, name)) for name in NETWORKS}


def training_checkpoint(model, optimizers: dict[str, Any] | None = None) -> tf.train.Checkpoint:
  """Networks, optimizers, iteration and RNG state. Network keys are shared with
  `restore_networks`, so tools can restore the networks without the optimizers."""
  optimizer_state = {name: _variables(opt, "variables") for name, opt in (optimizers or {}).items()}
  return tf.train.Checkpoint(iteration=model.iteration, rng=model.rng, **network_checkpoint(model),
                             **optimizer_state)


def write_config(workdir: str, config: dict[str, Any]) -> None:
  from lorbms_tf import atomic  # pylint: disable=import-outside-toplevel
  tf.io.gfile.makedirs(workdir)
  atomic.write_json(os.path.join(workdir, CONFIG_FILE), config, indent=2, sort_keys=True)


def read_config(workdir: str) -> dict[str, Any]:
  path = os.path.join(workdir, CONFIG_FILE)
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"no {CONFIG_FILE} in work dir {workdir!r}: is it a lorbms_tf training run?")
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def list_checkpoints(workdir: str) -> list[tuple[int, str]]:
  """[(iteration, checkpoint prefix)] of the run, oldest first."""
  state = tf.train.get_checkpoint_state(os.path.join(workdir, CHECKPOINT_DIR))
  if state is None:
    return []
  result = []
  for path in state.all_model_checkpoint_paths:
    match = re.search(r"ckpt-(\d+)$", path)
    if match:
      result.append((int(match.group(1)), path))
  return sorted(result)


@dataclasses.dataclass
class Networks:
  encoder: Any
  decoder: Any
  discriminator: Any
  classifier: Any
  model: Any  # the LorbmsModel holding the four networks (mix_batch, render)
  config: dict[str, Any]
  step: int
  checkpoint: str = ""  # the prefix restored (a work dir resolves to its latest)


def resolve(path: str) -> tuple[str, str]:
  """A work dir or a checkpoint prefix -> (work dir, checkpoint prefix)."""
  if tf.io.gfile.isdir(path) and tf.io.gfile.exists(os.path.join(path, CONFIG_FILE)):
    checkpoints = list_checkpoints(path)
    if not checkpoints:
      raise FileNotFoundError(f"work dir {path!r} has no checkpoint yet")
    return path, checkpoints[-1][1]
  if tf.io.gfile.exists(path + ".index"):
    return os.path.dirname(os.path.dirname(path)), path
  raise FileNotFoundError(f"{path!r} is neither a lorbms_tf work dir nor a checkpoint prefix")


def restore_networks(path: str) -> Networks:
  """Rebuilds the networks from the run's config.json and restores their weights.

  `path` is a work dir (latest checkpoint) or a checkpoint prefix like WORKDIR/checkpoints/ckpt-400.
  """
  from lorbms_tf.lorbms import LorbmsConfig, LorbmsModel  # late: keeps this module light
  from lorbms_tf.models import ModelConfig
  workdir, prefix = resolve(path)
  config = read_config(workdir)
  model = LorbmsModel(ModelConfig.from_dict(config["model"]),
                      LorbmsConfig(**config.get("objective", {})))
  checkpoint = tf.train.Checkpoint(iteration=model.iteration, **network_checkpoint(model))
  checkpoint.restore(prefix).expect_partial().assert_existing_objects_matched()
  return Networks(model.encoder, model.decoder, model.discriminator, model.classifier, model,
                  config, int(model.iteration.numpy()), prefix)
