"""Records what the command lines make of their flags: tests/fixtures/cli_configs.json.

    .venv/bin/python tests/scripts/dump_cli_configs.py [--out=tests/fixtures/cli_configs.json]

Run from the repository root (the flagfiles name each other relative to it). For each CLI
(``lorbms_tf.train``, ``lorbms_tf.evaluate``, ``lorbms_tf.transfer``) and each argument list
below, it parses the flags with absl as the CLI does, builds the config with the module's own
``config_from_flags()`` and stores ``dataclasses.asdict(config)`` keyed by the argument list;
argument lists that are refused store the error instead, and every flag the module defines
is stored with its type, default, help and allowed values. Each CLI is read in a subprocess of
its own (the three define flags of the same names on absl's global FLAGS).

The fixture was written by this script before the flags were generated from the config
dataclasses (lorbms_tf/config_flags.py); tests/test_config_flags.py checks that the generated
flags give exactly the same configs, so a changed default or mapping fails there. Rerun it only
to record a deliberate change of a command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import shlex
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_OUT = os.path.join(ROOT, "tests", "fixtures", "cli_configs.json")
# Added in front of every argument list (--workdir is required).
COMMON_ARGS = ("--workdir=/tmp/x", "--data_dir=/tmp/d")

TRAIN_FLAGFILES = ("scenes", "scenes_long", "coco", "stl10", "celeba", "smoke")
sys.path.insert(0, ROOT)
from lorbms_tf import study  # pylint: disable=wrong-import-position

# The study's built-in variants (lorbms_tf.study.BUILTIN_VARIANTS) as flags, each on the demo.
STUDY_VARIANTS = {name: study.parse_variant(name).flags for name in study.BUILTIN_VARIANTS}

CASES = {
    "train": {
        "module": "lorbms_tf.train",
        "accepted": [
            [],
            *[[f"--flagfile=configs/{name}.flags"] for name in TRAIN_FLAGFILES],
            ["--decoder_projection=0", "--decoder_spectral_norm=true", "--jit_compile=false",
             "--precision=float32", "--profile_steps=1,3", "--generator_losses=autoencoder",
             "--cycle_weight=0", "--latent_weight=0.5", "--cycle_noise=0.1",
             "--allow_resume_changes", "--eval_test_scenes=10"],
            ["--flagfile=configs/smoke.flags", "--encoder_norm=batch", "--decoder_norm=pixel",
             "--decoder_spectral_norm=false", "--discriminator_spectral_norm=false",
             "--decoder_projection=16", "--jit_compile=true", "--precision=mixed_bfloat16",
             "--seed=7", "--partners=index", "--neighbour_table=/tmp/n", "--strategy=mirrored",
             "--noflip", "--deterministic", "--max_train_seconds=12.5", "--eval_every=5",
             "--eval_dataset=scenes/tiny", "--eval_test_scenes=9", "--eval_probe_scenes=11",
             "--eval_classifier_scenes=12", "--eval_classifier_epochs=2",
             "--adaptive_adv_weight", "--cycle_gradient=stop_mixed",
             "--decoder_batches=separate", "--collage_weight=0.3", "--rec_distance=l2",
             "--threshold_quantile=0.25", "--partner_k=3", "--generator_steps=2",
             "--adv_warmup_steps=2", "--lr_decay_steps=2", "--steps_per_execution=2",
             "--keep_checkpoints=5", "--beta_1=0.9", "--c_decay_steps=10", "--c_decay_rate=0.5",
             "--max_skipped_fraction=0.2", "--g_learning_rate=1e-3", "--d_learning_rate=3e-3",
             "--c_learning_rate=5e-4", "--rec_weight=2", "--adv_weight=0.1", "--cls_weight=0.2",
             "--profile_steps="],
            ["--dataset=tfrecord:/tmp/t/*.tfrecord", "--preset=coco", "--decoder_projection=preset",
             "--decoder_spectral_norm=preset", "--discriminator_spectral_norm=true",
             "--jit_compile=auto", "--precision=auto", "--strategy=multi_worker",
             "--total_steps=100", "--checkpoint_every=10", "--log_every=5", "--image_every=20",
             "--batch_size=2", "--noallow_resume_changes", "--flip=false"],
            ["--dataset=folder:/tmp/images", "--preset=tiny", "--precision=mixed_float16",
             "--profile_steps=0,1", "--eval_every=0", "--data_dir=/tmp/other"],
            ["--flagfile=configs/scenes.flags", "--encoder_norm=instance", "--decoder_norm=none",
             "--decoder_spectral_norm=true", "--decoder_projection=0"],
            ["--flagfile=configs/scenes.flags", "--g_learning_rate=2e-4", "--d_learning_rate=4e-4",
             "--c_learning_rate=2e-4", "--rec_distance=l1", "--rec_weight=0.904"],
            *[["--flagfile=configs/scenes.flags", *flags] for flags in STUDY_VARIANTS.values()
              if flags],
        ],
        "refused": [
            ["--generator_losses=gan"], ["--batch_size=x"], ["--batch_size=0"],
            ["--profile_steps=1"], ["--profile_steps=3,1"], ["--profile_steps=a,b"],
            ["--decoder_projection=3"], ["--precision=fp8"], ["--jit_compile=yes"],
            ["--decoder_spectral_norm=maybe"], ["--preset=huge"], ["--encoder_norm=layer"],
            ["--partners=index"], ["--rec_weight=-1"], ["--cycle_weight=abc"], ["--flip=maybe"],
            ["--eval_every=5", "--dataset=stl10"], ["--no_such_flag=1"], ["--dataset=nope"],
        ],
    },
    "evaluate": {
        "module": "lorbms_tf.evaluate",
        "accepted": [
            [],
            ["--flagfile=configs/eval_scenes.flags"],
            ["--flagfile=configs/eval_stl10.flags"],
            ["--checkpoint=/tmp/c/ckpt-3", "--out_dir=/tmp/o", "--dataset=scenes/tiny",
             "--split=train", "--num_eval_images=16", "--batch_size=8", "--fid_model=builtin",
             "--scene_classifier_scenes=32", "--scene_classifier_epochs=1",
             "--noscene_classifier_cache", "--probe_epochs=2", "--probe_batch_size=4",
             "--probe_learning_rate=0.01", "--probe_train_images=24", "--supervised_steps=5",
             "--stl10", "--stl10_folds=2", "--stl10_augment", "--stl10_fine_tune",
             "--stl10_test_limit=100", "--noover_checkpoints", "--checkpoint_images=8",
             "--grid_examples=4", "--seed=3"],
            ["--flagfile=configs/eval_scenes.flags", "--fid_model=", "--dataset=scenes"],
        ],
        "refused": [
            ["--num_eval_images=x"], ["--stl10=maybe"], ["--probe_learning_rate=fast"],
            ["--no_such_flag=1"],
        ],
    },
    "transfer": {
        "module": "lorbms_tf.transfer.__main__",
        "accepted": [
            [],
            ["--features=discriminator", "--clusters=50", "--output=/tmp/o",
             "--dataset=scenes/tiny", "--split=train", "--num_images=100",
             "--kmeans_iterations=3", "--kmeans_init=random", "--nokmeans_normalize",
             "--transfer_steps=7", "--transfer_batch_size=8", "--transfer_learning_rate=0.01",
             "--probe_epochs=3", "--probe_train_images=20", "--num_test=10", "--stl10",
             "--stl10_folds=2", "--stl10_test_limit=50", "--seed=4"],
            ["--nostl10", "--kmeans_init=afkmc2", "--features=encoder"],
        ],
        "refused": [
            ["--features=pixels"], ["--kmeans_init=x"], ["--clusters=x"], ["--no_such_flag=1"],
        ],
    },
}


def _json(value):
  return json.loads(json.dumps(value, default=str))


def _flag_record(flag) -> dict:
  record = {"type": flag.flag_type(), "default": _json(flag.default), "help": flag.help,
            "required": any(getattr(v, "flag_name", None) == flag.name for v in flag.validators)}
  if getattr(flag.parser, "enum_values", None) is not None:
    record["enum_values"] = list(flag.parser.enum_values)
  return record


def dump_module(name: str) -> dict:
  """The record of one CLI, read in this process (it defines the module's flags)."""
  from absl import flags  # pylint: disable=import-outside-toplevel
  case = CASES[name]
  module = importlib.import_module(case["module"])
  if hasattr(module, "define_flags"):
    module.define_flags()
  # The module's own flags (not those of libraries it imports, e.g. tensorflow_datasets').
  defined = sorted(f.name for f in flags.FLAGS.flags_by_module_dict()[case["module"]])
  out = {"module": case["module"], "common_args": list(COMMON_ARGS),
         "flags": {n: _flag_record(flags.FLAGS[n]) for n in defined}, "configs": {}, "errors": {}}
  for args in case["accepted"] + case["refused"]:
    flags.FLAGS.unparse_flags()
    key = shlex.join(args)
    try:
      flags.FLAGS([case["module"], *COMMON_ARGS, *args])
      config = module.config_from_flags()
    except (flags.Error, ValueError) as error:
      if args in case["accepted"]:
        raise RuntimeError(f"{name} {key}: {error}") from error
      out["errors"][key] = f"{type(error).__name__}: {error}"
    else:
      if args in case["refused"]:
        raise RuntimeError(f"{name} {key}: accepted, expected an error")
      out["configs"][key] = _json(dataclasses.asdict(config))
    finally:
      flags.FLAGS.unparse_flags()
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default=DEFAULT_OUT)
  parser.add_argument("--module", choices=sorted(CASES), help="Print one CLI's record (internal).")
  args = parser.parse_args()
  if args.module:
    json.dump(dump_module(args.module), sys.stdout)
    return
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
  record = {"study_variants": {k: list(v) for k, v in STUDY_VARIANTS.items()}}
  for name in CASES:
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), f"--module={name}"],
                          cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if proc.returncode:
      raise SystemExit(f"{name}: exit {proc.returncode}\n{proc.stderr[-3000:]}")
    record[name] = json.loads(proc.stdout)
  with open(args.out, "w") as f:
    json.dump(record, f, indent=1, sort_keys=True)
    f.write("\n")
  print(f"wrote {args.out}: " + ", ".join(
      f"{name} {len(record[name]['configs'])} configs, {len(record[name]['errors'])} errors, "
      f"{len(record[name]['flags'])} flags" for name in CASES))


if __name__ == "__main__":
  main()
