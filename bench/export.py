"""Export cost and serving speed: the SavedModel's ``mix`` against the Keras networks.

Exports WORKDIR's latest checkpoint (``lorbms_tf.export``), then in this one process times
``mix`` through the loaded SavedModel and the same computation on the Keras networks
(``ServingModule.mix`` under ``tf.function``), alternating, at batch 1 and 64: latency
(median of repeated calls) and images/s. Raw numbers: bench/results/export.json.

    python bench/export.py --workdir=runs/demo/model
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def _median_seconds(fn, repeats: int) -> float:
  fn()  # warm-up (and the first trace for tf.function)
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", default=os.path.join(REPO, "runs", "demo"))
  parser.add_argument("--batches", default="1,64")
  parser.add_argument("--repeats", type=int, default=20)
  parser.add_argument("--out", default=os.path.join(REPO, "bench", "results", "export.json"))
  args = parser.parse_args()
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from lorbms_tf import export  # pylint: disable=import-outside-toplevel
  export_dir = os.path.join(tempfile.mkdtemp(), "model")
  record = export.export_saved_model(args.workdir, export_dir)
  print(f"export: {record['seconds']:.1f} s, {record['size_bytes'] / 1e6:.1f} MB")
  loaded = tf.saved_model.load(export_dir).signatures["mix"]
  keras_mix = tf.function(export.ServingModule(export._float32_networks(args.workdir)).mix)
  rows = []
  for batch in [int(b) for b in args.batches.split(",")]:
    feed = {k: tf.constant(v) for k, v in export.warmup_inputs(batch)["mix"].items()}
    for round_index in range(2):  # alternate, so both share the machine's load
      for name, fn in (("saved_model", lambda: loaded(**feed)["image"].numpy()),
                       ("keras", lambda: keras_mix(**feed)["image"].numpy())):
        seconds = _median_seconds(fn, args.repeats if batch < 16 else max(3, args.repeats // 4))
        rows.append({"path": name, "batch": batch, "round": round_index,
                     "latency_ms": 1000 * seconds, "images_per_second": batch / seconds})
        print(f"batch {batch:3d} {name:12s} {1000 * seconds:8.1f} ms  "
              f"{batch / seconds:8.1f} img/s", flush=True)
  summary = {}
  for batch in sorted({r["batch"] for r in rows}):
    med = {name: float(np.median([r["latency_ms"] for r in rows
                                  if r["batch"] == batch and r["path"] == name]))
           for name in ("saved_model", "keras")}
    summary[f"batch_{batch}"] = {**{f"{k}_latency_ms": v for k, v in med.items()},
                                 "saved_model_vs_keras_speed": med["keras"] / med["saved_model"]}
  result = {"export": record, "runs": rows, "summary": summary, "cpus": os.cpu_count()}
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(result, f, indent=1)
  print(json.dumps(summary, indent=1))


if __name__ == "__main__":
  main()
