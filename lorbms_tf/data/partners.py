"""`--partners=index`: join each reference image with its 4 candidate replacements.

The similarity component's neighbour table gives, for every image id and quadrant i, k
neighbour ids (nearest first) and squared-L2 distances. Per sample we draw one rank r in
0..k-1 (METHOD.md) and take, for each quadrant i, the r-th neighbour of quadrant i. All
images live in memory as one uint8 bank (64x64x3 = 12 KB each: 4 GB for COCO's 339k), so the
join is a gather inside tf.data, with no Python per sample.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from lorbms_tf import conventions
from lorbms_tf.data import preprocess


def neighbour_rows(bank_ids: np.ndarray, table_ids: np.ndarray, neighbour_ids: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
  """Maps the table to bank rows: (row of each table id [N], rows of its neighbours [N, 4, k])."""
  order = np.argsort(bank_ids)
  sorted_ids = bank_ids[order]

  def rows(ids):
    pos = np.clip(np.searchsorted(sorted_ids, ids), 0, len(sorted_ids) - 1)
    missing = sorted_ids[pos] != ids
    if missing.any():
      raise ValueError(f"the neighbour table names {int(missing.sum())} image ids that the training "
                       f"images lack (e.g. {np.asarray(ids)[missing].ravel()[:5].tolist()}): "
                       "was it built from another dataset or split?")
    return order[pos]

  return rows(np.asarray(table_ids)), rows(np.asarray(neighbour_ids))


def table_threshold(distances: np.ndarray, partner_k: int, quantile: float) -> float:
  """Constraint 3's threshold: the quantile of the candidate distances the mixing will see."""
  return float(np.quantile(np.asarray(distances)[:, :, :partner_k], quantile))


def index_partner_dataset(bank_images: np.ndarray, reference_rows: np.ndarray,
                          candidate_rows: np.ndarray, candidate_distances: np.ndarray,
                          batch_size: int, partner_k: int, seed: int = 0,
                          input_context: tf.distribute.InputContext | None = None
                          ) -> tf.data.Dataset:
  """Batches {"image" [B,64,64,3], "candidates" [B,4,64,64,3], "candidate_distances" [B,4]}.

  No flips: a flip would move objects between quadrants and break the table's pairing.
  """
  k = min(partner_k, candidate_rows.shape[-1])
  bank = tf.constant(bank_images)
  cand_rows = tf.constant(candidate_rows[:, :, :k].astype(np.int64))
  cand_dist = tf.constant(np.asarray(candidate_distances)[:, :, :k].astype(np.float32))
  ref_rows = tf.constant(reference_rows.astype(np.int64))
  n = len(reference_rows)
  pipeline_id = input_context.input_pipeline_id if input_context else 0
  per_replica = input_context.get_per_replica_batch_size(batch_size) if input_context else batch_size
  positions = tf.data.Dataset.range(n)
  if input_context:
    positions = positions.shard(input_context.num_input_pipelines, pipeline_id)
  positions = positions.repeat().shuffle(min(n, 65536), seed=seed + 7919 * pipeline_id)
  ranks = tf.data.Dataset.random(seed=seed + 1 + 7919 * pipeline_id).map(lambda r: r % k)

  def join(position, rank):
    quadrant = tf.range(conventions.NUM_QUADRANTS)
    index = tf.stack([quadrant, tf.fill([conventions.NUM_QUADRANTS], tf.cast(rank, tf.int32))], -1)
    rows = tf.gather_nd(cand_rows[position], index)  # [4]
    return {"image": tf.gather(bank, ref_rows[position]), "candidates": tf.gather(bank, rows),
            "candidate_distances": tf.gather_nd(cand_dist[position], index)}

  def to_float(batch):
    return {**batch, "image": preprocess.to_unit_range(batch["image"]),
            "candidates": preprocess.to_unit_range(batch["candidates"])}

  ds = tf.data.Dataset.zip(positions, ranks).map(join, num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(per_replica, drop_remainder=True)
  return ds.map(to_float, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
