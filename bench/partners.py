"""Index partners from an image bank on disk: input throughput and memory, side by side.

Each case runs in its own process (so its peak RSS is its own) and reports reference images/s
of the batches the trainer gets (each with its 4 candidate images) and the process's peak RSS:

* ``batch_scenes``: ``--partners=batch``'s input (``train_dataset`` on lorbms_scenes; partners
  are then chosen inside the train step);
* ``index_scenes_memory``: ``--partners=index`` with the bank as an array in RAM;
* ``index_scenes_mmap``: the same bank read from disk by rows (what the trainer does);
* ``index_synthetic_mmap``: a bank on disk of ``--bank_images`` (default 1M, 12.3 GB)
  with a random neighbour table: memory must not grow with the bank.

The train step consumes 60-80 img/s (demo config, 2 cores) and 4.6 img/s (``coco`` preset);
the input must stay above that. Raw numbers: bench/results/partners.json.

    python bench/partners.py --data_dir=tensorflow_datasets          # ~5 min, 12 GB of disk
    python bench/partners.py --bank_images=100000                    # quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
RESULTS = os.path.join(REPO, "bench", "results", "partners.json")
K = 4  # neighbours per quadrant in the synthetic table


def _measure(ds, batches: int, warmup: int = 5) -> float:
  iterator = iter(ds)
  for _ in range(warmup):
    next(iterator)
  start = time.perf_counter()
  images = 0
  for _ in range(batches):
    images += int(next(iterator)["image"].shape[0])
  return images / (time.perf_counter() - start)


def _scenes_bank(data_dir: str, bank_dir: str):
  from lorbms_tf.data import partners, pipeline  # pylint: disable=import-outside-toplevel
  if not os.path.exists(os.path.join(bank_dir, "bank.json")):
    partners.write_image_bank(bank_dir, pipeline.image_batches("scenes", None, data_dir=data_dir))
  return partners.open_image_bank(bank_dir)


def _random_table(n: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  rows = rng.integers(0, n, (n, 4, K), dtype=np.int64)
  distances = np.sort(rng.random((n, 4, K), dtype=np.float32), axis=-1)
  return rows, distances


def _synthetic_bank(n: int, bank_dir: str):
  from lorbms_tf.data import partners  # pylint: disable=import-outside-toplevel
  if not os.path.exists(os.path.join(bank_dir, "bank.json")):
    block = np.random.default_rng(0).integers(0, 256, (4096, 64, 64, 3), dtype=np.uint8)

    def batches():
      for begin in range(0, n, len(block)):
        size = min(len(block), n - begin)
        yield np.arange(begin, begin + size), block[:size]
    partners.write_image_bank(bank_dir, batches())
  return partners.open_image_bank(bank_dir)


def run_case(case: str, args) -> dict:
  from lorbms_tf.data import partners, pipeline  # pylint: disable=import-outside-toplevel
  if case == "batch_scenes":
    ds = pipeline.train_dataset("scenes", args.batch_size, data_dir=args.data_dir)
    bank_size = None
  else:
    if case == "index_synthetic_mmap":
      _, images = _synthetic_bank(args.bank_images, os.path.join(args.work, "synthetic_bank"))
    else:
      _, images = _scenes_bank(args.data_dir, os.path.join(args.work, "scenes_bank"))
      if case == "index_scenes_memory":
        images = np.array(images)
    rows, distances = _random_table(len(images))
    ds = partners.index_partner_dataset(images, np.arange(len(images)), rows, distances,
                                        args.batch_size, partner_k=2)
    bank_size = len(images)
  rate = _measure(ds, args.batches)
  peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  return {"case": case, "images_per_second": rate, "peak_rss_mb": peak_rss_mb,
          "bank_images": bank_size, "batch_size": args.batch_size, "batches": args.batches}


CASES = ("batch_scenes", "index_scenes_memory", "index_scenes_mmap", "index_synthetic_mmap")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--data_dir", default=os.path.join(REPO, "tensorflow_datasets"))
  parser.add_argument("--bank_images", type=int, default=1_000_000)
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--batches", type=int, default=200)
  parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of all cases")
  parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "lorbms_bench_partners"))
  parser.add_argument("--case", default=None, help=argparse.SUPPRESS)  # one case, in a child
  parser.add_argument("--out", default=RESULTS)
  args = parser.parse_args()
  if args.case:
    print(json.dumps(run_case(args.case, args)))
    return
  os.makedirs(args.work, exist_ok=True)
  # Build the banks first (not timed), then alternate the cases so they share the load.
  start = time.perf_counter()
  _scenes_bank(args.data_dir, os.path.join(args.work, "scenes_bank"))
  _synthetic_bank(args.bank_images, os.path.join(args.work, "synthetic_bank"))
  build_seconds = time.perf_counter() - start
  runs = []
  for round_index in range(args.rounds):
    for case in CASES:
      out = subprocess.run([sys.executable, __file__, f"--case={case}", *sys.argv[1:]],
                           capture_output=True, text=True, check=True,
                           env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
      result = json.loads(out.stdout.strip().splitlines()[-1])
      result["round"] = round_index
      runs.append(result)
      print(f"{case:24s} {result['images_per_second']:8.0f} img/s  "
            f"peak RSS {result['peak_rss_mb']:6.0f} MB", flush=True)
  summary = {}
  for case in CASES:
    rates = [r["images_per_second"] for r in runs if r["case"] == case]
    rss = [r["peak_rss_mb"] for r in runs if r["case"] == case]
    summary[case] = {"images_per_second_median": float(np.median(rates)),
                     "peak_rss_mb_max": float(max(rss))}
  base = summary["batch_scenes"]["images_per_second_median"]
  for case in CASES:
    summary[case]["vs_batch_partners"] = summary[case]["images_per_second_median"] / base
  record = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
            "bank_images": args.bank_images, "bank_build_seconds": build_seconds,
            "runs": runs, "summary": summary}
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(record, f, indent=1)
  print(json.dumps(summary, indent=1))


if __name__ == "__main__":
  main()
