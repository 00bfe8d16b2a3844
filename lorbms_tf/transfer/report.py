"""The transfer experiment's ``metrics.json`` and ``report.md``.

The probe tables put the transferred features next to the teacher's own (direct) features on
the same data with the same probe, so one table answers the experiment's question: how much
of what the teacher's features hold survives being re-learned by a standard AlexNet through
K pseudo labels. The evaluation report's helpers (number formats, JSON) are reused so both
reports read alike.
"""

from __future__ import annotations

import datetime
import os
from typing import Any, Mapping

from lorbms_tf.eval import report as eval_report
from lorbms_tf.eval.report import fmt, markdown_table, mean_sd, pct


def _facts(metrics: Mapping[str, Any]) -> list[tuple[str, Any]]:
  run, kmeans, net = metrics["run"], metrics["pseudo_labels"], metrics["transfer_net"]
  return [
      ("work dir", run["workdir"]), ("training step", fmt(run["step"])),
      ("teacher features", f"{run['features']} ({fmt(kmeans['feature_dim'])}-d, flattened)"),
      ("images (clustered, learned from)", f"{fmt(run['num_images'])} of {run['dataset']} "
                                           f"{run['split']}"),
      ("k-means", f"K={fmt(run['clusters'])}, {kmeans['init']} init, {kmeans['iterations']} "
                  f"iterations, {'L2-normalised' if kmeans['normalize'] else 'raw'} rows, "
                  f"trained on {fmt(kmeans['trained_on'])} points, "
                  f"{fmt(kmeans['train_seconds'], 1)} s (faiss, {kmeans['threads']} threads)"),
      ("clusters used", f"{fmt(kmeans['used_clusters'])} of {fmt(kmeans['clusters'])}; "
                        f"effective {fmt(kmeans['effective_clusters'], 1)}, largest "
                        f"{pct(kmeans['largest_cluster_share'])} of the images"),
      ("transfer net", f"{fmt(net['num_params'])} params, {fmt(net['steps'])} steps, loss "
                       f"{fmt(net['loss_first'])} -> {fmt(net['loss_last'])}, pseudo-label "
                       f"accuracy {pct(net['pseudo_label_accuracy_last'])} (last batches), "
                       f"{fmt(net['seconds'], 1)} s"),
      ("written", datetime.datetime.now().isoformat(timespec="seconds")),
      ("total time", f"{fmt(run.get('seconds'), 1)} s"),
  ]


def _scenes_section(rows: Mapping[str, Mapping[str, Any]], clusters: int) -> list[str]:
  first = next(iter(rows.values()))
  return [
      "## lorbms_scenes per-quadrant probes", "",
      "What row i says about quadrant i: one linear layer shared by the four positions, on "
      "standardized features. Each feature map is average-pooled to the 2x2 quadrant grid "
      "(the encoder's chunks already are that grid). The transfer net saw only the images and "
      f"the {clusters} pseudo labels; its random-init row is the same architecture untrained.",
      "",
      markdown_table(("features", "shape of quadrant i", "colour of quadrant i"),
                     [(name, pct(r.get("shape_probe")), pct(r.get("colour_probe")))
                      for name, r in rows.items()]),
      "",
      f"Majority class: shape {pct(first.get('shape_majority'))}, colour "
      f"{pct(first.get('colour_majority'))} (7 shape and 9 colour classes, each including "
      "'empty').", ""]


def _stl10_section(block: Mapping[str, Any]) -> list[str]:
  rows = [(name, mean_sd(s["mean"], s["std"]), fmt(s["num_params"]), fmt(s["feature_dim"]),
           len(s["accuracies"])) for name, s in block["table"].items()]
  thesis = eval_report.THESIS_RESULTS
  return [
      "## STL-10 linear probes", "", f"Protocol: {block['protocol']}.", "",
      markdown_table(("features", "accuracy (mean +- SD over folds)", "Cls params",
                      "feature dim", "folds"), rows), "",
      f"Thesis, direct probes (200 epochs, 96 px): discriminator "
      f"{thesis['stl10_discriminator']}%, encoder {thesis['stl10_encoder']}%.", ""]


def write_transfer_report(out_dir: str, metrics: Mapping[str, Any]) -> dict[str, str]:
  """Writes ``metrics.json`` and ``report.md`` into ``out_dir``; returns their paths."""
  os.makedirs(out_dir, exist_ok=True)
  json_path = eval_report.write_metrics_json(os.path.join(out_dir, "metrics.json"), metrics)
  lines = ["# LORBMS knowledge-transfer report", "",
           "Noroozi et al. (2018): k-means pseudo labels of the trained network's features "
           "teach a fresh AlexNet-style network (batch norm), whose frozen conv layers are then "
           "probed like the original features.", "",
           markdown_table(("", ""), _facts(metrics)), ""]
  notes = metrics.get("notes") or []
  if notes:
    lines += ["Notes:", ""] + [f"- {n}" for n in notes] + [""]
  probes = metrics.get("probes") or {}
  if probes.get("scenes_quadrant"):
    lines += _scenes_section(probes["scenes_quadrant"], metrics["run"]["clusters"])
  if probes.get("stl10"):
    lines += _stl10_section(probes["stl10"])
  md_path = os.path.join(out_dir, "report.md")
  from lorbms_tf import atomic  # pylint: disable=import-outside-toplevel
  atomic.write_text(md_path, "\n".join(lines).rstrip() + "\n")
  return {"metrics": json_path, "report": md_path}
