"""--partners=index: the similarity component's table joined into training batches."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from lorbms_tf import checkpoints, train_lib
from lorbms_tf.data import partners


def test_neighbour_rows_map_ids_to_bank_rows_and_reject_unknown_ids():
  bank_ids = np.array([10, 30, 20])
  refs, neighbours = partners.neighbour_rows(bank_ids, np.array([20, 30]),
                                             np.array([[[10, 30]], [[20, 10]]]))
  np.testing.assert_array_equal(refs, [2, 1])
  np.testing.assert_array_equal(neighbours, [[[0, 1]], [[2, 0]]])
  with pytest.raises(ValueError, match="another dataset or split"):
    partners.neighbour_rows(bank_ids, np.array([99]), np.array([[[10]]]))


def test_index_partner_batches_hold_the_table_neighbour_of_each_quadrant():
  n, k = 16, 3
  # Image r is filled with the value r, so a candidate's pixels name its bank row.
  bank = np.repeat(np.arange(n, dtype=np.uint8), 64 * 64 * 3).reshape(n, 64, 64, 3)
  rng = np.random.default_rng(0)
  cand_rows = np.stack([rng.permutation(np.delete(np.arange(n), i))[:4 * k].reshape(4, k)
                        for i in range(n)])
  distances = np.sort(rng.uniform(size=(n, 4, k)).astype(np.float32), axis=-1)
  ds = partners.index_partner_dataset(bank, np.arange(n), cand_rows, distances, batch_size=5,
                                      partner_k=k, seed=1)
  to_row = lambda x: np.rint((np.asarray(x) + 1) * 127.5).astype(int)
  seen_ranks = set()
  for batch in ds.take(6):
    refs = to_row(batch["image"][:, 0, 0, 0])
    cands = to_row(batch["candidates"][:, :, 0, 0, 0])  # [B, 4]
    for b, ref in enumerate(refs):
      assert ref not in cands[b]
      for q in range(4):
        rank = list(cand_rows[ref, q]).index(cands[b, q])
        seen_ranks.add(rank)
        np.testing.assert_allclose(batch["candidate_distances"][b, q], distances[ref, q, rank])
      # One rank r per sample, shared by its four quadrants (METHOD.md).
      ranks = [list(cand_rows[ref, q]).index(cands[b, q]) for q in range(4)]
      assert len(set(ranks)) == 1
  assert seen_ranks == set(range(k))
  assert partners.table_threshold(distances, 1, 0.5) == pytest.approx(np.quantile(distances[:, :, :1], 0.5))


def test_training_with_a_neighbour_table_from_the_similarity_component(tmp_path, scenes_data_dir):
  from components import similarity
  table_dir = str(tmp_path / "neighbours")
  similarity.run(similarity.SimilarityInputs(dataset="scenes/tiny", data_dir=scenes_data_dir, k=4,
                                             recall_queries=50, save_searchers=False), table_dir)
  workdir = str(tmp_path / "run")
  summary = train_lib.train(train_lib.TrainConfig(
      workdir=workdir, dataset="scenes/tiny", data_dir=scenes_data_dir, preset="tiny",
      batch_size=4, total_steps=2, checkpoint_every=2, log_every=1, image_every=2,
      partners="index", neighbour_table=table_dir))
  assert summary["step"] == 2
  config = checkpoints.read_config(workdir)
  assert config["partners"] == "index" and config["objective"]["threshold"] > 0
  assert np.isfinite(summary["final_metrics"]["g_loss"])
  assert 1.0 <= summary["final_metrics"]["replaced_quadrants"] <= 3.0
  # The images were streamed into a bank on disk in the work dir, reused on resume.
  bank_ids, bank = partners.open_image_bank(os.path.join(workdir, "image_bank"))
  assert isinstance(bank, partners.ImageBankFile) and len(bank_ids) == 256


def test_image_bank_streams_to_disk_and_maps_back(tmp_path):
  rng = np.random.default_rng(0)
  batches = [(np.arange(5) * 10 + b, rng.integers(0, 256, (5, 64, 64, 3), dtype=np.uint8))
             for b in range(3)]
  bank_dir = str(tmp_path / "bank")
  assert partners.write_image_bank(bank_dir, iter(batches)) == 15
  assert not os.path.exists(bank_dir + ".tmp")
  ids, images = partners.open_image_bank(bank_dir)
  assert isinstance(images, partners.ImageBankFile) and images.shape == (15, 64, 64, 3)
  np.testing.assert_array_equal(ids, np.concatenate([b[0] for b in batches]))
  np.testing.assert_array_equal(images, np.concatenate([b[1] for b in batches]))
  np.testing.assert_array_equal(images[np.array([[3, 0], [14, 3]])],
                                np.concatenate([b[1] for b in batches])[[[3, 0], [14, 3]]])
  with pytest.raises(IndexError):
    images[np.array([15])]
  # The join reads rows from disk: the same batches as from the array in memory.
  cand_rows = np.stack([np.roll(np.arange(15), -1 - i)[:8].reshape(4, 2) for i in range(15)])
  distances = np.ones((15, 4, 2), np.float32)
  from_disk = partners.index_partner_dataset(images, np.arange(15), cand_rows, distances, 4, 2)
  in_memory = partners.index_partner_dataset(np.array(images), np.arange(15), cand_rows,
                                             distances, 4, 2)
  for a, b in zip(from_disk.take(3), in_memory.take(3)):
    np.testing.assert_array_equal(a["candidates"], b["candidates"])
  # An interrupted write leaves no bank behind.
  def failing():
    yield batches[0]
    raise RuntimeError("killed")
  with pytest.raises(RuntimeError):
    partners.write_image_bank(str(tmp_path / "half"), failing())
  with pytest.raises(FileNotFoundError, match="no image bank"):
    partners.open_image_bank(str(tmp_path / "half"))
