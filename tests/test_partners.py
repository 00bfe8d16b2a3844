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
