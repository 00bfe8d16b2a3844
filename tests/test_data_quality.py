"""Bad input data made visible: every reason counted per file, each bad file named once, the
share limit, and one-line errors from every CLI for the inputs a user gets wrong."""

import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from lorbms_tf import checkpoints, train_lib
from lorbms_tf.data import quality, sources
from lorbms_tf.data.sources import DecodeOptions, SkipCounter

import image_files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BAD = {name: reason for name, reason in image_files.MESSY_FILES.items() if reason}


@pytest.fixture
def messy(tmp_path):
  return image_files.write_messy_folder(tmp_path / "imgs")


def _good_folder(root, n):
  root.mkdir(parents=True, exist_ok=True)
  for i in range(n):
    (root / f"good_{i:02d}.jpg").write_bytes(
        image_files.encode(image_files.smooth_rgb(72, 80, i), "JPEG"))
  return str(root)


def _expected_counts(passed):
  counts = {reason: 0 for reason in SkipCounter.REASONS}
  for reason in BAD.values():
    counts[reason] += 1
  return {**counts, "passed": passed}


def test_end_marker_rule():
  good = image_files.encode(image_files.smooth_rgb(64, 64), "JPEG")
  png = image_files.encode(image_files.smooth_rgb(64, 64), "PNG")
  gif = image_files.encode(image_files.smooth_rgb(64, 64).convert("P"), "GIF")
  bmp = image_files.encode(image_files.smooth_rgb(64, 64), "BMP")
  for data, fmt in [(good, 1), (png, 2), (gif, 3), (bmp, 4)]:
    assert bool(sources.has_end_marker(tf.constant(data), fmt))
    assert not bool(sources.has_end_marker(tf.constant(data[:len(data) // 2]), fmt)), fmt
  # Up to 256 bytes of padding after the JPEG end marker are fine.
  assert bool(sources.has_end_marker(tf.constant(good + b"\x00" * 200), 1))


def test_every_reason_is_counted_once_per_file_over_epochs(messy):
  path, readable = messy
  counter = SkipCounter("test")
  ds = sources.load_source("folder:" + path, skip_counter=counter,
                           options=DecodeOptions(min_size=32), shuffle_seed=3).repeat(3)
  images = sum(1 for _ in ds)
  assert images == 3 * len(readable)
  assert counter.tracked and counter.num_examples == len(image_files.MESSY_FILES)
  assert counter.counts(final=True) == _expected_counts(len(readable))
  # Each bad file is named once, with its reason; a second call names nothing new.
  named = {os.path.relpath(name, path): reason for name, reason in counter.new_skips()}
  assert named == BAD
  assert counter.new_skips() == []
  # A file found bad is not read again: 3 reads of each good file, about 1 of each bad one
  # (a decode error is only known once the next example has come through).
  reads = int(counter._seen.numpy())
  assert 3 * len(readable) + len(BAD) <= reads <= 3 * len(readable) + len(BAD) + 1


def test_untracked_source_counts_events(messy, tmp_path):
  path, readable = messy
  # TFRecords without a sidecar carry no size: counts are events, decode errors still exact.
  files = sources.list_image_files(path)
  with tf.io.TFRecordWriter(str(tmp_path / "x.tfrecord")) as writer:
    for f in files:
      feature = {"image": tf.train.Feature(bytes_list=tf.train.BytesList(
          value=[open(f, "rb").read()]))}
      writer.write(tf.train.Example(features=tf.train.Features(
          feature=feature)).SerializeToString())
  counter = SkipCounter()
  n = sum(1 for _ in sources.load_source(f"tfrecord:{tmp_path}/x.tfrecord", skip_counter=counter,
                                         options=DecodeOptions(min_size=32)))
  assert n == len(readable) and not counter.tracked
  assert counter.counts(final=True) == _expected_counts(len(readable))


def test_share_limit_and_no_usable_images(messy, tmp_path):
  path, readable = messy
  counter = SkipCounter("train")
  report = quality.SkipReport(counter, "folder:" + path, max_fraction=0.5)
  list(sources.load_source("folder:" + path, skip_counter=counter,
                           options=DecodeOptions(min_size=32)))
  counts = report.update(final=True)  # 6 of 13 bad: under half
  assert counts["skipped"] == len(BAD) and counts["passed"] == len(readable)
  strict = quality.SkipReport(counter, "folder:" + path, max_fraction=0.1)
  strict.first_bad = ["x (truncated)"]
  with pytest.raises(quality.DataError) as err:
    strict.check(strict.counts(final=True))
  message = str(err.value)
  assert "\n" not in message and "6 of 13 images are bad" in message
  assert "--max_skipped_fraction=0.1" in message and "x (truncated)" in message
  with pytest.raises(ValueError, match="max_skipped_fraction"):
    quality.SkipReport(counter, "x", max_fraction=1.5)


def _tiny_run(workdir, dataset, **overrides):
  settings = dict(preset="tiny", batch_size=4, total_steps=4, checkpoint_every=4, log_every=2,
                  image_every=4)
  return train_lib.TrainConfig(workdir=str(workdir), dataset=dataset, **{**settings, **overrides})


def test_training_names_bad_files_once_and_reports_counts(messy, tmp_path, caplog):
  path, readable = messy
  _good_folder(tmp_path / "imgs" / "more", 7)  # 14 good of 20: 6 bad = 30%
  caplog.set_level(logging.WARNING)
  summary = train_lib.train(_tiny_run(tmp_path / "run", "folder:" + path,
                                      max_skipped_fraction=0.4, total_steps=12))
  assert summary["data"] == {**_expected_counts(len(readable) + 7), "skipped": len(BAD)}
  warnings = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
  for name, reason in BAD.items():  # 12 steps x 4 = 48 images: over 3 epochs, named once
    hits = [w for w in warnings if w.endswith(f"{os.path.join(path, name)} ({reason})")]
    assert len(hits) == 1, (name, warnings)
  events = tf.compat.v1.train.summary_iterator
  tags = {v.tag for f in tf.io.gfile.glob(str(tmp_path / "run" / "tb" / "events*"))
          for e in events(f) for v in e.summary.value}
  assert {"data/passed", "data/skipped/truncated", "data/skipped/decode_error"} <= tags
  with open(tmp_path / "run" / "train_summary.json") as f:
    assert json.load(f)["data"]["truncated"] == 2


def test_training_stops_past_the_share_limit(messy, tmp_path):
  path, _ = messy
  with pytest.raises(quality.DataError) as err:
    train_lib.train(_tiny_run(tmp_path / "run", "folder:" + path, max_skipped_fraction=0.2))
  assert "of 13 images are bad" in str(err.value) and "\n" not in str(err.value)


def test_training_on_a_folder_without_a_usable_image(tmp_path):
  root = tmp_path / "bad"
  root.mkdir()
  (root / "a.jpg").write_bytes(b"")
  (root / "b.png").write_bytes(b"nope")
  with pytest.raises(quality.DataError, match=r"no usable images .*unreadable=2.*a\.jpg"):
    train_lib.train(_tiny_run(tmp_path / "run", f"folder:{root}"))


# CLI errors: one line, exit status 2, the traceback only with --verbosity=1 ---------------------

def _cli(module, *args):
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TFDS_DISABLE_GCS": "1"}
  return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=240)


def _one_line_error(result, *phrases):
  assert result.returncode == 2, result.stderr[-2000:]
  assert "Traceback" not in result.stderr, result.stderr[-2000:]
  last = result.stderr.strip().splitlines()[-1]
  assert ": error: " in last, result.stderr[-2000:]
  for phrase in phrases:
    assert phrase in last, last
  return last


@pytest.fixture(scope="module")
def other_preset_workdir(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("tiny_run"))
  checkpoints.write_config(workdir, _tiny_run(workdir, "scenes").to_dict())
  return workdir


@pytest.mark.parametrize("args,phrases", [
    (["--dataset=folder:/no/such/folder"], ["'/no/such/folder' does not exist"]),
    (["--dataset=imagenet"], ["unknown dataset 'imagenet'", "valid values"]),
    (["--batch_size=0"], ["batch_size must be >= 1"]),
    (["--max_skipped_fraction=2"], ["max_skipped_fraction must be in [0, 1]"]),
])
def test_train_cli_errors_are_one_line(tmp_path, args, phrases):
  last = _one_line_error(_cli("lorbms_tf.train", f"--workdir={tmp_path / 'run'}", *args), *phrases)
  assert last.startswith("lorbms_tf.train: error: "), last


def test_flag_parsing_errors_name_the_flag_without_a_traceback(tmp_path):
  # absl's parser checks enums and types itself: its message plus one line pointing to --help.
  result = _cli("lorbms_tf.train", f"--workdir={tmp_path}", "--precision=fp8")
  assert result.returncode != 0 and "Traceback" not in result.stderr
  assert "flag --precision=fp8: value should be one of" in result.stderr


def test_train_cli_refuses_a_work_dir_of_another_preset(other_preset_workdir):
  _one_line_error(_cli("lorbms_tf.train", f"--workdir={other_preset_workdir}",
                       "--dataset=scenes", "--preset=small"),
                  "other networks", "use a new --workdir")


def test_train_cli_bad_data_error_and_traceback_with_verbosity(tmp_path):
  root = tmp_path / "bad"
  root.mkdir()
  (root / "a.jpg").write_bytes(b"")
  args = [f"--workdir={tmp_path / 'run'}", f"--dataset=folder:{root}", "--preset=tiny"]
  _one_line_error(_cli("lorbms_tf.train", *args), "no usable images", "a.jpg")
  verbose = _cli("lorbms_tf.train", *args, "--verbosity=1")
  assert verbose.returncode != 0 and "Traceback" in verbose.stderr


def test_other_clis_errors_are_one_line(tmp_path):
  _one_line_error(_cli("lorbms_tf.evaluate", f"--workdir={tmp_path / 'nothing'}"),
                  "neither a lorbms_tf work dir nor a checkpoint")
  last = _one_line_error(_cli("components.similarity", "--dataset=folder:/no/such/folder",
                              f"--output_dir={tmp_path / 'out'}"), "does not exist")
  assert last.startswith("components.similarity: error: "), last  # the module typed, not __main__
  _one_line_error(_cli("lorbms_tf.render", f"--workdir={tmp_path}", "--reference=x.png",
                       "--donors=y.png", "--mask=0012"), "mask")
  result = _cli("lorbms_tf.ablate")
  assert result.returncode != 0 and "Traceback" not in result.stderr
  assert "--study_dir" in result.stderr.strip().splitlines()[-1]
