"""Features/s of the builtin FID Inception (lorbms_tf.eval.fid_inception) on this machine.

  python bench/fid_inception_speed.py [--batch_size=64 --batches=4]

Loads the cached SavedModel (built on first use from the PyPI wheel, ~12 s), feeds uint8
64 px images (resized to 299 inside the graph, as in evaluation) and times whole batches after
one warm-up batch; writes the raw times to bench/results/fid_inception_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf

from lorbms_tf.eval import fid_inception

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                       "fid_inception_speed.json")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batch_size", type=int, default=64)
  parser.add_argument("--batches", type=int, default=4)
  parser.add_argument("--image_size", type=int, default=64)
  parser.add_argument("--out", default=RESULTS)
  args = parser.parse_args()
  start = time.perf_counter()
  model = tf.saved_model.load(fid_inception.builtin_fid_model())
  load_seconds = time.perf_counter() - start
  images = tf.constant(np.random.default_rng(0).integers(
      0, 256, (args.batch_size, args.image_size, args.image_size, 3), np.uint8))
  model(images)  # warm-up (the first call builds the kernels)
  times = []
  for _ in range(args.batches):
    begin = time.perf_counter()
    model(images).numpy()
    times.append(time.perf_counter() - begin)
  result = {
      "benchmark": "fid_inception_speed", "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
      "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                  "tensorflow": tf.__version__, "load_avg_1m": os.getloadavg()[0]},
      "batch_size": args.batch_size, "image_size": args.image_size,
      "load_seconds": load_seconds, "batch_seconds": times,
      "features_per_second_median": args.batch_size / float(np.median(times))}
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(result, f, indent=1)
  print(f"{result['features_per_second_median']:.1f} features/s at batch {args.batch_size} "
        f"({os.cpu_count()} CPUs); raw: {args.out}")


if __name__ == "__main__":
  main()
