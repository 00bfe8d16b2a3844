"""The full training run (fit, callbacks, grids, checkpoints) under MirroredStrategy on 2 logical
CPUs. Run as a separate process (logical devices must be set before TF starts); prints JSON.

    python tests/scripts/mirrored_fit.py WORKDIR DATA_DIR
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from lorbms_tf import checkpoints, train_lib  # noqa: E402


def main(workdir, data_dir):
  summary = train_lib.train(train_lib.TrainConfig(
      workdir=workdir, dataset="scenes/tiny", data_dir=data_dir, preset="tiny", batch_size=4,
      total_steps=4, checkpoint_every=2, log_every=1, image_every=2, strategy="mirrored"))
  print(json.dumps({"replicas": tf.distribute.MirroredStrategy().num_replicas_in_sync,
                    "step": summary["step"], "g_loss": summary["final_metrics"]["g_loss"],
                    "checkpoints": [s for s, _ in checkpoints.list_checkpoints(workdir)]}))


if __name__ == "__main__":
  main(*sys.argv[1:3])
