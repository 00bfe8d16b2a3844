"""The neighbour table: the artifact the trainer joins on (``--partners=index``).

Layout of a table directory (a contract; the trainer relies on it):

* ``ids.npy``            int64 [N]        image ids, ascending
* ``neighbour_ids.npy``  int64 [N, 4, k]  ids (not rows) of the k nearest same-position
                                          quadrants of other images, nearest first (-1, with
                                          distance +inf, only if fewer than k non-duplicate
                                          other images exist)
* ``distances.npy``      float32 [N, 4, k] squared L2, ascending along k
* ``record.json``        what produced it: extractor, dataset, settings, counts, recall, ...
* ``searchers/q{i}/``    (optional) serialized ScaNN searcher of position i, rows = ``ids``
* ``extractor.npz``      (optional) fitted extractor state, so new images embed the same way

Plain ``.npy`` files because ``np.load(mmap_mode="r")`` maps them without reading: a 1B-image
table is read page by page, and a tf.data pipeline can gather rows by id with a binary search
on ``ids``. Writes go to a temporary sibling directory that is renamed into place, so a reader
never sees half a table and a crash leaves the previous table intact.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from typing import Any, Mapping, Sequence

import numpy as np

from lorbms_tf import conventions

IDS_FILE = "ids.npy"
NEIGHBOUR_IDS_FILE = "neighbour_ids.npy"
DISTANCES_FILE = "distances.npy"
RECORD_FILE = "record.json"
SEARCHERS_DIR = "searchers"
EXTRACTOR_STATE_FILE = "extractor.npz"
FORMAT_VERSION = 1
_ORDER_CHECK_MAX = 10_000_000


@dataclasses.dataclass(frozen=True)
class NeighbourTable:
  """Neighbours of every image's four quadrants (arrays may be read-only memory maps)."""
  ids: np.ndarray  # int64 [N], ascending
  neighbour_ids: np.ndarray  # int64 [N, 4, k]
  distances: np.ndarray  # float32 [N, 4, k]
  record: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  @property
  def k(self) -> int:
    return int(self.neighbour_ids.shape[-1])

  def __len__(self) -> int:
    return int(self.ids.shape[0])

  def lookup(self, image_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(neighbour_ids [M, 4, k], distances [M, 4, k]) of the given image ids."""
    rows = np.searchsorted(self.ids, np.asarray(image_ids, np.int64))
    rows = np.minimum(rows, len(self) - 1)
    if (self.ids[rows] != np.asarray(image_ids)).any():
      raise KeyError("some image ids are not in the neighbour table")
    return np.asarray(self.neighbour_ids[rows]), np.asarray(self.distances[rows])


def validate(table: NeighbourTable, check_order: bool = True) -> None:
  """Raises ValueError unless the arrays match the documented dtypes, shapes and order."""
  ids, nb, dist = table.ids, table.neighbour_ids, table.distances
  problems = []
  if ids.ndim != 1 or ids.dtype != np.int64:
    problems.append(f"ids must be int64 [N], got {ids.dtype} {ids.shape}")
  if nb.ndim != 3 or nb.shape[:2] != (ids.shape[0], conventions.NUM_QUADRANTS):
    problems.append(f"neighbour_ids must be [N={ids.shape[0]}, 4, k], got {nb.shape}")
  elif nb.dtype != np.int64:
    problems.append(f"neighbour_ids must be int64, got {nb.dtype}")
  if dist.shape != nb.shape or dist.dtype != np.float32:
    problems.append(f"distances must be float32 {nb.shape}, got {dist.dtype} {dist.shape}")
  if check_order and ids.ndim == 1 and ids.size > 1 and not (np.diff(ids) > 0).all():
    problems.append("ids must be strictly ascending")
  if problems:
    raise ValueError("inconsistent neighbour table: " + "; ".join(problems))


def load_neighbour_table(path: str | os.PathLike) -> NeighbourTable:
  """Memory-maps a table directory written by ``save_neighbour_table``."""
  path = os.fspath(path)
  if not os.path.isdir(path):
    raise FileNotFoundError(f"no neighbour table directory at {path!r}")
  missing = [name for name in (IDS_FILE, NEIGHBOUR_IDS_FILE, DISTANCES_FILE, RECORD_FILE)
             if not os.path.exists(os.path.join(path, name))]
  if missing:
    raise FileNotFoundError(
        f"neighbour table {path!r} is incomplete: missing {', '.join(missing)} (build it with "
        "`python -m components.similarity`)")
  with open(os.path.join(path, RECORD_FILE)) as f:
    record = json.load(f)
  table = NeighbourTable(
      ids=np.load(os.path.join(path, IDS_FILE), mmap_mode="r"),
      neighbour_ids=np.load(os.path.join(path, NEIGHBOUR_IDS_FILE), mmap_mode="r"),
      distances=np.load(os.path.join(path, DISTANCES_FILE), mmap_mode="r"),
      record=record)
  # The O(N) order check reads all of ids.npy; skip it for huge tables to keep loading instant.
  validate(table, check_order=len(table) <= _ORDER_CHECK_MAX)
  return table


def save_neighbour_table(path: str | os.PathLike, table: NeighbourTable,
                         searchers: Sequence[Any] | None = None,
                         extractor_state: Mapping[str, np.ndarray] | None = None,
                         extra_dirs: Mapping[str, str] | None = None) -> str:
  """Writes ``table`` (and optionally searchers / extractor state) atomically to ``path``.

  Everything is written into a temporary sibling directory, which then replaces ``path``
  (an existing table there is moved aside first and deleted last). ``extra_dirs`` maps a
  sub-directory name to an existing directory that is *moved* in (e.g. the Beam embedding
  shards, kept so that the index can be rebuilt without re-embedding).
  """
  validate(table)
  path = os.path.abspath(os.fspath(path))
  parent = os.path.dirname(path)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-", dir=parent)
  try:
    np.save(os.path.join(tmp, IDS_FILE), np.asarray(table.ids, np.int64))
    np.save(os.path.join(tmp, NEIGHBOUR_IDS_FILE), np.asarray(table.neighbour_ids, np.int64))
    np.save(os.path.join(tmp, DISTANCES_FILE), np.asarray(table.distances, np.float32))
    record = dict(table.record, format_version=FORMAT_VERSION,
                  has_searchers=bool(searchers), has_extractor_state=bool(extractor_state))
    with open(os.path.join(tmp, RECORD_FILE), "w") as f:
      json.dump(record, f, indent=2, sort_keys=True, default=_json_default)
    if searchers:
      _save_searchers(tmp, searchers)
    if extractor_state:
      np.savez(os.path.join(tmp, EXTRACTOR_STATE_FILE), **extractor_state)
    for name, source in (extra_dirs or {}).items():
      shutil.move(os.fspath(source), os.path.join(tmp, name))
    _replace_dir(tmp, path)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return path


def _save_searchers(directory: str, searchers: Sequence[Any]) -> None:
  if len(searchers) != conventions.NUM_QUADRANTS:
    raise ValueError(f"expected one searcher per quadrant position, got {len(searchers)}")
  for i, searcher in enumerate(searchers):
    sub = os.path.join(directory, SEARCHERS_DIR, f"q{i}")
    os.makedirs(sub)
    # Relative asset paths: the directory is renamed after writing and may be copied later.
    searcher.serialize(sub, relative_path=True)


def _replace_dir(tmp: str, path: str) -> None:
  """Renames ``tmp`` to ``path``, replacing an existing directory with minimal exposure."""
  if not os.path.exists(path):
    os.rename(tmp, path)
    return
  old = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.old-", dir=os.path.dirname(path))
  os.rmdir(old)
  os.rename(path, old)
  os.rename(tmp, path)
  shutil.rmtree(old, ignore_errors=True)


def _json_default(value: Any) -> Any:
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, np.ndarray):
    return value.tolist()
  raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def load_searchers(path: str | os.PathLike) -> list[Any]:
  """The four ScaNN searchers saved with a table (rows correspond to ``ids.npy``)."""
  from lorbms_tf.similarity import index  # pylint: disable=import-outside-toplevel
  root = os.path.join(os.fspath(path), SEARCHERS_DIR)
  if not os.path.isdir(root):
    raise FileNotFoundError(f"{path!r} has no saved searchers (built with searchers off?)")
  return [index.load_searcher(os.path.join(root, f"q{i}"))
          for i in range(conventions.NUM_QUADRANTS)]


def query(table_dir: str | os.PathLike, embeddings: np.ndarray, k: int | None = None,
          searchers: Sequence[Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Nearest indexed quadrants of *new* images' quadrant embeddings [M, 4, D].

  The embeddings must come from the table's extractor (``record["extractor"]``; for fitted
  extractors use the saved ``extractor.npz``, see ``extractors.from_table``). Returns
  (neighbour ids int64 [M, 4, k], squared L2 float32 [M, 4, k]); nothing is excluded, so an
  image that is already in the table finds itself first at distance 0.
  """
  from lorbms_tf.similarity import index  # pylint: disable=import-outside-toplevel
  table = load_neighbour_table(table_dir)
  k = k or table.k
  embeddings = np.asarray(embeddings, np.float32)
  if embeddings.ndim != 3 or embeddings.shape[1] != conventions.NUM_QUADRANTS:
    raise ValueError(f"embeddings must be [M, 4, D], got {embeddings.shape}")
  searchers = searchers or load_searchers(table_dir)
  settings = [index.IndexSettings(**s) for s in table.record["index"]["settings"]]
  ids = np.asarray(table.ids)
  out_ids, out_dist = [], []
  for i, (searcher, setting) in enumerate(zip(searchers, settings)):
    rows, dist = index.scann_search(searcher, embeddings[:, i], k, setting)
    out_ids.append(np.where(rows >= 0, ids[np.maximum(rows, 0)], -1))
    out_dist.append(dist)
  return np.stack(out_ids, axis=1), np.stack(out_dist, axis=1)
