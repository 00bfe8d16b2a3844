"""Train-step throughput of the presets, side by side in one process, as a fraction of peak.

For each preset: images/s of LorbmsModel.train_step (batch partners, one G update per
iteration), the step's FLOPs from the TF profiler's op statistics (forward and backward of
the traced step), and the matmul FLOP/s measured in the same process as the practical peak.
Rounds alternate between presets so machine noise hits both alike. Writes raw numbers as JSON.

    python bench/train_throughput.py [--presets=coco,small] [--rounds=3] [--out=...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf

from lorbms_tf import flops
from lorbms_tf.lorbms import LorbmsConfig, LorbmsModel
from lorbms_tf.models import get_preset

BATCH = {"coco": 14, "small": 32, "tiny": 32}


def build(preset: str, batch: int):
  keras.utils.set_random_seed(0)
  model = LorbmsModel(get_preset(preset), LorbmsConfig(partner_k=2))
  model.compile(*(keras.optimizers.Adam(2e-4, beta_1=0.5) for _ in range(3)))
  images = tf.random.uniform([batch, 64, 64, 3], -1, 1, seed=1)
  step = tf.function(model.train_step)
  start = time.perf_counter()
  float(step({"image": images})["g_loss"])
  first_call = time.perf_counter() - start
  step_flops = flops.count_flops(model.train_step, [{"image": tf.TensorSpec(images.shape, tf.float32)}])
  return step, images, first_call, step_flops


def timed_round(step, images, steps: int) -> float:
  start = time.perf_counter()
  for _ in range(steps):
    result = step({"image": images})
  float(result["g_loss"])
  return steps * int(images.shape[0]) / (time.perf_counter() - start)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--presets", default="coco,small")
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--seconds_per_round", type=float, default=8.0)
  parser.add_argument("--out", default="bench/results/train_throughput.json")
  args = parser.parse_args()
  presets = args.presets.split(",")

  peak = flops.matmul_peak_flops()
  setups = {p: build(p, BATCH.get(p, 32)) for p in presets}
  # Steps per round sized from a first timing, so each round lasts about seconds_per_round.
  steps = {}
  for p, (step, images, _, _) in setups.items():
    rate = timed_round(step, images, 1)
    steps[p] = max(1, int(args.seconds_per_round * rate / int(images.shape[0])))
  rates = {p: [] for p in presets}
  for _ in range(args.rounds):
    for p, (step, images, _, _) in setups.items():
      rates[p].append(timed_round(step, images, steps[p]))
  peak_after = flops.matmul_peak_flops()

  results = {"device": tf.config.list_logical_devices()[-1].device_type,
             "cpu_count": os.cpu_count(), "platform": platform.platform(),
             "tensorflow": tf.__version__, "matmul_peak_flops": [peak, peak_after], "presets": {}}
  print(f"matmul peak: {peak / 1e9:.0f} / {peak_after / 1e9:.0f} GFLOP/s (before / after)")
  print(f"{'preset':8} {'batch':>5} {'img/s':>8} {'GFLOP/img':>10} {'GFLOP/s':>8} {'of peak':>8} {'1st call s':>10}")
  for p, (step, images, first_call, step_flops) in setups.items():
    batch = int(images.shape[0])
    median = statistics.median(rates[p])
    per_image = step_flops / batch
    achieved = median * per_image
    results["presets"][p] = {"batch": batch, "images_per_second": rates[p],
                             "median_images_per_second": median, "step_flops": step_flops,
                             "flops_per_image": per_image, "achieved_flops": achieved,
                             "fraction_of_peak": achieved / max(peak, peak_after),
                             "first_call_seconds": first_call, "steps_per_round": steps[p]}
    print(f"{p:8} {batch:5d} {median:8.1f} {per_image / 1e9:10.2f} {achieved / 1e9:8.1f} "
          f"{achieved / max(peak, peak_after):8.1%} {first_call:10.1f}")
  if "coco" in rates and "small" in rates:
    ratios = [s / c for s, c in zip(rates["small"], rates["coco"])]
    results["small_over_coco"] = ratios
    print(f"small / coco img/s, per round: {', '.join(f'{r:.1f}x' for r in ratios)}")
  os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(results, f, indent=2)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
