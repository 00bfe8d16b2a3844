"""Can the discriminator see what the decoder gets wrong? Spectral norm on vs off, side by side.

The demo's renderings are blobs where the scenes have stars, crosses and rings, yet its
discriminator's loss stays near chance (d_loss ~1.2-1.3 of 1.39 all through the long run).
This trains a *fresh* PatchGAN, alone, to tell real test-split scenes from a trained run's
I_mix renderings (frozen), with the run's own discriminator rate and Adam settings, once with
the thesis's spectral norm on convs 2-4 and once without, same seed, same batches. Reported
every few steps: held-out accuracy (a scene counts as "real" when its mean patch probability
is above 0.5; real and rendered halves weighted equally) and the mean probabilities. Also the
accuracy of the run's own discriminator on the same held-out pairs. Writes JSON to ``--out``.

    python docs/experiments/harnesses/discriminator_check.py --run=runs/demo/model  # ~5 min
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

from lorbms_tf import checkpoints  # noqa: E402
from lorbms_tf.eval import scenes_eval  # noqa: E402
from lorbms_tf.models import ModelConfig, build_discriminator  # noqa: E402
from decoder_only import write_results  # noqa: E402  (this folder)


def renderings(model, images: np.ndarray, batch: int = 64) -> np.ndarray:
  """I_mix for every image, batch-partner mixing as in training (inference mode)."""
  return np.concatenate([model.mix_batch(images[i:i + batch])["mixed"].numpy()
                         for i in range(0, len(images), batch)])


def accuracy(discriminator, real: np.ndarray, fake: np.ndarray) -> dict[str, float]:
  p_real = tf.sigmoid(tf.cast(discriminator(real), tf.float32)).numpy().mean((1, 2, 3))
  p_fake = tf.sigmoid(tf.cast(discriminator(fake), tf.float32)).numpy().mean((1, 2, 3))
  return {"accuracy": float(((p_real > 0.5).mean() + (p_fake <= 0.5).mean()) / 2),
          "p_real": float(p_real.mean()), "p_fake": float(p_fake.mean())}


def train_fresh(model_config: ModelConfig, train_real, train_fake, test_real, test_fake,
                steps: int, learning_rate: float, beta_1: float, batch: int, seed: int,
                report_at: tuple[int, ...]) -> list[dict]:
  keras.utils.set_random_seed(seed)
  discriminator = build_discriminator(model_config)
  optimizer = keras.optimizers.Adam(learning_rate, beta_1=beta_1)
  variables = discriminator.trainable_variables

  @tf.function
  def step(real, fake):
    with tf.GradientTape() as tape:
      real_logits = discriminator(real, training=True)
      fake_logits = discriminator(fake, training=True)
      loss = (tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
          labels=tf.ones_like(real_logits), logits=real_logits))
              + tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
                  labels=tf.zeros_like(fake_logits), logits=fake_logits)))
    optimizer.apply(tape.gradient(loss, variables), variables)
    return loss

  rng = np.random.default_rng(seed)  # the same batches for every arm
  rows = []
  for i in range(1, steps + 1):
    loss = step(train_real[rng.integers(0, len(train_real), batch)],
                train_fake[rng.integers(0, len(train_fake), batch)])
    if i in report_at or i == steps:
      rows.append({"step": i, "loss": float(loss),
                   **accuracy(discriminator, test_real, test_fake)})
      print(json.dumps(rows[-1]), flush=True)
  return rows


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--run", default=os.path.join(REPO, "runs", "demo", "model"),
                      help="a trained work dir (its latest checkpoint renders I_mix)")
  parser.add_argument("--steps", type=int, default=400)
  parser.add_argument("--train_scenes", type=int, default=4096)
  parser.add_argument("--test_scenes", type=int, default=512)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--data_dir", default=os.path.join(REPO, "tensorflow_datasets"))
  parser.add_argument("--out", default=os.path.join(REPO, "bench", "results",
                                                    "discriminator_check.json"))
  args = parser.parse_args()
  start = time.perf_counter()
  networks = checkpoints.restore_networks(args.run)
  run_flags = networks.config
  model_config = ModelConfig.from_dict(run_flags["model"])
  train = scenes_eval.load_scenes("train", args.train_scenes, args.data_dir)["image"]
  test = scenes_eval.load_scenes("test", args.test_scenes, args.data_dir)["image"]
  train, test = (x.astype(np.float32) for x in (train, test))
  train_fake, test_fake = renderings(networks.model, train), renderings(networks.model, test)
  results = {"benchmark": "discriminator_check", "args": vars(args), "run_step": networks.step,
             "run_discriminator": accuracy(networks.discriminator, test, test_fake), "arms": {}}
  print("the run's own discriminator", json.dumps(results["run_discriminator"]), flush=True)
  for arm, spectral_norm in (("spectral_norm_convs_2_4", True), ("no_spectral_norm", False)):
    print(arm, flush=True)
    results["arms"][arm] = train_fresh(
        dataclasses.replace(model_config, discriminator_spectral_norm=spectral_norm),
        train, train_fake, test, test_fake, args.steps, run_flags["d_learning_rate"],
        run_flags["beta_1"], run_flags["batch_size"], args.seed, (25, 50, 100, 200))
  results["seconds"] = time.perf_counter() - start
  write_results(args.out, results)


if __name__ == "__main__":
  main()
