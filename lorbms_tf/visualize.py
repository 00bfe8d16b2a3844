"""Image grids: the training run's TensorBoard/PNG grids and the evaluation report's figures.

One place draws every picture of mixed scenes, so a mask looks the same in TensorBoard, in
``grids/*.png`` and in ``report.md``: replaced quadrants orange, kept ones dark grey.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import tensorflow as tf

from lorbms_tf import conventions

GRID_COLUMNS = ("reference", "donor TL", "donor TR", "donor BL", "donor BR", "mask", "mixed", "cycle")
REPLACED_COLOUR = (240, 150, 30)
KEPT_COLOUR = (60, 60, 60)

to_uint8 = conventions.unit_to_uint8  # float [-1, 1] (or uint8) -> uint8


def mask_image(mask, size: int) -> np.ndarray:
  """A picture of a mask ([4] -> [size, size, 3], or [B, 4] -> [B, size, size, 3], uint8):
  replaced quadrants orange, kept ones dark grey, a light cross between the quadrants, so a
  grid shows at a glance which chunks came from a donor."""
  mask = np.asarray(mask, np.float32)
  single = mask.ndim == 1
  mask = mask.reshape(-1, conventions.NUM_QUADRANTS)
  out = np.empty((mask.shape[0], size, size, 3), np.uint8)
  out[:] = KEPT_COLOUR
  for i in range(conventions.NUM_QUADRANTS):
    y0, x0, y1, x1 = conventions.quadrant_box(i, size)
    out[mask[:, i] > 0.5, y0:y1, x0:x1] = REPLACED_COLOUR
  out[:, size // 2 - 1:size // 2 + 1, :] = 200
  out[:, :, size // 2 - 1:size // 2 + 1] = 200
  return out[0] if single else out


def tile(images: np.ndarray, pad: int = 2, background: int = 255) -> np.ndarray:
  """[rows, cols, H, W, 3] uint8 -> one [rows*(H+pad)-pad, cols*(W+pad)-pad, 3] image."""
  rows, cols, h, w, c = images.shape
  grid = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad, c), background, np.uint8)
  for r in range(rows):
    for col in range(cols):
      grid[r * (h + pad):r * (h + pad) + h, col * (w + pad):col * (w + pad) + w] = images[r, col]
  return grid


def mix_grid(out: dict, max_rows: int = 8, pad: int = 2) -> np.ndarray:
  """A generator_pass / mix_batch result -> one uint8 [H, W, 3] grid image (TensorBoard)."""
  rows = min(max_rows, int(out["reference"].shape[0]))
  size = int(out["reference"].shape[1])
  donors = to_uint8(out["donor_images"][:rows])  # [B, 4, H, W, 3]
  columns = [to_uint8(out["reference"][:rows])]
  columns += [donors[:, i] for i in range(conventions.NUM_QUADRANTS)]
  columns += [mask_image(np.asarray(out["mask"][:rows]), size), to_uint8(out["mixed"][:rows])]
  if "cycle" in out:
    columns.append(to_uint8(out["cycle"][:rows]))
  return tile(np.stack(columns, axis=1), pad)


def save_png(path: str, image: np.ndarray) -> None:
  """Writes a uint8 [H, W, 3] image (any tf.io.gfile path), atomically."""
  data = tf.io.encode_png(tf.convert_to_tensor(image, tf.uint8)).numpy()
  tmp = path + ".tmp"
  with tf.io.gfile.GFile(tmp, "wb") as f:
    f.write(data)
  tf.io.gfile.rename(tmp, path, overwrite=True)


# Report figures: titled PNGs, drawn with PIL.

def image_grid(rows: Sequence[Sequence[np.ndarray]], path: str,
               column_titles: Sequence[str] | None = None,
               row_titles: Sequence[str] | None = None, scale: int = 2, pad: int = 4) -> str:
  """Saves a grid of images (each float [-1, 1] or uint8, all the same size) as a PNG."""
  from PIL import Image, ImageDraw  # pylint: disable=import-outside-toplevel
  rows = [[to_uint8(image) for image in row] for row in rows]
  if not rows or not rows[0]:
    raise ValueError("empty grid")
  h, w = rows[0][0].shape[:2]
  h, w = h * scale, w * scale
  cols = max(len(r) for r in rows)
  top = 14 if column_titles else 0
  left = 64 if row_titles else 0
  canvas = Image.new("RGB", (left + cols * (w + pad) + pad, top + len(rows) * (h + pad) + pad),
                     (255, 255, 255))
  draw = ImageDraw.Draw(canvas)
  for c, title in enumerate(column_titles or []):
    draw.text((left + pad + c * (w + pad), 1), str(title), fill=(0, 0, 0))
  for r, row in enumerate(rows):
    y = top + pad + r * (h + pad)
    if row_titles:
      draw.text((2, y + h // 2 - 5), str(row_titles[r]), fill=(0, 0, 0))
    for c, image in enumerate(row):
      tile = Image.fromarray(image).resize((w, h), Image.NEAREST)
      canvas.paste(tile, (left + pad + c * (w + pad), y))
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  canvas.save(path)
  return path


def mixing_grid(reference: np.ndarray, donors: np.ndarray, masks: np.ndarray, mixed: np.ndarray,
                path: str, reconstructed: np.ndarray | None = None,
                labels: Sequence[str] | None = None) -> str:
  """One row per example: reference, the donor of each quadrant, mask, I_mix (and I_hat).

  ``donors``: [N, 4, H, W, 3] (donor of each quadrant; kept quadrants' donors are shown
  faded, as they were not used).
  """
  titles = ["reference"] + [f"donor {q}" for q in conventions.QUADRANT_NAMES] + ["mask", "I_mix"]
  if reconstructed is not None:
    titles.append("I_hat")
  rows = []
  size = np.asarray(reference).shape[1]
  for n in range(len(reference)):
    row = [reference[n]]
    for q in range(conventions.NUM_QUADRANTS):
      donor = to_uint8(donors[n, q])
      if masks[n, q] < 0.5:
        donor = (0.35 * donor + 0.65 * 255).astype(np.uint8)
      row.append(donor)
    row += [mask_image(masks[n], size), mixed[n]]
    if reconstructed is not None:
      row.append(reconstructed[n])
    rows.append(row)
  return image_grid(rows, path, titles, row_titles=labels)


def transfer_grid(references: np.ndarray, donors: np.ndarray, masks: Sequence[np.ndarray],
                  results: np.ndarray, path: str) -> str:
  """Object transfer: a header row of mask pictures, then per pair reference, donor and the
  result under each mask. ``results``: [P, M, H, W, 3] for P pairs and M masks."""
  references, donors, results = np.asarray(references), np.asarray(donors), np.asarray(results)
  if references.ndim == 3:  # a single pair
    references, donors, results = references[None], donors[None], results[None]
  size = references.shape[1]
  blank = np.full((size, size, 3), 255, np.uint8)
  rows = [[blank, blank] + [mask_image(m, size) for m in masks]]
  for p in range(len(references)):
    rows.append([references[p], donors[p]] + list(results[p]))
  titles = ["reference", "donor"] + [conventions.mask_to_string(m) for m in masks]
  return image_grid(rows, path, titles, row_titles=["mask"] + [f"pair {p}" for p in
                                                               range(len(references))])
