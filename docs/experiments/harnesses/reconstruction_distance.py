"""Does the reconstruction distance decide when the renderings show shape? L1 vs L2, side by side.

The demo's renderings stay round blobs for ~2,500 iterations. This isolates the reconstruction
path: the demo's encoder and decoder (`small` preset, `configs/scenes.flags`' networks, Adam
1e-3 / beta_1 0.5, batch 32, bf16 where the CPU has it) trained as a plain autoencoder, with
no mixing, GAN or classifier, once with L1 (the thesis's distance) and once with L2 (mean
squared error), same seed, same batches, in one run. Every ``--eval_every`` steps, on 1,000
test scenes: test L1 of the reconstruction and what the scenes' domain classifier sees in it
per quadrant (shape; shape + colour on occupied quadrants: the judge of transfer fidelity);
at the end, the shape and colour probes of the chunks. Raw numbers to ``--out`` (JSON).

The same harness screens the decoder's projection (``--decoder_projections``): one arm per
(distance, projection) pair, so a change to the reconstruction path can be judged in minutes
before a full training run. Its scratch predecessor found projection 8 (fidelity order 0 < 8 held
in the demo, seeds 0 and 1).

    # 2 x 2,000 steps, ~20 minutes on 2 cores:
    python docs/experiments/harnesses/reconstruction_distance.py
    python docs/experiments/harnesses/reconstruction_distance.py --distances=l2 \
        --decoder_projections=0,8 --steps=1000 --out=bench/results/decoder_projection.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The repository root: this file is in docs/experiments/harnesses/.
REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
sys.path.insert(0, REPO)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from lorbms_tf import losses, train_lib  # noqa: E402
from lorbms_tf.eval import linear_probe, object_metrics, scenes_eval  # noqa: E402
from lorbms_tf.models import build_decoder, build_encoder, get_preset  # noqa: E402
from lorbms_tf.models.presets import DECODER_PROJECTIONS  # noqa: E402
from decoder_only import (DEMO_NETWORKS, load_scenes_and_judge,  # noqa: E402  (this folder)
                          write_results)


def render(encoder, decoder, images, batch=250):
  return np.concatenate([np.asarray(tf.cast(decoder(encoder(images[i:i + batch])), tf.float32))
                         for i in range(0, len(images), batch)])


def train_autoencoder(name, distance, model_config, train, test, classifier, args):
  keras.utils.set_random_seed(args.seed)
  encoder, decoder = build_encoder(model_config), build_decoder(model_config)
  variables = encoder.trainable_variables + decoder.trainable_variables
  optimizer = keras.optimizers.Adam(1e-3, beta_1=0.5)
  optimizer.build(variables)
  data = (tf.data.Dataset.from_tensor_slices(train["image"].astype(np.float32))
          .shuffle(len(train["image"]), seed=args.seed).repeat().batch(args.batch_size)
          .take(args.steps))

  @tf.function
  def step(images):
    with tf.GradientTape() as tape:
      loss = losses.pixel_distance(images, decoder(encoder(images, training=True), training=True),
                                   distance)
    optimizer.apply(tape.gradient(loss, variables), variables)

  occupied = test["shapes"] != 0
  truth = object_metrics.object_ids(test["shapes"], test["colors"])
  rows, train_seconds = [], 0.0
  for i, images in enumerate(data, 1):
    start = time.perf_counter()
    step(images)
    train_seconds += time.perf_counter() - start
    if i % args.eval_every == 0 or i == args.steps:
      rendered = render(encoder, decoder, test["image"])
      seen = classifier.predict(rendered)
      objects = object_metrics.object_ids(seen["shapes"], seen["colors"]) == truth
      rows.append({"step": i, "test_l1": float(np.mean(np.abs(rendered - test["image"]))),
                   "shape_accuracy": float(np.mean(seen["shapes"] == test["shapes"])),
                   "object_accuracy_occupied": float(np.mean(objects[occupied])),
                   "train_seconds": round(train_seconds, 1)})
      print(name, json.dumps(rows[-1]), flush=True)
  probe_train = {k: v[:4000] for k, v in train.items()}
  probes = scenes_eval.quadrant_probes(
      scenes_eval.chunk_features(encoder, probe_train["image"]), probe_train,
      scenes_eval.chunk_features(encoder, test["image"]), test, linear_probe.ProbeConfig())
  print(name, "chunk probes", json.dumps(probes), flush=True)
  return {"curve": rows, "chunk_probes": probes}


def arm_names(distances, projections):
  """(name, distance, projection) per arm; named by the distance alone when every arm has the
  thesis decoder (projection 0), as the reference JSON of the L1 vs L2 comparison is."""
  return [(distance if projections == [0] else f"{distance}_projection{projection}",
           distance, projection) for distance in distances for projection in projections]


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--distances", default=",".join(losses.REC_DISTANCES),
                      help="comma-separated reconstruction distances, one arm each")
  parser.add_argument("--decoder_projections", default="0",
                      help="comma-separated ModelConfig.decoder_projection values, one arm each")
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--steps", type=int, default=2000)
  parser.add_argument("--eval_every", type=int, default=500)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--data_dir", default=os.path.join(REPO, "tensorflow_datasets"))
  parser.add_argument("--out", default=os.path.join(REPO, "bench", "results",
                                                    "reconstruction_distance.json"))
  args = parser.parse_args(argv)
  distances = args.distances.split(",")
  if unknown := set(distances) - set(losses.REC_DISTANCES):
    parser.error(f"--distances: unknown {sorted(unknown)}; choose from {losses.REC_DISTANCES}")
  try:
    projections = [int(p) for p in args.decoder_projections.split(",")]
  except ValueError:
    parser.error(f"--decoder_projections: integers expected, got {args.decoder_projections!r}")
  if unknown := set(projections) - set(DECODER_PROJECTIONS):
    parser.error(f"--decoder_projections: unknown {sorted(unknown)}; "
                 f"choose from {DECODER_PROJECTIONS}")
  args.arms = arm_names(distances, projections)
  return args


def main():
  args = parse_args()
  keras.mixed_precision.set_global_policy(train_lib.auto_precision())
  train, test, classifier = load_scenes_and_judge(args.data_dir)
  results = {"benchmark": "reconstruction_distance", "args": vars(args),
             "precision": keras.mixed_precision.global_policy().name, "arms": {}}
  for name, distance, projection in args.arms:
    model_config = dataclasses.replace(get_preset("small"), **DEMO_NETWORKS,
                                       decoder_projection=projection)
    results["arms"][name] = train_autoencoder(name, distance, model_config, train, test,
                                              classifier, args)
  write_results(args.out, results)


if __name__ == "__main__":
  main()
