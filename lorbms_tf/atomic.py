"""Kill-safe file writes: a file (or a folder tree) appears whole at its path, or not at all.

Every write goes to a uniquely named temporary sibling (same directory, so the same file
system), is flushed and ``fsync``ed, and is renamed over the target with ``os.replace`` (atomic
on POSIX); the directory is synced afterwards so the rename itself survives a power cut. A
process killed mid-write leaves the previous content (or nothing) at the target, plus at most
a ``.NAME.*.tmp`` file that the next write of the same target does not depend on.

Local paths only: ``gs://`` and other URL-style paths go through ``tf.io.gfile`` (whose
``GFile`` writes an object in one piece on close), see ``is_remote``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from typing import Any, Iterator

from lorbms_tf import faults

_REMOTE_PREFIXES = ("gs://", "s3://", "hdfs://", "http://", "https://")


def is_remote(path: str) -> bool:
  """Whether ``path`` names a remote (URL-style) location rather than a local file."""
  return "://" in str(path) or str(path).startswith(_REMOTE_PREFIXES)


def fsync_dir(path: str) -> None:
  """Syncs a directory's entries (a rename into it) to disk; no-op where unsupported."""
  try:
    fd = os.open(path or ".", os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:
    pass
  finally:
    os.close(fd)


@contextlib.contextmanager
def open_atomic(path: str, mode: str = "w", **kwargs) -> Iterator[Any]:
  """``with open_atomic(path) as f: f.write(...)``: ``path`` is replaced only when the block
  ends without an exception (the temporary file is removed on one)."""
  if mode not in ("w", "wb"):
    raise ValueError(f"open_atomic writes whole files: mode 'w' or 'wb', not {mode!r}")
  path = os.fspath(path)
  if is_remote(path):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    with tf.io.gfile.GFile(path, mode) as f:
      yield f
    return
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
  try:
    with os.fdopen(fd, mode, **kwargs) as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    _keep_mode(tmp, path)
    faults.point(f"write.before_rename:{os.path.basename(path)}")
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.unlink(tmp)
    raise
  fsync_dir(directory)


def _keep_mode(tmp: str, path: str) -> None:
  """mkstemp makes 0600 files: give the new file the target's mode, or the umask default."""
  try:
    mode = os.stat(path).st_mode & 0o777
  except FileNotFoundError:
    umask = os.umask(0)
    os.umask(umask)
    mode = 0o666 & ~umask
  os.chmod(tmp, mode)


def write_text(path: str, text: str) -> str:
  with open_atomic(path, "w") as f:
    f.write(text)
  return path


def write_bytes(path: str, data: bytes) -> str:
  with open_atomic(path, "wb") as f:
    f.write(data)
  return path


def write_json(path: str, value: Any, **dump_kwargs) -> str:
  """``json.dump(value, **dump_kwargs)`` (indent=2 by default) to ``path``, atomically; the
  value is serialised first, so an unserialisable value leaves the target untouched."""
  dump_kwargs.setdefault("indent", 2)
  text = json.dumps(value, **dump_kwargs)
  return write_text(path, text + "\n")


def temp_path(path: str) -> str:
  """A fresh, unused sibling path for a writer that needs a file name (``save_weights``):
  write it, then ``commit(tmp, path)``. Keeps ``path``'s suffix (Keras checks it)."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  base = os.path.basename(path)
  suffix = ".weights.h5" if base.endswith(".weights.h5") else os.path.splitext(base)[1]
  fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp" + suffix, dir=directory)
  os.close(fd)
  os.unlink(tmp)  # the writer creates it; the unique name stays ours (nobody else picks it)
  return tmp


def commit(tmp: str, path: str) -> str:
  """fsyncs the file ``tmp`` and renames it over ``path`` (see ``temp_path``)."""
  fsync_file(tmp)
  os.replace(tmp, path)
  fsync_dir(os.path.dirname(os.path.abspath(path)))
  return path


def fsync_file(path: str) -> None:
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def fsync_tree(root: str) -> None:
  """fsyncs every file and folder under ``root`` (before renaming it into place)."""
  for folder, _, names in os.walk(root):
    for name in names:
      path = os.path.join(folder, name)
      if not os.path.islink(path):
        fsync_file(path)
    fsync_dir(folder)


def copy_tree(src: str, dst: str) -> str:
  """Copies the folder ``src`` to ``dst``, which must not exist, atomically: into a unique
  temporary sibling, synced, then renamed to ``dst`` with a rename that never replaces (a
  ``dst`` created meanwhile by someone else makes this raise ``FileExistsError``)."""
  parent = os.path.dirname(os.path.abspath(dst))
  os.makedirs(parent, exist_ok=True)
  if os.path.lexists(dst):
    raise FileExistsError(f"{dst!r} exists; copy_tree never replaces")
  tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(dst)}.", suffix=".tmp", dir=parent)
  try:
    staged = os.path.join(tmp, "tree")
    shutil.copytree(src, staged)
    fsync_tree(staged)
    rename_no_replace(staged, dst)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  fsync_dir(parent)
  return dst


def rename_no_replace(src: str, dst: str) -> None:
  """Renames ``src`` to ``dst``; raises ``FileExistsError`` if ``dst`` exists, atomically.

  ``os.rename`` of a folder silently replaces an *empty* folder at ``dst`` on Linux (and a
  file replaces a file), so it cannot claim a name. Linux's ``renameat2(RENAME_NOREPLACE)``
  can; elsewhere a hard link (files) or a fresh ``mkdir`` claim first (folders) does.
  """
  if _renameat2_noreplace(src, dst):
    return
  if os.path.isdir(src) and not os.path.islink(src):
    os.mkdir(dst)  # claims the name (FileExistsError if taken); then replace our empty claim
    try:
      os.rename(src, dst)
    except BaseException:
      with contextlib.suppress(OSError):
        os.rmdir(dst)
      raise
  else:
    os.link(src, dst)  # FileExistsError if taken
    os.unlink(src)


_RENAME_NOREPLACE = 1
_AT_FDCWD = -100
_renameat2 = None


def _renameat2_noreplace(src: str, dst: str) -> bool:
  """True when renamed; False when the system has no renameat2 (then the caller falls back);
  raises FileExistsError / OSError as the rename does."""
  global _renameat2  # pylint: disable=global-statement
  import sys  # pylint: disable=import-outside-toplevel
  if not sys.platform.startswith("linux") or _renameat2 is False:
    return False
  if _renameat2 is None:
    import ctypes  # pylint: disable=import-outside-toplevel
    try:
      libc = ctypes.CDLL(None, use_errno=True)
      fn = libc.renameat2
      fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
      fn.restype = ctypes.c_int
      _renameat2 = fn
    except (OSError, AttributeError):
      _renameat2 = False
      return False
  import ctypes  # pylint: disable=import-outside-toplevel
  result = _renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE)
  if result == 0:
    return True
  errno = ctypes.get_errno()
  import errno as errnos  # pylint: disable=import-outside-toplevel
  if errno in (errnos.ENOSYS, errnos.EINVAL):  # old kernel or a file system without it
    _renameat2 = False
    return False
  raise OSError(errno, os.strerror(errno), dst) if errno != errnos.EEXIST else FileExistsError(
      errno, os.strerror(errno), dst)
