"""Changed inputs are never mistaken for the old ones: content identities in step fingerprints,
resumes refused across data or objective, neighbour tables tied to their data, the pusher tied
to the evaluated checkpoint, and every bad TFRecord record counted."""

import dataclasses
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from components import base
from components import example_gen
from components import pusher as pusher_lib
from lorbms_tf import checkpoints, identity, train_lib
from lorbms_tf.data import quality, sources
from lorbms_tf.data.sources import SkipCounter


def _png(path, value=0):
  tf.io.write_file(str(path), tf.io.encode_png(tf.fill([8, 8, 3], tf.constant(value, tf.uint8))))


def test_folder_identity_follows_content_not_location(tmp_path):
  folder = tmp_path / "imgs"
  folder.mkdir()
  for i in range(3):
    _png(folder / f"{i}.png", i)
  first = identity.dataset_identity(f"folder:{folder}")
  assert first["files"] == 3 and identity.same_data(first, identity.dataset_identity(
      f"folder:{os.path.relpath(folder)}"))
  shutil.copytree(folder, tmp_path / "copy", copy_function=shutil.copy2)  # names, sizes, mtimes
  assert identity.same_data(first, identity.dataset_identity(f"folder:{tmp_path / 'copy'}"))
  _png(folder / "3.png")
  added = identity.dataset_identity(f"folder:{folder}")
  assert not identity.same_data(first, added)
  os.utime(folder / "0.png", ns=(1, 1))  # rewritten in place: another mtime
  assert not identity.same_data(added, identity.dataset_identity(f"folder:{folder}"))


def test_tfds_identity_is_the_prepared_version(scenes_data_dir, tmp_path):
  prepared = identity.dataset_identity("scenes/tiny", scenes_data_dir)
  assert prepared["versions"] and prepared["files"] > 1
  assert identity.dataset_identity("scenes/tiny", str(tmp_path)) == {"dataset": "scenes/tiny",
                                                                     "prepared": False}


def test_step_fingerprints_change_with_the_data_and_the_code(tmp_path, monkeypatch):
  folder = tmp_path / "imgs"
  folder.mkdir()
  _png(folder / "a.png")
  inputs = example_gen.ExampleGenInputs(dataset=f"folder:{folder}")
  out = tmp_path / "examples"
  base.write_artifact(str(out), "example_gen", *example_gen.step(inputs), lambda tmp: {})
  assert base.is_current(str(out), *example_gen.step(inputs))
  _png(folder / "b.png")  # an image added to the source: the step is no longer current
  assert not base.is_current(str(out), *example_gen.step(inputs))
  base.write_artifact(str(out), "example_gen", *example_gen.step(inputs), lambda tmp: {})
  assert base.is_current(str(out), *example_gen.step(inputs))
  assert base.read_record(str(out))["code_version"] == identity.code_version()
  monkeypatch.setattr(identity, "code_version", lambda: "edited")
  assert not base.is_current(str(out), *example_gen.step(inputs))


def test_flag_values_read_flagfiles_and_later_flags_win(tmp_path):
  flagfile = tmp_path / "x.flags"
  flagfile.write_text("# a comment\n--dataset=scenes/tiny\n--data_dir=/a\n")
  args = ("--dataset=coco", f"--flagfile={flagfile}", "--data_dir=/b")
  assert base.flag_values(args, ("dataset", "data_dir")) == {"dataset": "scenes/tiny",
                                                            "data_dir": "/b"}


def test_resume_changes_name_what_differs():
  before = {"dataset": "scenes", "batch_size": 16, "objective": {"cycle_weight": 1.0},
            "total_steps": 100, "data_identity": {"files": 3, "digest": "a"}}
  now = {**before, "objective": {"cycle_weight": 0.0}, "total_steps": 900}
  assert train_lib.resume_changes(before, now) == {
      "objective": [{"cycle_weight": 1.0}, {"cycle_weight": 0.0}]}  # longer: a resume
  assert set(train_lib.resume_changes(before, {**before, "data_identity": {"files": 4}})) == {
      "data_identity"}
  assert train_lib.resume_changes({"dataset": "scenes"}, now) == {}  # not recorded: not compared


def _tiny(workdir, data_dir, **overrides):
  config = dict(workdir=str(workdir), dataset="scenes/tiny", data_dir=data_dir, preset="tiny",
                batch_size=4, total_steps=2, checkpoint_every=2, log_every=1, image_every=100,
                seed=3)
  return train_lib.TrainConfig(**{**config, **overrides})


def test_a_resume_with_another_objective_is_refused_unless_allowed(tmp_path, scenes_data_dir):
  workdir = tmp_path / "run"
  train_lib.train(_tiny(workdir, scenes_data_dir))
  recorded = checkpoints.read_config(str(workdir))
  assert recorded["data_identity"]["versions"] and recorded["code_version"]
  other = _tiny(workdir, scenes_data_dir)
  other = dataclasses.replace(other, objective=dataclasses.replace(other.objective,
                                                                   cycle_weight=0.0))
  with pytest.raises(ValueError) as err:
    train_lib.train(other)
  message = str(err.value)
  assert "\n" not in message and "objective" in message and "--allow_resume_changes" in message
  assert checkpoints.read_config(str(workdir))["objective"]["cycle_weight"] == 1.0  # untouched
  # Allowed: the change is recorded (the run is at its last step already: nothing more to train).
  train_lib.train(dataclasses.replace(other, allow_resume_changes=True))
  recorded = checkpoints.read_config(str(workdir))
  assert [c["step"] for c in recorded["resume_changes"]] == [2]
  assert set(recorded["resume_changes"][0]["changed"]) == {"objective"}
  assert recorded["objective"]["cycle_weight"] == 0.0


def test_a_neighbour_table_for_other_data_is_refused(tmp_path, scenes_data_dir):
  config = _tiny(tmp_path / "run", scenes_data_dir)
  same = {"data_identity": identity.dataset_identity("scenes/tiny", scenes_data_dir)}
  train_lib.check_table_data(same, config)  # the data it was built for: accepted
  other = {"data_identity": {"dataset": "folder:/x", "files": 5, "bytes": 9, "digest": "f"}}
  with pytest.raises(ValueError, match="was built for 'folder:/x'.*rebuild it"):
    train_lib.check_table_data(other, config)


def test_the_pusher_exports_the_checkpoint_that_was_evaluated(tmp_path):
  model = tmp_path / "model"
  (model / "checkpoints").mkdir(parents=True)
  for step in (2, 4):
    (model / "checkpoints" / f"ckpt-{step}.index").write_text("")
  assert pusher_lib.export_source(str(model), "checkpoints/ckpt-2") == str(
      model / "checkpoints" / "ckpt-2")  # not the newer ckpt-4
  assert pusher_lib.export_source(str(model), None) == str(model)
  with pytest.raises(FileNotFoundError, match="blessed checkpoint 'checkpoints/ckpt-1'"):
    pusher_lib.export_source(str(model), "checkpoints/ckpt-1")


def _write_records(path, records):
  with tf.io.TFRecordWriter(str(path)) as writer:
    for features in records:
      writer.write(tf.train.Example(features=tf.train.Features(feature=features))
                   .SerializeToString())


def _bytes(v):
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))


def _ints(*v):
  return tf.train.Feature(int64_list=tf.train.Int64List(value=list(v)))


def test_malformed_tfrecord_records_are_counted_and_trip_the_share_limit(tmp_path):
  png = tf.io.encode_png(tf.zeros([64, 64, 3], tf.uint8)).numpy()
  records = [{"image": _bytes(png), "id": _ints(i)} for i in range(6)]
  records[1] = {"id": _ints(1)}  # no image
  records[3] = {"image": _ints(7), "id": _ints(3)}  # image of the wrong type
  records[4] = {"image": _bytes(png), "id": _ints(4, 5)}  # two ids
  path = tmp_path / "x.tfrecord"
  _write_records(path, records)
  counter = SkipCounter("train")
  n = sum(1 for _ in sources.load_source(f"tfrecord:{path}", skip_counter=counter))
  assert n == 3
  counts = counter.counts(final=True)
  assert counts["malformed"] == 3 and counts["passed"] == 3
  named = counter.new_skips()
  assert [reason for _, reason in named] == ["malformed"] * 3
  assert "record 1 of" in named[0][0] and "no 'image'" in named[0][0]
  assert "'image' is int64_list" in named[1][0] and "2 values" in named[2][0]
  assert counter.new_skips() == []  # each named once
  with pytest.raises(quality.DataError, match="3 of 6 images are bad.*malformed=3"):
    quality.SkipReport(counter, f"tfrecord:{path}", max_fraction=0.2).update(final=True)


def test_a_corrupt_tfrecord_file_is_counted(tmp_path):
  png = tf.io.encode_png(tf.zeros([64, 64, 3], tf.uint8)).numpy()
  path = tmp_path / "x.tfrecord"
  _write_records(path, [{"image": _bytes(png), "id": _ints(i)} for i in range(3)])
  data = path.read_bytes()
  path.write_bytes(data[:-10])  # the last record cut short
  found = sources.scan_tfrecords([str(path)], {"image": tf.io.FixedLenFeature([], tf.string)})
  assert len(found) == 1 and "after record 2" in found[0][0] and found[0][1] == "malformed"
