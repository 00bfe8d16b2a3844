"""What a run says about bad input data: each bad file named once, counts, a share limit.

The decoding stage (``sources.decode_stage``) drops bad examples and records why in a
``SkipCounter``; ``SkipReport`` turns that into the run's log lines, TensorBoard scalars and
summary, and stops the run with a one-line ``DataError`` when more than ``max_fraction`` of
the source is bad (or nothing at all is usable).
"""

from __future__ import annotations

from absl import logging
import tensorflow as tf

from lorbms_tf.data.sources import SkipCounter

DEFAULT_MAX_SKIPPED_FRACTION = 0.1
_NAMED_IN_ERRORS = 3  # paths an error message names
_NAMED_PER_LOG = 20  # bad files a single log call names one by one (the rest are counted)


class DataError(ValueError):
  """The input data cannot be trained on as it is (the message says what to do)."""


class SkipReport:
  """Reports a ``SkipCounter``'s findings during a run.

  update(): names each newly found bad file once (log warning), returns the counts, writes
  them to TensorBoard (``data/passed``, ``data/skipped/<reason>``) and raises ``DataError``
  once the bad share exceeds ``max_fraction`` of the source (tracked sources: of all its
  files, so the verdict never has to wait for the end of an epoch).
  """

  def __init__(self, counter: SkipCounter, source: str,
               max_fraction: float = DEFAULT_MAX_SKIPPED_FRACTION):
    if not 0.0 <= max_fraction <= 1.0:
      raise ValueError(f"--max_skipped_fraction must be in [0, 1], got {max_fraction}")
    self.counter, self.source, self.max_fraction = counter, source, max_fraction
    self.first_bad: list[str] = []

  def update(self, writer: tf.summary.SummaryWriter | None = None, step: int = 0,
             final: bool = False) -> dict[str, int]:
    self._name_new_skips()
    counts = self.counts(final)
    if writer is not None:
      with writer.as_default(step=step):
        tf.summary.scalar("data/passed", counts["passed"])
        for reason in SkipCounter.REASONS:
          tf.summary.scalar(f"data/skipped/{reason}", counts[reason])
    self.check(counts)
    return counts

  def _name_new_skips(self) -> None:
    fresh = self.counter.new_skips()
    for name, reason in fresh[:_NAMED_PER_LOG]:
      logging.warning("%s: skipped %s (%s)", self.counter.name, name, reason)
    if len(fresh) > _NAMED_PER_LOG:
      logging.warning("%s: skipped %d more bad files (see the counts)", self.counter.name,
                      len(fresh) - _NAMED_PER_LOG)
    self.first_bad += [f"{name} ({reason})" for name, reason in fresh][
        :max(_NAMED_IN_ERRORS - len(self.first_bad), 0)]

  def counts(self, final: bool = False) -> dict[str, int]:
    counts = self.counter.counts(final)
    counts["skipped"] = sum(counts[reason] for reason in SkipCounter.BAD)
    return counts

  def line(self, counts: dict[str, int]) -> str:
    reasons = ", ".join(f"{r}={counts[r]}" for r in SkipCounter.REASONS if counts[r])
    return f"{counts['passed']} passed, {counts['skipped']} skipped" + (
        f" ({reasons})" if reasons else "")

  def check(self, counts: dict[str, int]) -> None:
    total = self.counter.total_examples or counts["passed"] + counts["skipped"]
    if total and counts["skipped"] > self.max_fraction * total:
      raise DataError(
          f"{self.source}: {counts['skipped']} of {total} images are bad ({self.line(counts)}), "
          f"more than --max_skipped_fraction={self.max_fraction:g}"
          f"{self._first()}; fix or remove them, or raise --max_skipped_fraction")

  def no_usable_images(self) -> DataError:
    """The error for a source whose read ended without a single usable image."""
    self._name_new_skips()
    counts = self.counts(final=True)
    return DataError(f"{self.source}: no usable images ({self.line(counts)}){self._first()}; "
                     f"images must be JPEG, PNG, GIF or BMP with a short side of at least the "
                     f"training size")

  def _first(self) -> str:
    return f"; first: {', '.join(self.first_bad)}" if self.first_bad else ""
