"""Regenerates the README's figures from a trained lorbms_scenes run (no training, ~1 minute).

    make figures                                   # RUN=runs/demo/model (after `make demo`)
    .venv/bin/python docs/figures/make_figures.py --run=runs/demo/model --out=docs/figures

Writes two small palette PNGs:

* ``chunk_swap.png``: the run's latest training grid (``RUN/grids/step_*.png``): per row the
  reference, the donor offered for each quadrant (TL TR BL BR), the mask (orange = replaced),
  I_mix and the cycle's I'_ref.
* ``object_transfer.png``: consecutive test scenes as (reference, donor) pairs rendered by the
  trained encoder and decoder under fixed masks, as the evaluation's ``object_transfer.png``
  (``lorbms_tf.eval.evaluation.render_transfers``).
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)


def small_png(source: str, path: str) -> str:
  """Copies a PNG as a 256-colour palette image (a fraction of the RGB file's size)."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  with Image.open(source) as image:
    image.convert("RGB").quantize(colors=256).save(path, optimize=True)
  return path


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--run", default="runs/demo/model", help="a trained run's work dir")
  parser.add_argument("--out", default=os.path.join(REPO, "docs", "figures"))
  parser.add_argument("--data_dir", default=None, help="tfds dir (default: the run's)")
  parser.add_argument("--pairs", type=int, default=4, help="object-transfer rows")
  args = parser.parse_args()
  os.makedirs(args.out, exist_ok=True)

  grids = sorted(glob.glob(os.path.join(args.run, "grids", "step_*.png")))
  if not grids:
    print(f"no training grids in {args.run}/grids: train a run first (make demo)", file=sys.stderr)
    return 2
  print(small_png(grids[-1], os.path.join(args.out, "chunk_swap.png")), f"(from {grids[-1]})")

  from lorbms_tf import checkpoints, conventions, visualize  # pylint: disable=import-outside-toplevel
  from lorbms_tf.eval import evaluation  # pylint: disable=import-outside-toplevel
  networks = checkpoints.restore_networks(args.run)
  test = evaluation.load_split(networks.config["dataset"], "test", 2 * args.pairs,
                               args.data_dir or networks.config.get("data_dir"))
  references, donors, results = evaluation.render_transfers(networks, test["image"], args.pairs)
  tmp = os.path.join(args.out, "object_transfer.rgb.png")
  visualize.transfer_grid(references, donors,
                          [conventions.parse_mask(m) for m in evaluation.TRANSFER_MASKS],
                          results, tmp)
  path = small_png(tmp, os.path.join(args.out, "object_transfer.png"))
  os.remove(tmp)
  print(path, f"(iteration {networks.step} of {args.run})")
  return 0


if __name__ == "__main__":
  sys.exit(main())
