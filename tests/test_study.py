"""The ablation/sweep runner: variants, commands, resuming an interrupted study, the table."""

import json
import os
import subprocess
import sys

import pytest

from lorbms_tf import study

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Stands in for `python -m lorbms_tf.train`: writes what a finished run writes, with metrics
# that depend on the seed and on --rec_weight, and counts its invocations.
FAKE_TRAINER = r'''
import json, os, sys
args = dict(a[2:].split("=", 1) for a in sys.argv[3:] if a.startswith("--") and "=" in a)
workdir, seed = args["workdir"], int(args["seed"])
os.makedirs(workdir, exist_ok=True)
with open(os.path.join(workdir, "calls"), "a") as f:
  f.write("1\n")
if os.environ.get("FAKE_FAIL_SEED") == str(seed):
  sys.exit(3)
rec = float(args.get("rec_weight", 1))
rows = []
for step in (2, 4):
  m = {"rec_l1": 0.3 - 0.1 * rec - 0.01 * seed, "shape_probe": 0.4 + 0.01 * seed,
       "colour_probe": 0.9, "fidelity_shape": 0.5, "fidelity_object": 0.4 + 0.01 * step,
       "fidelity_informative": 0.3 + 0.01 * step, "mask_cls_accuracy": 0.7, "scenes_fid": 100.0 - step}
  rows.append(json.dumps({"step": step, **m}))
open(os.path.join(workdir, "eval_history.jsonl"), "w").write("\n".join(rows) + "\n")
json.dump({"step": 4, "seconds": 1.0, "images_per_second": 10.0 + seed},
          open(os.path.join(workdir, "train_summary.json"), "w"))
'''


@pytest.fixture
def fake_python(tmp_path):
  script = tmp_path / "fake_train.py"
  script.write_text(FAKE_TRAINER)
  wrapper = tmp_path / "python"
  # The study runs `PYTHON -m lorbms_tf.train ARGS`: the wrapper drops "-m module".
  wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} {script} \"$@\"\n")
  wrapper.chmod(0o755)
  return str(wrapper)


def _calls(workdir):
  with open(os.path.join(workdir, "calls")) as f:
    return len(f.read().split())


def test_variants_parse_builtins_and_custom_flag_sets():
  assert study.parse_variant("no_adv").flags == ("--adv_weight=0",)
  custom = study.parse_variant("bn=--encoder_norm=batch --decoder_norm=batch")
  assert custom == study.Variant("bn", ("--encoder_norm=batch", "--decoder_norm=batch"))
  with pytest.raises(ValueError, match="unknown variant 'nope'"):
    study.parse_variant("nope")
  with pytest.raises(ValueError, match="must be a --flag"):
    study.parse_variant("x=encoder_norm=batch")
  with pytest.raises(ValueError, match="sets --workdir and --seed"):
    study.StudyConfig("d", (study.Variant("full"),), (0,), ("--seed=3",))


def test_run_command_puts_the_variant_after_the_shared_flags(tmp_path):
  config = study.StudyConfig(str(tmp_path), (study.parse_variant("no_cls"),), (7,),
                             ("--flagfile=configs/smoke.flags", "--cls_weight=0.5"))
  command = study.train_command(config, config.variants[0], 7)
  assert command[1:3] == ["-m", "lorbms_tf.train"]
  # absl keeps the last value of a repeated flag: the variant's must come after the study's.
  assert command.index("--cls_weight=0") > command.index("--cls_weight=0.5")
  assert f"--workdir={tmp_path}/no_cls/seed_7" in command and "--seed=7" in command
  assert any(a.startswith("--eval_every=") for a in command)  # always an evaluation at the end


def test_an_interrupted_study_runs_only_what_is_missing(tmp_path, fake_python, monkeypatch):
  variants = (study.parse_variant("full"), study.parse_variant("no_rec"))
  config = study.StudyConfig(str(tmp_path), variants, (0, 1), python=fake_python)
  monkeypatch.setenv("FAKE_FAIL_SEED", "1")
  with pytest.raises(RuntimeError, match="run full seed 1 failed"):
    study.run_study(config, log=lambda _: None)
  assert study.read_result(study.run_dir(config, variants[0], 0)) is not None
  monkeypatch.delenv("FAKE_FAIL_SEED")
  results = study.run_study(config, log=lambda _: None)
  assert _calls(study.run_dir(config, variants[0], 0)) == 1  # finished: not run again
  assert _calls(study.run_dir(config, variants[0], 1)) == 2  # failed once, then completed
  assert [(r["variant"], r["seed"]) for r in results] == [
      ("full", 0), ("no_rec", 0), ("full", 1), ("no_rec", 1)]  # seed-major
  # fidelity_object rose and scenes_fid fell from step 2 to 4: nothing regressed.
  assert all(r["regressed_since_previous_eval"] == [] for r in results)

  summary = study.summarize(config, results, {"random encoder": [
      {"shape_probe": 0.3, "colour_probe": 0.5}, {"shape_probe": 0.32, "colour_probe": 0.55}]})
  full = summary["variants"]["full"]
  assert full["rec_l1"]["mean"] == pytest.approx(0.195)  # seeds 0, 1: 0.2 and 0.19
  assert full["rec_l1"]["sd"] == pytest.approx(0.00707, abs=1e-4)  # sample SD
  assert summary["variants"]["no_rec"]["rec_l1"]["mean"] == pytest.approx(0.295)
  on_disk = json.load(open(tmp_path / "study.json"))
  assert on_disk["variants"]["no_rec"]["flags"] == ["--rec_weight=0"]
  table = (tmp_path / "study.md").read_text()
  assert "| full | 2 | 0.195 +- 0.007 | 40.5 +- 0.7 |" in table
  assert "| random encoder | 2 | " in table


def test_a_run_that_got_worse_at_its_last_evaluation_is_flagged(tmp_path):
  rows = [{"step": 2, "rec_l1": 0.2, "shape_probe": 0.5, "colour_probe": 0.9,
           "fidelity_shape": 0.5, "fidelity_object": 0.5, "fidelity_informative": 0.4,
           "mask_cls_accuracy": 0.7, "scenes_fid": 10.0}]
  rows.append({**rows[0], "step": 4, "colour_probe": 0.8, "rec_l1": 0.1})
  (tmp_path / "eval_history.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
  (tmp_path / "train_summary.json").write_text(json.dumps({"step": 4}))
  result = study.finish_run(str(tmp_path), ["cmd"])
  assert result["regressed_since_previous_eval"] == ["colour_probe"]
  (tmp_path / "train_summary.json").write_text(json.dumps({"step": 6}))
  with pytest.raises(RuntimeError, match="no evaluation at the final step 6"):
    study.finish_run(str(tmp_path), ["cmd"])


@pytest.mark.slow
def test_ablate_cli_trains_evaluates_and_tabulates(tmp_path, scenes_data_dir):
  study_dir = tmp_path / "study"
  command = [sys.executable, "-m", "lorbms_tf.ablate", "--flagfile=configs/smoke.flags",
             f"--data_dir={scenes_data_dir}", f"--study_dir={study_dir}", "--seeds=1",
             "--variants=no_adv", "--total_steps=2", "--checkpoint_every=2",
             "--eval_classifier_scenes=64", "--eval_classifier_epochs=1", "--supervised_steps=3"]
  done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  result = json.load(open(study_dir / "no_adv" / "seed_0" / "result.json"))
  assert result["step"] == 2 and "--adv_weight=0" in result["command"]
  assert 0 <= result["metrics"]["colour_probe"] <= 1
  summary = json.load(open(study_dir / "study.json"))
  assert set(summary["baselines"]) == {"raw pixels (8x8x3 per quadrant)", "random encoder",
                                       "supervised encoder (3 steps on the labels)"}
  assert "| no_adv | 1 |" in done.stdout
