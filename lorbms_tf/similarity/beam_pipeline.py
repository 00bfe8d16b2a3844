"""Embedding extraction as an Apache Beam pipeline (the ``beam`` extra: ``lorbms_tf[beam]``).

At a billion images, embedding is the expensive part and it is embarrassingly parallel, so it
runs as Beam: DirectRunner locally and in tests, the same code on Dataflow / Flink / Spark.

  (id, encoded bytes | path | uint8 image)
    -> batches -> decode + central crop (the data pipeline's own decoding; bad images dropped
       and counted) -> embed (extractor built once per worker in ``setup``)
    -> tf.train.Example {id, embedding [4*D]} -> sharded TFRecords
       ``embeddings-SSSSS-of-NNNNN.tfrecord`` + ``count.txt`` + ``skipped-*.txt`` + manifest.json

The index build then reads the shards one at a time into one preallocated position-major
array (``read_embedding_shards``), so it never holds more than the embeddings themselves.

Fitted extractors (``pixels``) are fitted once by the driver and their state is shipped to the
workers, so every worker embeds identically. Importing this module does not need Beam; the
functions that run a pipeline raise a clear ImportError without it.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from lorbms_tf import conventions
from lorbms_tf.similarity import extractors as extractors_lib

try:
  import apache_beam as beam  # pylint: disable=g-import-not-at-top
  from apache_beam.metrics import Metrics  # pylint: disable=g-import-not-at-top
  BEAM_AVAILABLE = True
except ImportError:  # the optional extra is not installed
  beam = None
  Metrics = None
  BEAM_AVAILABLE = False

SHARD_PREFIX = "embeddings"
SHARD_SUFFIX = ".tfrecord"
MANIFEST_FILE = "manifest.json"
COUNT_FILE = "count.txt"
SKIPPED_PREFIX = "skipped"
_READ_BATCH = 4096


def require_beam() -> None:
  if not BEAM_AVAILABLE:
    raise ImportError(
        "apache-beam is not installed: `pip install 'lorbms_tf[beam]'` (apache-beam>=2.60), "
        "or run the similarity component without --use_beam")


@dataclasses.dataclass(frozen=True)
class EmbedConfig:
  """Everything a worker needs to embed (picklable; shipped with the DoFns)."""
  extractor: str
  options: extractors_lib.ExtractorOptions = extractors_lib.ExtractorOptions()
  state: Mapping[str, np.ndarray] | None = None  # fitted extractor state
  image_size: int = conventions.IMAGE_SIZE
  batch_size: int = 64


# ---------------------------------------------------------------------------------------------
# Workers.

def decode_batch(ids: Sequence[int], encoded: Sequence[bytes], image_size: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Encoded images -> (kept ids, uint8 [n, S, S, 3], skipped ids), via the data pipeline.

  Uses ``sources.decode_stage`` and the central-crop view of ``pipeline.center_examples``, so a
  Beam embedding equals the in-process one, skip rules included (unreadable, too small, ...).
  """
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from lorbms_tf.data import preprocess, sources  # pylint: disable=import-outside-toplevel
  ids = np.asarray(ids, np.int64)
  ds = tf.data.Dataset.from_tensor_slices({"id": ids, "_bytes": list(encoded)})
  options = sources.DecodeOptions(min_size=image_size, decode_min_side=image_size)
  ds = sources.decode_stage(ds, options).map(lambda ex: (ex["id"], preprocess.resize_area(
      preprocess.center_square_crop(ex["image"]), image_size)))
  kept_ids, images = [], []
  for i, image in ds:
    kept_ids.append(int(i))
    images.append(image.numpy())
  kept = np.asarray(kept_ids, np.int64)
  out = (np.stack(images) if images
         else np.zeros([0, image_size, image_size, 3], np.uint8))
  return kept, out, np.setdiff1d(ids, kept)


def _read_bytes(path: str) -> bytes:
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  with tf.io.gfile.GFile(path, "rb") as f:
    return f.read()


def _example(image_id: int, embedding: np.ndarray) -> bytes:
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  feature = {
      "id": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(image_id)])),
      "embedding": tf.train.Feature(float_list=tf.train.FloatList(
          value=np.asarray(embedding, np.float32).reshape(-1))),
  }
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


if BEAM_AVAILABLE:

  class DecodeDoFn(beam.DoFn):
    """Batch of (id, bytes-or-path-or-array) -> (ids, uint8 images); bad ones to "skipped"."""

    def __init__(self, image_size: int):
      super().__init__()
      self.image_size = image_size
      self.skipped = Metrics.counter("lorbms_similarity", "skipped_images")
      self.decoded = Metrics.counter("lorbms_similarity", "decoded_images")

    def process(self, batch):
      ids = [b[0] for b in batch]
      payloads = [b[1] for b in batch]
      if isinstance(payloads[0], np.ndarray):  # already decoded (in-memory input)
        yield np.asarray(ids, np.int64), np.stack(payloads).astype(np.uint8)
        return
      encoded = []
      for p in payloads:
        try:
          encoded.append(_read_bytes(p) if isinstance(p, str) else p)
        except Exception:  # pylint: disable=broad-except  # unreadable file = corrupt image
          encoded.append(b"")
      kept, images, skipped = decode_batch(ids, encoded, self.image_size)
      self.decoded.inc(int(kept.size))
      self.skipped.inc(int(skipped.size))
      for image_id in skipped:
        yield beam.pvalue.TaggedOutput("skipped", int(image_id))
      if kept.size:
        yield kept, images

  class EmbedDoFn(beam.DoFn):
    """(ids, images) -> serialized Examples; the extractor is built once per worker."""

    def __init__(self, config: EmbedConfig):
      super().__init__()
      self.config = config
      self.extractor = None
      self.embedded = Metrics.counter("lorbms_similarity", "embedded_images")

    def setup(self):
      self.extractor = build_worker_extractor(self.config)

    def process(self, element):
      ids, images = element
      embeddings = self.extractor(images)
      self.embedded.inc(len(ids))
      for image_id, embedding in zip(ids, embeddings):
        yield _example(image_id, embedding)


def build_worker_extractor(config: EmbedConfig) -> extractors_lib.Extractor:
  """The extractor of ``config``, with the driver's fitted state loaded."""
  extractor = extractors_lib.make_extractor(config.extractor, config.options)
  if extractor.needs_fit:
    if not config.state:
      raise ValueError(f"extractor {config.extractor!r} must be fitted by the driver first "
                       "(pass its state())")
    extractor.load_state(config.state)
  return extractor


# ---------------------------------------------------------------------------------------------
# Pipeline.

def _input_elements(pipeline, source: Mapping[str, Any]):
  """PCollection of (id, payload) from one of the supported inputs."""
  kind = source["kind"]
  if kind == "arrays":  # tests and small tfds datasets: already decoded images
    ids, images = source["ids"], source["images"]
    return pipeline | "Create" >> beam.Create(
        [(int(i), np.asarray(im)) for i, im in zip(ids, images)], reshuffle=False)
  if kind == "encoded":  # (id, encoded bytes) pairs
    return pipeline | "Create" >> beam.Create(list(source["items"]), reshuffle=False)
  if kind == "files":  # id = position in the given (sorted) list, like folder: datasets
    return pipeline | "Create" >> beam.Create(
        [(i, p) for i, p in enumerate(source["paths"])], reshuffle=False)
  if kind == "tfrecord":  # records written by data.sources.write_tfrecords (with "id")
    return (pipeline | "Read" >> beam.io.ReadFromTFRecord(source["pattern"])
            | "Parse" >> beam.Map(_parse_image_record))
  raise ValueError(f"unknown Beam input kind {kind!r}")


def _parse_image_record(record: bytes) -> tuple[int, bytes]:
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  feature = tf.train.Example.FromString(record).features.feature
  if "id" not in feature:
    raise ValueError("TFRecords for the Beam path need an 'id' feature (write them with "
                     "lorbms_tf.data.write_tfrecords)")
  return int(feature["id"].int64_list.value[0]), feature["image"].bytes_list.value[0]


def run_embedding_pipeline(source: Mapping[str, Any], output_dir: str, config: EmbedConfig,
                           num_shards: int = 4, pipeline_options: Sequence[str] = (),
                           ) -> dict[str, Any]:
  """Runs the pipeline and writes shards + manifest.json to ``output_dir``; returns the manifest.

  source: {"kind": "arrays", "ids", "images"} | {"kind": "encoded", "items": [(id, bytes)]}
    | {"kind": "files", "paths": sorted paths} | {"kind": "tfrecord", "pattern": glob}.
  pipeline_options: Beam flags, e.g. ["--runner=DataflowRunner", ...]; DirectRunner by default.
  """
  require_beam()
  from apache_beam.options import pipeline_options as beam_options  # pylint: disable=g-import-not-at-top
  os.makedirs(output_dir, exist_ok=True)
  for stale in glob.glob(os.path.join(output_dir, f"{SHARD_PREFIX}-*")):
    os.remove(stale)  # a rerun with fewer shards must not leave old ones behind
  options = beam_options.PipelineOptions(list(pipeline_options) or ["--runner=DirectRunner"])
  prefix = os.path.join(output_dir, SHARD_PREFIX)
  with beam.Pipeline(options=options) as p:
    decoded = (
        _input_elements(p, source)
        | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=config.batch_size)
        | "Decode" >> beam.ParDo(DecodeDoFn(config.image_size)).with_outputs(
            "skipped", main="images"))
    examples = decoded.images | "Embed" >> beam.ParDo(EmbedDoFn(config))
    _ = examples | "Write" >> beam.io.WriteToTFRecord(
        prefix, file_name_suffix=SHARD_SUFFIX, num_shards=num_shards)
    _ = (examples | "Count" >> beam.combiners.Count.Globally()
         | "WriteCount" >> beam.io.WriteToText(os.path.join(output_dir, COUNT_FILE),
                                               shard_name_template=""))
    _ = (decoded.skipped | "SkippedText" >> beam.Map(str)
         | "WriteSkipped" >> beam.io.WriteToText(os.path.join(output_dir, SKIPPED_PREFIX),
                                                 file_name_suffix=".txt"))
  return _write_manifest(output_dir, config)


def _write_manifest(output_dir: str, config: EmbedConfig) -> dict[str, Any]:
  with open(os.path.join(output_dir, COUNT_FILE)) as f:
    count = int(f.read().strip() or 0)
  skipped = []
  for path in sorted(glob.glob(os.path.join(output_dir, f"{SKIPPED_PREFIX}*.txt"))):
    with open(path) as f:
      skipped += [int(line) for line in f if line.strip()]
  manifest = {
      "num_embeddings": count,
      "num_skipped": len(skipped),
      "skipped_ids": sorted(skipped)[:1000],  # a sample, for a human to look at
      "shards": sorted(os.path.basename(s) for s in glob.glob(
          os.path.join(output_dir, f"{SHARD_PREFIX}-*{SHARD_SUFFIX}"))),
      "extractor": config.extractor,
      "extractor_options": dataclasses.asdict(config.options),
      "image_size": config.image_size,
  }
  from lorbms_tf import atomic  # pylint: disable=import-outside-toplevel
  atomic.write_json(os.path.join(output_dir, MANIFEST_FILE), manifest, indent=2)
  return manifest


def read_embedding_shards(output_dir: str) -> tuple[np.ndarray, np.ndarray]:
  """-> (ids int64 [N] ascending, embeddings float32 [4, N, D] position-major), shard by shard.

  The array is allocated once from the manifest's count, each shard parsed in blocks into it,
  and rows are put in id order one position at a time: peak memory is the embeddings plus one
  position's worth, whatever the number of shards.
  """
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  with open(os.path.join(output_dir, MANIFEST_FILE)) as f:
    manifest = json.load(f)
  total = manifest["num_embeddings"]
  if total == 0:
    raise ValueError(f"no embeddings in {output_dir!r}: the dataset was empty or every image "
                     f"was skipped ({manifest['num_skipped']} skipped)")
  shards = [os.path.join(output_dir, s) for s in manifest["shards"]]
  ids = np.empty([total], np.int64)
  embeddings = None
  filled = 0
  spec = {"id": tf.io.FixedLenFeature([], tf.int64),
          "embedding": tf.io.VarLenFeature(tf.float32)}
  for shard in shards:
    for batch in tf.data.TFRecordDataset(shard).batch(_READ_BATCH).map(
        lambda r: tf.io.parse_example(r, spec)):
      block = tf.sparse.to_dense(batch["embedding"]).numpy()
      n = block.shape[0]
      if embeddings is None:
        dim = block.shape[1] // conventions.NUM_QUADRANTS
        embeddings = np.empty([conventions.NUM_QUADRANTS, total, dim], np.float32)
      embeddings[:, filled:filled + n] = block.reshape(
          n, conventions.NUM_QUADRANTS, -1).transpose(1, 0, 2)
      ids[filled:filled + n] = batch["id"].numpy()
      filled += n
  if filled != total:
    raise ValueError(f"{output_dir!r}: manifest says {total} embeddings, shards hold {filled}")
  order = np.argsort(ids, kind="stable")
  for i in range(conventions.NUM_QUADRANTS):
    embeddings[i] = embeddings[i][order]
  return ids[order], embeddings


def embed_with_beam(source: Mapping[str, Any], output_dir: str, config: EmbedConfig,
                    fit_images: np.ndarray | None = None, num_shards: int = 4,
                    pipeline_options: Iterable[str] = ()) -> tuple[dict, EmbedConfig]:
  """Fits the extractor on ``fit_images`` when it needs fitting, then runs the pipeline."""
  extractor = extractors_lib.make_extractor(config.extractor, config.options)
  if extractor.needs_fit and not config.state:
    if fit_images is None or len(fit_images) == 0:
      raise ValueError(f"extractor {config.extractor!r} needs images to fit on")
    config = dataclasses.replace(config, state=extractor.fit(fit_images).state())
  manifest = run_embedding_pipeline(source, output_dir, config, num_shards,
                                    list(pipeline_options))
  return manifest, config
