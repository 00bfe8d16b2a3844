"""What an input *is*, cheaply: content identities of datasets and of the code.

A step's fingerprint (components/base.py), a run's config.json and a neighbour table's record
carry these, so that an edited image folder, a rewritten TFRecord, a re-prepared tfds dataset or
changed code is never mistaken for what was there before. Identities hash file names, sizes and
modification times (not contents: a 20 GB folder must not be read to decide that a step is
current); the code's identity hashes the package sources' contents. Plain ``os`` only: the
pipeline's parent process never imports TensorFlow.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import json
import os
from typing import Any, Iterable

_PACKAGES = ("lorbms_tf", "components")
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _digest(lines: Iterable[str]) -> str:
  h = hashlib.sha256()
  for line in lines:
    h.update(line.encode())
    h.update(b"\n")
  return h.hexdigest()[:16]


def files_identity(paths: Iterable[str], root: str | None = None) -> dict[str, Any]:
  """{"files", "bytes", "digest"} of regular files: names (relative to root), sizes, mtimes."""
  entries = []
  for path in sorted(paths):
    stat = os.stat(path)
    name = os.path.relpath(path, root) if root else path
    entries.append((name, stat.st_size, stat.st_mtime_ns))
  return {"files": len(entries), "bytes": sum(size for _, size, _ in entries),
          "digest": _digest(f"{n}\t{s}\t{m}" for n, s, m in entries)}


def _tree_files(root: str) -> list[str]:
  return [os.path.join(d, name) for d, _, names in os.walk(root) for name in names]


def tfds_data_dir(data_dir: str | None) -> str:
  """The tfds data dir a builder uses: the argument, $TFDS_DATA_DIR or ~/tensorflow_datasets."""
  return os.path.expanduser(data_dir or os.environ.get("TFDS_DATA_DIR")
                            or "~/tensorflow_datasets")


def dataset_identity(spec: str, data_dir: str | None = None) -> dict[str, Any]:
  """The content identity of a ``--dataset`` value (lorbms_tf.data.sources specs).

  folder:PATH and tfrecord:GLOB: their files (the TFRecords' sidecar included); a tfds name:
  the prepared version directories under the data dir (every file, dataset_info.json among
  them), or ``"prepared": False``. Remote (``gs://``) locations are identified by name only.
  """
  from lorbms_tf.data import sources  # pylint: disable=import-outside-toplevel
  parsed = sources.parse_dataset_spec(spec)
  out: dict[str, Any] = {"dataset": str(parsed)}
  if "://" in parsed.location:
    return {**out, "remote": True}
  if parsed.kind == "folder":
    if not os.path.isdir(parsed.location):
      return {**out, "missing": True}
    return {**out, **files_identity(_tree_files(parsed.location), parsed.location)}
  if parsed.kind == "tfrecord":
    files = glob.glob(parsed.location)
    if files:
      sidecar = sources._features_path(sources._SHARD_RE.sub("", sorted(files)[0]))  # noqa: SLF001
      files += [sidecar] if os.path.exists(sidecar) else []
    return {**out, **files_identity(files, os.path.dirname(parsed.location) or ".")}
  root = os.path.join(tfds_data_dir(data_dir), parsed.location)
  versions = sorted(d for d in glob.glob(os.path.join(root, "*"))
                    if os.path.isfile(os.path.join(d, "dataset_info.json")))
  if not versions:
    return {**out, "prepared": False}
  files = [f for d in versions for f in _tree_files(d)]
  return {**out, "versions": [os.path.basename(d) for d in versions],
          **files_identity(files, root)}


def same_data(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
  """Whether two dataset identities name the same data, wherever it lies (unknown on either
  side, or a remote location: assumed so)."""
  if not a or not b or a.get("remote") or b.get("remote"):
    return True
  keys = ("files", "bytes", "digest", "versions", "prepared", "missing")
  return all(a.get(k) == b.get(k) for k in keys)


@functools.lru_cache(maxsize=None)
def code_version() -> str:
  """A hash of the package sources (lorbms_tf/, components/): changes with any code edit."""
  lines = []
  for package in _PACKAGES:
    for path in sorted(glob.glob(os.path.join(_ROOT, package, "**", "*.py"), recursive=True)):
      with open(path, "rb") as f:
        lines.append(f"{os.path.relpath(path, _ROOT)}\t{hashlib.sha256(f.read()).hexdigest()}")
  return _digest(lines)


def describe(identity: dict[str, Any]) -> str:
  """One short line for error messages."""
  return json.dumps({k: v for k, v in identity.items() if k != "dataset"}, sort_keys=True)
