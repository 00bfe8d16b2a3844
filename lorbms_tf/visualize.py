"""Image grids of mixed scenes: one row per sample, columns reference | 4 donors | mask | I_mix | I'_ref."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from lorbms_tf import conventions

GRID_COLUMNS = ("reference", "donor TL", "donor TR", "donor BL", "donor BR", "mask", "mixed", "cycle")


to_uint8 = conventions.unit_to_uint8  # [-1, 1] floats -> uint8


def mask_image(mask, size: int) -> np.ndarray:
  """[B, 4] mask -> [B, size, size, 3] uint8: replaced quadrants white, kept ones dark grey."""
  mask = np.asarray(mask)
  out = np.full((mask.shape[0], size, size, 3), 48, np.uint8)
  for i in range(conventions.NUM_QUADRANTS):
    y0, x0, y1, x1 = conventions.quadrant_box(i, size)
    out[mask[:, i] > 0.5, y0:y1, x0:x1] = 255
  return out


def mix_grid(out: dict, max_rows: int = 8, pad: int = 2) -> np.ndarray:
  """A generator_pass / mix_batch result -> one uint8 [H, W, 3] grid image."""
  rows = min(max_rows, int(out["reference"].shape[0]))
  size = int(out["reference"].shape[1])
  donors = to_uint8(out["donor_images"][:rows])  # [B, 4, H, W, 3]
  columns = [to_uint8(out["reference"][:rows])]
  columns += [donors[:, i] for i in range(conventions.NUM_QUADRANTS)]
  columns += [mask_image(np.asarray(out["mask"][:rows]), size), to_uint8(out["mixed"][:rows])]
  if "cycle" in out:
    columns.append(to_uint8(out["cycle"][:rows]))
  return tile(np.stack(columns, axis=1), pad)


def tile(images: np.ndarray, pad: int = 2, background: int = 255) -> np.ndarray:
  """[rows, cols, H, W, 3] uint8 -> one [rows*(H+pad)-pad, cols*(W+pad)-pad, 3] image."""
  rows, cols, h, w, c = images.shape
  grid = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad, c), background, np.uint8)
  for r in range(rows):
    for col in range(cols):
      grid[r * (h + pad):r * (h + pad) + h, col * (w + pad):col * (w + pad) + w] = images[r, col]
  return grid


def save_png(path: str, image: np.ndarray) -> None:
  """Writes a uint8 [H, W, 3] image (any tf.io.gfile path), atomically."""
  data = tf.io.encode_png(tf.convert_to_tensor(image, tf.uint8)).numpy()
  tmp = path + ".tmp"
  with tf.io.gfile.GFile(tmp, "wb") as f:
    f.write(data)
  tf.io.gfile.rename(tmp, path, overwrite=True)
