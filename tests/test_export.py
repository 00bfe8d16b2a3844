"""SavedModel export for TF Serving, its validation, publishing, and the pusher component."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from components import pusher
from lorbms_tf import export


@pytest.fixture(scope="module")
def exported(smoke_workdir, tmp_path_factory):
  export_dir = str(tmp_path_factory.mktemp("export") / "model")
  record = export.export_saved_model(smoke_workdir, export_dir, model_name="lorbms")
  return export_dir, record


def test_export_matches_keras_rejects_bad_inputs_and_warms_up(exported, smoke_workdir):
  export_dir, record = exported
  assert not os.path.exists(export_dir + ".tmp")
  assert set(record["signatures"]) >= {*export.SIGNATURES, "serving_default", "mix_uint8"}
  report = export.compare_with_keras(export_dir, smoke_workdir)
  for name, difference in report["max_abs_difference"].items():
    assert difference <= 1e-5, name
  rejects = report["rejects_bad_inputs"]
  assert "'mask' must hold only 0 and 1" in rejects["mask_values"]
  assert "'mask' must have 4 values" in rejects["mask_length"]
  assert "'images' must have 3 channels" in rejects["channels"]
  assert "'mask' must have one row per 'reference'" in rejects["mask_batch"]
  assert "'images' must be finite" in rejects["non_finite"]
  assert "'images' must be float32 within -1..1" in rejects["out_of_range"]
  assert "'images' must be at least 16x16" in rejects["image_too_small"]
  # Any size: a 100x80 uint8 image is cut and resized in the graph.
  loaded = tf.saved_model.load(export_dir)
  chunks = loaded.signatures["encode_uint8"](images=tf.zeros([2, 100, 80, 3], tf.uint8))["chunks"]
  assert chunks.shape[:3] == (2, 2, 2)
  # The warm-up file parses and every request runs against the loaded model.
  requests = export.read_warmup_requests(export_dir)
  assert sorted(name for name, _ in requests) == sorted(export.SIGNATURES)
  for name, inputs in requests:
    outputs = loaded.signatures[name](**{k: tf.constant(v) for k, v in inputs.items()})
    assert all(np.isfinite(v.numpy()).all() for v in outputs.values())
  with pytest.raises(FileExistsError):
    export.export_saved_model(smoke_workdir, export_dir)


def test_publish_versions_are_integers_and_immutable(exported, tmp_path):
  export_dir, _ = exported
  base = str(tmp_path / "saved_models" / "lorbms")
  assert export.publish(export_dir, base).endswith("/1")
  assert export.publish(export_dir, base).endswith("/2")
  assert export.list_versions(base) == [1, 2] and sorted(os.listdir(base)) == ["1", "2"]
  with pytest.raises(FileExistsError, match="immutable"):
    export.publish(export_dir, base, version=2)


def test_pusher_pushes_only_blessed_and_valid_exports(exported, smoke_workdir, tmp_path,
                                                     monkeypatch):
  base = str(tmp_path / "saved_models" / "lorbms")
  out = pusher.run(pusher.PusherInputs(smoke_workdir, base), str(tmp_path / "push1"))
  assert out.pushed and out.version == 1 and export.list_versions(base) == [1]
  with open(out.record) as f:
    record = json.load(f)
  assert set(record["validation"]["saved_model_cli_signatures"]) >= set(export.SIGNATURES)
  # The same checkpoint again (a pusher killed after publishing, before its record): it is
  # found among the served versions, not published twice.
  again = pusher.run(pusher.PusherInputs(smoke_workdir, base), str(tmp_path / "push1b"))
  assert again.pushed and again.version == 1 and "already pushed" in again.reason
  assert export.list_versions(base) == [1]
  # A model the evaluator did not bless is not exported at all.
  blessing = tmp_path / "evaluator"
  blessing.mkdir()
  (blessing / "blessing.json").write_text(json.dumps({"blessed": False, "reason": "fid 900 > 500"}))
  out = pusher.run(pusher.PusherInputs(smoke_workdir, base, blessing=str(blessing)),
                   str(tmp_path / "push2"))
  assert not out.pushed and "not blessed" in out.reason
  # An export that fails validation is not published, and the version already served stays.
  # (validate_export itself ran for real above; here it fails as it would on a bad export.)
  # (The export itself is the module's, copied: it is not what is under test here.)
  def failing(*args, **kwargs):
    raise export.ExportValidationError("mix: max abs difference 0.5 > 0.0001")
  monkeypatch.setattr(export, "validate_export", failing)
  monkeypatch.setattr(export, "export_saved_model",
                      lambda checkpoint, staging, **kwargs: shutil.copytree(exported[0], staging)
                      and exported[1])
  monkeypatch.setattr(export, "version_of", lambda *args: None)  # as for a new checkpoint
  out = pusher.run(pusher.PusherInputs(smoke_workdir, base), str(tmp_path / "push3"))
  assert not out.pushed and "failed validation" in out.reason
  assert export.list_versions(base) == [1]


def test_pusher_cli_refuses_an_unblessed_model(smoke_workdir, tmp_path):
  """The CLI an orchestrator runs: exit status 1 and nothing published when not blessed."""
  blessing = tmp_path / "evaluation"
  blessing.mkdir()
  (blessing / "blessing.json").write_text(json.dumps({"blessed": False, "reason": "l1 0.3"}))
  base = tmp_path / "saved_models" / "lorbms"
  result = subprocess.run(
      [sys.executable, "-m", "components.pusher", f"--model={smoke_workdir}",
       f"--push_destination={base}", f"--blessing={blessing}", f"--output_dir={tmp_path / 'p'}"],
      cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), capture_output=True,
      text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
  assert result.returncode == 1, result.stderr[-2000:]
  out = json.loads(result.stdout[result.stdout.index("{"):])
  assert not out["pushed"] and "not blessed (l1 0.3)" in out["reason"]
  assert not base.exists() or export.list_versions(str(base)) == []

