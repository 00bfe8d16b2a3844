"""The LORBMS train step and the training run: gradients, learning, checkpoints, resume, errors."""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from lorbms_tf import callbacks, checkpoints, train_lib
from lorbms_tf.lorbms import LorbmsConfig, LorbmsModel
from lorbms_tf.models import get_preset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_model(**objective):
  keras.utils.set_random_seed(0)
  model = LorbmsModel(get_preset("tiny"), LorbmsConfig(**objective))
  model.compile(keras.optimizers.Adam(1e-3, beta_1=0.5), keras.optimizers.Adam(1e-3, beta_1=0.5),
                keras.optimizers.Adam(1e-3, beta_1=0.5))
  return model


def scenes_batch(n=8):
  from lorbms_tf.data.scenes import generate_scenes
  images = generate_scenes(n, 64, seed=3)["image"].astype(np.float32) / 127.5 - 1.0
  return {"image": tf.constant(images)}


@pytest.mark.parametrize("partners", ["batch", "index"])
def test_every_network_gets_gradients_from_its_own_loss(partners):
  model = tiny_model(threshold=0.5 if partners == "index" else None)
  data = scenes_batch(4)
  if partners == "index":
    data["candidates"] = tf.random.uniform([4, 4, 64, 64, 3], -1, 1)
    data["candidate_distances"] = tf.random.uniform([4, 4])
  with tf.GradientTape(persistent=True) as tape:
    _, values = model.compute_losses(data, training=True)
  for loss, variables in [("g_loss", model.generator_variables),
                          ("d_loss", model.discriminator.trainable_variables),
                          ("cls_loss", model.classifier.trainable_variables)]:
    grads = tape.gradient(values[loss], variables)
    missing = [v.path for v, g in zip(variables, grads) if g is None or not np.any(g.numpy())]
    assert not missing, f"{loss} does not reach {missing}"
  # Each generator loss term alone reaches both encoder and decoder.
  for term in ("rec_loss", "adv_loss", "cls_loss"):
    grads = tape.gradient(values[term], model.encoder.trainable_variables[:1]
                          + model.decoder.trainable_variables[:1])
    assert all(g is not None for g in grads), term


def test_a_few_steps_on_a_tiny_batch_reduce_reconstruction():
  model = tiny_model()
  data = scenes_batch(8)
  step = tf.function(model.train_step)
  first = float(step(data)["rec_loss"])
  for _ in range(29):
    model.reset_metrics()
    last = float(step(data)["rec_loss"])
  assert last < 0.8 * first, (first, last)


def test_checkpoint_round_trip_restores_weights_and_optimizer_state_exactly(tmp_path):
  model = tiny_model()
  model.train_step(scenes_batch(4))
  optimizers = dict(g_optimizer=model.g_optimizer, d_optimizer=model.d_optimizer,
                    c_optimizer=model.c_optimizer)
  path = checkpoints.training_checkpoint(model, optimizers).save(str(tmp_path / "ckpt"))
  restored = tiny_model()
  restored_ckpt = checkpoints.training_checkpoint(
      restored, dict(g_optimizer=restored.g_optimizer, d_optimizer=restored.d_optimizer,
                     c_optimizer=restored.c_optimizer))
  restored_ckpt.restore(path).assert_consumed()

  def state(m):
    values = [v.numpy() for v in m.weights]
    for opt in (m.g_optimizer, m.d_optimizer, m.c_optimizer):
      values += [v.numpy() for v in opt.variables]
    return values + [m.iteration.numpy(), m.rng.state.numpy()]

  before, after = state(model), state(restored)
  assert len(before) == len(after) and int(model.iteration.numpy()) == 1
  for a, b in zip(before, after):
    np.testing.assert_array_equal(a, b)


def test_smoke_run_writes_checkpoints_config_grids_and_tensorboard(smoke_workdir):
  from conftest import SMOKE_STEPS
  assert [s for s, _ in checkpoints.list_checkpoints(smoke_workdir)] == [2, 4]
  config = checkpoints.read_config(smoke_workdir)
  assert config["preset"] == "tiny" and config["model"]["chunk_channels"] == 16
  assert os.path.exists(os.path.join(smoke_workdir, checkpoints.GRIDS_DIR, "mixed_scenes.png"))
  events = tf.io.gfile.glob(os.path.join(smoke_workdir, checkpoints.TENSORBOARD_DIR, "events*"))
  tags = set()
  for event_file in events:
    for event in tf.compat.v1.train.summary_iterator(event_file):
      tags.update(v.tag for v in event.summary.value)
  assert {"train/rec_loss", "train/d_loss", "train/cls_loss", "perf/images_per_second",
          "learning_rate/classifier"} <= tags
  assert any(t.startswith("mixed_scenes") for t in tags)
  traces = tf.io.gfile.glob(os.path.join(smoke_workdir, checkpoints.TENSORBOARD_DIR,
                                         "plugins", "profile", "*", "*.xplane.pb"))
  assert traces, "no profiler trace for --profile_steps"
  networks = checkpoints.restore_networks(smoke_workdir)
  assert networks.step == SMOKE_STEPS
  out = networks.model.mix_batch(tf.zeros([3, 64, 64, 3]))
  assert out["mixed"].shape == (3, 64, 64, 3) and out["mask"].shape == (3, 4)


def test_restore_networks_errors_name_the_path(tmp_path):
  with pytest.raises(FileNotFoundError, match="nowhere"):
    checkpoints.restore_networks(str(tmp_path / "nowhere"))


def test_non_finite_loss_stops_with_the_loss_name_and_step(tmp_path):
  model = tiny_model()
  images = np.full([4, 64, 64, 3], np.nan, np.float32)
  dataset = tf.data.Dataset.from_tensors({"image": images}).repeat()
  writer = tf.summary.create_file_writer(str(tmp_path / "tb"))
  manager = tf.train.CheckpointManager(checkpoints.training_checkpoint(model), str(tmp_path / "c"), 1)
  monitor = callbacks.MonitorCallback(writer, 4, 10, 5, {}, manager)
  with pytest.raises(callbacks.NonFiniteLossError, match=r"loss '\w+' became nan at training step 1"):
    model.fit(dataset, steps_per_epoch=2, epochs=1, callbacks=[monitor], verbose=0)


def _train_cmd(workdir, data_dir, *extra):
  return [sys.executable, "-m", "lorbms_tf.train", "--flagfile=configs/smoke.flags",
          f"--workdir={workdir}", f"--data_dir={data_dir}", *extra]


def test_killed_run_resumes_from_its_last_checkpoint(tmp_path, scenes_data_dir):
  workdir = str(tmp_path / "run")
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
  proc = subprocess.Popen(_train_cmd(workdir, scenes_data_dir, "--total_steps=1000"),
                          cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    deadline = time.time() + 240
    while not checkpoints.list_checkpoints(workdir) and time.time() < deadline:
      assert proc.poll() is None, "training exited before its first checkpoint"
      time.sleep(0.5)
    assert checkpoints.list_checkpoints(workdir), "no checkpoint within 240 s"
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  saved = checkpoints.list_checkpoints(workdir)[-1][0]
  assert saved < 1000
  result = subprocess.run(_train_cmd(workdir, scenes_data_dir, f"--total_steps={saved + 2}"),
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "resumed from" in result.stderr
  with open(os.path.join(workdir, "train_summary.json")) as f:
    summary = json.load(f)
  assert summary["start_step"] == saved and summary["step"] == saved + 2


@pytest.mark.parametrize("args, message", [
    (["--preset=huge"], "preset"),
    (["--strategy=tpu_pod"], "strategy"),
    (["--flagfile=configs/does_not_exist.flags"], "does_not_exist.flags"),
    (["--partners=index"], "neighbour_table"),
    (["--profile_steps=5"], "profile_steps"),
    (["--rec_distance=l3"], "rec_distance"),
    (["--decoder_projection=3"], "decoder_projection"),
])
def test_flag_errors_exit_non_zero_with_a_clear_message(tmp_path, args, message):
  cmd = [sys.executable, "-m", "lorbms_tf.train", "--flagfile=configs/smoke.flags",
         f"--workdir={tmp_path}", *args]
  result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
  assert result.returncode != 0
  assert message in result.stderr, result.stderr[-2000:]


def test_train_config_validation():
  with pytest.raises(ValueError, match="unknown strategy"):
    train_lib.TrainConfig(workdir="w", strategy="nope")
  with pytest.raises(ValueError, match="batch_size must be >= 1"):
    train_lib.TrainConfig(workdir="w", batch_size=0)
  with pytest.raises(ValueError, match="TF_CONFIG"):
    os.environ.pop("TF_CONFIG", None)
    train_lib.make_strategy("multi_worker")


def test_adversarial_warmup_ramps_the_gan_weight_linearly():
  model = tiny_model(adv_warmup_steps=4)
  data = scenes_batch(4)
  for iteration, share in [(0, 0.25), (1, 0.5), (7, 1.0)]:
    model.iteration.assign(iteration)
    _, v = model.compute_losses(data, training=False)
    c = model.config
    expected = (c.rec_weight * v["rec_loss"] + share * c.adv_weight * v["adv_loss"]
                + c.cls_weight * v["cls_loss"])
    np.testing.assert_allclose(float(v["g_loss"]), float(expected), rtol=1e-5)
  with pytest.raises(ValueError, match="adv_warmup_steps"):
    LorbmsConfig(adv_warmup_steps=-1)


def test_squared_reconstruction_distance_reaches_the_generator_loss():
  model = tiny_model(rec_distance="l2")
  data = scenes_batch(4)
  out, v = model.compute_losses(data, training=False)
  # The step compares in the networks' compute dtype (bf16 when a test before set that policy).
  ref = np.asarray(tf.cast(data["image"], out["reconstructed"].dtype), np.float32)
  direct = np.mean((ref - np.asarray(out["reconstructed"], np.float32)) ** 2)
  cycle = np.mean((ref - np.asarray(out["cycle"], np.float32)) ** 2)
  np.testing.assert_allclose([float(v["rec_direct"]), float(v["rec_cycle"])], [direct, cycle],
                             rtol=1e-5)
  with pytest.raises(ValueError, match="rec_distance must be one of"):
    LorbmsConfig(rec_distance="l3")


def test_mixed_precision_step_keeps_float32_weights_and_finite_losses():
  keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    model = train_lib.build_model(train_lib.TrainConfig(workdir="unused", preset="tiny",
                                                        batch_size=4,
                                                        precision="mixed_float16"))
    assert isinstance(model.g_optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.decoder.compute_dtype == "float16"
    before = [v.numpy().copy() for v in model.encoder.trainable_variables]
    values = model.train_step(scenes_batch(4))
    assert all(np.isfinite(float(v)) for v in values.values())
    assert all(v.dtype == "float32" for v in model.trainable_variables)
    assert any(not np.array_equal(a, v.numpy())
               for a, v in zip(before, model.encoder.trainable_variables))
  finally:
    keras.mixed_precision.set_global_policy("float32")


def test_two_generator_updates_per_iteration_as_in_the_thesis():
  model = tiny_model(generator_steps=2)
  values = model.train_step(scenes_batch(4))
  assert int(model.g_optimizer.iterations.numpy()) == 2
  assert int(model.d_optimizer.iterations.numpy()) == 1
  assert int(model.c_optimizer.iterations.numpy()) == 1
  assert int(model.iteration.numpy()) == 1 and np.isfinite(float(values["g_loss"]))


def test_train_step_compiles_with_xla():
  # --jit_compile is on by default with a GPU; the step, RNG draws included, must compile.
  model = tiny_model()
  step = tf.function(model.train_step, jit_compile=True)
  values = step(scenes_batch(4))
  assert all(np.isfinite(float(v)) for v in values.values())
  assert int(model.iteration.numpy()) == 1


def _scalars(workdir, tag):
  from lorbms_tf.eval import report
  steps, values = report.read_tensorboard_scalars(
      os.path.join(workdir, checkpoints.TENSORBOARD_DIR))[tag]
  return dict(zip(steps.tolist(), values.tolist()))


def _tiny_run(workdir, data_dir, **overrides):
  config = dict(workdir=str(workdir), dataset="scenes/tiny", data_dir=data_dir, preset="tiny",
                batch_size=4, total_steps=4, checkpoint_every=4, log_every=1, image_every=100,
                deterministic=True, seed=3)
  config.update(overrides)
  return train_lib.train(train_lib.TrainConfig(**config))


def test_same_flags_and_seed_give_the_same_losses_and_logs_are_window_means(
    tmp_path, scenes_data_dir):
  _tiny_run(tmp_path / "a", scenes_data_dir)
  _tiny_run(tmp_path / "c", scenes_data_dir, log_every=2)  # logging does not change training
  _tiny_run(tmp_path / "d", scenes_data_dir, seed=4)

  def final_state(run):  # every variable of the step-4 checkpoint: networks and optimizers
    reader = tf.train.load_checkpoint(checkpoints.list_checkpoints(str(tmp_path / run))[-1][1])
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name.endswith("VARIABLE_VALUE") and "save_counter" not in name}

  a_state, c_state = final_state("a"), final_state("c")
  assert len(a_state) > 50 and a_state.keys() == c_state.keys()
  for name in a_state:  # bit-identical: initial weights, data order, partner draws, ops
    np.testing.assert_array_equal(a_state[name], c_state[name], err_msg=name)
  assert any(not np.array_equal(a_state[n], v) for n, v in final_state("d").items())  # the seed
  # Logged losses are the mean over the last log_every iterations, not since the start.
  for tag in ("train/rec_loss", "train/d_loss", "train/cls_loss", "train/replaced_quadrants"):
    a, c = _scalars(tmp_path / "a", tag), _scalars(tmp_path / "c", tag)
    assert sorted(a) == [1, 2, 3, 4] and sorted(c) == [2, 4]
    assert c[2] == pytest.approx((a[1] + a[2]) / 2, rel=1e-5), tag
    assert c[4] == pytest.approx((a[3] + a[4]) / 2, rel=1e-5), tag
  assert _scalars(tmp_path / "d", "train/rec_loss") != _scalars(tmp_path / "a", "train/rec_loss")


def test_light_evaluation_runs_while_training_and_at_the_end(tmp_path, scenes_data_dir):
  from lorbms_tf.eval import scenes_eval
  from lorbms_tf.eval.image_metrics import SceneClassifierConfig
  eval_config = scenes_eval.ScenesEvalConfig(
      num_test=32, num_probe_train=64, probe_epochs=2,
      classifier=SceneClassifierConfig(train_scenes=64, epochs=1))
  workdir = tmp_path / "run"
  _tiny_run(workdir, scenes_data_dir, total_steps=3, eval_every=2, eval_config=eval_config)
  history = callbacks.read_eval_history(str(workdir))
  assert [row["step"] for row in history] == [2, 3]  # every 2 iterations, and the last one
  for row in history:
    assert set(scenes_eval.HIGHER_IS_BETTER) <= set(row)
    assert 0 <= row["colour_probe"] <= 1 and 0 <= row["rec_l1"] <= 2
  assert set(_scalars(workdir, "eval/rec_l1")) == {2, 3}
  # The domain classifier is cached beside the data for the next run.
  assert tf.io.gfile.glob(os.path.join(scenes_data_dir, "lorbms_scenes_classifier", "*.h5"))
  with pytest.raises(ValueError, match="--eval_every needs lorbms_scenes"):
    _tiny_run(tmp_path / "x", scenes_data_dir, dataset="folder:/nowhere", eval_every=2)
  # Training on other files (the pipeline's TFRecord examples) can still evaluate on scenes.
  train_lib.TrainConfig(workdir="w", dataset="tfrecord:/x/*", eval_every=2,
                        eval_dataset="scenes/tiny")
  with pytest.raises(ValueError, match="not 'folder:/y'"):
    train_lib.TrainConfig(workdir="w", dataset="scenes", eval_every=2, eval_dataset="folder:/y")


def test_adaptive_adversarial_weight_balances_the_gradient_norms():
  model = tiny_model(adaptive_adv_weight=True, adv_weight=0.3)
  with tf.GradientTape(persistent=True) as tape:
    _, values = model.compute_losses(scenes_batch(4), training=False)
    balanced = model._adapt_adv_weight(tape, values)
  kernel = model.decoder.output_kernel
  rec_norm = model.config.rec_weight * tf.norm(tape.gradient(values["rec_loss"], kernel))
  adv_norm = balanced["adv_weight"] * tf.norm(tape.gradient(values["adv_loss"], kernel))
  assert float(adv_norm) == pytest.approx(0.3 * float(rec_norm), rel=1e-3)
  expected = (model.config.rec_weight * values["rec_loss"] + balanced["adv_weight"]
              * values["adv_loss"] + model.config.cls_weight * values["cls_loss"])
  assert float(balanced["g_loss"]) == pytest.approx(float(expected), rel=1e-5)
  step_values = model.train_step(scenes_batch(4))  # and a whole step runs with it
  assert np.isfinite(float(step_values["adv_weight"])) and float(step_values["adv_weight"]) > 0


def test_learning_rates_fall_linearly_over_the_last_iterations():
  config = train_lib.TrainConfig(workdir="unused", preset="tiny", batch_size=4, total_steps=10,
                                 lr_decay_steps=4, g_learning_rate=1e-3, d_learning_rate=2e-3,
                                 objective=LorbmsConfig(generator_steps=2))
  model = train_lib.build_model(config)
  g_schedule = model.g_optimizer._learning_rate  # G counts 2 updates per iteration
  d_schedule = model.d_optimizer._learning_rate
  np.testing.assert_allclose([float(d_schedule(s)) for s in (0, 6, 8, 10, 12)],
                             [2e-3, 2e-3, 1e-3, 0.0, 0.0], atol=1e-9)
  np.testing.assert_allclose([float(g_schedule(s)) for s in (12, 16, 20)], [1e-3, 5e-4, 0.0],
                             atol=1e-9)
  with pytest.raises(ValueError, match="lr_decay_steps"):
    train_lib.TrainConfig(workdir="w", total_steps=10, lr_decay_steps=11)


@pytest.mark.slow
def test_a_run_killed_before_its_summary_completes_on_rerun(tmp_path, scenes_data_dir,
                                                            monkeypatch):
  """Killed after the final checkpoint, during the final light evaluation (no summary, the
  final eval row torn): the rerun evaluates the final step and writes the summary, instead
  of being "already trained" without a summary forever. (The evaluator is a stub: its cost
  is not what is tested.)"""
  class StubEvaluator:
    def run(self, model):
      return {"rec_l1": 0.5}
  monkeypatch.setattr(train_lib, "_scenes_evaluator", lambda config: StubEvaluator())
  workdir = tmp_path / "run"
  run = dict(total_steps=1, checkpoint_every=1, eval_every=100)
  _tiny_run(workdir, scenes_data_dir, **run)
  summary_path = workdir / checkpoints.SUMMARY_FILE
  assert [row["step"] for row in callbacks.read_eval_history(str(workdir))] == [1]
  summary_path.unlink()
  history = workdir / callbacks.EVAL_HISTORY_FILE
  history.write_text(history.read_text()[:12])
  summary = _tiny_run(workdir, scenes_data_dir, **run)
  assert summary["step"] == 1 and summary["completed_after_interruption"]
  assert json.loads(summary_path.read_text())["step"] == 1
  assert [row["step"] for row in callbacks.read_eval_history(str(workdir))] == [1]
  # A complete run is left as it is.
  assert _tiny_run(workdir, scenes_data_dir, **run) == {"step": 1, "workdir": str(workdir)}
