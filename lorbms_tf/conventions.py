"""The one place for LORBMS's layout facts: image size and range, chunk order, mask format.

Everything else imports these names instead of repeating the numbers.

* Images are float32 NHWC in [-1, 1]; training images are 64x64.
* The encoder's output is a 2x2 grid of chunks, ``[B, 2, 2, C]``. Chunk ``i`` is grid cell
  ``i`` in row-major order, which is the fixed quadrant order TL, TR, BL, BR.
* A mix mask is ``[B, 4]`` of {0, 1}: 1 = chunk ``i`` was *replaced* (taken from the
  replacement image for quadrant ``i``), 0 = kept from the reference. Printed as "0010".
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

IMAGE_SIZE = 64
IMAGE_CHANNELS = 3
IMAGE_MIN, IMAGE_MAX = -1.0, 1.0

GRID = 2
NUM_QUADRANTS = GRID * GRID
QUADRANT_NAMES = ("TL", "TR", "BL", "BR")

MASK_KEPT = 0
MASK_REPLACED = 1


def chunks_to_list(chunks: tf.Tensor) -> tf.Tensor:
  """[B, 2, 2, C] grid -> [B, 4, C], index i = quadrant QUADRANT_NAMES[i]."""
  channels = chunks.shape[-1]
  return tf.reshape(chunks, [-1, NUM_QUADRANTS, channels])


def list_to_chunks(chunk_list: tf.Tensor) -> tf.Tensor:
  """[B, 4, C] -> [B, 2, 2, C] grid (inverse of ``chunks_to_list``)."""
  channels = chunk_list.shape[-1]
  return tf.reshape(chunk_list, [-1, GRID, GRID, channels])


def quadrant_box(index: int, height: int, width: int | None = None) -> tuple[int, int, int, int]:
  """Pixel box (y0, x0, y1, x1) of quadrant ``index`` in an image of the given size."""
  width = height if width is None else width
  if not 0 <= index < NUM_QUADRANTS:
    raise ValueError(f"quadrant index must be in 0..{NUM_QUADRANTS - 1}, got {index}")
  row, col = divmod(index, GRID)
  half_h, half_w = height // GRID, width // GRID
  return row * half_h, col * half_w, (row + 1) * half_h, (col + 1) * half_w


def image_quadrants(images: tf.Tensor) -> tf.Tensor:
  """[B, H, W, C] images -> [B, 4, H/2, W/2, C] pixel quadrants in chunk order."""
  shape = tf.shape(images)
  b, h, w, c = shape[0], shape[1], shape[2], images.shape[-1]
  grid = tf.reshape(images, [b, GRID, h // GRID, GRID, w // GRID, c])
  grid = tf.transpose(grid, [0, 1, 3, 2, 4, 5])  # [B, row, col, h/2, w/2, C]
  return tf.reshape(grid, [b, NUM_QUADRANTS, h // GRID, w // GRID, c])


def uint8_to_unit(images) -> np.ndarray:
  """uint8 [0, 255] (numpy) -> float32 in [IMAGE_MIN, IMAGE_MAX]. (In tf.data graphs, use
  lorbms_tf.data.preprocess.to_unit_range, the same mapping as TF ops.)"""
  scale = (IMAGE_MAX - IMAGE_MIN) / 255.0
  return np.asarray(images).astype(np.float32) * scale + IMAGE_MIN


def unit_to_uint8(images) -> np.ndarray:
  """Float in [IMAGE_MIN, IMAGE_MAX] -> uint8 (rounded, clipped); uint8 input passes through."""
  images = np.asarray(images)
  if images.dtype == np.uint8:
    return images
  scaled = (images.astype(np.float32) - IMAGE_MIN) * (255.0 / (IMAGE_MAX - IMAGE_MIN))
  return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def mask_to_string(mask: Sequence[int] | np.ndarray) -> str:
  """[4] mask of {0, 1} -> "0010"."""
  values = np.asarray(mask).astype(int).reshape(-1)
  if values.shape != (NUM_QUADRANTS,) or not np.isin(values, (0, 1)).all():
    raise ValueError(f"a mask is {NUM_QUADRANTS} values of 0/1, got {np.asarray(mask).tolist()}")
  return "".join(str(v) for v in values)


def parse_mask(text: str) -> np.ndarray:
  """"0010" -> array([0, 0, 1, 0], float32); a clear error for anything else."""
  if len(text) != NUM_QUADRANTS or set(text) - {"0", "1"}:
    raise ValueError(
        f"a mask is {NUM_QUADRANTS} characters of 0/1 in the order "
        f"{','.join(QUADRANT_NAMES)} (1 = replaced), got {text!r}")
  return np.array([int(ch) for ch in text], np.float32)
