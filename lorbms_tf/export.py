"""SavedModels for TF Serving: encode, mix (object transfer), reconstruct, discriminator features.

``export_saved_model(WORKDIR, EXPORT_DIR)`` writes a SavedModel; ``validate_export`` loads it
in a fresh process and checks it against the Keras networks and with ``saved_model_cli``;
``publish`` copies a validated export to ``saved_models/NAME/<version>/`` (an integer version,
as TF Serving expects; the next free one by default). Every write goes to a temporary sibling
and is renamed, so a server watching the base directory never sees half a version. Signatures (stable names, ``serving_default`` = ``mix``):

==========================  ===============================================  ==================
signature                   inputs                                           outputs
==========================  ===============================================  ==================
``encode``                  ``images`` [B, H, W, 3]                          ``chunks`` [B, 2, 2, C]
``mix``                     ``reference`` [B, H, W, 3], ``donors``            ``image`` [B, 64, 64, 3]
                            [B, 4, H, W, 3] (donor i offers quadrant i),
                            ``mask`` [B, 4] (1 = take the donor's chunk)
``reconstruct``             ``images`` [B, H, W, 3]                          ``image`` [B, 64, 64, 3]
``discriminator_features``  ``images`` [B, H, W, 3]                          ``features`` [B, 4, 4, F]
==========================  ===============================================  ==================

Images are float32 in [-1, 1]; each signature also exists as ``<name>_uint8`` taking uint8
[0, 255] (a signature has one dtype per input). Any size from ``MIN_IMAGE_SIDE`` (16) to
``MAX_IMAGE_SIDE`` (4096) pixels a side: the central square is cut and area-resized to 64
inside the graph, as in evaluation. Output images are float32 in [-1, 1].
Inputs are checked in the graph: a wrong rank or channel count, a batch above ``MAX_BATCH``
(256), images outside the size limits, float values that are NaN/Inf or outside [-1, 1], a
mask that is not 4 values of 0/1, or a mask (or donors) whose batch differs from the
reference's, is an ``InvalidArgumentError`` that names the input.

TF Serving warm-up: ``assets.extra/tf_serving_warmup_requests`` holds one PredictionLog per
signature (tensorflow-serving-api protos), so the server traces every signature at load.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from typing import Any

import numpy as np
import tensorflow as tf

from lorbms_tf import conventions, faults

SIGNATURES = ("encode", "mix", "reconstruct", "discriminator_features")
DEFAULT_SIGNATURE = "mix"
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
EXPORT_RECORD = "export.json"  # beside the versions: what each version was exported from
_SIZE = conventions.IMAGE_SIZE
_N = conventions.NUM_QUADRANTS
# Serving limits, checked in the graph (a request beyond them is an InvalidArgumentError that
# names the input): images per request, and the image sides.
MAX_BATCH = 256
MIN_IMAGE_SIDE = 16
MAX_IMAGE_SIDE = 4096
FLOAT_RANGE_SLACK = 0.01  # float images must lie in [-1 - slack, 1 + slack]


def _square(images: tf.Tensor) -> tf.Tensor:
  """[B, H, W, 3] float in [-1, 1] -> [B, 64, 64, 3]: central square, area resize."""
  shape = tf.shape(images)
  side = tf.minimum(shape[1], shape[2])
  top, left = (shape[1] - side) // 2, (shape[2] - side) // 2
  square = images[:, top:top + side, left:left + side]
  return tf.image.resize(square, [_SIZE, _SIZE], method="area", antialias=True)


def _checked_images(images: tf.Tensor, name: str, rank: int = 4) -> tf.Tensor:
  """Validates rank, channels, batch and image size, and (float inputs) finite values in
  [-1, 1] (InvalidArgumentError naming ``name``), -> float in [-1, 1]."""
  rank_check = tf.debugging.assert_rank(
      images, rank, message=f"input '{name}' must have rank {rank} "
      f"({'[B, 4, H, W, 3]' if rank == 5 else '[B, H, W, 3]'})")
  shape = tf.shape(images)
  height, width = shape[-3], shape[-2]
  checks = [
      rank_check,
      tf.debugging.assert_less_equal(shape[0], MAX_BATCH, message=(
          f"input '{name}' has a batch above the limit of {MAX_BATCH} per request")),
      tf.debugging.assert_greater_equal(tf.minimum(height, width), MIN_IMAGE_SIDE, message=(
          f"input '{name}' must be at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} pixels")),
      tf.debugging.assert_less_equal(tf.maximum(height, width), MAX_IMAGE_SIDE, message=(
          f"input '{name}' must be at most {MAX_IMAGE_SIDE} pixels on a side")),
  ]
  if images.dtype != tf.uint8:
    values = tf.cast(images, tf.float32)
    checks += [
        tf.debugging.assert_equal(tf.reduce_all(tf.math.is_finite(values)), True, message=(
            f"input '{name}' must be finite (it holds NaN or Inf)")),
        tf.debugging.assert_less_equal(tf.reduce_max(tf.abs(values)),
                                       1.0 + FLOAT_RANGE_SLACK, message=(
            f"input '{name}' must be float32 within -1..1 (the *_uint8 signatures take 0..255)")),
    ]
  checks += [tf.debugging.assert_equal(tf.shape(images)[-1], 3,
                                       message=f"input '{name}' must have 3 channels (RGB)")]
  if rank == 5:
    checks.append(tf.debugging.assert_equal(tf.shape(images)[1], _N, message=(
        f"input '{name}' must hold {_N} donors, one per quadrant "
        f"{','.join(conventions.QUADRANT_NAMES)}")))
  with tf.control_dependencies(checks):
    # tf.identity: a float32 cast is the input tensor itself, which would carry no dependency
    # on the checks (the encoder could then fail first, with an error that names no input).
    if images.dtype == tf.uint8:
      return tf.identity(tf.cast(images, tf.float32) * (2.0 / 255.0) - 1.0)
    return tf.identity(tf.cast(images, tf.float32))


def _checked_mask(mask: tf.Tensor, batch: tf.Tensor | None = None) -> tf.Tensor:
  """Validates the mask; ``batch``: the reference's batch size, which the mask's must equal
  (a [1, 4] mask is not broadcast over a batch of references)."""
  mask = tf.cast(mask, tf.float32)
  checks = [] if batch is None else [tf.debugging.assert_equal(
      tf.shape(mask)[0], batch,
      message="input 'mask' must have one row per 'reference' (the same batch size)")]
  checks += [tf.debugging.assert_rank(mask, 2, message="input 'mask' must be [B, 4]"),
            tf.debugging.assert_equal(tf.shape(mask)[-1], _N, message=(
                f"input 'mask' must have {_N} values (quadrants "
                f"{','.join(conventions.QUADRANT_NAMES)}), 1 = take the donor's chunk")),
            tf.debugging.assert_equal(
                tf.reduce_all((mask == conventions.MASK_KEPT) | (mask == conventions.MASK_REPLACED)),
                True, message="input 'mask' must hold only 0 and 1")]
  with tf.control_dependencies(checks):
    return tf.identity(mask)


class ServingModule(tf.Module):
  """The trained networks behind the serving signatures (inference mode, float32 outputs)."""

  def __init__(self, networks):
    super().__init__(name="lorbms")
    self.encoder, self.decoder = networks.encoder, networks.decoder
    self.discriminator = networks.discriminator
    self.model = networks.model

  def _encode(self, images):
    return tf.cast(self.encoder(_square(images), training=False), tf.float32)

  def encode(self, images):
    return {"chunks": self._encode(_checked_images(images, "images"))}

  def reconstruct(self, images):
    chunks = self._encode(_checked_images(images, "images"))
    return {"image": tf.cast(self.decoder(chunks, training=False), tf.float32)}

  def mix(self, reference, donors, mask):
    reference = _checked_images(reference, "reference")
    donors = _checked_images(donors, "donors", rank=5)
    mask = _checked_mask(mask, tf.shape(reference)[0])
    same_batch = tf.debugging.assert_equal(
        tf.shape(donors)[0], tf.shape(reference)[0],
        message="inputs 'reference' and 'donors' need the same batch size")
    with tf.control_dependencies([same_batch]):
      donors = tf.identity(donors)
    shape = tf.shape(donors)
    donor_chunks = self._encode(tf.reshape(donors, tf.concat([[-1], shape[2:]], 0)))
    donor_chunks = tf.reshape(donor_chunks, tf.concat([[-1, _N], tf.shape(donor_chunks)[1:]], 0))
    image = self.model.render(self._encode(reference), donor_chunks, mask)
    return {"image": tf.cast(image, tf.float32)}

  def discriminator_features(self, images):
    features = self.discriminator.features(_square(_checked_images(images, "images")),
                                           training=False)
    return {"features": tf.cast(features, tf.float32)}

  def endpoints(self) -> dict[str, tuple[Any, list[tf.TensorSpec]]]:
    """name -> (function, input specs) for every signature, float32 and uint8 inputs;
    ``serving_default`` is ``mix``."""
    out = {}
    for dtype, suffix in ((tf.float32, ""), (tf.uint8, "_uint8")):
      image = [tf.TensorSpec([None, None, None, 3], dtype, name="images")]
      out["encode" + suffix] = (self.encode, image)
      out["reconstruct" + suffix] = (self.reconstruct, image)
      out["discriminator_features" + suffix] = (self.discriminator_features, image)
      out["mix" + suffix] = (self.mix, [tf.TensorSpec([None, None, None, 3], dtype, name="reference"),
                                        tf.TensorSpec([None, _N, None, None, 3], dtype, name="donors"),
                                        tf.TensorSpec([None, _N], tf.float32, name="mask")])
    out["serving_default"] = out[DEFAULT_SIGNATURE]
    return out


def next_version(base_dir: str) -> int:
  """1 + the highest integer version under ``base_dir`` (1 when there is none)."""
  return max(list_versions(base_dir), default=0) + 1


def list_versions(base_dir: str) -> list[int]:
  if "://" in base_dir:  # remote: through tf.io.gfile
    if not tf.io.gfile.isdir(base_dir):
      return []
    names = tf.io.gfile.listdir(base_dir)
  else:  # local: plain os (publish runs without TensorFlow calls)
    if not os.path.isdir(base_dir):
      return []
    names = os.listdir(base_dir)
  return sorted(int(name.rstrip("/")) for name in names if re.fullmatch(r"\d+/?", name))


def warmup_inputs(batch: int = 1, size: int = _SIZE, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
  """Small deterministic inputs for every (float32) signature: warm-up, validation, benchmarks."""
  rng = np.random.default_rng(seed)
  image = lambda *shape: rng.uniform(-1, 1, shape).astype(np.float32)  # noqa: E731
  mask = np.tile(np.array([[0, 1, 0, 1]], np.float32), (batch, 1))
  return {"encode": {"images": image(batch, size, size, 3)},
          "reconstruct": {"images": image(batch, size, size, 3)},
          "discriminator_features": {"images": image(batch, size, size, 3)},
          "mix": {"reference": image(batch, size, size, 3),
                  "donors": image(batch, _N, size, size, 3), "mask": mask}}


def write_warmup_requests(export_dir: str, model_name: str) -> str:
  """One PredictionLog per signature into ``assets.extra/tf_serving_warmup_requests``."""
  from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2  # pylint: disable=g-import-not-at-top
  path = os.path.join(export_dir, WARMUP_FILE)
  tf.io.gfile.makedirs(os.path.dirname(path))
  with tf.io.TFRecordWriter(path) as writer:
    for signature, inputs in warmup_inputs().items():
      request = predict_pb2.PredictRequest(
          model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature))
      for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
      log = prediction_log_pb2.PredictionLog(
          predict_log=prediction_log_pb2.PredictLog(request=request))
      writer.write(log.SerializeToString())
  return path


def read_warmup_requests(export_dir: str) -> list[tuple[str, dict[str, np.ndarray]]]:
  """(signature, inputs) of every warm-up request (what TF Serving replays at load)."""
  from tensorflow_serving.apis import prediction_log_pb2  # pylint: disable=g-import-not-at-top
  out = []
  for record in tf.data.TFRecordDataset(os.path.join(export_dir, WARMUP_FILE)):
    log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
    request = log.predict_log.request
    out.append((request.model_spec.signature_name,
                {key: tf.make_ndarray(value) for key, value in request.inputs.items()}))
  return out


def export_saved_model(checkpoint: str, export_dir: str, model_name: str = "lorbms",
                       warmup: bool = True) -> dict[str, Any]:
  """Exports a work dir's latest checkpoint (or a checkpoint prefix) as a SavedModel.

  Written to ``export_dir.tmp`` and renamed, so ``export_dir`` is complete or absent. Returns
  the export record (also in ``assets.extra/export.json``): step, seconds, size, signatures.
  """
  start = time.perf_counter()
  networks = _float32_networks(checkpoint)
  if tf.io.gfile.exists(export_dir):
    raise FileExistsError(f"{export_dir!r} exists; an export is never overwritten")
  tmp = export_dir.rstrip("/") + ".tmp"
  if tf.io.gfile.exists(tmp):
    tf.io.gfile.rmtree(tmp)
  module = ServingModule(networks)
  endpoints = module.endpoints()
  # Keras 3's ExportArchive tracks every variable the endpoints read, so that TF1-style
  # loaders (saved_model_cli run, TF Serving) restore them too: with a plain
  # tf.saved_model.save of the module, tf.saved_model.load works but saved_model_cli run
  # fails with "Could not find variable encoder/beta_5".
  import keras  # pylint: disable=import-outside-toplevel
  archive = keras.export.ExportArchive()
  archive.track(networks.model)
  for name, (fn, specs) in endpoints.items():
    archive.add_endpoint(name, fn, input_signature=specs)
  archive.write_out(tmp, verbose=False)
  signatures = endpoints
  if warmup:
    write_warmup_requests(tmp, model_name)
  record = {"model_name": model_name, "step": networks.step,
            "source": os.path.abspath(checkpoint), "checkpoint": networks.checkpoint,
            "checkpoint_identity": checkpoint_identity(networks.checkpoint),
            "signatures": sorted(signatures),
            "seconds": time.perf_counter() - start, "size_bytes": _size(tmp)}
  tf.io.gfile.makedirs(os.path.join(tmp, "assets.extra"))
  with tf.io.gfile.GFile(os.path.join(tmp, "assets.extra", EXPORT_RECORD), "w") as f:
    json.dump(record, f, indent=1)
  tf.io.gfile.rename(tmp, export_dir)
  return record


def checkpoint_identity(prefix: str) -> dict[str, Any]:
  """Names (relative), sizes and mtimes of a checkpoint's files: the same checkpoint wherever
  its work dir was moved (renames keep mtimes), another one after any retraining."""
  from lorbms_tf import identity  # pylint: disable=import-outside-toplevel
  return identity.files_identity(tf.io.gfile.glob(prefix + ".*"), os.path.dirname(prefix))


def version_of(base_dir: str, checkpoint_ident: dict[str, Any]) -> int | None:
  """The served version exported from this very checkpoint, if any (a pusher killed after it
  published, before it recorded that, finds it here instead of publishing a duplicate)."""
  for version in reversed(list_versions(base_dir)):
    path = os.path.join(base_dir, str(version), "assets.extra", EXPORT_RECORD)
    try:
      with open(path) as f:
        if json.load(f).get("checkpoint_identity") == checkpoint_ident:
          return version
    except (OSError, ValueError):
      continue
  return None


def _float32_networks(checkpoint: str):
  """The networks in float32 whatever the training precision (serving and its comparison)."""
  import keras  # pylint: disable=import-outside-toplevel
  from lorbms_tf import checkpoints  # pylint: disable=import-outside-toplevel
  policy = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy("float32")
  try:
    return checkpoints.restore_networks(checkpoint)
  finally:
    keras.mixed_precision.set_global_policy(policy)


PUBLISH_LOCK_WAIT = 600.0  # seconds a pusher waits for another one's version claim


def publish(export_dir: str, base_dir: str, version: int | None = None) -> str:
  """Copies a (validated) export to ``base_dir/<version>`` (next free integer by default).

  A version appears whole or not at all, whatever the number of concurrent pushers: the copy
  goes to a uniquely named hidden folder in ``base_dir`` (``tempfile.mkdtemp``), every file
  is synced, and it is renamed to the version with a rename that never replaces
  (``atomic.rename_no_replace``): a version number taken meanwhile by another pusher makes
  this one take the next (with ``version`` given: ``FileExistsError``). TF Serving, which
  watches ``base_dir``, ignores the hidden folder and keeps serving the previous version until
  the new one is complete. Pushers on one host also serialize on a lock beside ``base_dir``
  (``.NAME.lock`` in its parent: ``base_dir`` itself holds versions only). Remote (``gs://``)
  destinations are refused: the rename that makes a local version atomic does not exist there.
  """
  import tempfile  # pylint: disable=import-outside-toplevel
  from lorbms_tf import atomic, locks  # pylint: disable=import-outside-toplevel
  if atomic.is_remote(base_dir):
    raise ValueError(f"push destination {base_dir!r} is remote: publishing needs an atomic "
                     "local rename; push to a local (or mounted) folder and sync it from there")
  base_dir = os.path.abspath(base_dir)
  name = os.path.basename(base_dir.rstrip("/"))
  os.makedirs(base_dir, exist_ok=True)
  lock = locks.DirectoryLock(base_dir, wait=PUBLISH_LOCK_WAIT,
                             lock_file=os.path.join(os.path.dirname(base_dir), f".{name}.lock"))
  with lock:
    wanted = None if version is None else int(version)
    if wanted is not None and os.path.lexists(os.path.join(base_dir, str(wanted))):
      raise FileExistsError(f"version {wanted} already exists in {base_dir!r}; versions are "
                            "immutable (leave the version out for the next free one)")
    staging = tempfile.mkdtemp(prefix=".publish-", dir=base_dir)
    try:
      tmp = os.path.join(staging, "version")
      faults.point("publish.staging")
      shutil.copytree(export_dir, tmp)
      atomic.fsync_tree(tmp)
      faults.point("publish.copied")
      while True:
        candidate = wanted if wanted is not None else next_version(base_dir)
        final = os.path.join(base_dir, str(candidate))
        try:
          atomic.rename_no_replace(tmp, final)
          break
        except FileExistsError:
          if wanted is not None:
            raise FileExistsError(f"version {wanted} already exists in {base_dir!r}; versions "
                                  "are immutable (leave the version out for the next free "
                                  "one)") from None
          # taken by a pusher on another host meanwhile: the next one
    finally:
      shutil.rmtree(staging, ignore_errors=True)
    atomic.fsync_dir(base_dir)
  return final


def _size(path: str) -> int:
  return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path)
             for name in names)


# Validation: a fresh process loads the export and compares it with the Keras networks -------

def compare_with_keras(export_dir: str, checkpoint: str, batch: int = 2) -> dict[str, Any]:
  """Runs every signature of the loaded SavedModel and the same computation on the Keras
  networks (restored from ``checkpoint``) on the warm-up inputs; -> max abs difference per
  signature, and whether the in-graph checks reject bad inputs."""
  loaded = tf.saved_model.load(export_dir)
  module = ServingModule(_float32_networks(checkpoint))
  differences = {}
  for name, inputs in warmup_inputs(batch).items():
    for suffix in ("", "_uint8"):
      fn = loaded.signatures[name + suffix]
      feed = dict(inputs)
      if suffix:
        feed = {k: (np.round((v + 1) * 127.5).astype(np.uint8) if k != "mask" else v)
                for k, v in inputs.items()}
      got = {k: v.numpy() for k, v in fn(**{k: tf.constant(v) for k, v in feed.items()}).items()}
      keras_in = {k: (tf.constant(v, tf.uint8) if v.dtype == np.uint8 else tf.constant(v))
                  for k, v in feed.items()}
      want = {k: v.numpy() for k, v in getattr(module, name)(**keras_in).items()}
      differences[name + suffix] = max(float(np.abs(got[k] - want[k]).max()) for k in want)
  rejects = {}
  bad_inputs = {
      "mask_values": ("mix", {**warmup_inputs(1)["mix"],
                              "mask": np.array([[0, 2, 0, 1]], np.float32)}),
      "mask_length": ("mix", {**warmup_inputs(1)["mix"], "mask": np.zeros([1, 3], np.float32)}),
      "channels": ("encode", {"images": np.zeros([1, 64, 64, 4], np.float32)}),
      "mask_batch": ("mix", {**warmup_inputs(2)["mix"], "mask": np.zeros([1, 4], np.float32)}),
      "non_finite": ("encode", {"images": np.full([1, 64, 64, 3], np.nan, np.float32)}),
      "out_of_range": ("encode", {"images": np.full([1, 64, 64, 3], 1e6, np.float32)}),
      "image_too_small": ("encode", {"images": np.zeros([1, 3, 3, 3], np.float32)}),
  }
  for label, (name, feed) in bad_inputs.items():
    try:
      loaded.signatures[name](**{k: tf.constant(v) for k, v in feed.items()})
      rejects[label] = None
    except tf.errors.InvalidArgumentError as e:
      found = re.search(r"assertion failed: \[(.*?)\]", e.message.replace("\\'", "'"))
      rejects[label] = found.group(1) if found else e.message.strip()[:200]
  return {"max_abs_difference": differences, "rejects_bad_inputs": rejects,
          "signatures": sorted(loaded.signatures.keys())}


def validate_export(export_dir: str, checkpoint: str, tolerance: float = 1e-4,
                    timeout: int = 600) -> dict[str, Any]:
  """The pusher's gate: load in a fresh process, compare with Keras, ``saved_model_cli``.

  Raises ``ExportValidationError`` (with what failed) unless every signature answers within
  ``tolerance`` of the Keras model, every bad input is rejected, ``saved_model_cli show --all``
  lists the signatures and ``saved_model_cli run`` answers ``mix``.
  """
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  import tempfile  # pylint: disable=import-outside-toplevel
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
  cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")

  from lorbms_tf import procs  # pylint: disable=import-outside-toplevel

  def start(command):
    try:
      return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env, **procs.child_kwargs())
    except OSError as e:  # no saved_model_cli, no memory to fork: not a verdict on the model
      raise ValidationNotRun(f"validating {export_dir!r}: cannot start {command[:3]}: {e}") from e

  def finish(process):
    try:
      out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
      process.kill()
      process.communicate()
      raise ValidationNotRun(f"validating {export_dir!r}: {process.args[:3]} did not finish "
                             f"within {timeout} s (a busy machine?); not a verdict on the "
                             "model: run the push again") from None
    if process.returncode < 0:  # killed by a signal (OOM killer, a shutdown): not the model
      raise ValidationNotRun(f"validating {export_dir!r}: {process.args[:3]} was killed by "
                             f"signal {-process.returncode}; run the push again")
    return process.returncode, out, err

  # The three checks are independent processes that each spend seconds importing TensorFlow:
  # started together, they overlap (the pusher's validation takes about half as long).
  with tempfile.TemporaryDirectory() as scratch:
    inputs = []
    for key, value in warmup_inputs(1)[DEFAULT_SIGNATURE].items():
      np.save(os.path.join(scratch, f"{key}.npy"), value)
      inputs.append(f"{key}={os.path.join(scratch, key + '.npy')}")
    commands = [
        [sys.executable, "-m", "lorbms_tf.export", "compare", export_dir, checkpoint],
        [cli, "show", "--dir", export_dir, "--all"],
        [cli, "run", "--dir", export_dir, "--tag_set", "serve",
         "--signature_def", DEFAULT_SIGNATURE, "--inputs", ";".join(inputs)]]
    children = []
    try:
      for command in commands:
        children.append(start(command))
      (compare_rc, compare_out, compare_err), (show_rc, show_out, _), (run_rc, run_out,
                                                                       run_err) = [
          finish(child) for child in children]
    finally:  # a check that failed to start or timed out: the others are not left running
      for child in children:
        if child.poll() is None:
          child.kill()
          child.communicate()
  if compare_rc != 0:
    raise ExportValidationError(f"loading {export_dir!r} in a fresh process failed: "
                                f"{compare_err.strip().splitlines()[-1:]}")
  report = json.loads(compare_out.strip().splitlines()[-1])
  problems = [f"{name}: max abs difference {diff:.3g} > {tolerance:g}"
              for name, diff in report["max_abs_difference"].items() if not diff <= tolerance]
  problems += [f"bad input '{label}' was accepted" for label, message
               in report["rejects_bad_inputs"].items() if message is None]
  listed = set(re.findall(r"signature_def\['(\w+)'\]", show_out))
  missing = {*SIGNATURES, "serving_default"} - listed
  if show_rc != 0 or missing:
    problems.append(f"saved_model_cli show --all does not list {sorted(missing)}")
  if run_rc != 0 or "image" not in run_out:
    problems.append(f"saved_model_cli run --signature_def mix failed: "
                    f"{(run_err or run_out).strip().splitlines()[-1:]}")
  report.update(saved_model_cli_signatures=sorted(listed), problems=problems,
                tolerance=tolerance)
  if problems:
    raise ExportValidationError("; ".join(problems))
  return report


class ExportValidationError(RuntimeError):
  """The export does not match the Keras model or does not load: it must not be served."""


class ValidationNotRun(RuntimeError):
  """The validation could not reach a verdict for a reason outside the model (a check timed
  out, was killed, or could not start): the push must fail and be retried, not be recorded
  as "not pushed"."""


def main(argv: list[str]) -> None:
  """``python -m lorbms_tf.export compare EXPORT_DIR CHECKPOINT`` (validate_export's child)."""
  if len(argv) != 3 or argv[0] != "compare":
    raise SystemExit("usage: python -m lorbms_tf.export compare EXPORT_DIR CHECKPOINT")
  print(json.dumps(compare_with_keras(argv[1], argv[2])))


if __name__ == "__main__":
  import sys as _sys
  main(_sys.argv[1:])
