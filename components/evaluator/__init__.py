"""Evaluator component: a trained work dir -> metrics.json, report.md and a blessing.

  python -m components.evaluator --model=runs/pipeline/model --output_dir=runs/pipeline/evaluation \\
      [--threshold=reconstruction.l1_direct<=0.15 ...] -- [lorbms_tf.evaluate flags]

Runs ``lorbms_tf.evaluate`` (child process, the same library entry as the CLI) into the
artifact, then checks ``thresholds`` (dotted paths into metrics.json with <= or >=) and writes
``blessing.json``: {"blessed": bool, "reason", "checks", "checkpoint"}. The pusher pushes only a
blessed model, and exports the checkpoint that was evaluated (its prefix relative to the model).
"""

from __future__ import annotations

import dataclasses
import json
import operator
import os
import re
from typing import Any

from components import base
from lorbms_tf import atomic

_OPS = {"<=": operator.le, ">=": operator.ge}
DEFAULT_THRESHOLDS = ("reconstruction.l1_direct<=0.15", "mask_classifier.accuracy>=0.6")


def parse_threshold(text: str) -> tuple[str, str, float]:
  match = re.fullmatch(r"\s*([\w.]+)\s*(<=|>=)\s*([-+0-9.eE]+)\s*", text)
  if not match:
    raise ValueError(f"threshold {text!r}: write METRIC<=VALUE or METRIC>=VALUE, e.g. "
                     "reconstruction.l1_direct<=0.15")
  return match.group(1), match.group(2), float(match.group(3))


def lookup(metrics: dict[str, Any], path: str) -> Any:
  value: Any = metrics
  for key in path.split("."):
    if not isinstance(value, dict) or key not in value:
      raise KeyError(f"metrics.json has no {path!r} (missing {key!r})")
    value = value[key]
  return value


def bless(metrics: dict[str, Any], thresholds: tuple[str, ...]) -> dict[str, Any]:
  checks = []
  for text in thresholds:
    path, op, limit = parse_threshold(text)
    value = lookup(metrics, path)
    checks.append({"metric": path, "op": op, "limit": limit, "value": value,
                   "passed": value is not None and _OPS[op](float(value), limit)})
  failed = [c for c in checks if not c["passed"]]
  reason = ("all thresholds met" if not failed else "; ".join(
      f"{c['metric']} = {c['value']} (needs {c['op']} {c['limit']})" for c in failed))
  return {"blessed": not failed, "reason": reason, "checks": checks}


@dataclasses.dataclass(frozen=True)
class EvaluatorInputs:
  model: str  # a trainer artifact (work dir)
  eval_args: tuple[str, ...] = ()  # lorbms_tf.evaluate flags
  thresholds: tuple[str, ...] = DEFAULT_THRESHOLDS


def run(inputs: EvaluatorInputs, output_dir: str) -> dict:
  for text in inputs.thresholds:
    parse_threshold(text)  # a bad threshold fails before the evaluation runs

  def body(tmp):
    command = base.run_child("evaluation", "lorbms_tf.evaluate",
                             [*inputs.eval_args, f"--workdir={inputs.model}", f"--out_dir={tmp}"])
    with open(os.path.join(tmp, "metrics.json")) as f:
      metrics = json.load(f)
    blessing = bless(metrics, inputs.thresholds)
    # The checkpoint evaluated, relative to the model dir: the pusher exports exactly it.
    evaluated = (metrics.get("run") or {}).get("checkpoint")
    if evaluated:
      blessing["checkpoint"] = os.path.relpath(os.path.abspath(evaluated),
                                               os.path.abspath(inputs.model))
    atomic.write_json(os.path.join(tmp, "blessing.json"), blessing, indent=1)
    return {"command": command, "blessing": blessing}

  return base.write_artifact(output_dir, "evaluator", *step(inputs), body)


def step(inputs: EvaluatorInputs) -> tuple[object, dict]:
  """(settings, upstream artifacts): what the step's fingerprint is made of."""
  return ({**base.with_flagfiles(inputs, inputs.eval_args),
           "data": base.args_data_identity(inputs.eval_args)}, {"model": inputs.model})
