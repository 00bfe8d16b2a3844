"""Wall-clock seconds per stage of a long job (evaluation, knowledge transfer), for its report."""

from __future__ import annotations

import time


class StageTimer:
  """``lap(name)`` records the seconds since the previous lap (or since creation) under name;
  ``seconds`` holds every stage, ``total()`` the time since creation."""

  def __init__(self):
    self.start = self.last = time.perf_counter()
    self.seconds: dict[str, float] = {}

  def lap(self, name: str) -> None:
    now = time.perf_counter()
    self.seconds[name] = round(now - self.last, 2)
    self.last = now

  def total(self) -> float:
    return round(time.perf_counter() - self.start, 1)
