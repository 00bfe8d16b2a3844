"""Shared test set-up: quiet TF, offline tfds, deterministic seeds."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Never let a test reach the network through tfds's GCS mirror lookups.
os.environ.setdefault("TFDS_DISABLE_GCS", "1")
os.environ.setdefault("NO_GCE_CHECK", "true")

import keras
import numpy as np
import pytest
import tensorflow as tf


@pytest.fixture(autouse=True)
def _seed():
  np.random.seed(0)
  tf.random.set_seed(0)
  # Every test starts in float32: a training run in-process sets Keras's global dtype policy
  # (bf16 on CPUs with native bf16), which would otherwise leak into the next test of the worker.
  keras.mixed_precision.set_global_policy("float32")
  yield
  keras.mixed_precision.set_global_policy("float32")


@pytest.fixture
def data_dir(tmp_path):
  """A private tfds data dir, so tests never read or write ~/tensorflow_datasets."""
  path = tmp_path / "tfds"
  path.mkdir()
  return str(path)


@pytest.fixture(scope="session")
def scenes_data_dir(tmp_path_factory):
  """A tfds data dir holding the 256-scene `lorbms_scenes/tiny` config, built once."""
  import tensorflow_datasets as tfds
  import lorbms_tf.data  # noqa: F401  (registers lorbms_scenes)
  path = str(tmp_path_factory.mktemp("tfds_scenes"))
  tfds.builder("lorbms_scenes/tiny", data_dir=path).download_and_prepare()
  return path


SMOKE_STEPS = 4


@pytest.fixture(scope="session")
def smoke_workdir(tmp_path_factory, scenes_data_dir):
  """A finished seconds-long training run (tiny preset, 4 steps, checkpoints at 2 and 4,
  a profiler trace of iterations 1-2), its decoder with the demo's per-chunk projection (so
  export, transfer and evaluation see it) over the thesis's spectrally normalised convs."""
  from lorbms_tf import train_lib
  workdir = str(tmp_path_factory.mktemp("smoke_run"))
  train_lib.train(train_lib.TrainConfig(
      workdir=workdir, dataset="scenes/tiny", data_dir=scenes_data_dir, preset="tiny",
      decoder_projection=8, batch_size=4, total_steps=SMOKE_STEPS, checkpoint_every=2,
      log_every=1, image_every=2, profile_steps=(1, 3)))
  return workdir


# The longest tests (measured: `make test` prints the slowest 15), started first. With two xdist
# workers, a minutes-long test collected late leaves the other worker idle at the end; started
# first, the short ones fill in beside it (longest-processing-time-first scheduling).
LONGEST_FIRST = (
    "test_faults.py::",
    "test_distribute.py::test_mirrored",
    "test_components.py::test_component_clis",
    "test_training.py::test_same_flags",
    "test_study.py::test_ablate_cli",
    "test_training.py::test_killed_run",
    "test_distribute.py::test_multi_worker",
    "test_training.py::test_light_evaluation",
    "test_eval_cli.py::test_stl10_table",
    "test_export.py::test_pusher_pushes",
    "test_identity.py::test_a_resume",
)


def pytest_collection_modifyitems(config, items):
  def rank(item):
    for i, prefix in enumerate(LONGEST_FIRST):
      if prefix in item.nodeid:
        return i
    return len(LONGEST_FIRST)
  items.sort(key=rank)  # stable: the rest keep their order
