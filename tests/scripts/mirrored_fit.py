"""The full training run (fit, callbacks, grids, checkpoints) under MirroredStrategy on 2 logical
CPUs, then mirrored_equivalence.py's one-step check in the same process (one TensorFlow start
for both). Run as a separate process (logical devices must be set before TF starts); prints two
JSON lines: the equivalence report, then the run.

    python tests/scripts/mirrored_fit.py WORKDIR DATA_DIR
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import mirrored_equivalence  # sets up the 2 logical CPUs; the script's folder is on sys.path
import tensorflow as tf

from lorbms_tf import checkpoints, train_lib  # noqa: E402


def main(workdir, data_dir):
  # First: the training run below sets a global dtype policy (bf16 on CPUs that have it).
  print(json.dumps(mirrored_equivalence.report()))
  summary = train_lib.train(train_lib.TrainConfig(
      workdir=workdir, dataset="scenes/tiny", data_dir=data_dir, preset="tiny", batch_size=4,
      total_steps=4, checkpoint_every=2, log_every=1, image_every=2, strategy="mirrored"))
  print(json.dumps({"replicas": tf.distribute.MirroredStrategy().num_replicas_in_sync,
                    "step": summary["step"], "g_loss": summary["final_metrics"]["g_loss"],
                    "checkpoints": [s for s, _ in checkpoints.list_checkpoints(workdir)]}))


if __name__ == "__main__":
  main(*sys.argv[1:3])
