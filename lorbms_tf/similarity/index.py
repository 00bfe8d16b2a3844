"""Nearest same-position quadrants: ScaNN index per quadrant position, exact search, recall.

Scene mixing swaps quadrant ``i`` of a reference for quadrant ``i`` of a *similar* image, so for
every image and position we need the k nearest same-position quadrants of *other* images. One
index per position keeps each search inside the only candidates the mixer may use, and keeps
each index a quarter of the data (which is also how the work splits at scale: four independent
indices).

Index choice (``choose_settings``): below ``brute_force_below`` vectors an exact ScaNN brute-force
searcher (fast enough, and perfect recall); above it ScaNN's tree (k-means partitions, ~sqrt(N)
leaves) + asymmetric hashing (2 dims per 4-bit code) + exact float reordering of the best
candidates. ``anisotropic_quantization_threshold`` only helps for dot-product search, so for our
squared-L2 search it stays unset (NaN).

Self-matches and duplicates: every query searches ``k + 1 + extra`` candidates; its own row is
dropped, and so is any other row whose embedding is *bit-identical* to the query's (the same
image stored twice, or a constant quadrant): swapping in an identical quadrant changes nothing,
yet the mask would call it "replaced", which teaches the classifier a wrong label. Near-
duplicates (distance tiny but non-zero) are kept: they are legitimate, just very similar.
Rows that lose more than ``extra`` candidates are searched again with a larger k.

Distances written to the table are recomputed exactly (differences, then squares) for
the chosen neighbours, so they are true squared L2 whichever searcher found them.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Protocol

import numpy as np

from lorbms_tf import conventions

DEFAULT_K = 10
BRUTE_FORCE_BELOW = 5000  # vectors per position; ScaNN brute force is exact and quick below this
_DUPLICATE_EXTRA = 4  # candidates searched beyond k + 1, to absorb dropped duplicates
_EXACT_CHUNK_BYTES = 256 << 20  # scratch memory of one exact-search block of distances
_MAX_LEAVES_TO_SEARCH = 256


@dataclasses.dataclass(frozen=True)
class IndexSettings:
  """How one position's searcher is built and queried (written into record.json)."""
  kind: str  # "brute_force" (exact ScaNN), "tree_ah" (tree + AH + reorder), "tree_bf" (tree +
  # exact scoring inside the searched leaves, like faiss IVF-Flat)
  num_leaves: int = 0
  leaves_to_search: int = 0
  dims_per_block: int = 2
  reorder: int = 0
  training_sample_size: int = 0
  search_batch_size: int = 256
  # ScaNN's default (50) dissolves every k-means cluster smaller than 50 vectors and hands its
  # points to other leaves: with ~80 vectors per leaf (4 sqrt(N) leaves at 100k) that broke the
  # partition (recall@10 from 1 searched leaf 0.79, faiss IVF's 0.89). 0 = min_partition_size().
  min_partition_size: int = 0

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


def min_partition_size(num_vectors: int, num_leaves: int) -> int:
  """ScaNN's min cluster size for ``num_leaves`` leaves: an eighth of the mean leaf, at most 50
  (with it, recall@10 from 1, 2, 4 leaves of 1265 on 100k clustered vectors is faiss IVF's)."""
  return max(1, min(50, num_vectors // (8 * max(1, num_leaves))))


def choose_settings(num_vectors: int, k: int = DEFAULT_K,
                    brute_force_below: int = BRUTE_FORCE_BELOW) -> IndexSettings:
  """Index settings scaled with the data size.

  Leaves ~ sqrt(N) balances the centroid scan (sqrt(N) centroids) against the leaf sizes
  (~sqrt(N) vectors each). Searching 10% of the leaves (at least 8) and exactly re-scoring the
  best ~16 x k AH candidates gave recall@10 ~0.96-0.98 on overlapping Gaussian clusters and on
  whitened scene embeddings in bench/similarity.py, where 5% and a 100-deep reorder gave
  0.93-0.94: on
  whitened features every dimension carries equal variance, so 4-bit AH codes rank less
  accurately and the reorder depth matters more than the number of leaves.

  With sqrt(N) leaves, a fixed share of leaves scans a fixed share of the data; the cap of
  ``_MAX_LEAVES_TO_SEARCH`` keeps the per-query cost bounded, which is fine up to ~10M vectors
  per position. Past that, shard the index (docs/similarity.md, "What changes at 1B images").
  """
  if num_vectors < brute_force_below:
    return IndexSettings(kind="brute_force")
  num_leaves = max(16, int(round(math.sqrt(num_vectors))))
  leaves_to_search = min(num_leaves, _MAX_LEAVES_TO_SEARCH,
                         max(8, int(math.ceil(0.1 * num_leaves))))
  return IndexSettings(
      kind="tree_ah",
      num_leaves=num_leaves,
      leaves_to_search=leaves_to_search,
      dims_per_block=2,
      reorder=max(200, 16 * (k + 1 + _DUPLICATE_EXTRA)),
      training_sample_size=min(num_vectors, 250_000),
      min_partition_size=min_partition_size(num_vectors, num_leaves))


DEFAULT_TARGET_RECALL = 0.98
_LEAF_FACTORS = (1.0, 2.0, 4.0)  # num_leaves = factor * sqrt(N), tried by tune_settings
_REORDER_FACTORS = (4, 16, 64)  # AH: exact re-scoring depth = factor * searched candidates
# AH: dimensions per 4-bit code (ScaNN's default 2; 4 = half the codes, coarser scores).
_DIMS_PER_BLOCK = (2, 4)


@dataclasses.dataclass
class TuningResult:
  """What ``tune_settings`` chose and everything it measured (written into record.json)."""
  settings: IndexSettings
  recall: float  # recall@k of the chosen settings on the held-out sample
  queries_per_second: float
  target_recall: float
  sample_queries: int
  seconds: float
  tried: list[dict[str, Any]]

  def to_dict(self) -> dict[str, Any]:
    return {**dataclasses.asdict(self), "settings": self.settings.to_dict()}


def tune_settings(db: np.ndarray, k: int = DEFAULT_K, target_recall: float = DEFAULT_TARGET_RECALL,
                  sample_queries: int = 1000, timing_queries: int = 5000, seed: int = 0,
                  leaf_factors: tuple[float, ...] = _LEAF_FACTORS,
                  reorder_factors: tuple[int, ...] = _REORDER_FACTORS,
                  dims_per_block: tuple[int, ...] = _DIMS_PER_BLOCK,
                  brute_force_below: int = BRUTE_FORCE_BELOW) -> TuningResult:
  """The fastest ScaNN settings that reach ``target_recall`` (recall@k) on ``db``, measured.

  Held-out sample: ``sample_queries`` rows of ``db``, searched exactly for the ground truth
  (self and bit-identical copies excluded, as in the table). For each number of leaves
  (``leaf_factors`` x sqrt(N)) one build with exact scoring inside the leaves ("tree_bf"), and
  one with asymmetric hashing per ``dims_per_block`` (dimensions per 4-bit code; ScaNN's
  default is 2), each tried with every reorder depth ("tree_ah"); for each, the fewest
  leaves to search that reach the target (doubling, then bisection: recall grows with it)
  are found, then that setting's queries/s is timed (best
  of 3 over ``timing_queries`` rows). The fastest one that reaches the target wins; if
  none does, the one with the highest recall. Below ``brute_force_below`` vectors: exact
  brute force.
  """
  start = time.perf_counter()
  db = np.ascontiguousarray(db, dtype=np.float32)
  n = db.shape[0]
  check_k(n, k)
  if n < brute_force_below:
    settings = IndexSettings(kind="brute_force")
    return TuningResult(settings, 1.0, float("nan"), target_recall, 0,
                        time.perf_counter() - start, [])
  rng = np.random.default_rng(seed)
  sample = np.sort(rng.choice(n, size=min(sample_queries, n), replace=False))
  truth, _ = exact_neighbours(db, sample, k)
  timing_set = db[rng.choice(n, size=min(timing_queries, n), replace=False)]
  num = k + 1 + _DUPLICATE_EXTRA
  tried: list[dict[str, Any]] = []
  for factor in leaf_factors:
    num_leaves = max(16, int(round(factor * math.sqrt(n))))
    if num_leaves * 8 > n:  # leaves of fewer than ~8 vectors: k-means is meaningless
      continue
    exact_leaves = IndexSettings(kind="tree_bf", num_leaves=num_leaves,
                                 leaves_to_search=num_leaves,
                                 training_sample_size=min(n, 250_000),
                                 min_partition_size=min_partition_size(n, num_leaves))
    candidates = [(exact_leaves, 0)] + [
        (dataclasses.replace(exact_leaves, kind="tree_ah", dims_per_block=dims,
                             reorder=num * max(reorder_factors)), num * factor)
        for dims in dims_per_block for factor in reorder_factors]
    built, searcher = None, None
    for base, reorder in candidates:
      if base != built:  # one build per kind and dims per block (candidates come grouped),
        searcher, built = None, base  # and only one held at a time (0.3 GB each at 1M)
        searcher = build_searcher(db, num, base)

      def settings_for(leaves, base=base, reorder=reorder):
        return dataclasses.replace(base, leaves_to_search=leaves, reorder=reorder)

      def recall_of(leaves):
        s = settings_for(leaves)
        rows, _, _ = _fill_rows(db, sample, k, lambda q, m: scann_search(searcher, q, m, s))
        return recall_at_k(rows, truth)

      leaves, recall, cache = _fewest_leaves(recall_of, num_leaves, target_recall)
      s = settings_for(leaves)
      _, seconds = _best_time(lambda: scann_search(searcher, timing_set, num, s))
      tried.append({**s.to_dict(), "recall": recall, "queries_per_second":
                    len(timing_set) / seconds, "recalls_seen": cache})
  reached = [t for t in tried if t["recall"] >= target_recall]
  best = (max(reached, key=lambda t: t["queries_per_second"]) if reached
          else max(tried, key=lambda t: (t["recall"], t["queries_per_second"])))
  fields = {f.name for f in dataclasses.fields(IndexSettings)}
  settings = IndexSettings(**{key: value for key, value in best.items() if key in fields})
  return TuningResult(settings, best["recall"], best["queries_per_second"], target_recall,
                      len(sample), time.perf_counter() - start, tried)


def _fewest_leaves(recall_of, num_leaves: int, target: float) -> tuple[int, float, dict]:
  """Smallest leaves_to_search in [1, num_leaves] whose recall reaches target (recall is
  monotone in it up to noise); -> (leaves, its recall, {leaves: recall} evaluated)."""
  cache: dict[int, float] = {}

  def recall(leaves):
    if leaves not in cache:
      cache[leaves] = recall_of(leaves)
    return cache[leaves]

  high = 1
  while recall(high) < target and high < num_leaves:
    high = min(num_leaves, high * 2)
  if recall(high) < target:
    return high, recall(high), {str(key): value for key, value in sorted(cache.items())}
  low = high // 2  # recall(low) < target, or low == 0
  while high - low > max(1, high // 16):  # within ~6%: finer steps are lost in timing noise
    mid = (low + high) // 2
    if mid and recall(mid) >= target:
      high = mid
    else:
      low = mid
  return high, recall(high), {str(key): value for key, value in sorted(cache.items())}


def _best_time(fn, repeats: int = 3) -> tuple[Any, float]:
  best, result = float("inf"), None
  for _ in range(repeats):
    begin = time.perf_counter()
    result = fn()
    best = min(best, time.perf_counter() - begin)
  return result, best


class Searcher(Protocol):
  """The part of ``scann_ops_pybind.ScannSearcher`` that we use."""

  def search_batched_parallel(self, queries, final_num_neighbors=None,
                              pre_reorder_num_neighbors=None, leaves_to_search=None,
                              batch_size=256): ...

  def serialize(self, artifacts_dir, relative_path=False): ...


def build_searcher(db: np.ndarray, k: int, settings: IndexSettings) -> Searcher:
  """A ScaNN searcher over ``db`` [N, D] float32 (squared L2), per ``settings``."""
  import scann  # pylint: disable=import-outside-toplevel  # heavy; only needed to build/search

  db = np.ascontiguousarray(db, dtype=np.float32)
  builder = scann.scann_ops_pybind.builder(db, max(1, k), "squared_l2")
  if settings.kind == "brute_force":
    return builder.score_brute_force().build()
  if settings.kind not in ("tree_ah", "tree_bf"):
    raise ValueError(f"unknown index kind {settings.kind!r}")
  builder = builder.tree(
      num_leaves=settings.num_leaves,
      num_leaves_to_search=settings.leaves_to_search,
      training_sample_size=settings.training_sample_size,
      min_partition_size=(settings.min_partition_size
                          or min_partition_size(len(db), settings.num_leaves)))
  if settings.kind == "tree_bf":
    return builder.score_brute_force().build()
  builder = builder.score_ah(settings.dims_per_block)
  return builder.reorder(settings.reorder).build()


def load_searcher(directory: str) -> Searcher:
  """A searcher saved by ``searcher.serialize(directory, relative_path=True)``."""
  import scann  # pylint: disable=import-outside-toplevel
  return scann.scann_ops_pybind.load_searcher(str(directory))


def scann_search(searcher: Searcher, queries: np.ndarray, num: int,
                 settings: IndexSettings) -> tuple[np.ndarray, np.ndarray]:
  """Top ``num`` rows for every query: (rows int64 [Q, num], squared L2 float32 [Q, num])."""
  queries = np.ascontiguousarray(queries, dtype=np.float32)
  if settings.kind == "tree_ah":
    rows, dist = searcher.search_batched_parallel(
        queries, final_num_neighbors=num,
        pre_reorder_num_neighbors=max(settings.reorder, num),
        leaves_to_search=settings.leaves_to_search,
        batch_size=settings.search_batch_size)
  elif settings.kind == "tree_bf":
    rows, dist = searcher.search_batched_parallel(
        queries, final_num_neighbors=num, leaves_to_search=settings.leaves_to_search,
        batch_size=settings.search_batch_size)
  else:
    rows, dist = searcher.search_batched_parallel(
        queries, final_num_neighbors=num, batch_size=settings.search_batch_size)
  return _pad(np.asarray(rows, np.int64), np.asarray(dist, np.float32), num)


def _pad(rows: np.ndarray, dist: np.ndarray, num: int) -> tuple[np.ndarray, np.ndarray]:
  """ScaNN may return fewer than ``num`` columns (tiny leaves); pad with -1 / +inf."""
  if rows.ndim == 1:
    rows, dist = rows[None], dist[None]
  if rows.shape[1] >= num:
    return rows[:, :num], dist[:, :num]
  pad = num - rows.shape[1]
  rows = np.concatenate([rows, np.full((rows.shape[0], pad), -1, np.int64)], axis=1)
  dist = np.concatenate([dist, np.full((dist.shape[0], pad), np.inf, np.float32)], axis=1)
  return rows, dist


def exact_search(db: np.ndarray, queries: np.ndarray, num: int,
                 chunk_bytes: int = _EXACT_CHUNK_BYTES) -> tuple[np.ndarray, np.ndarray]:
  """Exact top ``num`` rows of ``db`` for every query, by BLAS matmul + argpartition.

  |q - x|^2 = |q|^2 - 2 q.x + |x|^2, in query blocks sized to ``chunk_bytes`` of scratch, so
  it runs on a million-row db without a [Q, N] matrix. The ground truth for recall.
  """
  db = np.asarray(db, np.float32)
  queries = np.asarray(queries, np.float32)
  num = min(num, db.shape[0])
  db_sq = np.einsum("nd,nd->n", db, db)
  block = max(1, chunk_bytes // (4 * max(1, db.shape[0])))
  rows_out = np.empty((queries.shape[0], num), np.int64)
  dist_out = np.empty((queries.shape[0], num), np.float32)
  for start in range(0, queries.shape[0], block):
    q = queries[start:start + block]
    dist = q @ db.T
    dist *= -2.0
    dist += db_sq[None, :]  # |q|^2 is added after the top-k: it does not change the ranking
    part = np.argpartition(dist, num - 1, axis=1)[:, :num] if num < db.shape[0] else (
        np.broadcast_to(np.arange(db.shape[0]), dist.shape))
    part_dist = np.take_along_axis(dist, part, axis=1)
    order = np.argsort(part_dist, axis=1, kind="stable")
    rows_out[start:start + block] = np.take_along_axis(part, order, axis=1)
    q_sq = np.einsum("qd,qd->q", q, q)[:, None]
    dist_out[start:start + block] = np.maximum(
        np.take_along_axis(part_dist, order, axis=1) + q_sq, 0)
  return rows_out, dist_out


def squared_distances(db: np.ndarray, queries: np.ndarray, rows: np.ndarray) -> np.ndarray:
  """Exact |q - db[row]|^2 [Q, K] (float32); +inf where row is -1.

  Differences first, then squares: no cancellation, and bit-identical vectors give exactly 0.
  """
  valid = rows >= 0
  safe = np.where(valid, rows, 0)
  diff = db[safe] - queries[:, None, :]
  dist = np.einsum("qkd,qkd->qk", diff, diff)
  return np.where(valid, dist, np.float32(np.inf))


def _drop_self_and_duplicates(db: np.ndarray, query_rows: np.ndarray, rows: np.ndarray,
                              k: int) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
  """First k candidates per query that are neither the query itself nor a bit-identical copy.

  Returns (rows [Q, k] with -1 where too few remained, exact distances [Q, k], number of
  duplicates dropped, bool [Q] of queries that need a deeper search).
  """
  queries = db[query_rows]
  dist = squared_distances(db, queries, rows)
  keep = (rows >= 0) & (rows != query_rows[:, None])
  near = keep & (dist == 0.0)
  if near.any():
    q_idx, c_idx = np.nonzero(near)
    same = np.all(db[rows[q_idx, c_idx]] == queries[q_idx], axis=1)
    keep[q_idx[same], c_idx[same]] = False
    num_duplicates = int(same.sum())
  else:
    num_duplicates = 0
  # Stable re-sort by exact distance among kept candidates, then take the first k.
  key = np.where(keep, dist, np.inf)
  order = np.argsort(key, axis=1, kind="stable")[:, :k]
  out_rows = np.take_along_axis(np.where(keep, rows, -1), order, axis=1)
  out_dist = np.take_along_axis(key, order, axis=1)
  short = (out_rows < 0).any(axis=1)
  return out_rows, out_dist.astype(np.float32), num_duplicates, short


def _fill_rows(db: np.ndarray, query_rows: np.ndarray, k: int, search_fn) -> tuple[
    np.ndarray, np.ndarray, int]:
  """Neighbours of ``query_rows`` (rows into db) without self/duplicates, deepening as needed."""
  num = min(db.shape[0], k + 1 + _DUPLICATE_EXTRA)
  found, _ = search_fn(db[query_rows], num)
  rows, dist, dups, short = _drop_self_and_duplicates(db, query_rows, found, k)
  while short.any() and num < db.shape[0]:
    num = min(db.shape[0], num * 4)
    redo = np.nonzero(short)[0]
    found, _ = search_fn(db[query_rows[redo]], num)
    r, d, dups_redo, short_redo = _drop_self_and_duplicates(db, query_rows[redo], found, k)
    rows[redo], dist[redo] = r, d
    dups += dups_redo
    short[redo] = short_redo
  return rows, dist, dups


@dataclasses.dataclass
class PositionResult:
  """Neighbours of one quadrant position, as rows into the position's embedding matrix."""
  rows: np.ndarray  # int64 [N, k]
  distances: np.ndarray  # float32 [N, k]
  searcher: Any
  settings: IndexSettings
  build_seconds: float
  search_seconds: float
  num_duplicates_dropped: int
  recall: float | None


def search_position(db: np.ndarray, k: int, settings: IndexSettings | None = None,
                    recall_queries: int = 1000, seed: int = 0,
                    query_block: int = 16384) -> PositionResult:
  """k nearest other rows of every row of ``db`` [N, D], plus recall@k vs exact on a sample."""
  db = np.ascontiguousarray(db, dtype=np.float32)
  check_k(db.shape[0], k)
  settings = settings or choose_settings(db.shape[0], k)
  start = time.perf_counter()
  searcher = build_searcher(db, k + 1 + _DUPLICATE_EXTRA, settings)
  build_seconds = time.perf_counter() - start

  def search_fn(queries, num):
    return scann_search(searcher, queries, num, settings)

  start = time.perf_counter()
  rows = np.empty((db.shape[0], k), np.int64)
  dist = np.empty((db.shape[0], k), np.float32)
  duplicates = 0
  for begin in range(0, db.shape[0], query_block):  # bounds the [block, k+5, D] scratch
    query_rows = np.arange(begin, min(begin + query_block, db.shape[0]))
    r, d, dups = _fill_rows(db, query_rows, k, search_fn)
    rows[query_rows], dist[query_rows] = r, d
    duplicates += dups
  search_seconds = time.perf_counter() - start
  recall = measure_recall(db, rows, k, recall_queries, seed) if recall_queries else None
  return PositionResult(rows, dist, searcher, settings, build_seconds, search_seconds,
                        duplicates, recall)


def exact_neighbours(db: np.ndarray, query_rows: np.ndarray, k: int) -> tuple[
    np.ndarray, np.ndarray]:
  """Exact k nearest other rows (same self/duplicate rule as the index), for ground truth."""
  db = np.asarray(db, np.float32)
  rows, dist, _ = _fill_rows(db, np.asarray(query_rows, np.int64), k,
                             lambda q, num: exact_search(db, q, num))
  return rows, dist


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
  """Mean share of the true k neighbours (rows; -1 = none) that were found."""
  hits, total = 0, 0
  for f, t in zip(found, truth):
    t = t[t >= 0]
    hits += np.intersect1d(f[f >= 0], t).size
    total += t.size
  return hits / total if total else 1.0


def measure_recall(db: np.ndarray, rows: np.ndarray, k: int, num_queries: int = 1000,
                   seed: int = 0) -> float:
  """recall@k of ``rows`` [N, k] against exact search on a random sample of queries."""
  rng = np.random.default_rng(seed)
  sample = np.sort(rng.choice(db.shape[0], size=min(num_queries, db.shape[0]),
                              replace=False))
  truth, _ = exact_neighbours(db, sample, k)
  return recall_at_k(rows[sample], truth)


def check_k(num_images: int, k: int) -> None:
  """Clear errors for the two impossible requests: no images, or k >= N."""
  if num_images == 0:
    raise ValueError("the dataset is empty: there are no images to index")
  if k < 1:
    raise ValueError(f"k must be >= 1, got {k}")
  if k >= num_images:
    raise ValueError(
        f"k={k} neighbours requested but there are only {num_images} images: each image can "
        f"have at most {num_images - 1} neighbours (itself excluded); lower --k or add images")


@dataclasses.dataclass
class NeighbourResult:
  """All four positions: neighbour ids, distances, searchers and what it took."""
  ids: np.ndarray  # int64 [N], ascending
  neighbour_ids: np.ndarray  # int64 [N, 4, k]
  distances: np.ndarray  # float32 [N, 4, k]
  searchers: list
  positions: list[PositionResult]
  tuning: TuningResult | None = None

  def summary(self) -> dict[str, Any]:
    """The index part of record.json."""
    recalls = [p.recall for p in self.positions if p.recall is not None]
    return {
        "settings": [p.settings.to_dict() for p in self.positions],
        "build_seconds": [round(p.build_seconds, 3) for p in self.positions],
        "search_seconds": [round(p.search_seconds, 3) for p in self.positions],
        "duplicates_dropped": [p.num_duplicates_dropped for p in self.positions],
        "recall_at_k": [p.recall for p in self.positions],
        "recall_at_k_mean": float(np.mean(recalls)) if recalls else None,
        "tuning": self.tuning.to_dict() if self.tuning else None,
    }


def find_neighbours(ids: np.ndarray, embeddings: np.ndarray, k: int = DEFAULT_K,
                    settings: IndexSettings | None = None, recall_queries: int = 1000,
                    brute_force_below: int = BRUTE_FORCE_BELOW,
                    position_major: bool = False, seed: int = 0,
                    target_recall: float | None = None) -> NeighbourResult:
  """Neighbour table for every image and quadrant position.

  Args:
    ids: int64 [N] image ids (any order; the result is sorted by id).
    embeddings: float32 [N, 4, D] (or [4, N, D] with ``position_major``, the layout the shard
      reader fills so that each position's matrix is contiguous and never copied).
    k: neighbours per quadrant.
    settings: index settings; by default ``choose_settings(N, k, brute_force_below)``.
    recall_queries: sample size for recall@k against exact search (0 = skip).
    target_recall: without ``settings``, tune them (``tune_settings``) on position 0 for the
      fastest search reaching this recall@k, and use them for all four; None = the
      rule-of-thumb ``choose_settings``.
  """
  ids = np.asarray(ids, np.int64)
  num_positions = embeddings.shape[0] if position_major else embeddings.shape[1]
  num = embeddings.shape[1] if position_major else embeddings.shape[0]
  if num_positions != conventions.NUM_QUADRANTS or ids.shape != (num,):
    raise ValueError(f"expected ids [N] and embeddings [N, 4, D], got {ids.shape} and "
                     f"{embeddings.shape} (position_major={position_major})")
  check_k(num, k)
  if np.unique(ids).size != num:
    raise ValueError("image ids must be unique")
  order = np.argsort(ids, kind="stable")
  tuning = None
  if settings is None and target_recall:
    tuning = tune_settings(embeddings[0] if position_major else embeddings[:, 0], k,
                           target_recall, seed=seed, brute_force_below=brute_force_below)
    settings = tuning.settings
  settings = settings or choose_settings(num, k, brute_force_below)
  positions = []
  for i in range(conventions.NUM_QUADRANTS):
    db = embeddings[i] if position_major else embeddings[:, i]
    positions.append(search_position(db, k, settings, recall_queries, seed + i))
  rows = np.stack([p.rows for p in positions], axis=1)[order]  # [N, 4, k] by sorted id
  dist = np.stack([p.distances for p in positions], axis=1)[order]
  neighbour_ids = np.where(rows >= 0, ids[np.maximum(rows, 0)], -1)
  return NeighbourResult(ids[order], neighbour_ids, dist, [p.searcher for p in positions],
                         positions, tuning)


def neighbour_precision(ids: np.ndarray, neighbour_ids: np.ndarray, shapes_by_id: np.ndarray,
                        ) -> dict[str, Any]:
  """Share of neighbours whose same-position quadrant holds the same shape (scenes only).

  ``shapes_by_id`` [M, 4] is indexed by image id (0 = empty quadrant). Reported overall, per
  position, for non-empty query quadrants, and next to chance (sum of squared shape
  frequencies), so a number can be read without knowing the class balance.
  """
  ids = np.asarray(ids)
  neighbour_ids = np.asarray(neighbour_ids)
  query_shapes = shapes_by_id[ids]  # [N, 4]
  valid = neighbour_ids >= 0
  nb_shapes = shapes_by_id[np.where(valid, neighbour_ids, 0),
                           np.arange(conventions.NUM_QUADRANTS)[None, :, None]]
  match = (nb_shapes == query_shapes[:, :, None]) & valid
  occupied = np.broadcast_to((query_shapes > 0)[:, :, None], match.shape) & valid
  freq = np.bincount(query_shapes.reshape(-1)) / query_shapes.size
  return {
      "precision": float(match.sum() / max(1, valid.sum())),
      "precision_per_position": [
          float(match[:, i].sum() / max(1, valid[:, i].sum()))
          for i in range(conventions.NUM_QUADRANTS)],
      "precision_non_empty": float((match & occupied).sum() / max(1, occupied.sum())),
      "chance": float(np.sum(freq ** 2)),
      "num_images": int(ids.size),
  }

