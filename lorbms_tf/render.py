"""Object transfer for your own images: `python -m lorbms_tf.render --workdir=runs/x ...`.

    python -m lorbms_tf.render --workdir=runs/demo/model --reference=ref.png \\
        --donors=donor.png --mask=0010 --out=out.png
    python -m lorbms_tf.render --workdir=runs/demo/model --reference=ref.png \\
        --donors=tl.png,tr.png,bl.png,br.png --mask=0110 --out=out.png

Renders Dec(Z_mix): the reference's chunks, with chunk i taken from the donor where mask
character i is 1 (quadrant order TL, TR, BL, BR; see ``conventions``). One donor serves
every quadrant; four donors give quadrant i its own donor i. Images of any size and format
PIL reads are centre-cropped to a square and area-resized to the model's 64 px, as in
evaluation. ``--out`` gets a strip (reference, the used donors, mask, result) unless
``--result_only``; the result alone is also written next to it as ``*_result.png``.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from absl import app, flags

from lorbms_tf import cli, conventions

FLAGS = flags.FLAGS


def load_image(path: str, size: int = conventions.IMAGE_SIZE) -> np.ndarray:
  """An image file -> float32 [size, size, 3] in [-1, 1]: central square, area resize."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel
  from lorbms_tf.data import preprocess  # pylint: disable=import-outside-toplevel
  with Image.open(path) as image:
    pixels = np.asarray(image.convert("RGB"))
  square = preprocess.center_square_crop(tf.constant(pixels))
  return preprocess.to_unit_range(preprocess.resize_area(square, size)).numpy()


def render_transfer(networks, reference: np.ndarray, donors: list[np.ndarray],
                    mask: np.ndarray) -> np.ndarray:
  """One object transfer: reference [H, W, 3], 1 or 4 donors, mask [4] -> result [H, W, 3]."""
  from lorbms_tf.eval import object_metrics  # pylint: disable=import-outside-toplevel
  if len(donors) == 1:
    donor_batch = donors[0][None]                        # [1, H, W, 3]: same donor for all
  elif len(donors) == conventions.NUM_QUADRANTS:
    donor_batch = np.stack(donors)[None]                 # [1, 4, H, W, 3]
  else:
    raise ValueError(f"give 1 donor or {conventions.NUM_QUADRANTS} (one per quadrant "
                     f"{','.join(conventions.QUADRANT_NAMES)}), got {len(donors)}")
  return object_metrics.transfer_objects(networks, reference[None], donor_batch,
                                         np.asarray(mask, np.float32)[None])[0]


def define_flags() -> None:
  """Defined on demand (see evaluate.define_flags: train/evaluate/render share names)."""
  if "donors" in FLAGS:
    return
  flags.DEFINE_string("workdir", None, "Training run directory, or use --checkpoint.")
  flags.DEFINE_string("checkpoint", None, "Checkpoint prefix (default: the run's latest).")
  flags.DEFINE_string("reference", None, "Reference image file.")
  flags.DEFINE_list("donors", None, "1 donor image, or 4 (one per quadrant TL,TR,BL,BR).")
  flags.DEFINE_string("mask", None, "4 characters of 0/1 in the order TL,TR,BL,BR; 1 = take "
                      "that quadrant's chunk from the donor. E.g. 0010.")
  flags.DEFINE_string("out", "transfer.png", "Output PNG.")
  flags.DEFINE_boolean("result_only", False, "Write only the rendered image to --out.")
  flags.mark_flags_as_required(["reference", "donors", "mask"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not (FLAGS.workdir or FLAGS.checkpoint):
    raise app.UsageError("give --workdir (latest checkpoint) or --checkpoint")
  try:
    mask = conventions.parse_mask(FLAGS.mask)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  from lorbms_tf import checkpoints  # pylint: disable=import-outside-toplevel
  from lorbms_tf import visualize  # pylint: disable=import-outside-toplevel
  networks = checkpoints.restore_networks(FLAGS.checkpoint or FLAGS.workdir)
  reference = load_image(FLAGS.reference)
  donors = [load_image(path) for path in FLAGS.donors]
  try:
    result = render_transfer(networks, reference, donors, mask)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  out = FLAGS.out
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  if FLAGS.result_only:
    visualize.image_grid([[result]], out, scale=1, pad=0)
  else:
    if len(donors) == 1:
      used, names = donors, ["donor"]
    else:  # only the donors whose chunk is used
      picked = [i for i, m in enumerate(mask) if m > 0.5]
      used = [donors[i] for i in picked]
      names = [f"donor {conventions.QUADRANT_NAMES[i]}" for i in picked]
    titles = ["reference"] + names + [f"mask {FLAGS.mask}", "result"]
    visualize.image_grid([[reference, *used, visualize.mask_image(mask, reference.shape[0]), result]],
                         out, titles)
    visualize.image_grid([[result]], os.path.splitext(out)[0] + "_result.png", scale=1, pad=0)
  print(f"wrote {out} (step {networks.step}, mask {FLAGS.mask})")


def run():
  define_flags()
  cli.run(main)


if __name__ == "__main__":
  run()
