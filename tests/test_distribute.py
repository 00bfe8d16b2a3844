"""tf.distribute: MirroredStrategy on 2 logical CPUs equals one device; two local workers train."""

import json
import math
import os
import socket
import subprocess
import sys

from lorbms_tf import checkpoints

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def _free_ports(n):
  sockets = [socket.socket() for _ in range(n)]
  for s in sockets:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def test_multi_worker_training_on_two_local_processes(tmp_path, scenes_data_dir):
  workdir = str(tmp_path / "run")
  cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
  procs = []
  for index in range(2):
    env = {**ENV, "TF_CONFIG": json.dumps({"cluster": cluster,
                                           "task": {"type": "worker", "index": index}})}
    procs.append(subprocess.Popen(
        [sys.executable, "-m", "lorbms_tf.train", "--flagfile=configs/smoke.flags",
         "--strategy=multi_worker", f"--workdir={workdir}", f"--data_dir={scenes_data_dir}"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
  try:
    errors = [p.communicate(timeout=400)[1] for p in procs]
  finally:
    for p in procs:
      p.kill()
  for p, err in zip(procs, errors):
    assert p.returncode == 0, err[-3000:]
  assert "num_workers = 2" in errors[0] or "MultiWorkerMirroredStrategy" in errors[0]
  assert [s for s, _ in checkpoints.list_checkpoints(workdir)] == [2, 4]  # written by the chief
  assert not os.path.exists(os.path.join(workdir, "worker_tmp_1"))
  with open(os.path.join(workdir, "train_summary.json")) as f:
    assert json.load(f)["step"] == 4


def test_mirrored_training_run_and_step_equal_to_single_device(tmp_path, scenes_data_dir):
  # One separate process (logical devices must be configured before TF initialises) for both:
  # one step against a single device, then the full training run under MirroredStrategy.
  workdir = str(tmp_path / "run")
  result = subprocess.run([sys.executable, "tests/scripts/mirrored_fit.py", workdir, scenes_data_dir],
                          cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  step_report, run_report = (json.loads(line) for line in result.stdout.strip().splitlines()[-2:])
  assert run_report["replicas"] == 2 and run_report["step"] == 4
  assert run_report["checkpoints"] == [2, 4] and math.isfinite(run_report["g_loss"])
  assert os.path.exists(os.path.join(workdir, checkpoints.GRIDS_DIR, "mixed_scenes.png"))
  assert step_report["replicas"] == 2
  # SGD steps are proportional to gradients: a wrong replica scaling or unsynchronised batch
  # norm would show as differences of the order of the change itself.
  assert step_report["trainable_change"] > 1e-2
  assert step_report["trainable_diff"] < 1e-4 * max(1.0, step_report["trainable_change"]), step_report
  assert step_report["all_weights_diff"] < 1e-4, step_report
