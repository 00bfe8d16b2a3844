"""Similarity component: images -> quadrant embeddings -> ScaNN per position -> neighbour table.

  python -m components.similarity --dataset=scenes --output_dir=runs/neighbours \\
      [--extractor=pixels] [--k=10] [--limit=N] [--use_beam]

Input: a dataset spec (``scenes``, ``folder:PATH``, ``tfrecord:GLOB``, tfds names), split,
image size. Output: the table directory (layout in ``lorbms_tf/similarity/table.py``) with
``record.json``: what produced it, counts, recall@k against exact search, and on scenes the
neighbour precision. The trainer's ``--partners=index`` reads it.

Typed inputs/outputs are dataclasses; ``run`` takes them as plain arguments, so an orchestrator
(or a test) calls it without flags. The CLI, ``python -m components.similarity``, is
``__main__.py`` beside this file, the only place that reads absl flags.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from typing import Any, Sequence

from absl import logging
import numpy as np

from lorbms_tf import conventions, identity
from lorbms_tf import similarity
from lorbms_tf.similarity import beam_pipeline
from lorbms_tf.similarity import extractors as extractors_lib
from lorbms_tf.similarity import table as table_lib

_FIT_SAMPLES_BEAM = 20000  # images the driver reads to fit the pixels extractor under Beam


@dataclasses.dataclass(frozen=True)
class SimilarityInputs:
  """What to index and how."""
  dataset: str
  split: str | None = None
  data_dir: str | None = None
  extractor: str = extractors_lib.DEFAULT_EXTRACTOR
  k: int = similarity.DEFAULT_K
  image_size: int = conventions.IMAGE_SIZE
  limit: int | None = None
  use_beam: bool = False
  beam_options: tuple[str, ...] = ()
  num_shards: int = 4
  recall_queries: int = 1000
  # The index is tuned for the fastest search reaching this recall@k (0 = rule-of-thumb).
  target_recall: float = 0.98
  batch_size: int = extractors_lib.DEFAULT_BATCH_SIZE
  seed: int = 0
  save_searchers: bool = True


@dataclasses.dataclass(frozen=True)
class SimilarityOutputs:
  """Where the artifact is and the headline numbers from its record."""
  table_dir: str
  record_path: str
  num_images: int
  num_skipped: int
  embedding_dim: int
  recall_at_k: float | None
  neighbour_precision: float | None


@dataclasses.dataclass
class _Loaded:
  ids: np.ndarray
  images: np.ndarray
  shapes_by_id: np.ndarray | None
  skip_counts: dict[str, Any]


def load_examples(dataset: str, split: str | None, image_size: int, limit: int | None,
                  data_dir: str | None) -> _Loaded:
  """ids, central-crop images and (scenes only) per-quadrant shapes, with skip counts.

  One pass over ``center_examples``, the deterministic view that ``load_images_array`` uses,
  keeping the ``shapes`` labels when the source has them (lorbms_scenes, or TFRecords written
  from it) for the neighbour precision.
  """
  from lorbms_tf.data import pipeline, quality, sources  # pylint: disable=import-outside-toplevel
  counter = sources.SkipCounter("similarity")
  ds = pipeline.center_examples(dataset, split, image_size, data_dir, skip_counter=counter)
  if limit is not None:
    ds = ds.take(limit)
  keys = ("id", "image", "shapes")
  ids, images, shapes = [], [], []
  for batch in ds.map(lambda ex: {k: ex[k] for k in keys if k in ex}).batch(256).prefetch(2):
    ids.append(batch["id"].numpy())
    images.append(batch["image"].numpy())
    if "shapes" in batch:
      shapes.append(batch["shapes"].numpy())
  num_loaded = sum(len(i) for i in ids)
  stopped = limit is not None and num_loaded >= limit
  # Names each bad file once in the log; counts by reason go into the record.
  report = quality.SkipReport(counter, str(dataset), max_fraction=1.0)
  skip_counts = report.update(final=not stopped)
  logging.info("similarity input: %s", report.line(skip_counts))
  if stopped:  # examples still inside the decode stage are in no count
    skip_counts["note"] = "stopped at --limit: the counts cover the images read so far"
  if not ids:
    raise ValueError(f"the dataset {dataset!r} (split {split!r}) is empty: no images to index "
                     f"(skipped: {skip_counts})")
  ids_arr = np.concatenate(ids).astype(np.int64)
  shapes_by_id = None
  if shapes:
    shapes_by_id = np.full([int(ids_arr.max()) + 1, conventions.NUM_QUADRANTS], -1, np.int64)
    shapes_by_id[ids_arr] = np.concatenate(shapes)
  return _Loaded(ids_arr, np.concatenate(images), shapes_by_id, skip_counts)


def _embed_in_process(inputs: SimilarityInputs, loaded: _Loaded,
                      options: extractors_lib.ExtractorOptions):
  extractor = extractors_lib.make_extractor(inputs.extractor, options)
  extractors_lib.fit_extractor(extractor, loaded.images)
  return extractor, extractor(loaded.images)


def _beam_source(inputs: SimilarityInputs) -> tuple[dict[str, Any] | None, _Loaded | None]:
  """Beam input for file-based datasets; tfds datasets are loaded here and handed over."""
  from lorbms_tf.data import sources  # pylint: disable=import-outside-toplevel
  spec = sources.parse_dataset_spec(inputs.dataset)
  if spec.kind == "folder":
    paths = sources.list_image_files(spec.location)
    return {"kind": "files", "paths": paths[:inputs.limit]}, None
  if spec.kind == "tfrecord" and inputs.limit is None:
    return {"kind": "tfrecord", "pattern": spec.location}, None
  # tfds (and limited TFRecords): decoded in the driver, then embedded by the pipeline. Fine
  # for DirectRunner; for a large corpus, write TFRecords (example_gen) and pass tfrecord:GLOB.
  loaded = load_examples(inputs.dataset, inputs.split, inputs.image_size, inputs.limit,
                         inputs.data_dir)
  return {"kind": "arrays", "ids": loaded.ids, "images": loaded.images}, loaded


def _embed_with_beam(inputs: SimilarityInputs, options: extractors_lib.ExtractorOptions,
                     scratch: str):
  """Runs the Beam pipeline into ``scratch``; reads the shards back position-major."""
  from lorbms_tf.data import pipeline  # pylint: disable=import-outside-toplevel
  source, loaded = _beam_source(inputs)
  fit_images = None
  if extractors_lib.make_extractor(inputs.extractor, options).needs_fit:
    fit_images = loaded.images if loaded is not None else pipeline.load_images_array(
        inputs.dataset, inputs.split, inputs.image_size, limit=_FIT_SAMPLES_BEAM,
        data_dir=inputs.data_dir)[1]
  config = beam_pipeline.EmbedConfig(inputs.extractor, options, image_size=inputs.image_size,
                                     batch_size=min(inputs.batch_size, 256))
  manifest, config = beam_pipeline.embed_with_beam(
      source, scratch, config, fit_images, inputs.num_shards, inputs.beam_options)
  ids, embeddings = beam_pipeline.read_embedding_shards(scratch)
  extractor = beam_pipeline.build_worker_extractor(config)
  shapes = loaded.shapes_by_id if loaded is not None else None
  skips = dict(loaded.skip_counts) if loaded is not None else {}
  skips["beam_skipped"] = manifest["num_skipped"]
  return extractor, ids, embeddings, shapes, skips, manifest


def run(inputs: SimilarityInputs, output_dir: str) -> SimilarityOutputs:
  """Builds the neighbour table for ``inputs`` into ``output_dir`` (replaced atomically)."""
  if inputs.k < 1:
    raise ValueError(f"k must be >= 1, got {inputs.k}")
  options = extractors_lib.ExtractorOptions(batch_size=inputs.batch_size, seed=inputs.seed)
  timings = {}
  start = time.perf_counter()
  manifest, scratch, extra_dirs = None, None, {}
  if inputs.use_beam:
    beam_pipeline.require_beam()
    parent = os.path.dirname(os.path.abspath(output_dir))
    os.makedirs(parent, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=".embeddings-", dir=parent)
    extractor, ids, embeddings, shapes, skips, manifest = _embed_with_beam(
        inputs, options, scratch)
    position_major = True
    extra_dirs = {"embeddings": scratch}
    timings["load_and_embed_seconds"] = time.perf_counter() - start
  else:
    loaded = load_examples(inputs.dataset, inputs.split, inputs.image_size, inputs.limit,
                           inputs.data_dir)
    timings["load_seconds"] = time.perf_counter() - start
    similarity.index.check_k(loaded.ids.size, inputs.k)  # before the costly embedding
    start = time.perf_counter()
    extractor, embeddings = _embed_in_process(inputs, loaded, options)
    ids, shapes, skips = loaded.ids, loaded.shapes_by_id, loaded.skip_counts
    del loaded  # the images are no longer needed: free them before indexing
    position_major = False
    timings["embed_seconds"] = time.perf_counter() - start
  try:
    start = time.perf_counter()
    num_skipped = int(sum(skips.get(key) or 0
                          for key in ("unreadable", "too_small", "too_large", "beam_skipped")))
    record = {
        "component": "similarity",
        "inputs": dataclasses.asdict(inputs),
        "dataset": inputs.dataset,
        # What the table was built for: the trainer refuses it for other data.
        "data_identity": identity.dataset_identity(inputs.dataset, inputs.data_dir),
        "split": inputs.split,
        "image_size": inputs.image_size,
        "extractor": extractor.describe(),
        "extractor_options": dataclasses.asdict(options),
        "counts": {"num_skipped": num_skipped, "skip_reasons": skips},
        "beam": manifest,
    }
    table, searchers = similarity.build_neighbour_table(
        ids, embeddings, inputs.k, position_major=position_major, shapes_by_id=shapes,
        recall_queries=inputs.recall_queries, record=record,
        target_recall=inputs.target_recall or None)
    timings["index_seconds"] = time.perf_counter() - start
    table.record["timings"] = {key: round(v, 3) for key, v in timings.items()}
    table_dir = table_lib.save_neighbour_table(
        output_dir, table, searchers if inputs.save_searchers else None,
        extractor.state() or None, extra_dirs)
  finally:
    if scratch and os.path.isdir(scratch):
      shutil.rmtree(scratch, ignore_errors=True)
  precision = table.record.get("neighbour_precision")
  outputs = SimilarityOutputs(
      table_dir=table_dir,
      record_path=os.path.join(table_dir, table_lib.RECORD_FILE),
      num_images=len(table),
      num_skipped=num_skipped,
      embedding_dim=int(embeddings.shape[-1]),
      recall_at_k=table.record.get("recall_at_k"),
      neighbour_precision=precision["precision"] if precision else None)
  logging.info("similarity: %s", json.dumps(dataclasses.asdict(outputs)))
  return outputs
