"""Pipeline components: atomic artifacts, fingerprints, the local chain's skip and re-run
logic, and each step's CLI on tiny data."""

import json
import os
import subprocess
import sys

import pytest

from components import base, evaluator

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_TRAIN = ("--flagfile=configs/smoke.flags", "--total_steps=2", "--checkpoint_every=2",
              "--deterministic")
TINY_EVAL = ("--dataset=scenes/tiny", "--num_eval_images=16", "--probe_train_images=24",
             "--probe_epochs=1", "--scene_classifier_scenes=32", "--scene_classifier_epochs=1",
             "--noover_checkpoints", "--grid_examples=4", "--supervised_steps=0")


def test_artifacts_are_atomic_and_fingerprinted(tmp_path):
  out = str(tmp_path / "artifact")

  def body(tmp):
    with open(os.path.join(tmp, "data.txt"), "w") as f:
      f.write("v1")
    return {"counts": {"n": 1}, "files": [os.path.join(tmp, "data.txt")], "dir": tmp}

  record = base.write_artifact(out, "test", {"a": 1}, {}, body)
  # Paths inside OUTPUT.tmp are recorded where the rename puts them.
  assert record["files"] == [os.path.join(out, "data.txt")] and record["dir"] == out
  assert base.read_record(out)["files"] == record["files"]
  assert base.is_current(out, {"a": 1}, {}) and not base.is_current(out, {"a": 2}, {})
  assert record["fingerprint"] == base.read_record(out)["fingerprint"]

  def killed(tmp):
    with open(os.path.join(tmp, "data.txt"), "w") as f:
      f.write("half")
    raise KeyboardInterrupt  # a step killed mid-write

  with pytest.raises(KeyboardInterrupt):
    base.write_artifact(out, "test", {"a": 2}, {}, killed)
  assert open(os.path.join(out, "data.txt")).read() == "v1"  # the old artifact is intact
  assert base.is_current(out, {"a": 1}, {})
  # Downstream fingerprints follow upstream ones.
  down = str(tmp_path / "down")
  base.write_artifact(down, "test", {}, {"up": out}, lambda tmp: {})
  assert base.is_current(down, {}, {"up": out})
  base.write_artifact(out, "test", {"a": 3}, {}, body)
  assert not base.is_current(down, {}, {"up": out})


def test_trainer_keeps_the_light_evaluation_for_scenes_examples(tmp_path):
  from components import trainer
  for source, expected in (("scenes/tiny", "--eval_dataset=scenes/tiny"),
                           ("folder:/photos", "--eval_every=0")):
    examples = tmp_path / source.replace("/", "_").replace(":", "_")
    base.write_artifact(str(examples), "example_gen", {"dataset": source}, {}, lambda tmp: {})
    command = trainer.train_command(trainer.TrainerInputs(str(examples)), "w")
    assert command[-1] == expected and command[-2].startswith("--dataset=tfrecord:")


def test_a_child_step_user_error_stays_a_one_line_user_error():
  error = base.child_failed("training", 2, "noise\ntrain.py: error: lr_decay_steps must be in "
                            "[0, total_steps=20], got 350\n", "/x/train.log")
  assert isinstance(error, ValueError) and "\n" not in str(error)
  assert str(error) == ("training failed (exit 2): train.py: error: lr_decay_steps must be in "
                        "[0, total_steps=20], got 350 (log: /x/train.log)")
  crash = base.child_failed("evaluation", -9, "")
  assert isinstance(crash, RuntimeError) and not isinstance(crash, ValueError)


def test_blessing_thresholds():
  metrics = {"reconstruction": {"l1_direct": 0.12}, "mask_classifier": {"accuracy": 0.5}}
  blessing = evaluator.bless(metrics, ("reconstruction.l1_direct<=0.15",
                                       "mask_classifier.accuracy>=0.6"))
  assert not blessing["blessed"] and "mask_classifier.accuracy = 0.5" in blessing["reason"]
  assert evaluator.bless(metrics, ("reconstruction.l1_direct<=0.15",))["blessed"]
  with pytest.raises(ValueError, match="METRIC<=VALUE"):
    evaluator.parse_threshold("l1 < 3")
  with pytest.raises(KeyError, match="no 'probes.x'"):
    evaluator.bless(metrics, ("probes.x>=1",))


# The local chain's run, skip and rerun-downstream logic is exercised, killed and rerun, by
# tests/test_faults.py.


def test_component_clis(tmp_path, scenes_data_dir):
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}

  def cli(module, *args):
    result = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout

  examples = str(tmp_path / "examples")
  counts = json.loads(cli("components.example_gen", "--dataset=scenes/tiny",
                          f"--data_dir={scenes_data_dir}", "--limit=32", "--num_shards=2",
                          f"--output_dir={examples}").strip().splitlines()[-1])
  assert counts["written"] == 32 and counts["skipped"] == 0
  model = str(tmp_path / "model")
  summary = json.loads(cli("components.trainer", f"--examples={examples}",
                           f"--output_dir={model}", "--", *TINY_TRAIN,
                           f"--data_dir={scenes_data_dir}").strip().splitlines()[-1])
  assert summary["step"] == 2 and base.read_record(model)["producer"] == "trainer"
  evaluation = str(tmp_path / "evaluation")
  blessing = json.loads(cli("components.evaluator", f"--model={model}",
                            f"--output_dir={evaluation}",
                            "--threshold=mask_classifier.accuracy>=0", "--", *TINY_EVAL,
                            f"--data_dir={scenes_data_dir}").strip().splitlines()[-1])
  assert blessing["blessed"] and os.path.exists(os.path.join(evaluation, "report.md"))


def test_kubeflow_spec_compiles_with_five_wired_steps(tmp_path):
  import yaml
  from components import kfp_pipeline
  spec = yaml.safe_load(open(kfp_pipeline.compile_pipeline(str(tmp_path / "p.yaml"),
                                                           image="registry/lorbms_tf:1")))
  tasks = spec["root"]["dag"]["tasks"]
  assert set(tasks) == {"example-gen", "similarity", "trainer", "evaluator", "pusher"}
  wiring = {name: {key: value["taskOutputArtifact"]["producerTask"]
                   for key, value in task.get("inputs", {}).get("artifacts", {}).items()}
            for name, task in tasks.items()}
  assert wiring == {"example-gen": {}, "similarity": {"examples": "example-gen"},
                    "trainer": {"examples": "example-gen", "neighbours": "similarity"},
                    "evaluator": {"model": "trainer"},
                    "pusher": {"model": "trainer", "evaluation": "evaluator"}}
  commands = {name: spec["deploymentSpec"]["executors"][f"exec-{name}"]["container"]["command"]
              for name in tasks}
  assert commands["trainer"] == ["python", "-m", "components.trainer"]
  assert spec["deploymentSpec"]["executors"]["exec-pusher"]["container"]["image"] == (
      "registry/lorbms_tf:1")
