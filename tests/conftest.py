"""Shared test set-up: quiet TF, offline tfds, deterministic seeds."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Never let a test reach the network through tfds's GCS mirror lookups.
os.environ.setdefault("TFDS_DISABLE_GCS", "1")
os.environ.setdefault("NO_GCE_CHECK", "true")

import numpy as np
import pytest
import tensorflow as tf


@pytest.fixture(autouse=True)
def _seed():
  np.random.seed(0)
  tf.random.set_seed(0)
  yield


@pytest.fixture
def data_dir(tmp_path):
  """A private tfds data dir, so tests never read or write ~/tensorflow_datasets."""
  path = tmp_path / "tfds"
  path.mkdir()
  return str(path)
