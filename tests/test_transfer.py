"""Knowledge transfer: k-means pseudo labels, the transfer net, the CLI and its component.

The work dir is a trainer artifact made in-process: config.json and a checkpoint after one real
``LorbmsModel.train_step`` (eager) on ``scenes/tiny``, plus the record.json the component needs
as its input. Not conftest's ``smoke_workdir``: its ``model.fit`` tracing alone costs ~30 s on a
busy 2-core box, half this file's budget. The CLIs run as subprocesses, as a user runs them;
one component run (which runs ``python -m lorbms_tf.transfer`` as its child) serves both the
end-to-end probe test and the artifact-record test.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from components import base
from components import transfer as transfer_component
from lorbms_tf.eval import linear_probe
from lorbms_tf.models import get_preset
from lorbms_tf.transfer import features, pseudo_labels, student

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ("--clusters=4", "--num_images=32", "--transfer_steps=5", "--transfer_batch_size=8",
        "--probe_epochs=1", "--probe_train_images=24", "--num_test=16")
TRANSFER_ARGS = ("--features=discriminator", *TINY)
PROBE_ROWS = {"transfer net (frozen conv)", "random-init transfer net (frozen conv)",
              "raw pixels (8x8x3 per quadrant)"}


def _cli(module, *args):
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TFDS_DISABLE_GCS": "1"}
  return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=300)


def _blobs(num_blobs=5, per_blob=40, dim=16, seed=0):
  """Well-separated Gaussian blobs, rows shuffled; returns (points, blob of each row)."""
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(num_blobs, dim)) * 10.0
  blob = rng.permutation(np.repeat(np.arange(num_blobs), per_blob))
  return (centres[blob] + rng.normal(size=(len(blob), dim))).astype(np.float32), blob


def test_pseudo_labels_recover_planted_blobs_deterministically():
  points, blob = _blobs()
  result = pseudo_labels.kmeans_pseudo_labels(points, pseudo_labels.KMeansConfig(clusters=5))
  # Every blob is one cluster, and different blobs are different clusters.
  label_of_blob = [np.unique(result.labels[blob == b]) for b in range(5)]
  assert all(len(labels) == 1 for labels in label_of_blob), label_of_blob
  assert len({int(labels[0]) for labels in label_of_blob}) == 5
  assert result.stats["used_clusters"] == 5 and result.centroids.shape == (5, 16)
  again = pseudo_labels.kmeans_pseudo_labels(points, pseudo_labels.KMeansConfig(clusters=5))
  assert np.array_equal(result.labels, again.labels)
  # More clusters than blobs: at most K values, and no cluster mixes two blobs.
  finer = pseudo_labels.kmeans_pseudo_labels(points, pseudo_labels.KMeansConfig(clusters=8))
  assert finer.labels.min() >= 0 and finer.labels.max() < 8 and len(np.unique(finer.labels)) <= 8
  assert all(len(np.unique(blob[finer.labels == k])) == 1 for k in np.unique(finer.labels))


def test_cluster_checks_and_size_stats():
  with pytest.raises(ValueError, match="larger than the number of images"):
    pseudo_labels.kmeans_pseudo_labels(np.zeros((3, 4), np.float32),
                                       pseudo_labels.KMeansConfig(clusters=5))
  with pytest.raises(ValueError, match=">= 2"):
    pseudo_labels.check_clusters(10, 1)
  stats = pseudo_labels.cluster_size_stats(np.array([0, 0, 1, 1]), clusters=3)
  assert stats["used_clusters"] == 2 and stats["largest_cluster_share"] == 0.5
  assert stats["effective_clusters"] == pytest.approx(2.0)


def test_transfer_net_loss_goes_down_on_a_tiny_batch():
  rng = np.random.default_rng(0)
  images = rng.uniform(-1, 1, size=(8, 64, 64, 3)).astype(np.float32)
  labels = np.arange(8) % 4
  trained = student.train_student(
      get_preset("tiny"), 4, tf.data.Dataset.from_tensor_slices((images, labels)),
      student.StudentConfig(steps=25, batch_size=8, learning_rate=3e-3))
  assert trained.net(images[:2]).shape == (2, 4)
  assert trained.net.conv_features(images[:2]).shape == (2, 4, 4, 16)  # tiny: 64 px -> 4x4x16
  assert np.mean(trained.losses[-5:]) < 0.5 * trained.losses[0], trained.losses
  assert trained.summary()["steps"] == 25


def test_feature_maps_pool_to_one_row_per_quadrant():
  grid = np.arange(4 * 4, dtype=np.float32).reshape(1, 4, 4, 1)  # row-major 0..15
  pooled = features.pool_to_quadrants(tf.constant(grid)).numpy().reshape(4)
  # TL = mean(0, 1, 4, 5), TR = mean(2, 3, 6, 7), BL = mean(8, 9, 12, 13), BR = ...
  np.testing.assert_allclose(pooled, [2.5, 4.5, 10.5, 12.5])
  chunks = tf.random.normal([2, 2, 2, 3])  # the encoder's grid: pooling leaves it as it is
  np.testing.assert_array_equal(features.pool_to_quadrants(chunks).numpy(), chunks.numpy())
  extractor = linear_probe.FeatureExtractor("map", lambda x, training=False: x[..., :2])
  images = np.random.default_rng(0).uniform(-1, 1, (3, 64, 64, 3)).astype(np.float32)
  rows = features.quadrant_features(extractor, images)
  assert rows.shape == (3, 4, 2)
  np.testing.assert_allclose(rows[:, 1], images[:, :32, 32:, :2].mean((1, 2)), atol=1e-5)


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory, scenes_data_dir):
  """A trainer artifact as the pipeline makes it: a tiny work dir after one training iteration
  on ExampleGen's TFRecords of scenes/tiny (so the scenes probes must find their labels through
  the run's --eval_dataset), with record.json."""
  from components import example_gen
  from lorbms_tf import checkpoints, train_lib
  from lorbms_tf.data import pipeline

  examples = str(tmp_path_factory.mktemp("transfer") / "examples")
  example_gen.run(example_gen.ExampleGenInputs("scenes/tiny", data_dir=scenes_data_dir, limit=64),
                  examples)

  def train_one_step(workdir):
    config = train_lib.TrainConfig(workdir=workdir, dataset=example_gen.examples_spec(examples),
                                   eval_dataset="scenes/tiny",
                                   data_dir=scenes_data_dir, preset="tiny", batch_size=4,
                                   total_steps=1, checkpoint_every=1)
    checkpoints.write_config(workdir, config.to_dict())
    model = train_lib.build_model(config)
    model.train_step(next(iter(pipeline.train_dataset(config.dataset, config.batch_size,
                                                      data_dir=scenes_data_dir))))
    tf.train.CheckpointManager(checkpoints.training_checkpoint(model),
                               os.path.join(workdir, checkpoints.CHECKPOINT_DIR),
                               max_to_keep=1).save(checkpoint_number=1)
    return {}

  path = str(tmp_path_factory.mktemp("transfer") / "model")
  base.write_artifact(path, "trainer", {"preset": "tiny", "steps": 1}, {}, train_one_step)
  return path


@pytest.fixture(scope="module")
def transfer_artifact(trained_model, tmp_path_factory):
  """The component CLI on the tiny run; it runs ``python -m lorbms_tf.transfer`` as a child
  (one end-to-end run serves both tests below: each run costs ~20 s here)."""
  out = str(tmp_path_factory.mktemp("transfer_artifact") / "transfer")
  result = _cli("components.transfer", f"--model={trained_model}", f"--output_dir={out}", "--",
                *TRANSFER_ARGS)
  assert result.returncode == 0, result.stderr[-3000:]
  return out, result.stdout


def test_cli_probes_the_frozen_transfer_net(transfer_artifact):
  out, _ = transfer_artifact
  with open(os.path.join(out, "metrics.json")) as f:
    metrics = json.load(f)
  assert {"run", "teacher", "pseudo_labels", "transfer_net", "probes", "timing"} <= set(metrics)
  assert metrics["run"]["num_images"] == 32 and metrics["run"]["features"] == "discriminator"
  # tiny discriminator: 4x4x32 before the logits at 64 px, flattened for k-means.
  assert metrics["pseudo_labels"]["feature_dim"] == 4 * 4 * 32
  assert 1 <= metrics["pseudo_labels"]["used_clusters"] <= 4
  assert metrics["transfer_net"]["steps"] == 5
  rows = metrics["probes"]["scenes_quadrant"]
  assert set(rows) == PROBE_ROWS | {"discriminator (direct)"}
  for row in rows.values():
    assert 0.0 <= row["shape_probe"] <= 1.0 and 0.0 <= row["colour_probe"] <= 1.0
  labels = np.load(os.path.join(out, "pseudo_labels.npz"))["labels"]
  assert labels.shape == (32,) and labels.min() >= 0 and labels.max() < 4
  report = open(os.path.join(out, "report.md")).read()
  assert "transfer net (frozen conv)" in report and "discriminator (direct)" in report


def test_bad_input_is_a_one_line_error(trained_model, tmp_path):
  result = _cli("lorbms_tf.transfer", f"--workdir={trained_model}", "--clusters=64",
                "--num_images=8", f"--output={tmp_path / 'out'}")
  assert result.returncode == 2, result.stderr[-2000:]
  assert "Traceback" not in result.stderr, result.stderr[-2000:]
  last = result.stderr.strip().splitlines()[-1]
  assert ": error: " in last and "--clusters=64 is larger than the number of images (8)" in last
  assert not os.path.exists(tmp_path / "out")  # failed before any work


def test_component_cli_writes_its_artifact_record(transfer_artifact, trained_model):
  out, stdout = transfer_artifact
  summary = json.loads(stdout.strip().splitlines()[-1])
  record = base.read_record(out)
  assert record["producer"] == "transfer" and record["summary"] == summary
  assert record["inputs"]["model"]["fingerprint"] == base.read_record(trained_model)["fingerprint"]
  assert set(summary["scenes_quadrant"]) == PROBE_ROWS | {"discriminator (direct)"}
  assert summary["features"] == "discriminator" and summary["clusters"] == 4
  # The fingerprint covers the transfer flags: other flags would run the step again.
  inputs = transfer_component.TransferInputs(trained_model, TRANSFER_ARGS)
  assert base.is_current(out, *transfer_component.step(inputs))
  other = transfer_component.TransferInputs(trained_model, ("--clusters=3", *TRANSFER_ARGS[1:]))
  assert not base.is_current(out, *transfer_component.step(other))
  assert not os.path.exists(out + ".tmp")


def test_stl10_probes_of_the_transfer_net_under_mock_data(trained_model, tmp_path):
  """The STL-10 branch (the thesis's protocol, one fold here): tfds mock data stands in for
  STL-10, which these machines cannot download; the encoder is the teacher."""
  import tensorflow_datasets as tfds
  from lorbms_tf.transfer import experiment
  config = experiment.TransferConfig(
      workdir=trained_model, features="encoder", clusters=3, output=str(tmp_path / "out"),
      dataset="stl10", num_images=12, stl10=True, stl10_folds=1, stl10_test_limit=8,
      student=student.StudentConfig(steps=3, batch_size=4),
      probe=linear_probe.ProbeConfig(epochs=1, batch_size=8))
  with tfds.testing.mock_data(num_examples=12):
    metrics = experiment.run_transfer(config)
  table = metrics["probes"]["stl10"]["table"]
  assert len(table) == 3 and "scenes_quadrant" not in metrics["probes"]
  for row in table.values():
    assert 0.0 <= row["mean"] <= 1.0
  assert "STL-10" in open(tmp_path / "out" / "report.md").read()
