"""Ablations and sweeps: `python -m lorbms_tf.ablate --flagfile=configs/scenes.flags --seeds=3`.

    python -m lorbms_tf.ablate --flagfile=configs/scenes.flags --seeds=3 \\
        --variants=full,no_rec,no_adv,no_cls --study_dir=runs/ablation
    python -m lorbms_tf.ablate --flagfile=configs/scenes.flags --seeds=3 --variants=full \\
        --variant="thesis_nets=--preset=small --encoder_norm=instance" --study_dir=runs/nets

Every flag this command does not know is a training flag (``python -m lorbms_tf.train
--helpfull``), passed to every run, flagfile included. A variant is a built-in name (``full``,
``no_rec``, ``no_adv``, ``no_cls``: the thesis's ablation of L_rec, L_adv, L_cls) or
``NAME=--flag=value ...``. Each (variant, seed) trains in STUDY_DIR/VARIANT/seed_S; a study
run again skips what finished and resumes what did not. Writes STUDY_DIR/study.md and
study.json: mean +- SD over seeds per variant, with rows for raw pixels and a random encoder.
The logic lives in ``lorbms_tf.study``.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging

from lorbms_tf import cli, study

flags.DEFINE_string("study_dir", None, "Directory of the study (one work dir per run).")
flags.DEFINE_integer("seeds", 3, "Seeds per variant: first_seed .. first_seed + seeds - 1.")
flags.DEFINE_integer("first_seed", 0, "The first seed.")
flags.DEFINE_list("variants", ["full", "no_rec", "no_adv", "no_cls"],
                  f"Built-in variants: {', '.join(study.BUILTIN_VARIANTS)}.")
flags.DEFINE_multi_string("variant", [], "A custom variant, NAME=--flag=value ... (repeatable).")
flags.DEFINE_boolean("baselines", True, "Add raw-pixel and random-encoder probe rows.")
flags.DEFINE_integer("supervised_steps", 600,
                     "With --baselines: also the supervised ceiling (the same encoder trained on "
                     "the quadrant labels for this many steps, then probed); 0 = no such row.")
flags.DEFINE_boolean("dry_run", False, "Print the runs' commands and stop.")
flags.mark_flag_as_required("study_dir")

FLAGS = flags.FLAGS


def _parse_known(argv):
  # Training flags (and those of a --flagfile) are not this command's: keep them for the runs.
  try:
    return FLAGS(argv, known_only=True)
  except flags.Error as e:  # absl's own parser prints one line for the other commands
    raise SystemExit(f"{os.path.basename(argv[0])}: error: {cli.one_line(e)}") from None


def config_from_flags(train_args) -> study.StudyConfig:
  variants = [study.parse_variant(v) for v in FLAGS.variants]
  variants += [study.parse_variant(v) for v in FLAGS.variant]
  seeds = tuple(range(FLAGS.first_seed, FLAGS.first_seed + FLAGS.seeds))
  return study.StudyConfig(FLAGS.study_dir, tuple(variants), seeds, tuple(train_args))


def baseline_rows(config: study.StudyConfig, supervised_steps: int = 0
                  ) -> dict[str, list[dict[str, float]]]:
  """Raw pixels (once), a random encoder per seed and the supervised ceiling per seed, probed
  like the runs' chunks."""
  import keras  # pylint: disable=import-outside-toplevel
  from lorbms_tf import checkpoints  # pylint: disable=import-outside-toplevel
  from lorbms_tf.eval import scenes_eval, supervised  # pylint: disable=import-outside-toplevel
  from lorbms_tf.models import ModelConfig, build_encoder  # pylint: disable=import-outside-toplevel
  first = study.run_dir(config, config.variants[0], config.seeds[0])
  run = checkpoints.read_config(first)
  eval_config = scenes_eval.ScenesEvalConfig.from_dict(run["eval_config"])
  cache = os.path.join(run.get("data_dir") or first, "lorbms_scenes_classifier")
  evaluator = scenes_eval.ScenesEvaluator.for_scenes(eval_config, run.get("data_dir"), cache,
                                                     dataset=run["dataset"])
  model_config = ModelConfig.from_dict(run["model"])
  rows: dict[str, list[dict[str, float]]] = {}
  for seed in config.seeds:
    keras.utils.set_random_seed(seed)
    for name, row in evaluator.baseline_rows(build_encoder(model_config)).items():
      if name.startswith("raw pixels") and name in rows:
        continue  # deterministic: one row is enough
      rows.setdefault(name, []).append(row)
    if supervised_steps:
      ceiling = supervised.train_supervised_encoder(
          model_config, evaluator.train, supervised.SupervisedConfig(steps=supervised_steps,
                                                                     seed=seed))
      rows.setdefault(f"supervised encoder ({supervised_steps} steps on the labels)",
                      []).append(evaluator.probes(ceiling))
  return rows


def main(argv):
  try:
    config = config_from_flags(argv[1:])
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  if FLAGS.dry_run:
    for variant in config.variants:
      for seed in config.seeds:
        print(" ".join(study.train_command(config, variant, seed)))
    return
  results = study.run_study(config, log=logging.info)
  baselines = (baseline_rows(config, FLAGS.supervised_steps) if FLAGS.baselines else None)
  summary = study.summarize(config, results, baselines)
  print(study.markdown(summary))


def run():
  cli.run(main, flags_parser=_parse_known)


if __name__ == "__main__":
  run()
