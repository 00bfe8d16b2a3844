"""Report: TensorBoard scalars back, plots, grids, metrics.json and report.md written."""

import json
import os

import numpy as np
import tensorflow as tf

from lorbms_tf import visualize
from lorbms_tf.eval import report


def _write_events(tb_dir):
  for sub, offset in (("train", 0.0), ("validation", 0.5)):
    writer = tf.summary.create_file_writer(os.path.join(tb_dir, sub))
    with writer.as_default():
      for step in range(4):
        tf.summary.scalar("epoch_g_loss", 2.0 - 0.1 * step + offset, step=step)
        tf.summary.scalar("epoch_cls_accuracy", 0.5 + 0.1 * step, step=step)
      tf.summary.image("samples", tf.zeros([1, 4, 4, 3]), step=0)  # not a scalar: skipped
    writer.close()


def test_tensorboard_scalars_and_loss_plot(tmp_path):
  tb = str(tmp_path / "tb")
  _write_events(tb)
  scalars = report.read_tensorboard_scalars(tb)
  assert set(scalars) == {"train/epoch_g_loss", "train/epoch_cls_accuracy",
                          "validation/epoch_g_loss", "validation/epoch_cls_accuracy"}
  steps, values = scalars["train/epoch_g_loss"]
  assert steps.tolist() == [0, 1, 2, 3]
  np.testing.assert_allclose(values, [2.0, 1.9, 1.8, 1.7], rtol=1e-6)
  path = report.plot_loss_curves(scalars, str(tmp_path / "losses.png"))
  assert os.path.getsize(path) > 1000
  assert report.read_tensorboard_scalars(str(tmp_path / "missing")) == {}


def test_write_report_files(tmp_path):
  out = str(tmp_path / "eval")
  rng = np.random.default_rng(0)
  images = rng.uniform(-1, 1, size=(3, 16, 16, 3)).astype(np.float32)
  masks = np.array([[0, 0, 1, 0], [1, 0, 0, 1], [0, 1, 1, 1]], np.float32)
  donors = np.stack([images[::-1]] * 4, axis=1)
  grid = visualize.mixing_grid(images, donors, masks, images, os.path.join(out, "mix.png"),
                            reconstructed=images)
  transfer = visualize.transfer_grid(images[:2], images[1:], masks, np.stack([images] * 2),
                                  os.path.join(out, "t.png"))
  curve = report.plot_series({"scenes_fid": ([0, 10, 20], [50.0, 30.0, np.nan])},
                             os.path.join(out, "curve.png"), "metrics over training")
  metrics = {
      "run": {"workdir": "/w", "step": 20, "dataset": "scenes/64", "num_eval_images": 3},
      "notes": ["a note"],
      "image_quality": {"mixed": {"title": "I_mix vs test",
                                  "classifier": "scenes domain classifier",
                                  "classifier_kind": "scenes", "scenes_fid": 12.5,
                                  "scenes_fid_real_halves": 3.0, "scenes_kid": 0.1,
                                  "scenes_kid_std": float("nan"), "scenes_is": 3.0,
                                  "scenes_is_std": 0.1, "scenes_is_real": 5.0,
                                  "scenes_is_real_std": 0.2, "scenes_num_images": 3}},
      "scene_classifier": {"shape_accuracy": 0.99, "color_accuracy": 1.0, "object_accuracy": 0.99},
      "object_transfer": {"shape": {"fidelity": 0.5, "fidelity_replaced": 0.4,
                                    "fidelity_kept": 0.6, "num_quadrants": np.int64(12)}},
      "mask_classifier": {"accuracy": 0.7, "balanced_accuracy": 0.6, "majority_baseline": 0.5},
      "probes": {"scenes_quadrant": {"trained encoder": {"shape_probe": 0.6, "colour_probe": 0.97,
                                                         "shape_majority": 0.2},
                                     "raw pixels": {"shape_probe": 0.33, "colour_probe": 1.0}},
                 "stl10": {"protocol": "2 folds", "table": {"encoder": {
                     "mean": 0.3, "std": 0.01, "accuracies": [0.29, 0.31], "num_params": 17290,
                     "feature_dim": 1728}}}},
      "over_checkpoints": [{"step": 10, "scenes_fid": 50.0}, {"step": 20, "scenes_fid": 30.0}],
  }
  paths = report.write_report(out, metrics, {"mixed scenes": grid, "transfer": transfer,
                                              "metrics vs step": curve})
  with open(paths["metrics"]) as f:
    saved = json.load(f)
  assert saved["image_quality"]["mixed"]["scenes_kid_std"] is None  # NaN -> null
  assert saved["object_transfer"]["shape"]["num_quadrants"] == 12
  assert saved["figures"]["mixed scenes"] == "mix.png"
  text = open(paths["report"]).read()
  assert "scenes FID" in text and "| scenes FID | 12.50 |" in text
  assert "30.0% +- 1.0%" in text and "17,290" in text
  assert "| trained encoder | 60.0% | 97.0% |" in text and "| raw pixels | 33.0% | 100.0% |" in text
  assert "![mixed scenes](mix.png)" in text
  for path in (grid, transfer, curve):
    assert os.path.getsize(path) > 200
