"""Kill-safe writes (lorbms_tf/atomic.py) and the artifact writers that use them."""

import json
import os
import signal
import subprocess
import sys
import types

import pytest

from lorbms_tf import atomic

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _leftovers(folder):
  return [name for name in os.listdir(folder) if name.endswith(".tmp") or ".tmp" in name]


def test_writes_replace_whole_files_and_leave_no_temporary(tmp_path):
  path = str(tmp_path / "a" / "metrics.json")
  atomic.write_json(path, {"x": 1})
  atomic.write_json(path, {"x": 2}, indent=1, sort_keys=True)
  assert json.load(open(path)) == {"x": 2}
  atomic.write_text(str(tmp_path / "report.md"), "# hi\n")
  atomic.write_bytes(str(tmp_path / "b.bin"), b"\x00\x01")
  assert (tmp_path / "report.md").read_text() == "# hi\n"
  assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
  assert _leftovers(tmp_path) == [] and _leftovers(tmp_path / "a") == []
  umask = os.umask(0)
  os.umask(umask)
  assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600


def test_a_failed_write_keeps_the_old_content(tmp_path):
  path = str(tmp_path / "train_summary.json")
  atomic.write_json(path, {"step": 1})
  with pytest.raises(RuntimeError):
    with atomic.open_atomic(path) as f:
      f.write('{"step": 2, "half')
      raise RuntimeError("killed")
  with pytest.raises(TypeError):  # not serialisable: nothing is written at all
    atomic.write_json(path, {"step": object()})
  assert json.load(open(path)) == {"step": 1}
  assert _leftovers(tmp_path) == []


def test_a_process_killed_mid_write_leaves_no_partial_target(tmp_path):
  """SIGKILL inside the write: the target holds the previous version, never half a file."""
  path = tmp_path / "study.json"
  code = (f"import os, signal; from lorbms_tf import atomic\n"
          f"atomic.write_json({str(path)!r}, {{'v': 1}})\n"
          f"with atomic.open_atomic({str(path)!r}) as f:\n"
          f"  f.write('{{\"v\": 2, ' + 'x' * 100000)\n"
          f"  f.flush()\n"
          f"  os.kill(os.getpid(), signal.SIGKILL)\n")
  done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True)
  assert done.returncode == -signal.SIGKILL
  assert json.load(open(path)) == {"v": 1}
  # A killed first write leaves no target at all.
  fresh = tmp_path / "fresh.json"
  code = code.replace(f"atomic.write_json({str(path)!r}, {{'v': 1}})\n", "").replace(
      str(path), str(fresh))
  subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True)
  assert not fresh.exists()


def test_rename_no_replace_never_replaces_an_empty_folder(tmp_path):
  """os.rename silently replaces an empty folder on Linux: a claim must not."""
  src, dst = tmp_path / "src", tmp_path / "dst"
  src.mkdir()
  (src / "f").write_text("new")
  dst.mkdir()  # another writer's claim
  with pytest.raises(FileExistsError):
    atomic.rename_no_replace(str(src), str(dst))
  assert os.listdir(dst) == [] and (src / "f").exists()
  atomic.rename_no_replace(str(src), str(tmp_path / "free"))
  assert (tmp_path / "free" / "f").read_text() == "new"


def test_copy_tree_is_whole_or_refused(tmp_path):
  src = tmp_path / "src"
  (src / "variables").mkdir(parents=True)
  (src / "saved_model.pb").write_bytes(b"pb")
  (src / "variables" / "v").write_bytes(b"vv")
  dst = tmp_path / "out" / "1"
  atomic.copy_tree(str(src), str(dst))
  assert (dst / "variables" / "v").read_bytes() == b"vv"
  with pytest.raises(FileExistsError):
    atomic.copy_tree(str(src), str(dst))
  assert sorted(os.listdir(tmp_path / "out")) == ["1"]  # no temporary folder left


def test_scene_classifier_cache_is_never_half_written(tmp_path):
  """The shared .h5 cache is trusted when it exists: a save that dies leaves no file there."""
  from lorbms_tf.eval import image_metrics
  path = str(tmp_path / "cache" / "scene_classifier_1x1_k.weights.h5")

  def dying_save(target):
    assert target != path and target.endswith(".weights.h5")
    with open(target, "wb") as f:
      f.write(b"half an h5")
    raise OSError("disk full")

  fake = types.SimpleNamespace(model=types.SimpleNamespace(save_weights=dying_save))
  with pytest.raises(OSError):
    image_metrics.SceneClassifier.save(fake, path)
  assert os.listdir(tmp_path / "cache") == []

  def good_save(target):
    with open(target, "wb") as f:
      f.write(b"whole")
  fake = types.SimpleNamespace(model=types.SimpleNamespace(save_weights=good_save))
  image_metrics.SceneClassifier.save(fake, path)
  assert os.listdir(tmp_path / "cache") == [os.path.basename(path)]


def test_a_torn_eval_history_line_is_skipped_and_not_glued_to(tmp_path):
  from lorbms_tf import callbacks
  path = tmp_path / callbacks.EVAL_HISTORY_FILE
  path.write_text(json.dumps({"step": 2, "a": 1.0}) + "\n" + '{"step": 4, "a"')
  assert [row["step"] for row in callbacks.read_eval_history(str(tmp_path))] == [2]
  cb = callbacks.EvalCallback(types.SimpleNamespace(run=lambda model: {"a": 3.0}),
                              _NullWriter(), str(tmp_path), every=2)
  cb.set_model(types.SimpleNamespace(iteration=_Var(4)))
  cb.evaluate()
  assert [row["step"] for row in callbacks.read_eval_history(str(tmp_path))] == [2, 4]


class _Var:
  def __init__(self, value):
    self.value = value

  def numpy(self):
    return self.value


class _NullWriter:
  def as_default(self, step=None):
    import contextlib
    return contextlib.nullcontext()

  def flush(self):
    pass
