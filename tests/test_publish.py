"""Atomic publishing (export.publish): whole versions only, any number of pushers."""

import os
import threading

import pytest

from lorbms_tf import export

@pytest.fixture
def fake_export(tmp_path):
  """A folder shaped like a SavedModel (publish copies files; it does not load them)."""
  root = tmp_path / "export"
  (root / "variables").mkdir(parents=True)
  (root / "assets.extra").mkdir()
  (root / "saved_model.pb").write_bytes(os.urandom(4096))
  (root / "variables" / "variables.data-00000-of-00001").write_bytes(os.urandom(1 << 20))
  (root / "variables" / "variables.index").write_bytes(b"index")
  (root / "assets.extra" / "export.json").write_text("{}")
  return str(root)


def _tree(path):
  out = {}
  for folder, _, names in os.walk(path):
    for name in names:
      full = os.path.join(folder, name)
      with open(full, "rb") as f:
        out[os.path.relpath(full, path)] = f.read()
  return out


def test_concurrent_pushers_publish_distinct_complete_versions(fake_export, tmp_path):
  base = str(tmp_path / "saved_models" / "lorbms")
  paths, errors = [], []

  def push():
    try:
      paths.append(export.publish(fake_export, base))
    except Exception as e:  # pylint: disable=broad-except
      errors.append(e)

  threads = [threading.Thread(target=push) for _ in range(6)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert not errors
  assert sorted(int(os.path.basename(p)) for p in paths) == [1, 2, 3, 4, 5, 6]
  assert sorted(os.listdir(base)) == ["1", "2", "3", "4", "5", "6"]  # no temporary left
  want = _tree(fake_export)
  assert all(_tree(p) == want for p in paths)


def test_two_pusher_processes_get_two_complete_versions(fake_export, tmp_path):
  """Two forked pushers released at once (publish makes no TensorFlow call: fork is safe)."""
  base = str(tmp_path / "saved_models" / "lorbms")
  gate_r, gate_w = os.pipe()
  children = []
  for _ in range(2):
    pid = os.fork()
    if pid == 0:  # the child: wait for the gate, publish, report by exit status
      code = 1
      try:
        os.close(gate_w)
        os.read(gate_r, 1)
        export.publish(fake_export, base)
        code = 0
      finally:
        os._exit(code)  # pylint: disable=protected-access
    children.append(pid)
  os.close(gate_r)
  os.write(gate_w, b"go")  # one byte each
  os.close(gate_w)
  statuses = [os.waitpid(pid, 0)[1] for pid in children]
  assert statuses == [0, 0]
  assert sorted(os.listdir(base)) == ["1", "2"]
  assert all(_tree(os.path.join(base, v)) == _tree(fake_export) for v in ("1", "2"))


def test_a_version_claimed_meanwhile_is_never_replaced(fake_export, tmp_path, monkeypatch):
  """Another host's pusher took version 1 (an empty folder so far) between our listing and
  our rename: os.rename would have replaced it; publish takes 2 instead."""
  base = tmp_path / "lorbms"
  base.mkdir()
  calls = []
  real = export.next_version

  def racing_next_version(path):
    calls.append(path)
    if len(calls) == 1:
      (base / "1").mkdir()  # the other pusher's claim, after we looked
      return 1
    return real(path)

  monkeypatch.setattr(export, "next_version", racing_next_version)
  path = export.publish(fake_export, str(base))
  assert os.path.basename(path) == "2" and os.listdir(base / "1") == []
  assert _tree(path) == _tree(fake_export)
  with pytest.raises(FileExistsError, match="immutable"):
    export.publish(fake_export, str(base), version=1)


def test_a_failed_copy_publishes_nothing(fake_export, tmp_path, monkeypatch):
  base = tmp_path / "lorbms"
  from lorbms_tf import atomic

  def dying_sync(path):
    raise OSError("disk full")

  monkeypatch.setattr(atomic, "fsync_tree", dying_sync)  # after the copy, before the rename
  with pytest.raises(Exception, match="disk full"):
    export.publish(fake_export, str(base))
  assert os.listdir(base) == [] and export.list_versions(str(base)) == []


def test_a_remote_destination_is_refused_not_written_locally(fake_export, tmp_path,
                                                             monkeypatch):
  monkeypatch.chdir(tmp_path)
  with pytest.raises(ValueError, match="gs://bucket/models/lorbms.*remote"):
    export.publish(fake_export, "gs://bucket/models/lorbms")
  assert not os.path.exists(tmp_path / "gs:")


def test_a_validation_without_verdict_fails_the_push_instead_of_being_recorded(
    fake_export, tmp_path, monkeypatch):
  """A check that times out says nothing about the model: validate_export raises
  ValidationNotRun, the pusher writes no record (the step is retried next run)."""
  with pytest.raises(export.ValidationNotRun, match="did not finish within"):
    export.validate_export(fake_export, str(tmp_path / "no_checkpoint"), timeout=0.01)

  from components import pusher
  import shutil
  monkeypatch.setattr(export, "export_saved_model",
                      lambda checkpoint, staging, **kw: shutil.copytree(fake_export, staging)
                      and {})

  def no_verdict(*args, **kwargs):
    raise export.ValidationNotRun("saved_model_cli did not finish within 600 s")
  monkeypatch.setattr(export, "validate_export", no_verdict)
  out = tmp_path / "pusher"
  base = tmp_path / "saved_models" / "lorbms"
  with pytest.raises(export.ValidationNotRun):
    pusher.run(pusher.PusherInputs("workdir", str(base)), str(out))
  assert not (out / "record.json").exists() and export.list_versions(str(base)) == []


def test_the_pipeline_fails_when_a_blessed_model_was_not_pushed():
  from components import pipeline
  blessed = {"evaluation": {"blessing": {"blessed": True}}}
  assert pipeline.blessed_but_not_pushed({**blessed, "pusher": {"push": {"pushed": False}}})
  assert not pipeline.blessed_but_not_pushed({**blessed, "pusher": {"push": {"pushed": True}}})
  assert not pipeline.blessed_but_not_pushed({"evaluation": {"blessing": {"blessed": False}},
                                              "pusher": {"push": {"pushed": False}}})
