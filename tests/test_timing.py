"""StageTimer: the per-stage seconds of the evaluation and transfer reports."""

from lorbms_tf import timing


def test_each_lap_is_the_time_since_the_previous_one(monkeypatch):
  clock = iter([10.0, 12.5, 13.0, 20.25, 21.0])
  monkeypatch.setattr(timing.time, "perf_counter", lambda: next(clock))
  timer = timing.StageTimer()                    # 10.0
  timer.lap("load")                              # 12.5
  timer.lap("probes")                            # 13.0
  timer.lap("grids")                             # 20.25
  assert timer.seconds == {"load": 2.5, "probes": 0.5, "grids": 7.25}
  assert timer.total() == 11.0                   # 21.0 - 10.0
