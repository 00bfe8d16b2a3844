"""One writer per directory (lorbms_tf/locks.py) and children that die with their parent."""

import os
import signal
import subprocess
import sys
import time

import pytest

from lorbms_tf import locks

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

HOLDER = r'''
import sys, time
from lorbms_tf import locks
locks.DirectoryLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(60)
'''


@pytest.fixture
def holder(tmp_path):
  """Another process holding the lock of tmp_path/busy; -> (dir, process)."""
  busy = str(tmp_path / "busy")
  process = subprocess.Popen([sys.executable, "-c", HOLDER, busy, "--some-flag"], cwd=REPO,
                             stdout=subprocess.PIPE, text=True)
  assert process.stdout.readline().strip() == "locked"
  yield busy, process
  if process.poll() is None:
    process.kill()
    process.wait()


def test_a_second_process_is_refused_with_the_holder_named(holder):
  busy, process = holder
  with pytest.raises(locks.DirectoryInUse) as error:
    locks.DirectoryLock(busy).acquire()
  message = str(error.value)
  assert message.startswith(f"{busy} is in use by pid {process.pid} on ")
  assert "--some-flag" in message and "\n" not in message
  # The kernel drops the lock with its holder, however it dies: a rerun is not blocked.
  process.kill()
  process.wait()
  with locks.DirectoryLock(busy):
    pass


def test_a_waiting_lock_gets_it_when_the_holder_ends(holder):
  busy, process = holder
  start = time.monotonic()
  subprocess.Popen(["sh", "-c", f"sleep 0.5; kill {process.pid}"])
  with locks.DirectoryLock(busy, wait=20):
    assert time.monotonic() - start >= 0.4


def test_the_lock_is_reentrant_in_one_process_and_per_directory(tmp_path):
  outer = locks.DirectoryLock(str(tmp_path)).acquire()
  with locks.DirectoryLock(str(tmp_path)):  # e.g. write_artifact under the pipeline's lock
    pass
  with locks.DirectoryLock(str(tmp_path / "model.tmp")):  # a child's work dir: its own lock
    pass
  outer.release()
  assert locks._held == {}


def test_pipeline_study_and_training_refuse_a_locked_directory(holder):
  busy, process = holder
  from components import pipeline
  from lorbms_tf import study, train_lib
  with pytest.raises(locks.DirectoryInUse, match=f"pid {process.pid}"):
    pipeline.run_pipeline(pipeline.PipelineConfig(pipeline_root=busy), log=lambda _: None)
  with pytest.raises(locks.DirectoryInUse, match=f"pid {process.pid}"):
    study.run_study(study.StudyConfig(busy, (study.Variant("full"),), (0,)), log=lambda _: None)
  with pytest.raises(locks.DirectoryInUse, match=f"pid {process.pid}"):
    train_lib.train(train_lib.TrainConfig(workdir=busy))
  assert sorted(os.listdir(busy)) == [locks.LOCK_FILE]  # nothing was written


def test_a_locked_component_cli_fails_with_one_line(holder):
  """A user error: one line naming the holder, exit status 2 (lorbms_tf/cli.py)."""
  busy, process = holder
  done = subprocess.run(
      [sys.executable, "-m", "components.evaluator", f"--model={busy}",
       f"--output_dir={os.path.join(busy, 'evaluation')}"],
      cwd=REPO, capture_output=True, text=True, timeout=120)
  assert done.returncode == 2, done.stderr[-2000:]
  last = done.stderr.strip().splitlines()[-1]
  assert f"is in use by pid {process.pid}" in last


PARENT = r'''
import subprocess, sys, time
from lorbms_tf import procs
child = subprocess.Popen(["sleep", "60"], **procs.child_kwargs())
print(child.pid, flush=True)
time.sleep(60)
'''


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_child_dies_with_its_killed_parent():
  parent = subprocess.Popen([sys.executable, "-c", PARENT], cwd=REPO, stdout=subprocess.PIPE,
                            text=True)
  child = int(parent.stdout.readline())
  os.kill(child, 0)  # running
  parent.kill()  # SIGKILL: the parent cannot clean up
  parent.wait()
  deadline = time.monotonic() + 10
  while time.monotonic() < deadline:
    try:
      os.kill(child, 0)
    except ProcessLookupError:
      break
    # A zombie (re-parented to a reaper that has not reaped yet) counts as dead.
    try:
      with open(f"/proc/{child}/stat") as f:
        if f.read().split(")")[-1].split()[0] == "Z":
          break
    except FileNotFoundError:
      break
    time.sleep(0.05)
  else:
    os.kill(child, signal.SIGKILL)
    pytest.fail("the child outlived its parent")
