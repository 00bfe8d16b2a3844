"""Pseudo labels: k-means clusters of a teacher network's features (Noroozi et al. 2018).

Knowledge transfer step 2: every training image's teacher feature vector is assigned to one of
K k-means centroids, and the cluster index becomes the image's class for the student network.

k-means is ``faiss.Kmeans`` (a library built for this at scale: 1M x 256-d into 2,000 clusters
on a CPU; ``bench/kmeans.py`` measures it). Rows are L2-normalised first (``normalize``): the
clusters then follow the direction of a feature vector, not its magnitude, as in DeepCluster
(the thesis's text does not say which; the raw chunks' scale varies between images, and plain
Euclidean k-means would partly cluster by norm). With a fixed ``seed`` the labels are
deterministic (same data, same thread count).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

# faiss trains on at most this many points per centroid (a random sample of that size), then
# assigns every point: its own default, kept, since more points move the centroids little.
FAISS_MAX_POINTS_PER_CENTROID = 256
# Centroid initialisation (faiss ClusteringInitMethod). k-means++ by default: faiss's uniform
# random draw often puts two seeds in one true cluster, and Lloyd's iterations rarely undo
# that (measured: 5 planted blobs, seed 0, K=5: one blob split, two merged).
INIT_METHODS = ("kmeans++", "afkmc2", "random")


@dataclasses.dataclass(frozen=True)
class KMeansConfig:
  clusters: int
  iterations: int = 20
  init: str = "kmeans++"  # INIT_METHODS
  normalize: bool = True
  seed: int = 0
  max_points_per_centroid: int = FAISS_MAX_POINTS_PER_CENTROID


@dataclasses.dataclass
class PseudoLabels:
  """labels: [N] int64 in 0..K-1; centroids: [K, D] (in the normalised space if normalised);
  iteration_times: faiss's clock at the end of each iteration (seconds since training began,
  so the first one includes the initialisation)."""
  labels: np.ndarray
  centroids: np.ndarray
  stats: dict[str, Any]
  iteration_times: np.ndarray


def check_clusters(num_points: int | None, clusters: int) -> None:
  """K must be 2 or more and at most the number of points (faiss cannot make more centroids
  than it has points, and K = 1 teaches the student nothing). None: not known yet."""
  if clusters < 2:
    raise ValueError(f"--clusters must be >= 2, got {clusters}")
  if num_points is not None and clusters > num_points:
    raise ValueError(f"--clusters={clusters} is larger than the number of images "
                     f"({num_points}): use at most {num_points} clusters or more images")


def l2_normalize(features: np.ndarray, epsilon: float = 1e-12) -> np.ndarray:
  """Rows scaled to unit length; an all-zero row stays zero."""
  norms = np.linalg.norm(features, axis=1, keepdims=True)
  return features / np.maximum(norms, epsilon)


def cluster_size_stats(labels: np.ndarray, clusters: int) -> dict[str, Any]:
  """How evenly the images spread over the clusters: a few giant clusters make a poor task.

  ``effective_clusters``: exp(entropy of the cluster sizes), K when all are equal, 1 when one
  cluster holds everything.
  """
  sizes = np.bincount(np.asarray(labels, np.int64), minlength=clusters)
  shares = sizes[sizes > 0] / max(int(sizes.sum()), 1)
  return {"clusters": int(clusters), "used_clusters": int((sizes > 0).sum()),
          "largest_cluster_share": float(shares.max()) if shares.size else 0.0,
          "smallest_used_cluster": int(sizes[sizes > 0].min()) if shares.size else 0,
          "effective_clusters": float(np.exp(-np.sum(shares * np.log(shares))))}


def kmeans_pseudo_labels(features: np.ndarray, config: KMeansConfig) -> PseudoLabels:
  """[N, ...] features -> one cluster index per row (flattened to [N, D] first)."""
  import faiss  # pylint: disable=import-outside-toplevel
  if config.init not in INIT_METHODS:
    raise ValueError(f"k-means init must be one of {INIT_METHODS}, got {config.init!r}")
  init_method = {"kmeans++": faiss.ClusteringInitMethod_KMEANS_PLUS_PLUS,
                 "afkmc2": faiss.ClusteringInitMethod_AFK_MC2,
                 "random": faiss.ClusteringInitMethod_RANDOM}[config.init]
  x = np.asarray(features, np.float32).reshape(len(features), -1)
  check_clusters(len(x), config.clusters)
  if config.normalize:
    x = l2_normalize(x)
  x = np.ascontiguousarray(x, np.float32)
  kmeans = faiss.Kmeans(x.shape[1], config.clusters, niter=config.iterations, seed=config.seed,
                        verbose=False, init_method=init_method,
                        max_points_per_centroid=config.max_points_per_centroid,
                        # faiss warns on stderr below 39 points per centroid; small K-way
                        # tasks on small data are legitimate here (tests, tiny runs).
                        min_points_per_centroid=1)
  start = time.perf_counter()
  kmeans.train(x)
  train_seconds = time.perf_counter() - start
  start = time.perf_counter()
  _, assignment = kmeans.index.search(x, 1)
  assign_seconds = time.perf_counter() - start
  labels = assignment[:, 0].astype(np.int64)
  times = np.array([st["time"] for st in kmeans.iteration_stats], np.float64)
  # The first iteration's clock also holds the initialisation: init ~ first - median iteration.
  per_iteration = float(np.median(np.diff(times))) if len(times) > 1 else None
  stats = {
      "num_points": int(len(x)), "feature_dim": int(x.shape[1]),
      "trained_on": int(min(len(x), config.clusters * config.max_points_per_centroid)),
      "iterations": config.iterations, "init": config.init, "normalize": config.normalize,
      "seed": config.seed, "objective": float(kmeans.obj[-1]) if len(kmeans.obj) else None,
      "train_seconds": train_seconds, "assign_seconds": assign_seconds,
      "seconds_per_iteration": per_iteration,
      "init_seconds": (max(0.0, float(times[0] - per_iteration)) if per_iteration is not None
                       else None),
      "threads": int(faiss.omp_get_max_threads()),
      **cluster_size_stats(labels, config.clusters)}
  return PseudoLabels(labels, np.asarray(kmeans.centroids), stats, times)
