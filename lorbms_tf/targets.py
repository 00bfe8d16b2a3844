"""The learning targets, as data: thresholds a run (or a run beside a baseline) must meet.

One place for each threshold; ``docs/experiments/harnesses/learning.py`` checks the demo and long-run targets, the
study runner (``lorbms_tf.study``) checks every variant against the autoencoder of the same seed.
A target is ``name -> (value, threshold, higher is better)``; ``check`` turns it into verdicts
with the margin (positive = met by that much, negative = missed by that much).
"""

from __future__ import annotations

from typing import Mapping

Targets = dict[str, tuple[float, float, bool]]

# Against the autoencoder of the same seed (the baseline every LORBMS row must beat): the
# method exists to transfer objects, so it must transfer informatively better by a clear
# margin, render mixed scenes at least as close to real ones, and not lose what the chunks hold.
VERSUS_BASELINE_INFORMATIVE_GAIN = 0.05
VERSUS_BASELINE_SHAPE_LOSS = 0.01
# Targets whose values are not fractions (shown as they are, not in percent).
RAW_UNITS = ("rec_l1", "fid_gain", "metrics_worse_than_previous_eval")


def demo_targets(metrics: Mapping[str, float], random_shape: float) -> Targets:
  """The demo's targets (light evaluation at its last step)."""
  return {
      "rec_l1": (metrics["rec_l1"], 0.10, False),
      "colour_probe": (metrics["colour_probe"], 0.95, True),
      "shape_probe_vs_random": (metrics["shape_probe"] - random_shape, 0.10, True),
      "fidelity_object": (metrics["fidelity_object"], 0.50, True),
      "mask_cls_accuracy": (metrics["mask_cls_accuracy"], 0.75, True),
  }


def long_targets(metrics: Mapping[str, float], random_shape: float) -> Targets:
  del random_shape
  return {"shape_probe": (metrics["shape_probe"], 0.70, True),
          "fidelity_object": (metrics["fidelity_object"], 0.80, True)}


def versus_baseline_targets(metrics: Mapping[str, float],
                            baseline: Mapping[str, float]) -> Targets:
  """A variant against the baseline (the autoencoder) trained with the same seed.

  Each value is the difference to the baseline, so the margin reads directly in points.
  """
  return {
      "informative_gain": (metrics["fidelity_informative"] - baseline["fidelity_informative"],
                           VERSUS_BASELINE_INFORMATIVE_GAIN, True),
      "fid_gain": (baseline["scenes_fid"] - metrics["scenes_fid"], 0.0, True),
      "shape_probe_gain": (metrics["shape_probe"] - baseline["shape_probe"],
                           -VERSUS_BASELINE_SHAPE_LOSS, True),
  }


def check(targets: Targets) -> dict[str, dict]:
  out = {}
  for name, (value, threshold, higher) in targets.items():
    margin = value - threshold if higher else threshold - value
    out[name] = {"value": value, "target": threshold, "higher_is_better": higher,
                 "margin": margin, "met": margin >= 0}
  return out


def versus_baseline(results: list[Mapping], baseline: str = "autoencoder",
                    random_shapes: Mapping[int, float] | None = None) -> dict[str, dict]:
  """Every other variant's runs checked against the baseline's run of the same seed.

  results: the study runner's rows (``variant``, ``seed``, ``metrics``); random_shapes: seed ->
  the random encoder's shape probe, which adds the demo's targets. Seeds the baseline has not
  finished are left out. Returns variant -> {"seeds": {seed: verdicts}, "all_met": bool}.
  """
  base = {r["seed"]: r["metrics"] for r in results if r["variant"] == baseline}
  out: dict[str, dict] = {}
  for row in results:
    if row["variant"] == baseline or row["seed"] not in base:
      continue
    targets = versus_baseline_targets(row["metrics"], base[row["seed"]])
    if random_shapes is not None and row["seed"] in random_shapes:
      targets.update(demo_targets(row["metrics"], random_shapes[row["seed"]]))
    if "regressed_since_previous_eval" in row:  # the demo's "no metric worse than before"
      targets["metrics_worse_than_previous_eval"] = (
          float(len(row["regressed_since_previous_eval"])), 0.0, False)
    entry = out.setdefault(row["variant"], {"seeds": {}, "all_met": True})
    entry["seeds"][row["seed"]] = verdicts = check(targets)
    entry["all_met"] = entry["all_met"] and all(v["met"] for v in verdicts.values())
  return out


def versus_baseline_markdown(comparison: Mapping[str, Mapping], baseline: str) -> str:
  """One row per (variant, seed): each target's value and ok / MISSED by how much."""
  if not comparison:
    return ""
  first = next(iter(next(iter(comparison.values()))["seeds"].values()))
  names = list(first)
  lines = [f"Against `{baseline}` of the same seed (gains in points; FID gain = baseline FID - "
           f"variant FID; informative gain target +{100 * VERSUS_BASELINE_INFORMATIVE_GAIN:.0f}, "
           f"shape probe at most {100 * VERSUS_BASELINE_SHAPE_LOSS:.0f} point below):", "",
           "| variant | seed | " + " | ".join(names) + " | all met |",
           "|---|---|" + "---|" * (len(names) + 1)]
  for variant, entry in comparison.items():
    for seed, verdicts in entry["seeds"].items():
      cells = []
      for name in names:
        v = verdicts[name]
        scale = 1 if name in RAW_UNITS else 100  # fractions are shown in percent / points
        sign = "+" if name.endswith("gain") or "_vs_" in name else ""  # differences
        digits = {"rec_l1": 3, "metrics_worse_than_previous_eval": 0}.get(name, 1)
        shown = f"{scale * v['value']:{sign}.{digits}f}"
        cells.append(shown +
                     (" ok" if v["met"] else f" MISSED by {abs(scale * v['margin']):.3g}"))
      met = all(v["met"] for v in verdicts.values())
      lines.append(f"| {variant} | {seed} | " + " | ".join(cells) + f" | {'yes' if met else 'no'} |")
  return "\n".join(lines) + "\n"
