"""CLI of the pusher component: ``python -m components.pusher --model=WORKDIR ...``."""

from __future__ import annotations

import dataclasses
import json
import sys

from absl import app, flags

from components.pusher import PusherInputs, run
from lorbms_tf import cli

FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_string("model", None, "Training work dir (latest checkpoint) or checkpoint prefix.")
  flags.DEFINE_string("push_destination", "saved_models/lorbms",
                      "TF Serving base path: versions go to <this>/<version>/.")
  flags.DEFINE_string("blessing", None, "Evaluator output dir with blessing.json (none: no gate).")
  flags.DEFINE_integer("version", None, "Version number (default: the next free one).")
  flags.DEFINE_float("tolerance", 1e-4, "Max abs difference export vs Keras model.")
  flags.DEFINE_string("output_dir", None, "Where record.json and the staged export go.")
  flags.mark_flags_as_required(["model", "output_dir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  from lorbms_tf import export  # pylint: disable=import-outside-toplevel
  try:
    outputs = run(PusherInputs(FLAGS.model, FLAGS.push_destination, FLAGS.blessing,
                               FLAGS.version, FLAGS.tolerance), FLAGS.output_dir)
  except export.ValidationNotRun as e:  # no verdict: fail (retried), nothing recorded as done
    print(f"components.pusher: error: {cli.one_line(e)}", file=sys.stderr, flush=True)
    raise SystemExit(1) from None
  print(json.dumps(dataclasses.asdict(outputs), indent=1))
  if not outputs.pushed:
    raise SystemExit(1)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
