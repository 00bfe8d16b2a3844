"""TF-GAN's ``classifier_metrics`` on TF >= 2.16, without running TF-GAN's package ``__init__``.

Why this exists: ``import tensorflow_gan`` runs ``tensorflow_gan/__init__.py``, which imports
``tensorflow_gan.python.estimator`` and with it ``tf.estimator``, gone since TF 2.16. The
``tensorflow_gan.python.eval`` package ``__init__`` also imports ``inception_metrics`` ->
``tensorflow_hub`` -> ``pkg_resources`` (not installed). The module we need,
``classifier_metrics`` (FID, Inception score, KID in float64 with the unbiased covariance), only
imports ``tf``, ``tfp`` and its sibling ``eval_utils``.

So, for the duration of one import, we register *bare* package objects for ``tensorflow_gan``,
``tensorflow_gan.python`` and ``tensorflow_gan.python.eval`` (plain ``ModuleType`` objects whose
``__path__`` points at the real package folders, so the submodules load from their real files
but no package ``__init__`` runs), import the two submodules, and then put ``sys.modules`` back
the way it was. A later ``import tensorflow_gan`` elsewhere therefore behaves exactly as it
would have without us (it fails on TF 2.20, works where ``tf.estimator`` exists). Where TF-GAN
imports normally (TF < 2.16 with the estimator), the real package is used instead.

TF itself is never patched.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading
import types

_PACKAGES = ("tensorflow_gan", "tensorflow_gan.python", "tensorflow_gan.python.eval")
_MODULES = ("tensorflow_gan.python.eval.eval_utils",
            "tensorflow_gan.python.eval.classifier_metrics")

_lock = threading.Lock()
_cache: dict[str, types.ModuleType] = {}


def classifier_metrics() -> types.ModuleType:
  """Returns ``tensorflow_gan.python.eval.classifier_metrics`` (imported once, then cached)."""
  with _lock:
    if "classifier_metrics" not in _cache:
      _cache["classifier_metrics"] = _import_classifier_metrics()
    return _cache["classifier_metrics"]


def _real_import_works() -> bool:
  """True where ``import tensorflow_gan`` would succeed: TF still ships ``tf.estimator``.

  Checked without importing TF-GAN (a failed package import leaves half-initialised modules
  behind), from the one thing its ``__init__`` needs that TF >= 2.16 lacks.
  """
  if "tensorflow_gan" in sys.modules and hasattr(sys.modules["tensorflow_gan"], "eval"):
    return True  # someone already imported the real package successfully
  if importlib.util.find_spec("tensorflow_estimator") is None:
    return False
  if importlib.util.find_spec("tensorflow_hub") is None:
    return False
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  return hasattr(tf, "estimator")


def _import_classifier_metrics() -> types.ModuleType:
  name = "tensorflow_gan.python.eval.classifier_metrics"
  if name in sys.modules:
    return sys.modules[name]
  if _real_import_works():
    return importlib.import_module(name)

  spec = importlib.util.find_spec("tensorflow_gan")
  if spec is None or spec.origin is None:
    raise ImportError("tensorflow-gan is not installed (pip install tensorflow-gan==2.1.0)")
  root = os.path.dirname(spec.origin)
  folders = {
      "tensorflow_gan": root,
      "tensorflow_gan.python": os.path.join(root, "python"),
      "tensorflow_gan.python.eval": os.path.join(root, "python", "eval"),
  }
  touched = _PACKAGES + _MODULES
  saved = {key: sys.modules[key] for key in touched if key in sys.modules}
  try:
    for package in _PACKAGES:
      bare = types.ModuleType(package, "bare package registered by lorbms_tf.eval.tfgan_compat")
      bare.__path__ = [folders[package]]  # makes it a package: submodules load from here
      bare.__package__ = package
      sys.modules[package] = bare
    importlib.import_module(_MODULES[0])
    return importlib.import_module(name)
  finally:
    # Put sys.modules back as it was, so no later import sees our bare packages. The module
    # objects we return keep working: they hold direct references to what they imported.
    for key in touched:
      if key in saved:
        sys.modules[key] = saved[key]
      else:
        sys.modules.pop(key, None)


def frechet_distance(activations1, activations2):
  """FID from two [N, D] activation matrices: TF-GAN, float64, unbiased covariance."""
  return classifier_metrics().frechet_classifier_distance_from_activations(
      activations1, activations2)


def classifier_score(logits):
  """Inception-style score from [N, K] logits (TF-GAN, float64)."""
  return classifier_metrics().classifier_score_from_logits(logits)


def kernel_distance_and_std(activations1, activations2, max_block_size: int = 1024):
  """KID and its standard error from two [N, D] activation matrices (TF-GAN)."""
  return classifier_metrics().kernel_classifier_distance_and_std_from_activations(
      activations1, activations2, max_block_size=max_block_size)
