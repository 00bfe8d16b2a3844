"""Image files for the tests of sources and bad-data handling: good, convertible and broken."""

import io
import pathlib

import numpy as np
from PIL import Image


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
  buf = io.BytesIO()
  image.save(buf, fmt, **kwargs)
  return buf.getvalue()


def smooth_rgb(h, w, seed=0) -> Image.Image:
  """Smooth random colours (compress like photos, unlike noise)."""
  small = np.random.default_rng(seed).integers(0, 256, (4, 4, 3), dtype=np.uint8)
  return Image.fromarray(small).resize((w, h), Image.BILINEAR)


# name -> skip reason (None: decodes). Every reason of SkipCounter except "filtered" (COCO's
# own selection) and "too_large" (tested with a size limit).
MESSY_FILES = {
    "a_good.jpg": None, "b_good.JPEG": None, "c_gray.png": None, "d_rgba.png": None,
    "e_cmyk.jpg": None, "sub/f_palette.gif": None, "sub/g_image.bmp": None,
    "h_tiny.png": "too_small",
    "i_corrupt.jpg": "decode_error",  # JPEG magic and end marker, garbage between
    "j_truncated.jpg": "truncated",  # a download cut at a third
    "k_noise.png": "unreadable",  # not an image at all
    "l_empty.jpg": "unreadable",  # zero bytes
    "m_truncated.png": "truncated",
}


def write_messy_folder(root: pathlib.Path) -> tuple[str, list[str]]:
  """Writes MESSY_FILES (and a non-image notes.txt) under root; -> (path, readable names)."""
  (root / "sub").mkdir(parents=True)
  good = encode(smooth_rgb(120, 160), "JPEG")
  data = {
      "a_good.jpg": good,
      "b_good.JPEG": encode(smooth_rgb(90, 70, 1), "JPEG"),
      "c_gray.png": encode(smooth_rgb(80, 80, 2).convert("L"), "PNG"),
      "d_rgba.png": encode(smooth_rgb(70, 90, 3).convert("RGBA"), "PNG"),
      "e_cmyk.jpg": encode(smooth_rgb(100, 100, 4).convert("CMYK"), "JPEG"),
      "sub/f_palette.gif": encode(smooth_rgb(72, 72, 5).convert("P"), "GIF"),
      "sub/g_image.bmp": encode(smooth_rgb(66, 99, 6), "BMP"),
      "h_tiny.png": encode(smooth_rgb(10, 10, 7), "PNG"),
      "i_corrupt.jpg": b"\xff\xd8\xff" + bytes(range(256)) * 4 + b"\xff\xd9",
      "j_truncated.jpg": good[:len(good) // 3],
      "k_noise.png": b"not an image at all",
      "l_empty.jpg": b"",
      "m_truncated.png": encode(smooth_rgb(80, 80, 8), "PNG")[:300],
      "notes.txt": b"ignored: not an image extension",
  }
  for name, content in data.items():
    (root / name).write_bytes(content)
  return str(root), sorted(name for name, reason in MESSY_FILES.items() if reason is None)
