"""End to end: a smoke-trained work dir -> `python -m lorbms_tf.evaluate` and `... render`.

The work dir is written by the trainer's own pieces (``train_lib.build_model``,
``checkpoints.write_config`` / ``training_checkpoint``, TensorBoard scalars under ``train/``)
and trained for two real iterations of ``LorbmsModel.train_step`` on ``scenes/tiny``, run
eagerly: the same layout and weights a `configs/smoke.flags` run leaves, without the ~30 s
of tracing ``model.fit`` costs on a busy 2-core box. The CLIs run as subprocesses, as a user
runs them, with every size shrunk.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def trained_workdir(tmp_path_factory):
  from lorbms_tf import checkpoints, train_lib
  from lorbms_tf.data import pipeline
  base = tmp_path_factory.mktemp("run")
  config = train_lib.TrainConfig(
      workdir=str(base / "w"), dataset="scenes/tiny", data_dir=str(base / "tfds"),
      preset="tiny", batch_size=4, total_steps=2, checkpoint_every=1)
  checkpoints.write_config(config.workdir, config.to_dict())
  model = train_lib.build_model(config)
  ckpt = checkpoints.training_checkpoint(model)
  manager = tf.train.CheckpointManager(
      ckpt, os.path.join(config.workdir, checkpoints.CHECKPOINT_DIR), max_to_keep=3)
  writer = tf.summary.create_file_writer(os.path.join(config.workdir, checkpoints.TENSORBOARD_DIR))
  batches = iter(pipeline.train_dataset(config.dataset, config.batch_size,
                                        data_dir=config.data_dir))
  for _ in range(config.total_steps):
    logs = model.train_step(next(batches))
    step = int(model.iteration.numpy())
    with writer.as_default(step=step):
      for name, value in logs.items():
        tf.summary.scalar(f"train/{name}", float(value))
    manager.save(checkpoint_number=step)
  writer.close()
  return config.workdir


class _TinyInception(tf.Module):
  """The TF-Hub tfgan/eval/inception/1 interface, tiny: 299 px in [-1, 1] -> pool_3, logits."""

  def __init__(self):
    super().__init__()
    self.proj = tf.Variable(np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32))

  @tf.function(input_signature=[tf.TensorSpec([None, 299, 299, 3], tf.float32)])
  def __call__(self, images):
    pooled = tf.reduce_mean(tf.nn.relu(tf.einsum("bhwc,cd->bhwd", images, self.proj)), [1, 2])
    return {"pool_3": pooled[:, None, None, :], "logits": pooled[:, :4]}


def _run(module, *args, timeout=600):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
  proc = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


def test_evaluate_cli_writes_report(trained_workdir, tmp_path):
  inception = str(tmp_path / "inception")
  tf.saved_model.save(_TinyInception(), inception)
  out = str(tmp_path / "eval")
  _run("lorbms_tf.evaluate", f"--workdir={trained_workdir}", f"--out_dir={out}",
       f"--fid_model={inception}", "--num_eval_images=16", "--probe_train_images=24",
       "--probe_epochs=1", "--scene_classifier_scenes=32", "--scene_classifier_epochs=1",
       "--checkpoint_images=8", "--grid_examples=4", "--supervised_steps=5")
  metrics = json.load(open(os.path.join(out, "metrics.json")))
  assert metrics["run"]["step"] == 2 and metrics["run"]["num_eval_images"] == 16
  quality = metrics["image_quality"]
  assert "fid" in quality["mixed (Inception)"] and "scenes_fid" in quality["mixed (scenes)"]
  assert 0 <= metrics["object_transfer"]["shape"]["fidelity"] <= 1
  assert 0 <= metrics["mask_classifier"]["accuracy"] <= 1
  probes = metrics["probes"]["scenes_quadrant"]
  assert set(probes) == {"trained encoder", "random encoder", "raw pixels (8x8x3 per quadrant)",
                         "supervised encoder (5 steps on the labels)"}
  for row in probes.values():
    assert 0 <= row["shape_probe"] <= 1 and 0 <= row["colour_probe"] <= 1
  assert metrics["probes"]["scenes_image"]["trained encoder"]["num_params"] == 4 * 16 * 7 + 7
  history = metrics["over_checkpoints"]
  assert [h["step"] for h in history] == [1, 2]
  assert {"rec_l1", "shape_probe", "colour_probe", "fidelity_object", "fid"} <= set(history[0])
  text = open(os.path.join(out, "report.md")).read()
  assert "scenes FID" in text and "| FID |" in text
  for name in ("mixed_scenes.png", "object_transfer.png", "metrics_over_training.png",
               "loss_curves.png"):
    assert os.path.getsize(os.path.join(out, name)) > 500, name


def test_render_cli(trained_workdir, tmp_path):
  from PIL import Image
  from lorbms_tf.data import scenes
  images = scenes.generate_scenes(2, resolution=80, seed=3)["image"]
  paths = []
  for i, image in enumerate(images):
    paths.append(str(tmp_path / f"{i}.png"))
    Image.fromarray(image).save(paths[-1])
  out = str(tmp_path / "out" / "t.png")
  _run("lorbms_tf.render", f"--workdir={trained_workdir}", f"--reference={paths[0]}",
       f"--donors={paths[1]}", "--mask=0010", f"--out={out}")
  assert Image.open(os.path.splitext(out)[0] + "_result.png").size == (64, 64)
  assert Image.open(out).size[0] > 4 * 64


def test_stl10_table_with_the_run_networks_under_mock_data(trained_workdir, data_dir):
  """The thesis's STL-10 rows (trained/random encoder and discriminator, fine-tuned encoder)
  through the real networks at 96 px; tfds mock data stands in for STL-10."""
  import tensorflow_datasets as tfds
  from lorbms_tf import checkpoints
  from lorbms_tf.eval import evaluation, linear_probe
  networks = checkpoints.restore_networks(trained_workdir)
  before = networks.encoder.get_weights()
  config = evaluation.EvalConfig(workdir=trained_workdir, stl10=True, stl10_folds=1,
                                 stl10_fine_tune=True,
                                 probe=linear_probe.ProbeConfig(epochs=1, batch_size=8))
  with tfds.testing.mock_data(num_examples=10):
    block = evaluation.stl10_probes(networks, config, data_dir)
  table = block["table"]
  assert set(table) == {"encoder", "discriminator", "random encoder", "random discriminator",
                        "encoder (fine-tuned)"}
  # tiny preset at 96 px: encoder 3x3x16, discriminator 6x6x32 (thesis: 17,290 / 120,970).
  assert table["encoder"]["num_params"] == 3 * 3 * 16 * 10 + 10
  assert table["discriminator"]["num_params"] == 6 * 6 * 32 * 10 + 10
  # Fine-tuning ran on a copy: the network under evaluation is unchanged.
  assert all(np.array_equal(a, b) for a, b in zip(before, networks.encoder.get_weights()))
