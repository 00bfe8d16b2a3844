"""Sweeps and ablations: the same training with each variant and several seeds, one table.

A study directory holds one work dir per (variant, seed), ``STUDY/VARIANT/seed_S``, each a
normal training run (``python -m lorbms_tf.train`` in a subprocess, so every run starts from a
clean TensorFlow state) with the study's training flags, the variant's flags and ``--seed=S``.
The run's own light evaluation (``--eval_every``, always once at its last step) gives its row;
``result.json`` in the work dir marks it finished. Running the study again skips finished
runs and resumes unfinished ones from their latest checkpoint, so an interrupted study only
runs what is missing. ``summarize`` writes ``STUDY/study.json`` and ``STUDY/study.md``: per
variant, mean +- SD over seeds of every headline metric, plus rows of the free baselines.

No absl FLAGS here: ``lorbms_tf/ablate.py`` is the command line.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import subprocess
import sys
import time
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from lorbms_tf import atomic, checkpoints, locks, procs, targets
from lorbms_tf.eval import scenes_eval

RESULT_FILE = "result.json"
# The thesis's ablation study (drop one of L_rec, L_adv, L_cls; METHOD.md), the cycle, and the
# autoencoder baselines: name -> {training flag: value} (variant_flags renders them).
BUILTIN_VARIANTS: dict[str, dict[str, Any]] = {
    "full": {},
    "no_rec": {"rec_weight": 0},
    "no_adv": {"adv_weight": 0},
    "no_cls": {"cls_weight": 0},
    "no_cycle": {"cycle_weight": 0},
    # The baselines every LORBMS row must beat: the same networks and pass, G trained on
    # d(I_ref, I_hat) alone (D and C still trained beside it) / plus the cycle term.
    "autoencoder": {"generator_losses": "autoencoder"},
    "autoencoder_cycle": {"generator_losses": "autoencoder_cycle"},
    # The objective that beats the autoencoder at the demo's budget (docs/experiments/
    # 2026-12-03-autoencoder-baseline.md): no cycle term, twice the thesis's adversarial weight.
    "no_cycle_adv2": {"cycle_weight": 0, "adv_weight": 0.104},
}
# The baseline every variant is checked against, seed by seed (lorbms_tf.targets), and the
# baseline row whose shape probe the demo's targets are relative to.
BASELINE_VARIANT = "autoencoder"
RANDOM_ENCODER_ROW = "random encoder"
METRICS = tuple(scenes_eval.HIGHER_IS_BETTER)
PERCENT_METRICS = ("shape_probe", "colour_probe", "fidelity_shape", "fidelity_object",
                   "fidelity_informative", "mask_cls_accuracy")


@dataclasses.dataclass(frozen=True)
class Variant:
  name: str
  flags: tuple[str, ...] = ()


def _flag_value(value: Any) -> str:
  if isinstance(value, bool):
    return "true" if value else "false"
  if isinstance(value, (tuple, list)):
    return ",".join(_flag_value(v) for v in value)
  if value is None:
    raise ValueError("a variant's flag value cannot be None")
  return str(value)


def variant_flags(values: Mapping[str, Any]) -> tuple[str, ...]:
  """{flag name: value} -> ("--name=value", ...), in the mapping's order: what a variant adds
  to the training's command line (bools as true/false, sequences comma-separated)."""
  return tuple(f"--{name}={_flag_value(value)}" for name, value in values.items())


def parse_variant(text: str) -> Variant:
  """"NAME" (a built-in) or "NAME=--flag=v --other=w" (a custom set of training flags)."""
  name, sep, rest = text.partition("=")
  name = name.strip()
  if not name or "/" in name or name.startswith("-"):
    raise ValueError(f"bad variant {text!r}: want NAME or NAME=--flag=value ...")
  if not sep:
    if name not in BUILTIN_VARIANTS:
      raise ValueError(f"unknown variant {name!r}: built-ins are {sorted(BUILTIN_VARIANTS)}; "
                       f"define others as NAME=--flag=value ...")
    return Variant(name, variant_flags(BUILTIN_VARIANTS[name]))
  flags = tuple(shlex.split(rest))
  bad = [f for f in flags if not f.startswith("--")]
  if bad:
    raise ValueError(f"variant {name!r}: every part must be a --flag, got {bad}")
  return Variant(name, flags)


@dataclasses.dataclass(frozen=True)
class StudyConfig:
  study_dir: str
  variants: tuple[Variant, ...]
  seeds: tuple[int, ...]
  train_args: tuple[str, ...] = ()  # training flags shared by every run (flagfile included)
  python: str = sys.executable

  def __post_init__(self):
    names = [v.name for v in self.variants]
    if len(set(names)) != len(names):
      raise ValueError(f"variant names repeat: {names}")
    if not self.variants or not self.seeds:
      raise ValueError("a study needs at least one variant and one seed")
    for arg in self.train_args:
      if arg.split("=")[0] in ("--workdir", "--seed"):
        raise ValueError(f"{arg}: the study sets --workdir and --seed of each run itself")


def run_dir(config: StudyConfig, variant: Variant, seed: int) -> str:
  return os.path.join(config.study_dir, variant.name, f"seed_{seed}")


def train_command(config: StudyConfig, variant: Variant, seed: int) -> list[str]:
  """The run's command line: study flags, then the variant's (later flags win in absl)."""
  args = list(config.train_args)
  if not any(a.startswith("--eval_every") for a in (*args, *variant.flags)):
    args.append(f"--eval_every={10**9}")  # evaluate once, at the last step
  return [config.python, "-m", "lorbms_tf.train", *args, *variant.flags, f"--seed={seed}",
          f"--workdir={run_dir(config, variant, seed)}"]


def read_result(workdir: str) -> dict[str, Any] | None:
  path = os.path.join(workdir, RESULT_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def _write_json(path: str, value: Any) -> None:
  # atomic (unique temporary file, fsync, rename): a killed study never leaves half a result
  atomic.write_json(path, value, indent=2, sort_keys=True)


def finish_run(workdir: str, command: Sequence[str]) -> dict[str, Any]:
  """Collects a trained run's final evaluation into result.json (and returns it)."""
  from lorbms_tf.callbacks import read_eval_history  # pylint: disable=import-outside-toplevel
  with open(os.path.join(workdir, checkpoints.SUMMARY_FILE)) as f:
    summary = json.load(f)
  history = read_eval_history(workdir)
  if not history or history[-1]["step"] != summary["step"]:
    raise RuntimeError(f"{workdir}: no evaluation at the final step {summary['step']}")
  final = history[-1]
  previous = history[-2] if len(history) > 1 else None
  regressed = []
  if previous is not None:  # "no metric worse at the last evaluation than at the one before"
    for name in METRICS:
      better_up = scenes_eval.HIGHER_IS_BETTER[name]
      if (final[name] < previous[name]) if better_up else (final[name] > previous[name]):
        regressed.append(name)
  result = {"step": summary["step"], "metrics": {k: final[k] for k in final if k != "step"},
            "previous_eval": previous, "regressed_since_previous_eval": regressed,
            "images_per_second": summary.get("images_per_second"),
            "train_seconds": summary.get("seconds"), "command": list(command)}
  _write_json(os.path.join(workdir, RESULT_FILE), result)
  return result


def run_study(config: StudyConfig, log=print) -> list[dict[str, Any]]:
  """Trains every (variant, seed) that has no result yet, one at a time; returns all results.

  Seed-major: every variant's first seed runs before any second seed, so a study stopped
  early already compares all variants (and resuming completes the rest). The study dir is
  locked meanwhile (one runner per study; each run's training locks its own work dir). A run
  killed after its last checkpoint but before its summary is completed by its rerun (the
  training evaluates the final step if needed and writes the summary, lorbms_tf/train_lib.py).
  """
  with locks.DirectoryLock(config.study_dir):
    return _run_study(config, log)


def _run_study(config: StudyConfig, log) -> list[dict[str, Any]]:
  results = []
  for seed in config.seeds:
    for variant in config.variants:
      workdir = run_dir(config, variant, seed)
      result = read_result(workdir)
      if result is None:
        command = train_command(config, variant, seed)
        log(f"[study] {variant.name} seed {seed}: {shlex.join(command)}")
        start = time.perf_counter()
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, "train.log"), "a") as out:
          code = subprocess.call(command, stdout=out, stderr=subprocess.STDOUT,
                                 **procs.child_kwargs())
        if code != 0:
          raise RuntimeError(f"run {variant.name} seed {seed} failed (exit {code}); see "
                             f"{os.path.join(workdir, 'train.log')}")
        result = finish_run(workdir, command)
        log(f"[study] {variant.name} seed {seed}: done in {time.perf_counter() - start:.0f} s: "
            + " ".join(f"{k}={result['metrics'][k]:.4f}" for k in METRICS))
      else:
        log(f"[study] {variant.name} seed {seed}: finished earlier, skipped")
      results.append({"variant": variant.name, "seed": seed, **result})
  return results


def aggregate(values: Iterable[float | None]) -> dict[str, Any]:
  """Mean, SD, n of the values; None (not measured, e.g. the speed of a run completed after
  an interruption) is left out."""
  values = [float(v) for v in values if v is not None]
  if not values:
    return {"mean": float("nan"), "sd": float("nan"), "n": 0, "values": []}
  return {"mean": float(np.mean(values)), "sd": float(np.std(values, ddof=1)) if len(values) > 1
          else 0.0, "n": len(values), "values": values}


def summarize(config: StudyConfig, results: Sequence[Mapping[str, Any]],
              baselines: Mapping[str, Sequence[Mapping[str, float]]] | None = None
              ) -> dict[str, Any]:
  """Mean +- SD per variant and metric -> STUDY/study.json and STUDY/study.md."""
  table: dict[str, dict[str, Any]] = {}
  for variant in config.variants:
    rows = [r for r in results if r["variant"] == variant.name]
    entry = {name: aggregate(r["metrics"][name] for r in rows) for name in METRICS}
    entry["images_per_second"] = aggregate(r["images_per_second"] for r in rows)
    entry["regressed_runs"] = sum(bool(r["regressed_since_previous_eval"]) for r in rows)
    entry["flags"] = list(variant.flags)
    entry["seeds"] = [r["seed"] for r in rows]
    entry["step"] = rows[0]["step"] if rows else None
    table[variant.name] = entry
  baseline_table = {name: {k: aggregate(row[k] for row in rows)
                           for k in ("shape_probe", "colour_probe")}
                    for name, rows in (baselines or {}).items()}
  out = {"train_args": list(config.train_args), "seeds": list(config.seeds),
         "variants": table, "baselines": baseline_table}
  if BASELINE_VARIANT in table:  # every variant against the autoencoder of the same seed
    random_rows = (baselines or {}).get(RANDOM_ENCODER_ROW, [])
    random_shapes = ({seed: row["shape_probe"] for seed, row in zip(config.seeds, random_rows)}
                     if len(random_rows) == len(config.seeds) else None)
    out["versus_baseline"] = {
        "baseline": BASELINE_VARIANT,
        "variants": targets.versus_baseline(list(results), BASELINE_VARIANT, random_shapes)}
  with locks.DirectoryLock(config.study_dir):
    _write_json(os.path.join(config.study_dir, "study.json"), out)
    atomic.write_text(os.path.join(config.study_dir, "study.md"), markdown(out))
  return out


def _cell(stats: Mapping[str, Any] | None, name: str) -> str:
  if stats is None:
    return ""
  if name in PERCENT_METRICS:
    return f"{100 * stats['mean']:.1f} +- {100 * stats['sd']:.1f}"
  digits = 0 if name in ("scenes_fid", "images_per_second") else 3
  return f"{stats['mean']:.{digits}f} +- {stats['sd']:.{digits}f}"


def markdown(summary: Mapping[str, Any]) -> str:
  columns = (*METRICS, "images_per_second")
  header = ["variant", "seeds", *columns, "runs with a metric worse than at the previous eval"]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for name, entry in summary["variants"].items():
    cells = [name, str(len(entry["seeds"])), *(_cell(entry.get(c), c) for c in columns),
             str(entry["regressed_runs"])]
    lines.append("| " + " | ".join(cells) + " |")
  for name, entry in summary["baselines"].items():
    cells = [name, str(entry["shape_probe"]["n"]),
             *(_cell(entry.get(c), c) for c in columns), ""]
    lines.append("| " + " | ".join(cells) + " |")
  text = [f"Training flags: `{' '.join(summary['train_args'])}`; seeds {summary['seeds']}.",
          "Mean +- SD over seeds (percent for probes, fidelity and the mask classifier).", "",
          "\n".join(lines), ""]
  for name, entry in summary["variants"].items():
    if entry["flags"]:
      text.append(f"- `{name}`: `{' '.join(entry['flags'])}`")
  versus = summary.get("versus_baseline")
  if versus and versus["variants"]:
    text += ["", targets.versus_baseline_markdown(versus["variants"], versus["baseline"])]
  return "\n".join(text) + "\n"
