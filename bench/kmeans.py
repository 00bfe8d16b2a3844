"""k-means for the knowledge-transfer pseudo labels: faiss at the thesis's scale.

The transfer experiment (``python -m lorbms_tf.transfer``) clusters one feature vector per
training image into K pseudo classes (the thesis: K = 2,000). This times exactly what it runs,
``pseudo_labels.kmeans_pseudo_labels`` (faiss.Kmeans: L2-normalised rows, training on at most
K x 256 sampled points, then every point assigned), on N x 256-d features, the ``small``
preset's encoder chunks (4 x 64) flattened, for N = 100k and 1M.

Data: Gaussian-cluster vectors (5,000 true centres plus noise), not real chunks: no dataset
here has 1M images, and k-means's cost depends on N, D, K, the iterations and the
initialisation, not on the values. Per case: seconds of initialisation (estimated from faiss's
own per-iteration clock), per iteration, training in all, and assigning all N points; the
points trained on; faiss's threads and the machine's load average (a shared box: compare only
numbers from one run).

    python bench/kmeans.py                       # 100k and 1M, K=2000, 20 iterations, k-means++
    python bench/kmeans.py --sizes=100000,1000000 --iterations=20,3 --inits=kmeans++,random
    python bench/kmeans.py --sizes=20000,20000 --inits=random,kmeans++ --clusters=200  # quick

``--iterations`` and ``--inits`` give one value per size (or one for all): on a 2-core box
1M points into 2,000 clusters take ~40 s per iteration, so a full 1M run is ~15 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from lorbms_tf.transfer import pseudo_labels

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "kmeans.json")
SMALL_CHUNK_DIM = 4 * 64  # the small preset: 2x2 chunks of 64 channels


def clustered_features(n: int, dim: int, true_clusters: int = 5000, seed: int = 0) -> np.ndarray:
  """[n, dim] float32 drawn around ``true_clusters`` Gaussian centres (built in blocks, so 1M x
  256 needs ~1 GB, not several)."""
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(true_clusters, dim)).astype(np.float32)
  out = np.empty((n, dim), np.float32)
  for begin in range(0, n, 100_000):
    end = min(n, begin + 100_000)
    out[begin:end] = centres[rng.integers(0, true_clusters, end - begin)]
    out[begin:end] += 0.5 * rng.standard_normal((end - begin, dim), dtype=np.float32)
  return out


def run_case(features: np.ndarray, clusters: int, iterations: int, init: str) -> dict:
  load = os.getloadavg()[0]
  start = time.perf_counter()
  result = pseudo_labels.kmeans_pseudo_labels(
      features, pseudo_labels.KMeansConfig(clusters, iterations=iterations, init=init))
  stats = result.stats
  row = {"n": int(len(features)), "dim": int(features.shape[1]), "clusters": clusters,
         "iterations": iterations, "init": init, "trained_on": stats["trained_on"],
         "init_seconds": stats["init_seconds"],
         "seconds_per_iteration": stats["seconds_per_iteration"],
         "train_seconds": stats["train_seconds"], "assign_seconds": stats["assign_seconds"],
         "total_seconds": time.perf_counter() - start,  # incl. normalising the rows
         "iteration_clock": result.iteration_times.round(3).tolist(),
         "used_clusters": stats["used_clusters"],
         "effective_clusters": stats["effective_clusters"], "threads": stats["threads"],
         "load_avg_1m_before": load, "load_avg_1m_after": os.getloadavg()[0]}
  print(f"n={row['n']:>8,} K={clusters} {init:>8}: init {row['init_seconds']:.1f} s, "
        f"{row['seconds_per_iteration']:.2f} s/iteration x {iterations}, train "
        f"{row['train_seconds']:.1f} s, assign {row['assign_seconds']:.1f} s, total "
        f"{row['total_seconds']:.1f} s (trained on {row['trained_on']:,}; load "
        f"{load:.1f} -> {row['load_avg_1m_after']:.1f})", flush=True)
  return row


def per_size(values: list, sizes: list[int], name: str) -> list:
  if len(values) == 1:
    return values * len(sizes)
  if len(values) != len(sizes):
    raise SystemExit(f"{name}: give one value, or one per size ({len(sizes)})")
  return values


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--sizes", default="100000,1000000", help="comma-separated N")
  parser.add_argument("--dim", type=int, default=SMALL_CHUNK_DIM)
  parser.add_argument("--clusters", type=int, default=2000)
  parser.add_argument("--iterations", default="20", help="per size, or one for all")
  parser.add_argument("--inits", default="kmeans++",
                      help=f"per size, or one for all; of {', '.join(pseudo_labels.INIT_METHODS)}")
  parser.add_argument("--out", default=RESULTS)
  args = parser.parse_args()
  import faiss  # pylint: disable=import-outside-toplevel
  start, load_at_start = time.time(), os.getloadavg()[0]
  sizes = [int(s) for s in args.sizes.split(",") if s]
  iterations = per_size([int(i) for i in args.iterations.split(",") if i], sizes, "--iterations")
  inits = per_size([i for i in args.inits.split(",") if i], sizes, "--inits")
  cases, features = [], None
  for size, niter, init in zip(sizes, iterations, inits):
    if features is None or len(features) != size:
      features = None  # free the previous size first
      features = clustered_features(size, args.dim)
    cases.append(run_case(features, args.clusters, niter, init))
  report = {
      "benchmark": "kmeans",
      "what": "lorbms_tf.transfer.pseudo_labels.kmeans_pseudo_labels (faiss.Kmeans)",
      "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
      "machine": {"cpus": os.cpu_count(), "load_avg_1m_at_start": load_at_start,
                  "load_avg_1m_at_end": os.getloadavg()[0],
                  "python": platform.python_version(), "faiss": faiss.__version__},
      "wall_seconds": time.time() - start,
      "cases": cases,
  }
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(report, f, indent=2)
  print(f"\nwrote {args.out} ({report['wall_seconds']:.0f} s)")


if __name__ == "__main__":
  main()
