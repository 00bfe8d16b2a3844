"""The evaluation report: ``metrics.json``, ``report.md`` and PNG plots (image grids: visualize.py).

Why a fixed layout: runs are compared by reading two reports side by side, so every report
has the same sections in the same order, says which classifier produced each image-quality
number ("scenes FID" from the domain classifier is never printed as plain "FID"), and gives
the reference values a reader needs to judge a number (real-vs-real FID floor, majority
baselines, chance levels, the thesis's results).

``metrics.json`` holds everything the markdown shows (and more); NaN is written as null.
Plots use matplotlib's Agg backend (no display needed); grids are assembled with PIL.
"""

from __future__ import annotations

import datetime
import math
import os
from typing import Any, Iterable, Mapping, Sequence

import numpy as np


# The thesis's numbers (METHOD.md), shown next to ours for orientation.
THESIS_RESULTS = {
    "fid_coco_best": 137.7,
    "fid_coco_mean": "158.5 +- 10.9",
    "is_coco": "6.9 +- 0.5 (best 7.6)",
    "stl10_discriminator": 62.8,
    "stl10_encoder": 36.5,
    "stl10_encoder_fine_tuned": 54.2,
    "stl10_random_encoder": 43.4,
}


# --------------------------------------------------------------------------------------------
# metrics.json
# --------------------------------------------------------------------------------------------

def to_jsonable(value: Any) -> Any:
  """numpy scalars/arrays -> Python; NaN/inf -> None (JSON has neither); dataclasses -> dicts."""
  if hasattr(value, "to_dict"):
    return to_jsonable(value.to_dict())
  if isinstance(value, Mapping):
    return {str(k): to_jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [to_jsonable(v) for v in value]
  if isinstance(value, np.ndarray):
    return to_jsonable(value.tolist())
  if isinstance(value, (np.integer,)):
    return int(value)
  if isinstance(value, (float, np.floating)):
    value = float(value)
    return value if math.isfinite(value) else None
  if isinstance(value, (bool, np.bool_)):
    return bool(value)
  return value


def write_metrics_json(path: str, metrics: Mapping[str, Any]) -> str:
  from lorbms_tf import atomic  # pylint: disable=import-outside-toplevel
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  return atomic.write_json(path, to_jsonable(metrics), indent=2, sort_keys=False)


# --------------------------------------------------------------------------------------------
# TensorBoard scalars
# --------------------------------------------------------------------------------------------

def read_tensorboard_scalars(tb_dir: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Every scalar in the event files under ``tb_dir`` -> {tag: (steps, values)}, by step.

  Tags get their sub-directory as prefix ("train/g_loss", "validation/g_loss"), the layout
  Keras's TensorBoard callback writes. Reads both TF2 summaries (values stored as tensors)
  and TF1 ``simple_value`` ones, with no dependency on the ``tensorboard`` package's readers.
  """
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  series: dict[str, dict[int, float]] = {}
  if not tb_dir or not tf.io.gfile.isdir(tb_dir):
    return {}
  for root, _, files in tf.io.gfile.walk(tb_dir):
    prefix = os.path.relpath(root, tb_dir)
    prefix = "" if prefix == "." else prefix.replace(os.sep, "/") + "/"
    for name in sorted(files):
      if "tfevents" not in name:
        continue
      try:
        records = list(tf.data.TFRecordDataset(os.path.join(root, name)).as_numpy_iterator())
      except tf.errors.DataLossError:  # a file still being written: keep what was read
        records = []
      for record in records:
        event = tf.compat.v1.Event.FromString(record)
        for value in event.summary.value:
          scalar = _scalar_of(value, tf)
          if scalar is not None:
            series.setdefault(prefix + value.tag, {})[int(event.step)] = scalar
  out = {}
  for tag, points in sorted(series.items()):
    steps = np.array(sorted(points), np.int64)
    out[tag] = (steps, np.array([points[s] for s in steps], np.float64))
  return out


def _scalar_of(value, tf) -> float | None:
  if value.HasField("simple_value"):
    return float(value.simple_value)
  if value.HasField("tensor"):
    plugin = value.metadata.plugin_data.plugin_name
    if plugin and plugin != "scalars":
      return None  # images, histograms, text
    array = tf.make_ndarray(value.tensor)
    if array.size == 1 and np.issubdtype(array.dtype, np.number):
      return float(array.reshape(()))
  return None


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------

def _pyplot():
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  return plt


def plot_series(series: Mapping[str, tuple[Sequence[float], Sequence[float]]], path: str,
                title: str, xlabel: str = "training step", ylabel: str = "",
                panels: Mapping[str, Sequence[str]] | None = None) -> str:
  """Line plots of named (x, y) series; ``panels`` groups names into subplots (one each else)."""
  plt = _pyplot()
  panels = panels or {name: [name] for name in series}
  panels = {title_: [n for n in names if n in series] for title_, names in panels.items()}
  panels = {k: v for k, v in panels.items() if v}
  if not panels:
    raise ValueError("nothing to plot")
  cols = min(3, len(panels))
  rows = int(math.ceil(len(panels) / cols))
  fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
  for ax, (panel, names) in zip(axes.flat, panels.items()):
    for name in names:
      x, y = (np.asarray(v, np.float64) for v in series[name])
      ax.plot(x, y, marker="o" if len(x) < 20 else None, markersize=3, label=name)
    ax.set_title(panel, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    if ylabel:
      ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    if len(names) > 1:
      ax.legend(fontsize=7)
  for ax in list(axes.flat)[len(panels):]:
    ax.axis("off")
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def plot_loss_curves(scalars: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str,
                     max_panels: int = 12) -> str | None:
  """Loss curves from TensorBoard: one panel per metric name, train and validation overlaid."""
  by_metric: dict[str, list[str]] = {}
  for tag in scalars:
    # "train/g_loss", "validation/epoch_g_loss" and "g_loss" share one panel.
    metric = tag
    for prefix in ("train/", "validation/", "val/", "eval/"):
      if metric.startswith(prefix):
        metric = metric[len(prefix):]
    if metric.startswith("epoch_"):
      metric = metric[len("epoch_"):]
    by_metric.setdefault(metric, []).append(tag)
  if not by_metric:
    return None
  losses_first = sorted(by_metric, key=lambda m: (0 if "loss" in m else 1, m))[:max_panels]
  return plot_series(scalars, path, "training curves (TensorBoard)",
                     panels={m: by_metric[m] for m in losses_first})


# --------------------------------------------------------------------------------------------
# report.md
# --------------------------------------------------------------------------------------------

def fmt(value: Any, digits: int = 3) -> str:
  if value is None:
    return "n/a"
  if isinstance(value, (bool, np.bool_)):
    return str(bool(value))
  if isinstance(value, (int, np.integer)):
    return f"{int(value):,}"
  if isinstance(value, (float, np.floating)):
    if not math.isfinite(float(value)):
      return "n/a"
    return f"{float(value):.{digits}f}"
  return str(value)


def pct(value: Any, digits: int = 1) -> str:
  if value is None or (isinstance(value, float) and not math.isfinite(value)):
    return "n/a"
  return f"{100.0 * float(value):.{digits}f}%"


def mean_sd(mean: Any, sd: Any, percent: bool = True) -> str:
  if percent:
    return f"{pct(mean)} +- {pct(sd)}"
  return f"{fmt(mean)} +- {fmt(sd)}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
  lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
  lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
  return "\n".join(lines)


def _quality_section(quality: Mapping[str, Any]) -> list[str]:
  out = []
  for name, block in quality.items():
    prefix = "scenes_" if block.get("classifier_kind") == "scenes" else ""
    label = "scenes " if prefix else ""
    out.append(f"**{block.get('title', name)}** — classifier: {block.get('classifier', '?')}, "
               f"{fmt(block.get(prefix + 'num_images'))} images.")
    out.append("")
    rows = [
        (f"{label}FID", fmt(block.get(prefix + "fid"), 2),
         "real vs real (two halves of the test set): "
         + fmt(block.get(prefix + "fid_real_halves"), 2)),
        (f"{label}KID", fmt(block.get(prefix + "kid"), 4),
         f"+- {fmt(block.get(prefix + 'kid_std'), 4)} (standard error; n/a with one block)"),
    ]
    if prefix + "is" in block:
      rows.append((f"{label}IS", mean_sd(block.get(prefix + "is"), block.get(prefix + "is_std"),
                                         percent=False),
                   "real images: " + mean_sd(block.get(prefix + "is_real"),
                                             block.get(prefix + "is_real_std"), percent=False)))
    out.append(markdown_table(("metric", "value", "for reference"), rows))
    out.append("")
  if any(b.get("classifier_kind") == "scenes" for b in quality.values()):
    out.append("*scenes FID/IS/KID* use the lorbms_scenes domain classifier's features, not "
               "Inception: compare them only with other scenes numbers. Scenes IS is over "
               "quadrants (7 shape classes, so at most 7). Inception FID on COCO in the thesis: "
               f"best {THESIS_RESULTS['fid_coco_best']}, mean {THESIS_RESULTS['fid_coco_mean']}.")
    out.append("")
  return out


def _object_section(metrics: Mapping[str, Any]) -> list[str]:
  out = []
  cls = metrics.get("scene_classifier")
  if cls:
    out.append("Quadrant classifier on real test quadrants: shape "
               f"{pct(cls.get('shape_accuracy'), 2)}, colour {pct(cls.get('color_accuracy'), 2)}, "
               f"both {pct(cls.get('object_accuracy'), 2)} "
               "(the ceiling for fidelity: it labels the quadrants of I_mix).")
    out.append("")
  transfer = metrics.get("object_transfer")
  if transfer:
    rows = []
    for what, block in transfer.items():
      rows.append((what, pct(block.get("fidelity")), pct(block.get("fidelity_replaced")),
                   pct(block.get("fidelity_kept")), pct(block.get("fidelity_informative")),
                   pct(block.get("replaced_shows_reference")), pct(block.get("shows_neither")),
                   fmt(block.get("num_quadrants"))))
    out.append(markdown_table(
        ("object =", "fidelity", "replaced", "kept", "informative", "replaced shows reference",
         "shows neither", "quadrants"), rows))
    out.append("")
    out.append("Fidelity: share of I_mix quadrants showing their source's object (donor where "
               "replaced, reference where kept). Informative: only quadrants whose donor and "
               "reference objects differ.")
    out.append("")
  mask = metrics.get("mask_classifier")
  if mask:
    out.append(markdown_table(
        ("mask classifier C", "accuracy", "balanced", "recall replaced", "recall kept",
         "majority baseline"),
        [("C(I_mix, I_qi) > 0", pct(mask.get("accuracy")), pct(mask.get("balanced_accuracy")),
          pct(mask.get("recall_replaced")), pct(mask.get("recall_kept")),
          pct(mask.get("majority_baseline")))]))
    out.append("")
  return out


def _probe_section(probes: Mapping[str, Any]) -> list[str]:
  out = []
  stl10 = probes.get("stl10")
  if stl10:
    out.append(f"**STL-10 linear probes** ({stl10.get('protocol', '')})")
    out.append("")
    rows = [(name, mean_sd(s["mean"], s["std"]), fmt(s["num_params"]), fmt(s["feature_dim"]),
             len(s["accuracies"])) for name, s in stl10.get("table", {}).items()]
    out.append(markdown_table(("features", "accuracy (mean +- SD over folds)", "Cls params",
                               "feature dim", "folds"), rows))
    out.append("")
    out.append("Thesis (200 epochs, 96 px): discriminator "
               f"{THESIS_RESULTS['stl10_discriminator']}%, encoder "
               f"{THESIS_RESULTS['stl10_encoder']}% "
               f"({THESIS_RESULTS['stl10_encoder_fine_tuned']}% fine-tuned), random encoder "
               f"{THESIS_RESULTS['stl10_random_encoder']}%.")
    out.append("")
  quadrant = probes.get("scenes_quadrant")
  if quadrant:
    out.append("**lorbms_scenes per-quadrant probes: what chunk i says about quadrant i** "
               "(one linear layer shared by the four positions, standardized features)")
    out.append("")
    out.append(markdown_table(
        ("features", "shape of quadrant i", "colour of quadrant i"),
        [(name, pct(r.get("shape_probe")), pct(r.get("colour_probe")))
         for name, r in quadrant.items()]))
    first = next(iter(quadrant.values()))
    out.append("")
    out.append(f"Majority class: shape {pct(first.get('shape_majority'))}, colour "
               f"{pct(first.get('colour_majority'))} (7 shape classes and 9 colour classes, "
               "each including 'empty'). Raw pixels and the random encoder cost nothing; "
               "the supervised encoder is the same architecture trained on these labels: "
               "the ceiling.")
    out.append("")
  whole = probes.get("scenes_image")
  if whole:
    out.append("**lorbms_scenes whole-image probe (shape of the largest object from all "
               "chunks)**")
    out.append("")
    out.append(markdown_table(
        ("features", "test accuracy", "train accuracy", "majority baseline", "Cls params"),
        [(name, pct(r.get("accuracy")), pct(r.get("train_accuracy")),
          pct(r.get("majority_baseline")), fmt(r.get("num_params"))) for name, r in whole.items()]))
    out.append("")
  return out


def write_report(out_dir: str, metrics: Mapping[str, Any],
                 figures: Mapping[str, str] | None = None) -> dict[str, str]:
  """Writes ``metrics.json`` and ``report.md`` into ``out_dir``; returns their paths.

  ``figures``: {caption: path} of PNGs: an existing file's path (absolute or from the working
  directory), or a name inside out_dir. Links are written relative to out_dir, so the report
  reads the same wherever the folder is moved.
  """
  os.makedirs(out_dir, exist_ok=True)
  figures = dict(figures or {})
  metrics = dict(metrics)

  def link(path):
    on_disk = path if os.path.isabs(path) or os.path.exists(path) else os.path.join(out_dir, path)
    return os.path.relpath(os.path.abspath(on_disk), os.path.abspath(out_dir))

  metrics["figures"] = {k: link(v) for k, v in figures.items()}
  json_path = write_metrics_json(os.path.join(out_dir, "metrics.json"), metrics)

  lines = ["# LORBMS evaluation report", ""]
  run = metrics.get("run", {})
  facts = [("work dir", run.get("workdir")), ("checkpoint", run.get("checkpoint")),
           ("training step", run.get("step")), ("dataset", run.get("dataset")),
           ("model preset", run.get("preset")), ("test images", run.get("num_eval_images")),
           ("written", run.get("written") or datetime.datetime.now().isoformat(timespec="seconds")),
           ("evaluation time", f"{fmt(run.get('seconds'), 1)} s" if run.get("seconds") else None)]
  lines.append(markdown_table(("", ""), [(k, fmt(v)) for k, v in facts if v is not None]))
  lines.append("")
  notes = metrics.get("notes") or []
  if notes:
    lines += ["Notes:", ""] + [f"- {n}" for n in notes] + [""]

  if metrics.get("image_quality"):
    lines += ["## Image quality of mixed scenes", ""] + _quality_section(metrics["image_quality"])
  if metrics.get("object_transfer") or metrics.get("mask_classifier"):
    lines += ["## Object metrics", ""] + _object_section(metrics)
  if metrics.get("probes"):
    lines += ["## Linear probes", ""] + _probe_section(metrics["probes"])
  history = metrics.get("over_checkpoints")
  if history:
    keys = [k for k in history[0] if k != "step"]
    lines += ["## Over training (one row per checkpoint)", ""]
    lines.append(markdown_table(["step"] + keys,
                                [[fmt(h.get("step"))] + [fmt(h.get(k)) for k in keys]
                                 for h in history]))
    lines.append("")
  if figures:
    lines += ["## Figures", ""]
    for caption, path in metrics["figures"].items():
      lines += [f"**{caption}**", "", f"![{caption}]({path})", ""]
  md_path = os.path.join(out_dir, "report.md")
  from lorbms_tf import atomic  # pylint: disable=import-outside-toplevel
  atomic.write_text(md_path, "\n".join(lines))
  return {"metrics": json_path, "report": md_path}
