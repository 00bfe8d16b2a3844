"""Image sources: one string picks the data, every source yields the same kind of example.

``load_source`` returns a ``tf.data.Dataset`` of ``{"image": uint8 [H, W, 3], "id": int64}``
(plus ``"label"`` and friends where the source has them). The ``id`` is the example's position
in a fixed order of the source split, independent of file shuffling, sharding and filtering,
because the offline neighbour table (similarity component) is keyed by it:

* tfds: the position in the split's files (shard offset + index in shard, from ``tfds_id``);
  ``lorbms_scenes`` uses its own ``id`` feature, the index within the split.
* ``folder:PATH``: the index in the sorted list of image paths (``list_image_files``).
* ``tfrecord:GLOB``: the record's ``"id"`` feature; without one, the position in the
  deterministic read order.

Every image goes through one decoding stage that never stops an epoch: the format and size are
read from the header first (cheap), unreadable, too small, too large and filtered-out examples
are dropped and counted in a ``SkipCounter``, JPEGs are decoded with DCT downscaling when the
result stays big enough (about 1.7x faster), and a decoder error drops only that example.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Callable, Iterable

from absl import logging
import numpy as np
import tensorflow as tf

from lorbms_tf import conventions

AUTOTUNE = tf.data.AUTOTUNE
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
DEFAULT_MAX_PIXELS = 50_000_000  # ~150 MB as RGB: bigger decodes are skipped, not attempted
COCO_MIN_SIDE = 200  # the thesis's COCO filter: short side >= 200 px ...
COCO_MIN_BOXES = 4  # ... and at least 4 annotated boxes
STL10_FOLDS, STL10_FOLD_SIZE, STL10_TRAIN_SIZE = 10, 1000, 5000

_VALID = ("coco", "stl10", "celeb_a", "scenes", "scenes/96", "scenes/tiny", "folder:PATH",
          "tfrecord:GLOB")


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """A parsed ``--dataset`` value.

  kind: "tfds", "folder" or "tfrecord". location: the tfds name ("coco/2017"), folder path or
  file glob. train_split: the split used for training (STL-10 trains on "unlabelled").
  extra_keys: per-example features passed through besides image and id.
  """
  kind: str
  name: str
  location: str
  train_split: str = "train"
  extra_keys: tuple[str, ...] = ()

  def __str__(self) -> str:
    return self.name if self.kind == "tfds" else f"{self.kind}:{self.location}"


_TFDS = {
    "coco": DatasetSpec("tfds", "coco", "coco/2017"),
    "stl10": DatasetSpec("tfds", "stl10", "stl10", "unlabelled", ("label",)),
    "celeb_a": DatasetSpec("tfds", "celeb_a", "celeb_a"),
}
_SCENE_KEYS = ("label", "shapes", "colors", "bboxes")


def parse_dataset_spec(spec: str | DatasetSpec) -> DatasetSpec:
  """``"coco" | "stl10" | "celeb_a" | "scenes[/CONFIG]" | "folder:PATH" | "tfrecord:GLOB"``."""
  if isinstance(spec, DatasetSpec):
    return spec
  text = str(spec).strip()
  for kind in ("folder", "tfrecord"):
    if text.startswith(kind + ":"):
      location = text[len(kind) + 1:]
      if not location:
        raise ValueError(f"--dataset={text!r}: {kind}: needs a path, e.g. {kind}:/data/x")
      return DatasetSpec(kind, kind, location)
  if text in ("coco/2017",):
    text = "coco"
  if text in _TFDS:
    return _TFDS[text]
  match = re.fullmatch(r"(?:scenes|lorbms_scenes)(?:/(\w+))?", text)
  if match:
    config = match.group(1) or "64"
    return DatasetSpec("tfds", f"scenes/{config}", f"lorbms_scenes/{config}", "train",
                       _SCENE_KEYS)
  raise ValueError(f"unknown dataset {text!r}; valid values: {', '.join(_VALID)}")


class SkipCounter:
  """Counts what the decoding stage passes on and drops, by reason.

  Reasons (``REASONS``): "unreadable" (not a known image format, empty file), "truncated" (the
  format's end marker is missing: never decoded), "decode_error" (reading or decoding failed),
  "filtered" (a source's own selection, e.g. COCO's), "too_small", "too_large", "malformed" (a
  TFRecord record with a missing or mistyped feature, or a corrupt file: found by the source's
  scan before reading, ``add_found``, since the parser drops such records before they have an id).

  Sources that know their size (folders, prepared tfds splits, TFRecords with a sidecar) are
  *tracked*: one status per example id, so counts are per file however many epochs run, a
  file found bad is not read again (the decoder's own warnings appear once), and ``new_skips``
  lists each bad file exactly once for the log. Untracked sources count events (per epoch).

  Decode errors are found exactly: the decode stage keeps order, so a sequence number missing
  after it names the example its reader dropped. The counts live in tf.Variables updated by
  sequential pipeline stages (no races). Create the counter outside any tf.distribute scope.
  """

  REASONS = ("unreadable", "truncated", "decode_error", "filtered", "too_small", "too_large",
             "malformed")
  BAD = ("unreadable", "truncated", "decode_error", "too_small", "too_large",
         "malformed")  # "filtered" is not
  # Status codes: 0 = passed on, 1.. = REASONS; per-example only: unseen, seen (in flight).
  (_OK, _UNREADABLE, _TRUNCATED, _DECODE_ERROR, _FILTERED, _TOO_SMALL, _TOO_LARGE, _MALFORMED,
   _UNSEEN, _PENDING) = range(10)
  _NUM_STATUS = 8
  _RING = 1 << 14  # sequence number -> id, longer than what can be in flight in the decoder

  def __init__(self, name: str = "input"):
    self.name = name
    self.num_examples: int | None = None
    self.example_names: Callable[[int], str] = lambda i: f"example id {i}"
    self._reported: set[int] = set()
    # (name, reason) of bad records a source found before reading (TFRecords' "malformed").
    self._found: list[tuple[str, str]] = []
    self._found_reported = 0
    with tf.init_scope():
      self._seen = tf.Variable(tf.constant(0, tf.int64), trainable=False, name="seen")
      self._status = tf.Variable(tf.zeros([self._NUM_STATUS], tf.int64), trainable=False,
                                 name="status")
      # Sequence numbers run on across epochs (a gap at an epoch's end shows in the next).
      self._next_seq = tf.Variable(tf.constant(0, tf.int64), trainable=False, name="next_seq")
      self._last_seq = tf.Variable(tf.constant(-1, tf.int64), trainable=False, name="last_seq")
      self._ring = tf.Variable(tf.fill([self._RING], tf.constant(-1, tf.int64)),
                               trainable=False, name="seq_ids")
      self._per_example = None

  def track(self, num_examples: int, example_names: Callable[[int], str] | None = None) -> None:
    """Keeps one status per id in [0, num_examples) (called by ``load_source``)."""
    if self._per_example is not None:
      if int(self._per_example.shape[0]) != num_examples:
        raise ValueError(f"{self.name}: one SkipCounter per source ({num_examples} examples "
                         f"vs {int(self._per_example.shape[0])})")
      return
    self.num_examples = int(num_examples)
    if example_names is not None:
      self.example_names = example_names
    with tf.init_scope():
      self._per_example = tf.Variable(
          tf.fill([self.num_examples], tf.constant(self._UNSEEN, tf.int8)), trainable=False,
          name="per_example")

  @property
  def tracked(self) -> bool:
    return self._per_example is not None

  def add_found(self, findings: list[tuple[str, str]]) -> None:
    """Bad records a source found itself, (name, reason) each: counted once, named once."""
    known = set(self._found)
    self._found += [f for f in findings if f not in known]

  @property
  def total_examples(self) -> int | None:
    """Tracked: every example of the source, those found bad before reading included."""
    return None if self.num_examples is None else self.num_examples + len(self._found)

  # Pipeline stages (graph code) ---------------------------------------------------------------

  def _lookup(self, example_id):
    """(id in the tracked range, its status or _UNSEEN)."""
    in_range = (example_id >= 0) & (example_id < self.num_examples)
    safe = tf.clip_by_value(example_id, 0, self.num_examples - 1)
    status = tf.cast(tf.gather(self._per_example, safe), tf.int32)
    return in_range, safe, tf.where(in_range, status, self._UNSEEN)

  def _not_known_bad(self, example_id) -> tf.Tensor:
    if not self.tracked:
      return tf.constant(True)
    _, _, status = self._lookup(example_id)
    return (status == self._OK) | (status == self._UNSEEN) | (status == self._PENDING)

  def _mark_seen(self, example_id) -> tuple[tf.Tensor, list[tf.Operation]]:
    """-> (this example's sequence number, the updates)."""
    seq = self._next_seq.assign_add(1) - 1
    ops = [self._seen.assign_add(1),
           self._ring.scatter_nd_update([[seq % self._RING]], [example_id])]
    if self.tracked:
      in_range, safe, status = self._lookup(example_id)
      new = tf.where(in_range & (status == self._UNSEEN), self._PENDING, status)
      ops.append(self._per_example.scatter_nd_update([[safe]], [tf.cast(new, tf.int8)]))
    return seq, ops

  def _mark_status(self, seq, example_id, status) -> list[tf.Operation]:
    # Sequence numbers between the last one that came through and this one were dropped by
    # the reader (ignore_errors): those examples are decode errors.
    missing = tf.range(self._last_seq + 1, seq)
    missing_ids = tf.gather(self._ring, missing % self._RING)
    counts = tf.one_hot(status, self._NUM_STATUS, dtype=tf.int64)
    counts += tf.one_hot(self._DECODE_ERROR, self._NUM_STATUS, dtype=tf.int64) * tf.cast(
        tf.size(missing), tf.int64)
    ops = [self._status.assign_add(counts), self._last_seq.assign(seq)]
    if self.tracked:
      ids = tf.concat([missing_ids, [example_id]], 0)
      codes = tf.concat([tf.fill(tf.shape(missing_ids), self._DECODE_ERROR), [status]], 0)
      in_range = (ids >= 0) & (ids < self.num_examples)
      ops.append(self._per_example.scatter_nd_update(
          tf.boolean_mask(ids, in_range)[:, None], tf.cast(tf.boolean_mask(codes, in_range),
                                                          tf.int8)))
    return ops

  # Python side ---------------------------------------------------------------------------------

  def counts(self, final: bool = False) -> dict[str, int]:
    """{"passed": n, reason: n, ...}. Tracked: per example; else events over all epochs.

    final=True once the data has been read to the end: examples still counted as in flight
    were dropped by the reader, i.e. decode errors (the last ones have no successor to
    reveal them).
    """
    if self.tracked:
      per_example = self._per_example.numpy()
      hist = np.bincount(per_example.astype(np.int64), minlength=self._PENDING + 1)
      result = {reason: int(hist[i + 1]) for i, reason in enumerate(self.REASONS)}
      result["passed"] = int(hist[self._OK])
      if final:
        result["decode_error"] += int(hist[self._PENDING])
      return self._with_found(result)
    status = self._status.numpy()
    result = {reason: int(status[i + 1]) for i, reason in enumerate(self.REASONS)}
    result["passed"] = int(status[self._OK])
    if final:
      result["decode_error"] += int(self._seen.numpy() - status.sum())
    return self._with_found(result)

  def _with_found(self, result: dict[str, int]) -> dict[str, int]:
    for _, reason in self._found:
      result[reason] += 1
    return result

  @property
  def skipped(self) -> int:
    """Examples dropped for being bad (filtered-out ones are not counted here)."""
    counts = self.counts()
    return sum(counts[reason] for reason in self.BAD)

  def new_skips(self) -> list[tuple[str, str]]:
    """(name, reason) of each bad example found since the last call; every one only once."""
    before_reading, self._found_reported = self._found[self._found_reported:], len(self._found)
    if not self.tracked:
      return before_reading
    per_example = self._per_example.numpy().astype(np.int64)
    bad_codes = [self.REASONS.index(reason) + 1 for reason in self.BAD]
    found = np.flatnonzero(np.isin(per_example, bad_codes))
    fresh = [int(i) for i in found if int(i) not in self._reported]
    self._reported.update(fresh)
    return before_reading + [(self.example_names(i), self.REASONS[per_example[i] - 1])
                             for i in fresh]

  def reset(self) -> None:
    self._seen.assign(0)
    self._status.assign(tf.zeros([self._NUM_STATUS], tf.int64))
    self._next_seq.assign(0)
    self._last_seq.assign(-1)
    if self.tracked:
      self._per_example.assign(tf.fill([self.num_examples], tf.constant(self._UNSEEN, tf.int8)))
    self._reported.clear()
    self._found_reported = 0

  def summary(self, final: bool = False) -> str:
    counts = self.counts(final)
    skipped = sum(counts[reason] for reason in self.BAD)
    return (f"{counts['passed']} passed, {skipped} skipped ("
            + ", ".join(f"{k}={counts[k]}" for k in self.REASONS) + ")")

  def log(self, final: bool = False) -> dict[str, int]:
    logging.info("%s pipeline: %s", self.name, self.summary(final))
    return self.counts(final)


@dataclasses.dataclass(frozen=True)
class DecodeOptions:
  """How the decoding stage treats sizes.

  min_size: skip images whose short side is smaller (no upscaling of tiny images).
  max_pixels: skip images whose decoded size would exceed this many pixels.
  decode_min_side: decode JPEGs with DCT downscaling (ratio 2, 4 or 8) while the short side
    stays >= this; None decodes at full size.
  """
  min_size: int = conventions.IMAGE_SIZE
  max_pixels: int = DEFAULT_MAX_PIXELS
  decode_min_side: int | None = conventions.IMAGE_SIZE


# ---------------------------------------------------------------------------------------------
# Decoding stage.

_PAD = b"\x00" * 32
# Magic bytes (first 4, with a mask of which count) of JPEG, PNG, GIF, BMP -> format 1..4.
_MAGIC = np.array([[0xFF, 0xD8, 0, 0], [0x89, 0x50, 0x4E, 0x47], [0x47, 0x49, 0x46, 0],
                   [0x42, 0x4D, 0, 0]], np.int32)
_MAGIC_MASK = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 0, 0]], bool)


def _size_weights() -> np.ndarray:
  """[32, 8] byte weights: header bytes @ W = (h, w) of (none, png, gif, bmp) as integers."""
  w = np.zeros([32, 8], np.float64)
  for col, start, big_endian, length in [(2, 20, True, 4), (3, 16, True, 4),  # PNG IHDR
                                         (4, 8, False, 2), (5, 6, False, 2),  # GIF screen
                                         (6, 22, False, 4), (7, 18, False, 4)]:  # BMP DIB
    for k in range(length):
      w[start + k, col] = 256.0 ** (length - 1 - k if big_endian else k)
  return w


_SIZE_WEIGHTS = _size_weights()


def sniff_image(data: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """Encoded bytes -> (format 0..4 = unknown/jpeg/png/gif/bmp, height, width) from the header.

  Reads only the header (JPEG: the SOF marker through extract_jpeg_shape), so size decisions
  happen before a possibly huge decode. Unknown formats give height = width = 0. Written as
  a few vector ops (one small matmul) because it runs once per image.
  """
  head = tf.strings.substr(tf.strings.join([tf.strings.substr(data, 0, 32), _PAD]), 0, 32)
  b = tf.cast(tf.io.decode_raw(head, tf.uint8), tf.int32)
  matches = tf.reduce_all((b[None, :4] == _MAGIC) | ~_MAGIC_MASK, axis=1)
  # The magics are disjoint: argmax picks the match, or 0 when none (0.5 beats the zeros).
  fmt = tf.cast(tf.argmax(tf.concat([[0.5], tf.cast(matches, tf.float32)], 0)), tf.int32)
  sizes = tf.matmul(tf.cast(b[None], tf.float64), _SIZE_WEIGHTS)[0]
  sizes = tf.cast(tf.where(sizes >= 2.0**31, 2.0**32 - sizes, sizes), tf.int64)  # BMP h < 0
  sizes = tf.reshape(sizes, [4, 2])  # rows: none/jpeg (filled below), png, gif, bmp
  hw = tf.cond(fmt == 1, lambda: tf.cast(tf.image.extract_jpeg_shape(data)[:2], tf.int64),
               lambda: tf.gather(sizes, tf.maximum(fmt - 1, 0)))
  return fmt, hw[0], hw[1]


_RATIOS = (1, 2, 4, 8)


def _jpeg_ratio_index(short_side: tf.Tensor, decode_min_side: int | None) -> tf.Tensor:
  """Index into _RATIOS of the largest DCT ratio whose output short side >= decode_min_side."""
  if not decode_min_side:
    return tf.constant(0, tf.int32)
  scaled = [(short_side + r - 1) // r >= decode_min_side for r in _RATIOS]
  return tf.reduce_sum(tf.cast(tf.stack(scaled), tf.int32)) - 1  # >= 0 once min_size passed


_TAIL = 256  # end markers are looked for in the last bytes (some writers pad after them)
_PNG_IEND = np.frombuffer(b"IEND", np.uint8).astype(np.int32)


def has_end_marker(data: tf.Tensor, fmt: tf.Tensor) -> tf.Tensor:
  """Whether an encoded image ends as its format requires (the "truncated" rule).

  JPEG: an EOI marker (FF D9) in the last 256 bytes; PNG: the IEND chunk type there; GIF: the
  trailer byte (3B) last; BMP: at least as many bytes as its header's file size. A file cut
  short (a failed download, a full disk) lacks it, and is skipped without being decoded: a
  decoder would print a warning and then fail, or show grey where the data stops.
  """
  length = tf.strings.length(data)
  padded = tf.strings.join([b"\x00" * _TAIL, tf.strings.substr(data, tf.maximum(length - _TAIL, 0),
                                                                _TAIL)])
  tail = tf.cast(tf.io.decode_raw(tf.strings.substr(padded, tf.strings.length(padded) - _TAIL,
                                                    _TAIL), tf.uint8), tf.int32)
  jpeg = tf.reduce_any((tail[:-1] == 0xFF) & (tail[1:] == 0xD9))
  windows = tf.stack([tail[i:_TAIL - 3 + i] for i in range(4)], axis=1)
  png = tf.reduce_any(tf.reduce_all(windows == _PNG_IEND, axis=1))
  gif = tail[-1] == 0x3B  # the trailer is the last byte (any byte can be 3B in the data)
  head = tf.cast(tf.io.decode_raw(tf.strings.substr(
      tf.strings.join([data, b"\x00" * 6]), 0, 6), tf.uint8), tf.int64)
  bmp_size = head[2] + head[3] * 256 + head[4] * 65536 + head[5] * 16777216
  bmp = tf.cast(length, tf.int64) >= bmp_size
  return tf.gather(tf.stack([True, jpeg, png, gif, bmp]), fmt)


def _decode_one(data, fmt, height, width, options: DecodeOptions, accept=None):
  """-> (uint8 [h, w, 3] image or a 1x1 placeholder, status code for SkipCounter)."""
  short = tf.minimum(height, width)
  ratio_index = tf.where(fmt == 1, _jpeg_ratio_index(short, options.decode_min_side), 0)
  ratio = tf.gather(tf.constant(_RATIOS, tf.int64), ratio_index)
  pixels = ((height + ratio - 1) // ratio) * ((width + ratio - 1) // ratio)
  accept = tf.constant(True) if accept is None else accept
  # The first failing check wins, in SkipCounter.REASONS order.
  codes = tf.constant([SkipCounter._UNREADABLE, SkipCounter._TRUNCATED, SkipCounter._FILTERED,
                       SkipCounter._TOO_SMALL, SkipCounter._TOO_LARGE, SkipCounter._OK])
  checks = tf.stack([fmt == 0, tf.logical_not(has_end_marker(data, fmt)),
                     tf.logical_not(accept), short < options.min_size,
                     pixels > options.max_pixels, True])
  status = tf.gather(codes, tf.argmax(tf.cast(checks, tf.int32), output_type=tf.int32))

  # One switch (each nested cond costs a function call per image): 0 = skipped, 1 = other
  # formats, 2.. = JPEG at each DCT ratio.
  branches = [lambda: tf.zeros([1, 1, 3], tf.uint8),
              lambda: tf.ensure_shape(
                  tf.io.decode_image(data, channels=3, expand_animations=False),
                  [None, None, 3])]
  branches += [lambda r=r: tf.io.decode_jpeg(data, channels=3, ratio=r) for r in _RATIOS]
  index = tf.where(status != SkipCounter._OK, 0, tf.where(fmt == 1, ratio_index + 2, 1))
  return tf.switch_case(index, branches), status


def decode_stage(ds: tf.data.Dataset, options: DecodeOptions,
                 skip_counter: SkipCounter | None = None,
                 accept_fn: Callable[[dict, tf.Tensor, tf.Tensor], tf.Tensor] | None = None
                 ) -> tf.data.Dataset:
  """Elements with "_bytes" (encoded) or "_path" -> with "image" uint8 [H, W, 3]; bad ones dropped.

  ``accept_fn(example, height, width) -> bool`` is a source's own selection (COCO's filter),
  applied on header sizes before decoding. An example whose reading or decoding fails is
  dropped (``ignore_errors``) and counted as a decode error. With a tracked ``skip_counter``,
  examples already found bad are dropped before they are read again.
  """
  if skip_counter is not None:
    ds = ds.filter(lambda ex: skip_counter._not_known_bad(ex["id"]))

    def seen(ex):
      seq, updates = skip_counter._mark_seen(ex["id"])
      with tf.control_dependencies(updates):
        return {**ex, "_seq": tf.identity(seq)}
    ds = ds.map(seen)

  def read_and_decode(ex):
    ex = dict(ex)
    data = tf.io.read_file(ex.pop("_path")) if "_path" in ex else ex.pop("_bytes")
    fmt, height, width = sniff_image(data)
    accept = None if accept_fn is None else accept_fn(ex, height, width)
    ex["image"], ex["_status"] = _decode_one(data, fmt, height, width, options, accept)
    return {k: v for k, v in ex.items() if not k.startswith("_") or k in ("_status", "_seq")}

  ds = ds.map(read_and_decode, num_parallel_calls=AUTOTUNE, deterministic=True)
  # Skipped examples are counted (and with a tracked counter named once in the run's log):
  # no warning per drop and epoch here.
  ds = ds.ignore_errors(log_warning=skip_counter is None)

  def keep(ex):
    ok = ex["_status"] == SkipCounter._OK
    if skip_counter is None:
      return ok
    with tf.control_dependencies(skip_counter._mark_status(ex["_seq"], ex["id"], ex["_status"])):
      return tf.identity(ok)

  ds = ds.filter(keep)
  return ds.map(lambda ex: {k: v for k, v in ex.items() if not k.startswith("_")})


# ---------------------------------------------------------------------------------------------
# Sources.

def load_source(spec: str | DatasetSpec, split: str | None = None, data_dir: str | None = None,
                input_context: tf.distribute.InputContext | None = None,
                skip_counter: SkipCounter | None = None,
                options: DecodeOptions = DecodeOptions(),
                shuffle_seed: int | None = None) -> tf.data.Dataset:
  """Decoded examples ``{"image": uint8 [H, W, 3], "id": int64, ...}`` of one split.

  split: None = the source's training split (``spec.train_split``); ignored by folder and
  tfrecord sources, which have one split. shuffle_seed: None reads in the fixed order; an int
  shuffles the file order (tfds shards, folder paths, TFRecord files) each epoch, for training;
  the ids stay the same either way. input_context: shard the data across input pipelines
  (by file where possible, else by element), for ``distribute_datasets_from_function``.
  """
  spec = parse_dataset_spec(spec)
  if spec.kind == "folder":
    ds, size, names = _folder_source(spec.location, input_context, shuffle_seed)
    accept = None
  elif spec.kind == "tfrecord":
    ds, size, names, features = _tfrecord_source(spec.location, input_context, shuffle_seed)
    accept = None
    if skip_counter is not None:  # records the parser would drop unseen: counted here
      skip_counter.add_found(_scan_once(spec.location, features))
  else:
    ds, size, names = _tfds_source(spec, split or spec.train_split, data_dir, input_context,
                                   shuffle_seed)
    accept = _coco_accept if spec.name == "coco" else None
  if skip_counter is not None and size:
    skip_counter.track(size, names)
  return decode_stage(ds, options, skip_counter, accept)


def _shard(ds, input_context):
  if input_context is None or input_context.num_input_pipelines <= 1:
    return ds
  return ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)


def list_image_files(path: str) -> list[str]:
  """Sorted image paths under ``path`` (recursive, case-insensitive extensions, gs:// works)."""
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"image folder {path!r} does not exist")
  if not tf.io.gfile.isdir(path):
    raise NotADirectoryError(f"image folder {path!r} is not a directory")
  files = [os.path.join(root, name) for root, _, names in tf.io.gfile.walk(path)
           for name in names if name.lower().endswith(IMAGE_EXTENSIONS)]
  if not files:
    raise FileNotFoundError(
        f"image folder {path!r} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
  return sorted(files)


def _folder_source(path, input_context, shuffle_seed):
  files = list_image_files(path)
  ds = tf.data.Dataset.from_tensor_slices(
      {"id": np.arange(len(files), dtype=np.int64), "_path": files})
  ds = _shard(ds, input_context)
  if shuffle_seed is not None:
    ds = ds.shuffle(len(files), seed=shuffle_seed, reshuffle_each_iteration=True)
  return ds, len(files), lambda i: files[i]


# TFRecords -------------------------------------------------------------------------------------

_SHARD_RE = re.compile(r"-\d{5}-of-\d{5}\.tfrecord$")


def _features_path(prefix: str) -> str:
  return prefix + ".features.json"


def write_tfrecords(dataset: tf.data.Dataset | Iterable[dict], path_prefix: str,
                    num_shards: int = 1, image_format: str = "png") -> list[str]:
  """Writes dicts with "image" (uint8 [H, W, 3] or encoded bytes), "id" and other numeric
  features to ``{path_prefix}-0000k-of-0000n.tfrecord``; returns the shard paths.

  Example j goes to shard j % n, so reading the shards back round-robin
  (``tfrecord:{path_prefix}-*``) restores the written order. Extra numeric features are
  described in ``{path_prefix}.features.json`` so that the reader can parse them back.
  """
  if image_format not in ("png", "jpeg"):
    raise ValueError(f"image_format must be 'png' or 'jpeg', got {image_format!r}")
  tf.io.gfile.makedirs(os.path.dirname(path_prefix) or ".")
  paths = [f"{path_prefix}-{k:05d}-of-{num_shards:05d}.tfrecord" for k in range(num_shards)]
  writers = [tf.io.TFRecordWriter(p) for p in paths]
  extras: dict[str, dict] = {}
  count, min_id, max_id = 0, None, None
  try:
    for ex in dataset:
      ex = {k: np.asarray(v) for k, v in ex.items()}
      image = ex.pop("image")
      if image.dtype == object:  # already encoded
        data = image.item()
      else:  # raw pixels
        encode = tf.io.encode_png if image_format == "png" else tf.io.encode_jpeg
        data = encode(tf.convert_to_tensor(image, tf.uint8)).numpy()
      example_id = int(ex.pop("id", count))
      min_id = example_id if min_id is None else min(min_id, example_id)
      max_id = example_id if max_id is None else max(max_id, example_id)
      feature = {
          "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[data])),
          "id": tf.train.Feature(int64_list=tf.train.Int64List(value=[example_id])),
      }
      for key, value in ex.items():
        if np.issubdtype(value.dtype, np.integer) or value.dtype == bool:
          dtype, feat = "int64", tf.train.Feature(
              int64_list=tf.train.Int64List(value=value.astype(np.int64).ravel()))
        elif np.issubdtype(value.dtype, np.floating):
          dtype, feat = "float32", tf.train.Feature(
              float_list=tf.train.FloatList(value=value.astype(np.float32).ravel()))
        else:
          continue  # strings and other extras are not carried
        extras.setdefault(key, {"dtype": dtype, "shape": list(value.shape)})
        feature[key] = feat
      example = tf.train.Example(features=tf.train.Features(feature=feature))
      writers[count % num_shards].write(example.SerializeToString())
      count += 1
  finally:
    for writer in writers:
      writer.close()
  with tf.io.gfile.GFile(_features_path(path_prefix), "w") as f:
    json.dump({"num_examples": count, "num_shards": num_shards, "extras": extras,
               "min_id": min_id, "max_id": max_id}, f, indent=1)
  return paths


def _tfrecord_source(pattern, input_context, shuffle_seed):
  files = sorted(tf.io.gfile.glob(pattern))
  if not files:
    raise FileNotFoundError(f"no TFRecord files match {pattern!r}")
  extras, num_examples = {}, None
  sidecar = _features_path(_SHARD_RE.sub("", files[0]))
  if tf.io.gfile.exists(sidecar):
    with tf.io.gfile.GFile(sidecar) as f:
      written = json.load(f)
    extras = written.get("extras", {})
    min_id, max_id = written.get("min_id"), written.get("max_id")
    # Per-id tracking when all shards are read and the ids are small non-negative numbers.
    if (len(files) == written.get("num_shards") and min_id is not None and min_id >= 0
        and max_id < 16 * max(written.get("num_examples", 0), 1)):
      num_examples = max_id + 1
  first = next(iter(tf.data.TFRecordDataset(files[0]).take(1)), None)
  has_id = first is not None and "id" in tf.train.Example.FromString(
      first.numpy()).features.feature
  features = {"image": tf.io.FixedLenFeature([], tf.string)}
  if has_id:
    features["id"] = tf.io.FixedLenFeature([], tf.int64)
  for key, info in extras.items():
    features[key] = tf.io.FixedLenFeature(info["shape"], tf.as_dtype(info["dtype"]))

  file_ds = tf.data.Dataset.from_tensor_slices(files)
  if has_id:  # stored ids: shard and shuffle whole files
    file_ds = _shard(file_ds, input_context)
    if shuffle_seed is not None:
      file_ds = file_ds.shuffle(len(files), seed=shuffle_seed, reshuffle_each_iteration=True)
  # Round-robin, one record per file in turn: the order write_tfrecords wrote.
  ds = file_ds.interleave(tf.data.TFRecordDataset, cycle_length=min(len(files), 64),
                          block_length=1, num_parallel_calls=AUTOTUNE, deterministic=True)

  def parse(record):
    ex = tf.io.parse_single_example(record, features)
    ex["_bytes"] = ex.pop("image")
    return ex

  ds = ds.map(parse, num_parallel_calls=AUTOTUNE)
  if not has_id:  # ids = read position; only element-level sharding keeps them stable
    ds = ds.enumerate().map(lambda i, ex: {**ex, "id": i})
    ds = _shard(ds, input_context)
  return ds, num_examples, lambda i: f"record id {i} of {pattern}", features


_KINDS = {tf.string: "bytes_list", tf.int64: "int64_list", tf.float32: "float_list"}
_SCANS: dict[str, list[tuple[str, str]]] = {}


def _scan_once(pattern: str, features: dict[str, tf.io.FixedLenFeature]) -> list[tuple[str, str]]:
  """scan_tfrecords, once per process for files unchanged (a run opens its source twice: the
  preview batch and the training stream)."""
  from lorbms_tf import identity  # pylint: disable=import-outside-toplevel
  files = sorted(tf.io.gfile.glob(pattern))
  local = not any("://" in f for f in files)
  key = json.dumps([identity.files_identity(files) if local else files,
                    sorted((k, str(v)) for k, v in features.items())])
  if key not in _SCANS:
    _SCANS[key] = scan_tfrecords(files, features)
  return _SCANS[key]


def scan_tfrecords(files: list[str], features: dict[str, tf.io.FixedLenFeature]
                   ) -> list[tuple[str, str]]:
  """(name, "malformed") of each record that lacks a feature of ``features`` or holds it with
  another type or length, and of each file that cannot be read to its end (corrupt framing).

  The reader's parser fails on such records, and the decode stage's error handling drops them
  before they have an id, so they are found here, in one pass over the files (about 1 s per
  20,000 records), and counted towards ``--max_skipped_fraction``.
  """
  want = {key: (_KINDS[spec.dtype], int(np.prod(spec.shape, dtype=np.int64)))
          for key, spec in features.items()}
  found = []
  for path in files:
    try:
      found += _scan_file(path, want, tf.data.TFRecordDataset(path).batch(1024))
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError):
      # Record by record, to say where the file breaks (a batch fails as a whole).
      found += _scan_file(path, want, tf.data.TFRecordDataset(path).batch(1), broken_ok=True)
  return found


def _scan_file(path, want, batches, broken_ok=False) -> list[tuple[str, str]]:
  found, index = [], 0
  try:
    for batch in batches:
      for record in batch.numpy():
        problem = _record_problem(record, want)
        if problem:
          found.append((f"record {index} of {path} ({problem})", "malformed"))
        index += 1
  except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
    if not broken_ok:
      raise
    found.append((f"{path} after record {index} (unreadable: {type(e).__name__})", "malformed"))
  return found


def _record_problem(record: bytes, want: dict[str, tuple[str, int]]) -> str | None:
  try:
    feature_map = tf.train.Example.FromString(record).features.feature
  except Exception:  # noqa: BLE001  (protobuf's DecodeError: not an Example at all)
    return "not a tf.train.Example"
  for key, (kind, length) in want.items():
    if key not in feature_map:
      return f"no {key!r}"
    present = feature_map[key].WhichOneof("kind")
    if present != kind:
      return f"{key!r} is {present}, not {kind}"
    if len(getattr(feature_map[key], kind).value) != length:
      return f"{key!r} has {len(getattr(feature_map[key], kind).value)} values, not {length}"
  return None


# tfds ------------------------------------------------------------------------------------------

def _coco_accept(ex, height, width):
  return (tf.minimum(height, width) >= COCO_MIN_SIDE) & (ex["_num_boxes"] >= COCO_MIN_BOXES)


def _tfds_source(spec, split, data_dir, input_context, shuffle_seed):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from lorbms_tf.data import scenes_builder  # pylint: disable=g-import-not-at-top,unused-import
  if "+" in split:
    raise ValueError(f"split {split!r}: ids are per split, load one split at a time")
  builder = tfds.builder(spec.location, data_dir=data_dir)
  base_split = split.split("[")[0]
  try:
    split_info = builder.info.splits[base_split]
    shard_lengths, num_shards = list(split_info.shard_lengths), split_info.num_shards
  except (KeyError, ValueError, TypeError):  # unknown before preparation (and when mocked)
    shard_lengths, num_shards = [], 0
  if spec.location.startswith("lorbms_scenes") and not builder.is_prepared():
    builder.download_and_prepare()  # embedded: generated locally, nothing is downloaded
  file_sharding = (input_context is not None and input_context.num_input_pipelines > 1
                   and num_shards >= input_context.num_input_pipelines)
  read_config = tfds.ReadConfig(
      add_tfds_id=True, try_autocache=False, shuffle_seed=shuffle_seed,
      input_context=input_context if file_sharding else None)
  # Ordered datasets (lorbms_scenes) refuse file shuffling; the example buffer shuffles.
  shuffle_files = shuffle_seed is not None and not builder.info.disable_shuffling
  try:
    ds = builder.as_dataset(split=split, decoders={"image": tfds.decode.SkipDecoding()},
                            read_config=read_config, shuffle_files=shuffle_files)
  except AssertionError as e:  # tfds's "could not find data"
    raise FileNotFoundError(
        f"tfds dataset {spec.location!r} is not prepared in data_dir={data_dir!r} "
        f"(nothing can be downloaded here): {e}") from e
  offsets = np.concatenate([[0], np.cumsum(shard_lengths)[:-1]]).astype(np.int64)
  has_id = "id" in builder.info.features

  def convert(ex):
    out = {"_bytes": ex["image"]}
    if has_id:
      out["id"] = tf.cast(ex["id"], tf.int64)
    else:
      tfds_id = ex["tfds_id"]
      index = tf.strings.to_number(tf.strings.regex_replace(tfds_id, r"^.*__", ""), tf.int64)
      shard = tf.strings.to_number(
          tf.strings.regex_replace(tfds_id, r"^.*-(\d+)-of-\d+__\d+$", r"\1"), tf.int64)
      out["id"] = tf.gather(offsets, tf.minimum(shard, len(offsets) - 1)) + index
    for key in spec.extra_keys:
      out[key] = ex[key]
    if spec.name == "coco":
      out["_num_boxes"] = tf.shape(ex["objects"]["bbox"])[0]
    return out

  ds = ds.map(convert, num_parallel_calls=AUTOTUNE)
  size = sum(shard_lengths) or None  # None when the split is unknown (mocked)
  names = lambda i: f"{spec.location} {base_split} example {i}"  # noqa: E731
  return (ds if file_sharding else _shard(ds, input_context)), size, names


def stl10_fold_ids(fold: int, train_ids: np.ndarray | None = None) -> np.ndarray:
  """Ids (into the tfds STL-10 "train" split) of training fold ``fold`` (0..9), 1,000 each.

  **Ours**: STL-10 defines 10 folds of 1,000 of its 5,000 training images by index lists into
  the original binary file (``fold_indices.txt``). tfds stores that split in hash-shuffled
  order without the original index, so the official lists cannot be mapped offline. Instead:
  two fixed permutations (seeds 0 and 1) of the 5,000 ids, each cut into five blocks of 1,000;
  folds 0-4 come from the first, 5-9 from the second. Like the official folds, every image is
  in exactly two folds. Sorted ids are returned.
  """
  if not 0 <= fold < STL10_FOLDS:
    raise ValueError(f"STL-10 fold must be in 0..{STL10_FOLDS - 1}, got {fold}")
  ids = np.arange(STL10_TRAIN_SIZE) if train_ids is None else np.sort(np.asarray(train_ids))
  perm = np.random.default_rng(fold // 5).permutation(len(ids))
  size = len(ids) // 5
  block = fold % 5
  return np.sort(ids[perm[block * size:(block + 1) * size]]).astype(np.int64)
