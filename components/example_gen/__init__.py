"""ExampleGen component: any source -> 64 px TFRecord shards with ids, plus statistics.

  python -m components.example_gen --dataset=scenes --output_dir=runs/pipeline/examples

Reads the source (``scenes``, COCO/STL-10/CelebA via tfds, ``folder:PATH``,
``tfrecord:GLOB``) through the data pipeline's one decoding stage (docs/data.md, "Bad data"), cuts
the central square, area-resizes it to ``image_size`` and writes PNG-encoded shards
``examples-0000k-of-0000n.tfrecord`` with the source's ids and labels. ``record.json`` holds
the counts: written, and skipped by reason. Downstream steps read the shards as
``--dataset=tfrecord:OUTPUT/examples-*``.
"""

from __future__ import annotations

import dataclasses
import json
import os

from components import base

PREFIX = "examples"


@dataclasses.dataclass(frozen=True)
class ExampleGenInputs:
  dataset: str
  split: str | None = None
  data_dir: str | None = None
  image_size: int = 64
  num_shards: int = 4
  limit: int | None = None
  max_skipped_fraction: float = 0.1


def examples_spec(artifact_dir: str) -> str:
  """The ``--dataset`` value that reads an ExampleGen artifact."""
  return f"tfrecord:{os.path.join(artifact_dir, PREFIX)}-*"


def run(inputs: ExampleGenInputs, output_dir: str) -> dict:
  from lorbms_tf.data import pipeline, quality, sources  # pylint: disable=import-outside-toplevel

  def body(tmp):
    report = quality.SkipReport(sources.SkipCounter("example_gen"), inputs.dataset,
                                inputs.max_skipped_fraction)
    ds = pipeline.center_examples(inputs.dataset, inputs.split, inputs.image_size,
                                  inputs.data_dir, skip_counter=report.counter)
    if inputs.limit:
      ds = ds.take(inputs.limit)
    paths = sources.write_tfrecords(ds.as_numpy_iterator(), os.path.join(tmp, PREFIX),
                                    inputs.num_shards)
    counts = report.update(final=not inputs.limit)
    with open(sources._features_path(os.path.join(tmp, PREFIX))) as f:  # noqa: SLF001
      written = json.load(f)["num_examples"]
    if not written:
      raise report.no_usable_images()
    return {"counts": {"written": written, **counts},
            "shards": [os.path.basename(p) for p in paths]}

  return base.write_artifact(output_dir, "example_gen", *step(inputs), body)


def step(inputs: ExampleGenInputs) -> tuple[object, dict]:
  """(settings, upstream artifacts): what the step's fingerprint is made of. The source's
  content identity is part of the settings: an edited folder or re-prepared dataset reruns it."""
  from lorbms_tf import identity  # pylint: disable=import-outside-toplevel
  return {"inputs": dataclasses.asdict(inputs),
          "source": identity.dataset_identity(inputs.dataset, inputs.data_dir)}, {}
