"""Does the demo learn objects, for every seed? The learning targets, measured (issue 8).

Trains the flagfile's configuration for several seeds with the study runner (``lorbms_tf.study``:
resumable, one work dir per seed), takes each run's light evaluation at its last step (and the
one before it), probes raw pixels and a random encoder of each seed the same way, and checks:

    I_hat L1 <= 0.10; colour probe >= 95%; shape probe >= the same seed's random encoder + 10
    points; object-transfer fidelity (shape + colour) >= 50%; mask classifier >= 75%; no metric
    worse at the last evaluation than at the one before.

``--long`` checks the long run's targets instead: shape probe >= 70%, fidelity >= 80%.
Writes STUDY_DIR/learning.json (raw numbers, per-seed verdicts and margins) and prints a table.

    # make bench-learning:
    python docs/experiments/harnesses/learning.py --flagfile=configs/scenes.flags --seeds=3
    python docs/experiments/harnesses/learning.py --flagfile=configs/scenes_long.flags \
        --seeds=1 --long
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

# The repository root: this file is in docs/experiments/harnesses/.
REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
sys.path.insert(0, REPO)

from lorbms_tf import study  # noqa: E402  (after the path fix, for `python .../learning.py`)
from lorbms_tf.targets import check, demo_targets, long_targets  # noqa: E402

RANDOM_ROW = study.RANDOM_ENCODER_ROW


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--flagfile", default="configs/scenes.flags")
  parser.add_argument("--seeds", type=int, default=3)
  parser.add_argument("--study_dir", default=os.path.join(REPO, "bench", "results", "learning"))
  parser.add_argument("--data_dir", default=os.path.join(REPO, "tensorflow_datasets"))
  parser.add_argument("--long", action="store_true", help="check the long run's targets")
  args, train_args = parser.parse_known_args()

  command = [sys.executable, "-m", "lorbms_tf.ablate", f"--flagfile={args.flagfile}",
             f"--data_dir={args.data_dir}", f"--study_dir={args.study_dir}",
             f"--seeds={args.seeds}", "--variants=full", *train_args]
  print(" ".join(command), flush=True)
  subprocess.run(command, cwd=REPO, check=True)
  with open(os.path.join(args.study_dir, "study.json")) as f:
    summary = json.load(f)
  random_shapes = summary["baselines"][RANDOM_ROW]["shape_probe"]["values"]
  make_targets = long_targets if args.long else demo_targets
  runs = []
  for seed, random_shape in zip(range(args.seeds), random_shapes):
    result = study.read_result(os.path.join(args.study_dir, "full", f"seed_{seed}"))
    verdicts = check(make_targets(result["metrics"], random_shape))
    if not args.long:
      regressed = result["regressed_since_previous_eval"]
      verdicts["no_metric_worse_than_previous_eval"] = {
          "value": regressed, "target": [], "met": not regressed}
    runs.append({"seed": seed, "step": result["step"], "train_seconds": result["train_seconds"],
                 "images_per_second": result["images_per_second"],
                 "random_encoder_shape_probe": random_shape, "metrics": result["metrics"],
                 "targets": verdicts})
  report = {"flagfile": args.flagfile, "extra_train_args": train_args, "long": args.long,
            "runs": runs, "all_met": all(v["met"] for r in runs for v in r["targets"].values()),
            "summary": summary}
  path = os.path.join(args.study_dir, "learning.json")
  with open(path, "w") as f:
    json.dump(report, f, indent=2)
  names = list(runs[0]["targets"])
  print("| seed | train s | " + " | ".join(names) + " |")
  print("|---|---|" + "---|" * len(names))
  for run in runs:
    cells = []
    for name in names:
      verdict = run["targets"][name]
      value = verdict["value"]
      shown = f"{value:.3f}" if isinstance(value, float) else (", ".join(value) or "none")
      cells.append(f"{shown} {'ok' if verdict['met'] else 'MISSED'}")
    print(f"| {run['seed']} | {run['train_seconds']:.0f} | " + " | ".join(cells) + " |")
  print(f"all targets met: {report['all_met']}  ({path})")
  return 0


if __name__ == "__main__":
  sys.exit(main())
