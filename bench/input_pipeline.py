"""Input-pipeline throughput: examples/s of ``train_dataset`` on photos, scenes and shards.

Cases, all measured in one run so that they share the machine's load:
* ``folder_full``: 640x480 JPEGs, full decode;  ``folder_dct``: the same with DCT downscaling
  (``decode_jpeg(ratio=...)``), the default;
* ``tfrecord_64``: the same photos pre-cropped to 64 px in TFRecord shards (what example_gen
  writes, so a GPU trainer is fed from these);
* ``bare_full`` / ``bare_ratio4``: a minimal read-decode-crop pipeline without header checks,
  skip counting or ids, to price those;
* ``scenes``: the embedded ``lorbms_scenes`` (a small config built in ``--data_dir``).

    python bench/input_pipeline.py --out=bench/results/input_pipeline.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import numpy as np
from PIL import Image
import tensorflow as tf

from lorbms_tf.data import pipeline, preprocess, scenes_builder, sources


def make_photos(folder: str, count: int, height: int = 480, width: int = 640) -> None:
  """Photo-like JPEGs: smooth random colour fields plus mild grain (noise alone is atypical:
  it compresses badly and decodes slowly)."""
  rng = np.random.default_rng(0)
  os.makedirs(folder, exist_ok=True)
  for i in range(count):
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(small).resize((width, height), Image.BICUBIC), np.int16)
    grain = rng.integers(-12, 13, (height, width, 1), dtype=np.int16)
    image = np.clip(base + grain, 0, 255).astype(np.uint8)
    Image.fromarray(image).save(os.path.join(folder, f"photo_{i:04d}.jpg"), quality=90)


def bare_pipeline(folder: str, batch_size: int, ratio: int, shuffle_buffer: int):
  """The minimal pipeline (no header checks, skip counting or ids), to price the robustness."""
  files = sources.list_image_files(folder)

  def load(path):
    image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3, ratio=ratio)
    return {"image": preprocess.train_crop(image, 64)}

  ds = tf.data.Dataset.from_tensor_slices(files).repeat()
  ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).shuffle(shuffle_buffer)
  ds = ds.batch(batch_size, drop_remainder=True)
  return ds.map(lambda b: {"image": preprocess.to_unit_range(b["image"])}).prefetch(2)


def measure(cases: dict, batch_size: int, warmup: int, batches: int, rounds: int) -> dict:
  """Warms every pipeline up, then times ``batches`` batches of each, round-robin, ``rounds``
  times: neighbours' load on a shared machine then hits all cases alike; the median is
  reported, the best as a hint of the unloaded speed."""
  iterators, results = {}, {}
  for name, ds in cases.items():
    start = time.perf_counter()
    iterators[name] = iter(ds)
    for _ in range(warmup):
      next(iterators[name])
    results[name] = {"warmup_seconds": time.perf_counter() - start, "rounds": []}
  for _ in range(rounds):
    for name, iterator in iterators.items():
      start, cpu_start = time.perf_counter(), time.process_time()
      for _ in range(batches):
        next(iterator)["image"].numpy()
      count = batches * batch_size
      results[name]["rounds"].append(count / (time.perf_counter() - start))
      results[name].setdefault("cpu_ms", []).append(
          1e3 * (time.process_time() - cpu_start) / count)
  for result in results.values():
    result["examples_per_s"] = float(np.median(result["rounds"]))
    result["best_examples_per_s"] = float(np.max(result["rounds"]))
    # CPU time of this process per example: robust to other processes' load.
    result["cpu_ms_per_example"] = float(np.median(result.pop("cpu_ms")))
  return results


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--num_images", type=int, default=300)
  parser.add_argument("--num_scenes", type=int, default=2000)
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--batches", type=int, default=40)
  parser.add_argument("--warmup", type=int, default=10)
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--shuffle_buffer", type=int, default=1000)
  parser.add_argument("--data_dir", default=None, help="tfds data dir (default: temporary)")
  parser.add_argument("--out", default="bench/results/input_pipeline.json")
  args = parser.parse_args()

  with tempfile.TemporaryDirectory() as tmp:
    photos = os.path.join(tmp, "photos")
    make_photos(photos, args.num_images)
    data_dir = args.data_dir or os.path.join(tmp, "tfds")
    config = scenes_builder.ScenesConfig(name=f"bench{args.num_scenes}",
                                         num_train=args.num_scenes, num_test=10)
    scenes_builder.LorbmsScenes(config=config, data_dir=data_dir).download_and_prepare()
    # Pre-cropped 64 px shards, as example_gen writes them.
    shard_prefix = os.path.join(tmp, "shards", "train")
    sources.write_tfrecords(pipeline.center_examples(f"folder:{photos}"), shard_prefix, 4)

    common = dict(batch_size=args.batch_size, shuffle_buffer=args.shuffle_buffer)
    cases = {
        "bare_full": bare_pipeline(photos, args.batch_size, 1, args.shuffle_buffer),
        "bare_ratio4": bare_pipeline(photos, args.batch_size, 4, args.shuffle_buffer),
        "folder_full": pipeline.train_dataset(f"folder:{photos}", dct_downscale=False,
                                              **common),
        "folder_dct": pipeline.train_dataset(f"folder:{photos}", **common),
        "tfrecord_64": pipeline.train_dataset(f"tfrecord:{shard_prefix}-*", **common),
        "scenes": pipeline.train_dataset(f"scenes/{config.name}", data_dir=data_dir,
                                         **common),
    }
    results = measure(cases, args.batch_size, args.warmup, args.batches, args.rounds)

  full = results["bare_full"]["examples_per_s"]
  print(f"{'case':<14}{'median ex/s':>12}{'best ex/s':>11}{'vs bare_full':>14}"
        f"{'CPU ms/ex':>11}{'warm-up s':>11}")
  for name, result in results.items():
    print(f"{name:<14}{result['examples_per_s']:>12.0f}{result['best_examples_per_s']:>11.0f}"
          f"{result['examples_per_s'] / full:>13.2f}x{result['cpu_ms_per_example']:>11.2f}"
          f"{result['warmup_seconds']:>11.1f}")
  record = {
      "results": results,
      "settings": vars(args),
      "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg(),
                  "tensorflow": tf.__version__, "python": platform.python_version()},
      "photos": "640x480 JPEG q90, smooth random colours + grain",
  }
  os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(record, f, indent=1)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
