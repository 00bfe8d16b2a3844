"""Fault injection: the smoke pipeline SIGKILLed at many points across its steps (inside
writes, between renames, mid-training, mid-publish), rerun after each kill. It always finishes;
after every kill each artifact there is whole, and the push destination holds complete versions
only, never a duplicate. (Two pipelines on one root: test_locks.py; concurrent pushers:
test_publish.py.)"""

import json
import os
import subprocess
import sys

import pytest

from components import base

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DRIVER = os.path.join(REPO, "tests", "scripts", "fault_pipeline.py")
TRAIN = ("--flagfile=configs/smoke.flags", "--total_steps=2", "--checkpoint_every=1",
         "--deterministic")
EVAL = ("--dataset=scenes/tiny", "--num_eval_images=16", "--probe_train_images=24",
        "--probe_epochs=1", "--scene_classifier_scenes=32", "--scene_classifier_epochs=1",
        "--noover_checkpoints", "--grid_examples=4", "--supervised_steps=0")
ARTIFACTS = ("examples", "model", "evaluation", "pusher")
# In the order the chain passes them (lorbms_tf/faults.py names them where they are).
# (A run killed after its last step but before train_summary.json: test_training.py.)
KILLS = (
    "write.before_rename:record.json",          # inside a write: example_gen's record
    "artifact.complete:example_gen",            # complete .tmp, not yet renamed into place
    "checkpoint.saved:1",                       # the trainer child, mid-training
    "publish.copied",                           # copied beside the versions, not yet claimed
    "pusher.published",                         # published, not yet recorded
)
# Then a stricter blessing reruns the evaluation over the existing one: killed between the
# two renames of its swap (the old artifact moved aside, the new one not yet in place).
STRICT_KILLS = ("artifact.moved_aside:evaluator",)


def _check_whole(root, destination):
  """Every artifact present has its record; every served version is complete."""
  checked = 0
  for name in ARTIFACTS:
    path = os.path.join(root, name)
    if os.path.exists(path):
      record = base.read_record(path)
      assert record is not None and record["fingerprint"], f"{name} has no record"
      checked += 1
  versions = [v for v in (os.listdir(destination) if os.path.isdir(destination) else [])
              if not v.startswith(".")]
  for version in versions:
    assert version.isdigit(), f"{version!r} served beside the versions"
    for part in ("saved_model.pb", "variables", os.path.join("assets.extra", "export.json")):
      assert os.path.exists(os.path.join(destination, version, part)), (version, part)
  return checked, versions


def test_killed_anywhere_the_pipeline_finishes_whole_on_rerun(tmp_path, scenes_data_dir):
  root, destination = str(tmp_path / "root"), str(tmp_path / "saved_models" / "lorbms")
  data = (f"--data_dir={scenes_data_dir}",)
  fields = dict(pipeline_root=root, dataset="scenes/tiny", data_dir=scenes_data_dir,
                example_limit=32, train_args=TRAIN + data, eval_args=EVAL + data,
                thresholds=["reconstruction.l1_direct<=1.0"], push_destination=destination)
  config = tmp_path / "config.json"

  def run(kill=None, **changes):
    config.write_text(json.dumps({**fields, **changes}))
    env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("LORBMS_KILL_AT", None)
    if kill:
      env["LORBMS_KILL_AT"] = kill
    proc = subprocess.run([sys.executable, DRIVER, str(config)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    return proc.returncode, proc.stdout, proc.stderr

  survived, checked = 0, 0

  def kill_and_check(kills, **changes):
    nonlocal survived, checked
    for kill in kills:
      code, _, err = run(kill, **changes)
      assert code == -9, f"{kill}: the point was not reached (exit {code}): {err[-2000:]}"
      survived += 1
      artifacts, versions = _check_whole(root, destination)
      checked += artifacts
      assert len(versions) <= 1, f"after {kill}: a duplicate version {versions}"

  def finish(**changes):
    code, out, err = run(**changes)
    assert code == 0, err[-3000:]
    steps = [line for line in err.splitlines() + out.splitlines() if "[pipeline]" in line]
    return json.loads(out.strip().splitlines()[-1]), steps

  kill_and_check(KILLS)
  result, _ = finish()
  assert result == {"pushed": True, "blessed": True}
  records = {name: base.read_record(os.path.join(root, name)) for name in ARTIFACTS}
  assert records["examples"]["counts"]["written"] == 32
  summary = records["model"]["train_summary"]
  assert summary["step"] == 2
  model_dir = os.path.join(root, "model")  # where it ended up, not the .tmp it trained in
  assert summary["workdir"] == model_dir
  with open(os.path.join(model_dir, "config.json")) as f:
    assert json.load(f)["workdir"] == model_dir
  push = records["pusher"]["push"]
  assert push["pushed"] and push["version"] == 1 and "already pushed" in push["reason"]
  assert push["record"] == os.path.join(root, "pusher", "record.json")
  # The evaluated checkpoint is the one exported.
  blessing = records["evaluation"]["blessing"]
  assert blessing["checkpoint"] == os.path.join("checkpoints", "ckpt-2")
  # Unchanged: every step is skipped.
  _, steps = finish()
  assert sum("unchanged, skipped" in line for line in steps) == 4, steps
  # A stricter blessing reruns the evaluation and the pusher, not the upstream steps; the
  # model is no longer blessed, so nothing new is pushed.
  strict = {"thresholds": ["reconstruction.l1_direct<=0.0001"]}
  kill_and_check(STRICT_KILLS, **strict)
  result, steps = finish(**strict)
  assert result == {"pushed": False, "blessed": False}
  assert [line.split("] ")[1].split(":")[0] for line in steps if "skipped" in line] == [
      "examples", "model"], steps
  artifacts, versions = _check_whole(root, destination)
  assert artifacts == len(ARTIFACTS) and versions == ["1"]
  assert not any(os.path.exists(os.path.join(root, f"{n}.{s}")) for n in ARTIFACTS
                 for s in ("tmp", "old"))
  print(f"fault injection: {survived} kills survived, {checked + artifacts} artifacts checked")
