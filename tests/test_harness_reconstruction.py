"""The autoencoder screen's arms (docs/experiments/harnesses/reconstruction_distance.py): names
and flag errors."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "docs", "experiments", "harnesses"))
import reconstruction_distance as screen  # noqa: E402


def test_default_arms_are_the_distances_with_the_thesis_decoder():
  # The reference JSON (bench/reference/reconstruction_distance.json) keys its arms "l1", "l2".
  assert [(n, d, p) for n, d, p in screen.parse_args([]).arms] == [("l1", "l1", 0),
                                                                     ("l2", "l2", 0)]


def test_projection_arms_name_distance_and_projection():
  args = screen.parse_args(["--distances=l2", "--decoder_projections=0,8"])
  assert args.arms == [("l2_projection0", "l2", 0), ("l2_projection8", "l2", 8)]


@pytest.mark.parametrize("argv, message", [
    (["--distances=l3"], "--distances: unknown ['l3']"),
    (["--decoder_projections=3"], "--decoder_projections: unknown [3]"),
    (["--decoder_projections=eight"], "--decoder_projections: integers expected"),
])
def test_bad_arms_are_one_line_errors(argv, message, capsys):
  with pytest.raises(SystemExit):
    screen.parse_args(argv)
  assert message in capsys.readouterr().err
