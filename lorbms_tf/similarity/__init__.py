"""Visual similarity detection: which images' quadrants to mix into which.

For every image and quadrant position, the k nearest same-position quadrants of other images,
found with one ScaNN index per position over quadrant embeddings, stored as a neighbour table
(see ``table`` for the layout the trainer relies on).

* ``extractors``: images -> quadrant embeddings [N, 4, D] (pixels, random_cnn, encoder, ...).
* ``index``: ScaNN build/search per position, exact search, recall, neighbour precision.
* ``table``: the table artifact (atomic save, memory-mapped load, query for new images).
* ``beam_pipeline``: the embedding step as an Apache Beam pipeline, for large corpora.

``build_neighbour_table`` below ties index and record together; the CLI is
``components/similarity``.
"""

from __future__ import annotations

import datetime
import platform
from typing import Any, Mapping

import numpy as np

from lorbms_tf.similarity.extractors import (DEFAULT_EXTRACTOR, Extractor, ExtractorOptions,
                                             make_extractor)
from lorbms_tf.similarity.index import (DEFAULT_K, IndexSettings, choose_settings, exact_search,
                                        find_neighbours, neighbour_precision, recall_at_k)
from lorbms_tf.similarity.table import (NeighbourTable, load_neighbour_table, query,
                                        save_neighbour_table)

_QUANTILES = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)


def library_versions() -> dict[str, str]:
  """Installed versions of what shaped the numbers (package metadata; imports nothing)."""
  from importlib import metadata  # pylint: disable=import-outside-toplevel
  versions = {"python": platform.python_version()}
  for name in ("tensorflow", "keras", "scann", "numpy", "apache-beam"):
    try:
      versions[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
      versions[name] = "not installed"
  return versions


def distance_quantiles(distances: np.ndarray) -> dict[str, float]:
  """Quantiles of all finite neighbour distances: the mixer's tau is one of them."""
  values = np.asarray(distances, np.float64).reshape(-1)
  values = values[np.isfinite(values)]
  if values.size == 0:
    return {}
  return {f"q{q:g}": float(v) for q, v in zip(_QUANTILES, np.quantile(values, _QUANTILES))}


def build_neighbour_table(ids: np.ndarray, embeddings: np.ndarray, k: int = DEFAULT_K, *,
                          position_major: bool = False,
                          shapes_by_id: np.ndarray | None = None,
                          recall_queries: int = 1000,
                          settings: IndexSettings | None = None,
                          brute_force_below: int | None = None,
                          target_recall: float | None = None,
                          record: Mapping[str, Any] | None = None,
                          ) -> tuple[NeighbourTable, list]:
  """Index the embeddings, find neighbours, measure recall (and precision on scenes).

  Args:
    ids: int64 [N] image ids.
    embeddings: float32 [N, 4, D] (or [4, N, D] with ``position_major``).
    k: neighbours per quadrant.
    shapes_by_id: [max_id + 1, 4] ground-truth shape per quadrant (lorbms_scenes), for the
      neighbour precision; None when the dataset has no such labels.
    recall_queries: queries sampled per position for recall@k against exact search.
    target_recall: tune the index for the fastest search reaching this recall@k (None: the
      rule-of-thumb settings); the chosen settings and measurements go into record.json.
    record: extra fields for record.json (extractor, dataset, ...).

  Returns:
    (table, searchers): searchers are the four ScaNN searchers, to save with the table.
  """
  kwargs = {} if brute_force_below is None else {"brute_force_below": brute_force_below}
  result = find_neighbours(ids, embeddings, k, settings=settings,
                           recall_queries=recall_queries, position_major=position_major,
                           target_recall=target_recall, **kwargs)
  summary = result.summary()
  precision = None
  if shapes_by_id is not None:
    precision = neighbour_precision(result.ids, result.neighbour_ids, shapes_by_id)
  dim = embeddings.shape[-1]
  full_record = {
      "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "k": int(k),
      "embedding_dim": int(dim),
      "counts": {"num_images": int(result.ids.size),
                 "duplicates_dropped": int(sum(summary["duplicates_dropped"]))},
      "index": summary,
      "recall_at_k": summary["recall_at_k_mean"],
      "recall_queries_per_position": int(min(recall_queries, result.ids.size)),
      "neighbour_precision": precision,
      "distance_quantiles": distance_quantiles(result.distances),
      "memory_bytes": {"embeddings": int(np.asarray(embeddings).nbytes),
                       "table": int(result.neighbour_ids.nbytes + result.distances.nbytes
                                    + result.ids.nbytes)},
      "versions": library_versions(),
  }
  for key, value in (record or {}).items():
    if key == "counts":
      full_record["counts"].update(value)
    else:
      full_record[key] = value
  table = NeighbourTable(result.ids, result.neighbour_ids, result.distances, full_record)
  return table, result.searchers


__all__ = [
    "DEFAULT_EXTRACTOR", "DEFAULT_K", "Extractor", "ExtractorOptions", "IndexSettings",
    "NeighbourTable", "build_neighbour_table", "choose_settings", "exact_search",
    "find_neighbours", "load_neighbour_table", "make_extractor", "neighbour_precision",
    "query", "recall_at_k", "save_neighbour_table",
]
