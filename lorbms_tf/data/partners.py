"""`--partners=index`: join each reference image with its 4 candidate replacements.

The similarity component's neighbour table gives, for every image id and quadrant i, k
neighbour ids (nearest first) and squared-L2 distances. Per sample we draw one rank r in
0..k-1 (METHOD.md) and take, for each quadrant i, the r-th neighbour of quadrant i.

The images come from an *image bank*: the training split's central crops as one uint8
[N, 64, 64, 3] array (12 KB per image: 1.45 GB for COCO's 118k, 12 GB for 1M), written once
to disk (``write_image_bank``) and read back row by row (``ImageBankFile``: ``os.pread`` of
the rows a batch needs), so the trainer's memory does not grow with the dataset and nothing
hits TF's 2 GB limit on graph constants. (A plain ``np.memmap`` was measured first: the
kernel's read-ahead around every random row mapped ~1 MB each, and the resident set grew by
~150 MB per batch of 32, to 12.7 GB on a 1M bank.) The join runs per batch: rows are computed
in the graph, then one ``numpy_function`` reads the batch's 5B images.
"""

from __future__ import annotations

import json
import os
from typing import Iterable

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


_BANK_IMAGES, _BANK_IDS, _BANK_RECORD = "images.u8", "ids.npy", "bank.json"


def write_image_bank(directory: str, batches: Iterable[tuple[np.ndarray, np.ndarray]],
                     image_size: int = conventions.IMAGE_SIZE) -> int:
  """Writes (ids [b], uint8 images [b, S, S, 3]) batches as an image bank; -> image count.

  Streams: memory holds one batch. Written to a temporary directory and renamed, so a bank
  on disk is always complete (an interrupted write leaves none).
  """
  tmp = directory.rstrip("/") + ".tmp"
  if tf.io.gfile.exists(tmp):
    tf.io.gfile.rmtree(tmp)
  os.makedirs(tmp)
  ids, count = [], 0
  with open(os.path.join(tmp, _BANK_IMAGES), "wb") as f:
    for batch_ids, images in batches:
      images = np.ascontiguousarray(images, np.uint8)
      if images.shape[1:] != (image_size, image_size, 3):
        raise ValueError(f"image bank: images must be [b, {image_size}, {image_size}, 3], "
                         f"got {images.shape}")
      f.write(images.tobytes())
      ids.append(np.asarray(batch_ids, np.int64))
      count += len(images)
  np.save(os.path.join(tmp, _BANK_IDS),
          np.concatenate(ids) if ids else np.zeros([0], np.int64))
  with open(os.path.join(tmp, _BANK_RECORD), "w") as f:
    json.dump({"num_images": count, "image_size": image_size}, f)
  if tf.io.gfile.exists(directory):
    tf.io.gfile.rmtree(directory)
  os.rename(tmp, directory)
  return count


class ImageBankFile:
  """uint8 images [N, S, S, 3] on disk, read by rows: ``bank[rows]`` -> array [len(rows), S, S, 3].

  One ``os.pread`` per row (12 KB at 64 px) with random-access advice to the kernel (no
  read-ahead): memory holds only the rows asked for, whatever N is.
  """

  def __init__(self, path: str, num_images: int, image_size: int):
    self.path = path
    self.shape = (num_images, image_size, image_size, 3)
    self.dtype = np.dtype(np.uint8)
    self._row_bytes = image_size * image_size * 3
    self._fd = os.open(path, os.O_RDONLY)
    if hasattr(os, "posix_fadvise"):
      os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_RANDOM)

  def __len__(self) -> int:
    return self.shape[0]

  def __getitem__(self, rows) -> np.ndarray:
    rows = np.asarray(rows, np.int64)
    flat = rows.reshape(-1)
    if flat.size and (flat.min() < 0 or flat.max() >= self.shape[0]):
      raise IndexError(f"image bank rows must be in [0, {self.shape[0]}), got {flat.min()}.."
                       f"{flat.max()}")
    out = np.empty((flat.size, self._row_bytes), np.uint8)
    for i, row in enumerate(flat):
      out[i] = np.frombuffer(os.pread(self._fd, self._row_bytes, int(row) * self._row_bytes),
                             np.uint8)
    return out.reshape(rows.shape + self.shape[1:])

  def __array__(self, dtype=None, copy=None) -> np.ndarray:
    whole = self[np.arange(self.shape[0])]
    return whole if dtype is None else whole.astype(dtype)

  def __del__(self):
    try:
      os.close(self._fd)
    except (AttributeError, OSError):
      pass


def open_image_bank(directory: str) -> tuple[np.ndarray, "ImageBankFile | np.ndarray"]:
  """-> (ids int64 [N], the images as an ``ImageBankFile``) of a written bank."""
  record_path = os.path.join(directory, _BANK_RECORD)
  if not os.path.exists(record_path):
    raise FileNotFoundError(f"no image bank in {directory!r} (write_image_bank writes one)")
  with open(record_path) as f:
    record = json.load(f)
  size = record["image_size"]
  ids = np.load(os.path.join(directory, _BANK_IDS))
  if not record["num_images"]:
    return ids, np.zeros([0, size, size, 3], np.uint8)
  return ids, ImageBankFile(os.path.join(directory, _BANK_IMAGES), record["num_images"], size)


def index_partner_dataset(bank_images: np.ndarray, reference_rows: np.ndarray,
                          candidate_rows: np.ndarray, candidate_distances: np.ndarray,
                          batch_size: int, partner_k: int, seed: int = 0,
                          input_context: tf.distribute.InputContext | None = None
                          ) -> tf.data.Dataset:
  """Batches {"image" [B,64,64,3], "candidates" [B,4,64,64,3], "candidate_distances" [B,4]}.

  bank_images: uint8 [N, S, S, 3], an array in memory or an ``ImageBankFile`` on disk
  (``open_image_bank``); only the rows of each batch are read. No flips: a flip would move objects between quadrants and
  break the table's pairing.
  """
  k = min(partner_k, candidate_rows.shape[-1])
  image_shape = tuple(bank_images.shape[1:])
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
    return {"rows": tf.concat([[ref_rows[position]], rows], 0),  # reference, then TL..BR
            "candidate_distances": tf.gather_nd(cand_dist[position], index)}

  def gather(rows):  # one read of the bank per batch, rows [B, 5]
    return np.asarray(bank_images[rows.reshape(-1)]).reshape(rows.shape + image_shape)

  def load(batch):
    images = tf.numpy_function(gather, [batch["rows"]], tf.uint8, stateful=False)
    images = preprocess.to_unit_range(tf.ensure_shape(images, (per_replica, 5) + image_shape))
    return {"image": images[:, 0], "candidates": images[:, 1:],
            "candidate_distances": batch["candidate_distances"]}

  ds = tf.data.Dataset.zip(positions, ranks).map(join, num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(per_replica, drop_remainder=True)
  return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
