"""Procedural four-quadrant scenes: a dataset that ships with the code and needs no download.

LORBMS learns by swapping quadrant chunks between images, so a test bed is most useful when
every quadrant holds (or lacks) one known object: then "which shape is in quadrant i" is a
ground-truth probe for chunk i, and object transfer can be checked exactly. Each scene is a
muted background (two-colour linear gradient, faint stripes, grain) and, in each quadrant
(order TL, TR, BL, BR, see ``conventions``), with probability ``OCCUPANCY`` one flat-coloured,
antialiased shape of random size, rotation and position jitter. Objects may cross their
quadrant's border and overlap a neighbour slightly; later quadrants are drawn on top.

Determinism: every random number of scene ``k`` is a counter-based hash of ``(seed, k, slot)``,
so scene ``k`` is the same bytes however the scenes are split into calls or chunks:
``generate_scenes(10, start_index=5)`` equals ``generate_scenes(15)[5:]``.

Label conventions (all per quadrant, in quadrant order):

* ``shapes``: index into ``SHAPE_NAMES``; 0 = empty quadrant.
* ``colors``: index into ``COLOR_NAMES``; ``EMPTY_COLOR`` (-1) for an empty quadrant.
* ``bboxes``: normalised ``(ymin, xmin, ymax, xmax)`` of every pixel the object touches
  (coverage > 0, antialiased edge included), of the *full* object as drawn, even where a later
  object hides part of it; clipped to the image; ``ymin = first_row / R``,
  ``ymax = (last_row + 1) / R`` (likewise x). All zeros for an empty quadrant.
* ``label``: scene label = shape id of the object with the largest pixel area (summed
  coverage of the full object); 0 when all four quadrants are empty.
"""

from __future__ import annotations

import math

import numpy as np

from lorbms_tf import conventions

SHAPE_NAMES = ("empty", "circle", "square", "triangle", "cross", "star", "ring")
NUM_SHAPES = len(SHAPE_NAMES)  # including "empty"
EMPTY_SHAPE = 0
EMPTY_COLOR = -1

# Saturated colours; the background's chroma stays far below theirs (see _background).
_PALETTE = (
    ("red", (220, 30, 30)),
    ("orange", (245, 130, 20)),
    ("yellow", (240, 220, 30)),
    ("green", (40, 180, 50)),
    ("cyan", (30, 200, 220)),
    ("blue", (30, 60, 225)),
    ("purple", (130, 40, 210)),
    ("magenta", (225, 40, 200)),
)
COLOR_NAMES = tuple(name for name, _ in _PALETTE)
COLOR_VALUES = np.array([rgb for _, rgb in _PALETTE], np.float32)  # [num_colors, 3]
NUM_COLORS = len(COLOR_NAMES)

OCCUPANCY = 0.8  # probability that a quadrant holds an object
# Sizes at 64 px; everything scales linearly with the resolution.
RADIUS_RANGE_64 = (8.0, 14.0)
JITTER_64 = 5.0
MAX_BACKGROUND_CHROMA = 22.0  # tint strength of the background colours, in 0..255 units

_REFERENCE_SIZE = 64
_BLOCK = 256  # scenes rendered at once; only affects speed and memory, never the bytes
_GRAIN_TILE = 256
# Random slots per scene: background first, then one group per quadrant.
_BG_SLOTS = 16
_QUADRANT_SLOTS = 8
_NUM_SLOTS = _BG_SLOTS + conventions.NUM_QUADRANTS * _QUADRANT_SLOTS
# The largest shape reaches 1.15 radii from its centre (triangle), see _signed_distance.
_MAX_EXTENT = 1.15


def generate_scenes(num_scenes: int, resolution: int = 64, seed: int = 0,
                    start_index: int = 0, return_masks: bool = False
                    ) -> dict[str, np.ndarray]:
  """Renders scenes ``start_index .. start_index + num_scenes - 1`` of the stream ``seed``.

  Returns a dict of numpy arrays: ``image`` uint8 [N, R, R, 3], ``shapes`` int64 [N, 4],
  ``colors`` int64 [N, 4], ``bboxes`` float32 [N, 4, 4], ``label`` int64 [N] (see the module
  docstring), and with ``return_masks`` also ``masks`` float32 [N, 4, R, R]: each object's
  coverage in [0, 1] of the full object (zeros for an empty quadrant), for checking labels.
  """
  if num_scenes < 0 or start_index < 0 or seed < 0:
    raise ValueError("num_scenes, start_index and seed must be >= 0")
  if resolution < 16 or resolution % conventions.GRID:
    raise ValueError(f"resolution must be an even number >= 16, got {resolution}")
  grain_tile = np.random.default_rng([seed, 0x5CE7E5]).standard_normal(
      (_GRAIN_TILE, _GRAIN_TILE), dtype=np.float32)
  blocks = []
  for begin in range(0, num_scenes, _BLOCK):
    count = min(_BLOCK, num_scenes - begin)
    blocks.append(_render_block(start_index + begin, count, resolution, seed, grain_tile,
                                return_masks))
  if not blocks:
    blocks.append(_render_block(start_index, 0, resolution, seed, grain_tile, return_masks))
  return {key: np.concatenate([block[key] for block in blocks]) for key in blocks[0]}


def _uniforms(seed: int, first_index: int, count: int) -> np.ndarray:
  """[count, _NUM_SLOTS] float64 uniforms in [0, 1), a pure function of (seed, scene, slot).

  SplitMix64 over a per-seed counter stream: vectorised, and independent of how the scene
  range is chunked, which ``np.random.Generator`` streams would not be.
  """
  key = _splitmix64(np.array([seed], np.uint64))[0]
  scenes = np.arange(first_index, first_index + count, dtype=np.uint64)
  counters = scenes[:, None] * np.uint64(_NUM_SLOTS) + np.arange(_NUM_SLOTS, dtype=np.uint64)
  bits = _splitmix64(counters + key)
  return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def _splitmix64(values: np.ndarray) -> np.ndarray:
  with np.errstate(over="ignore"):
    z = values + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _render_block(first_index: int, count: int, resolution: int, seed: int,
                  grain_tile: np.ndarray, return_masks: bool) -> dict[str, np.ndarray]:
  """Renders one block of scenes: background, then the four quadrants' objects in order."""
  size = resolution
  scale = size / _REFERENCE_SIZE
  rand = _uniforms(seed, first_index, count)
  image = _background(rand[:, :_BG_SLOTS], size, grain_tile)  # float32 [n, R, R, 3]

  num_q = conventions.NUM_QUADRANTS
  shapes = np.zeros((count, num_q), np.int64)
  colors = np.full((count, num_q), EMPTY_COLOR, np.int64)
  bboxes = np.zeros((count, num_q, 4), np.float32)
  areas = np.zeros((count, num_q), np.float32)
  masks = np.zeros((count, num_q, size, size), np.float32) if return_masks else None

  max_radius = RADIUS_RANGE_64[1] * scale
  jitter = JITTER_64 * scale
  # Every object lies within `reach` of its quadrant centre, so a window of `window` pixels
  # anchored at the image edge next to the quadrant holds all of its in-image pixels.
  reach = _MAX_EXTENT * max_radius + jitter + 1.0
  window = min(size, int(math.ceil(size / 4 + reach)) + 1)
  pixel_centres = np.arange(window, dtype=np.float32) + 0.5

  for q in range(num_q):
    slots = rand[:, _BG_SLOTS + q * _QUADRANT_SLOTS:_BG_SLOTS + (q + 1) * _QUADRANT_SLOTS]
    occupied = slots[:, 0] < OCCUPANCY
    shapes[:, q] = np.where(occupied, 1 + (slots[:, 1] * (NUM_SHAPES - 1)).astype(np.int64), 0)
    colors[:, q] = np.where(occupied, (slots[:, 2] * NUM_COLORS).astype(np.int64), EMPTY_COLOR)
    radius = (RADIUS_RANGE_64[0] * scale
              + slots[:, 3] * (RADIUS_RANGE_64[1] - RADIUS_RANGE_64[0]) * scale)
    angle = slots[:, 4] * 2.0 * math.pi
    row, col = divmod(q, conventions.GRID)
    centre_y = (row + 0.5) * size / 2 + (2.0 * slots[:, 5] - 1.0) * jitter
    centre_x = (col + 0.5) * size / 2 + (2.0 * slots[:, 6] - 1.0) * jitter
    y0 = 0 if row == 0 else size - window
    x0 = 0 if col == 0 else size - window

    alpha = np.zeros((count, window, window), np.float32)
    for shape_id in range(1, NUM_SHAPES):
      idx = np.nonzero(shapes[:, q] == shape_id)[0]
      if idx.size == 0:
        continue
      dy = (pixel_centres + y0)[None, :, None] - centre_y[idx, None, None].astype(np.float32)
      dx = (pixel_centres + x0)[None, None, :] - centre_x[idx, None, None].astype(np.float32)
      cos = np.cos(angle[idx]).astype(np.float32)[:, None, None]
      sin = np.sin(angle[idx]).astype(np.float32)[:, None, None]
      u = cos * dx + sin * dy
      v = cos * dy - sin * dx
      distance = _signed_distance(shape_id, u, v, radius[idx].astype(np.float32)[:, None, None])
      alpha[idx] = np.clip(0.5 - distance, 0.0, 1.0)  # ~1 px antialiased edge

    # Composite over what is there (later quadrants on top).
    colour = COLOR_VALUES[np.maximum(colors[:, q], 0)][:, None, None, :]
    patch = image[:, y0:y0 + window, x0:x0 + window]
    patch += alpha[..., None] * (colour - patch)

    covered = alpha > 0
    rows_any, cols_any = covered.any(axis=2), covered.any(axis=1)
    ymin = y0 + rows_any.argmax(axis=1)
    ymax = y0 + window - rows_any[:, ::-1].argmax(axis=1)
    xmin = x0 + cols_any.argmax(axis=1)
    xmax = x0 + window - cols_any[:, ::-1].argmax(axis=1)
    box = np.stack([ymin, xmin, ymax, xmax], axis=1).astype(np.float32) / size
    bboxes[:, q] = np.where(occupied[:, None], box, 0.0)
    areas[:, q] = alpha.sum(axis=(1, 2))
    if masks is not None:
      masks[:, q, y0:y0 + window, x0:x0 + window] = alpha

  largest = areas.argmax(axis=1)
  result = {
      "image": np.clip(np.rint(image), 0, 255).astype(np.uint8),
      "shapes": shapes,
      "colors": colors,
      "bboxes": bboxes,
      "label": shapes[np.arange(count), largest],
  }
  if masks is not None:
    result["masks"] = masks
  return result


def _signed_distance(shape_id: int, u: np.ndarray, v: np.ndarray,
                     radius: np.ndarray) -> np.ndarray:
  """Approximate signed distance in pixels (< 0 inside) of a shape centred at the origin.

  (u, v) are pixel offsets already rotated into the shape's frame. The formulas are exact or
  1-Lipschitz approximations, which is all the 1-pixel antialiasing ramp needs. Proportions
  keep the areas of the shapes within a factor of ~1.8 of each other.
  """
  name = SHAPE_NAMES[shape_id]
  if name == "circle":
    return np.sqrt(u * u + v * v) - radius
  if name == "square":
    return np.maximum(np.abs(u), np.abs(v)) - 0.8 * radius
  if name == "triangle":
    return _triangle(u, v, 1.15 * radius)
  if name == "cross":
    arm, half_width = radius, 0.34 * radius
    au, av = np.abs(u), np.abs(v)
    return np.minimum(np.maximum(au - arm, av - half_width), np.maximum(au - half_width, av - arm))
  if name == "star":  # six-pointed: a triangle and its point reflection
    return np.minimum(_triangle(u, v, 1.1 * radius), _triangle(-u, -v, 1.1 * radius))
  if name == "ring":
    return np.abs(np.sqrt(u * u + v * v) - 0.72 * radius) - 0.28 * radius
  raise ValueError(f"no drawing for shape {shape_id}")


def _triangle(u: np.ndarray, v: np.ndarray, circumradius: np.ndarray) -> np.ndarray:
  """Equilateral triangle, apex up (-v): max over its three edges' half-plane distances."""
  half = 0.5 * np.float32(math.sqrt(3.0))
  edge_up = -v
  edge_right = half * u + 0.5 * v
  edge_left = -half * u + 0.5 * v
  return np.maximum(np.maximum(edge_up, edge_right), edge_left) - 0.5 * circumradius


def _background(rand: np.ndarray, size: int, grain_tile: np.ndarray) -> np.ndarray:
  """Muted two-colour linear gradient + faint stripes + grain, float32 [n, R, R, 3] in 0..255.

  Stripes and grain are grey (equal on all channels), so the background's chroma is only the
  colours' tint, at most ~1.3 * MAX_BACKGROUND_CHROMA: far from the saturated object palette.
  """
  count = rand.shape[0]
  # Orthonormal basis of the chroma plane (perpendicular to grey).
  chroma_a = np.array([1.0, -1.0, 0.0], np.float32) / math.sqrt(2.0)
  chroma_b = np.array([1.0, 1.0, -2.0], np.float32) / math.sqrt(6.0)

  def muted(level, hue, strength):
    grey = (45.0 + 155.0 * level)[:, None]
    tint = (np.cos(2 * math.pi * hue)[:, None] * chroma_a
            + np.sin(2 * math.pi * hue)[:, None] * chroma_b)
    return (grey + MAX_BACKGROUND_CHROMA * strength[:, None] * tint).astype(np.float32)

  colour_from = muted(rand[:, 0], rand[:, 2], rand[:, 3])[:, None, None, :]
  colour_to = muted(rand[:, 1], rand[:, 4], rand[:, 5])[:, None, None, :]
  coords = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5  # [-0.5, 0.5]
  ys, xs = coords[None, :, None], coords[None, None, :]

  def along(direction):
    return (np.cos(direction).astype(np.float32)[:, None, None] * xs
            + np.sin(direction).astype(np.float32)[:, None, None] * ys)

  t = np.clip(0.5 + along(2 * math.pi * rand[:, 6]), 0.0, 1.0)[..., None]
  image = colour_from + t * (colour_to - colour_from)

  amplitude = (10.0 * rand[:, 7]).astype(np.float32)[:, None, None]
  frequency = (2.0 + 6.0 * rand[:, 8]).astype(np.float32)[:, None, None]  # cycles per image
  phase = (2 * math.pi * rand[:, 10]).astype(np.float32)[:, None, None]
  stripes = amplitude * np.sin(2 * math.pi * frequency * along(math.pi * rand[:, 9]) + phase)

  tile = grain_tile.shape[0]
  offset_y = (rand[:, 12] * tile).astype(np.int64)[:, None]
  offset_x = (rand[:, 13] * tile).astype(np.int64)[:, None]
  grid = np.arange(size)[None, :]
  grain_rows = (offset_y + grid) % tile
  grain_cols = (offset_x + grid) % tile
  grain_std = (2.0 + 4.0 * rand[:, 11]).astype(np.float32)[:, None, None]
  grain = grain_std * grain_tile[grain_rows[:, :, None], grain_cols[:, None, :]]

  image += (stripes + grain)[..., None]
  return image.reshape(count, size, size, 3)
