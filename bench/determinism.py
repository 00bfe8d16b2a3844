"""What --deterministic costs, and that it delivers: the demo's training, side by side.

Runs `python -m lorbms_tf.train --flagfile=configs/scenes.flags` for a few hundred steps with
--deterministic and --nodeterministic, alternating (so machine noise hits both alike), and
reports the images/s of each mode, their ratio, and whether the two deterministic runs logged
bit-identical losses at every step. Raw numbers: bench/results/determinism.json.

    python bench/determinism.py [--steps=200] [--rounds=2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def train(workdir: str, deterministic: bool, steps: int, data_dir: str) -> dict:
  command = [sys.executable, "-m", "lorbms_tf.train", "--flagfile=configs/scenes.flags",
             f"--workdir={workdir}", f"--data_dir={data_dir}", f"--total_steps={steps}",
             f"--checkpoint_every={steps}", "--log_every=10", f"--image_every={steps}",
             # --lr_decay_steps=0: the demo's decay needs more iterations than a timing run.
             "--eval_every=0", "--lr_decay_steps=0",
             "--deterministic" if deterministic else "--nodeterministic"]
  subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL)
  from lorbms_tf.eval import report  # pylint: disable=import-outside-toplevel
  with open(os.path.join(workdir, "train_summary.json")) as f:
    summary = json.load(f)
  scalars = report.read_tensorboard_scalars(os.path.join(workdir, "tb"))
  losses = {tag: values.tolist() for tag, (_, values) in scalars.items()
            if tag.startswith("train/")}
  return {"images_per_second": summary["images_per_second"], "losses": losses}


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--steps", type=int, default=200)
  parser.add_argument("--rounds", type=int, default=2)
  parser.add_argument("--data_dir", default=os.path.join(REPO, "tensorflow_datasets"))
  parser.add_argument("--out", default=os.path.join(REPO, "bench", "results", "determinism.json"))
  args = parser.parse_args()
  runs = {True: [], False: []}
  scratch = tempfile.mkdtemp(prefix="lorbms_determinism_")
  try:
    for round_ in range(args.rounds):
      for mode in (True, False) if round_ % 2 == 0 else (False, True):
        workdir = os.path.join(scratch, f"{'det' if mode else 'nondet'}_{round_}")
        runs[mode].append(train(workdir, mode, args.steps, args.data_dir))
        print(f"round {round_} deterministic={mode}: "
              f"{runs[mode][-1]['images_per_second']:.1f} img/s", flush=True)
  finally:
    shutil.rmtree(scratch, ignore_errors=True)
  det = [r["images_per_second"] for r in runs[True]]
  nondet = [r["images_per_second"] for r in runs[False]]
  identical = all(r["losses"] == runs[True][0]["losses"] for r in runs[True][1:])
  result = {"steps": args.steps, "rounds": args.rounds,
            "deterministic_images_per_second": det, "default_images_per_second": nondet,
            "ratio_deterministic_over_default": statistics.median(det) / statistics.median(nondet),
            "deterministic_runs_identical": identical,
            "default_runs_identical": all(r["losses"] == runs[False][0]["losses"]
                                          for r in runs[False][1:])}
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(result, f, indent=2)
  print(json.dumps({k: v for k, v in result.items()}, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main())
