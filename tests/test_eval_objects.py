"""Object metrics on hand-made labels, and whole-test-set mixing with global donor indices."""

import numpy as np
import pytest

from lorbms_tf.eval import object_metrics


def test_fidelity_on_hand_made_labels():
  reference = np.array([[1, 2, 3, 4], [1, 1, 0, 5]])
  donor = np.array([[6, 2, 5, 1], [2, 1, 3, 3]])
  mask = np.array([[1, 1, 0, 0], [0, 1, 1, 0]])
  # Sources: row 0 -> [6, 2, 3, 4]; row 1 -> [1, 1, 3, 5].
  predicted = np.array([[6, 2, 3, 1],    # BR kept but shows the donor's object
                        [1, 4, 0, 5]])   # TR replaced (same object either way) shows a 4;
  #                                        BL replaced but shows the reference's (empty) 0
  f = object_metrics.object_transfer_fidelity(predicted, reference, donor, mask)
  assert f["fidelity"] == pytest.approx(5 / 8)
  assert f["fidelity_replaced"] == pytest.approx(2 / 4)  # 6 ok, 2 ok, 4 != 1, 0 != 3
  assert f["fidelity_kept"] == pytest.approx(3 / 4)
  # Informative (donor != reference): row 0 TL, BL, BR; row 1 TL, BL, BR -> 6 quadrants.
  assert f["num_informative"] == 6
  assert f["fidelity_informative"] == pytest.approx(4 / 6)
  assert f["replaced_shows_reference"] == pytest.approx(1 / 2)  # row-1 BL shows reference's 0
  assert f["kept_shows_donor"] == pytest.approx(1 / 4)  # row-0 BR shows donor's 1
  assert f["num_quadrants"] == 8 and f["num_replaced"] == 4


def test_fidelity_shape_mismatch_is_an_error():
  with pytest.raises(ValueError, match="shapes differ"):
    object_metrics.object_transfer_fidelity(np.zeros((2, 4)), np.zeros((2, 4)),
                                            np.zeros((2, 4)), np.zeros((3, 4)))


def test_object_ids_combine_shape_and_colour():
  ids = object_metrics.object_ids(np.array([[0, 1, 1]]), np.array([[-1, 2, 3]]))
  assert ids[0, 0] == 0 and len(set(ids[0].tolist())) == 3


def test_mask_classifier_accuracy():
  mask = np.array([[1, 0, 0, 0], [0, 1, 1, 0]], np.float32)
  logits = np.full((2, 4, 4), -3.0)
  logits[0, 0, 0] = 2.0   # replaced, said replaced
  logits[1, 1, 1] = 2.0   # replaced, said replaced
  logits[1, 3, 3] = 1.0   # kept, said replaced (wrong); (1, 2) replaced, said kept (wrong)
  m = object_metrics.mask_classifier_accuracy(logits, mask)
  assert m["accuracy"] == pytest.approx(6 / 8)
  assert m["recall_replaced"] == pytest.approx(2 / 3)
  assert m["recall_kept"] == pytest.approx(4 / 5)
  assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 4 / 5) / 2)
  assert m["majority_baseline"] == pytest.approx(5 / 8)


def test_mix_all_returns_global_donor_indices():
  images = np.arange(7, dtype=np.float32)[:, None, None, None] * np.ones((7, 2, 2, 3), np.float32)

  def mix_fn(batch):  # partner = next image in the batch, for every quadrant
    b = batch.shape[0]
    donor = (np.arange(b) + 1) % b
    return {"mixed": batch.numpy(), "mask": np.ones((b, 4)),
            "donor_index": np.tile(donor[:, None], 4)}

  out = object_metrics.mix_all(mix_fn, images, batch_size=3)
  assert out["mixed"].shape[0] == 7
  # Batches [0,1,2], [3,4,5], [6,0,1]: donors 1,2,0 | 4,5,3 | 0 (for image 6).
  assert out["donor_index"][:, 0].tolist() == [1, 2, 0, 4, 5, 3, 0]
  labels = np.arange(28).reshape(7, 4)
  donors = object_metrics.donor_labels(labels, out["donor_index"])
  assert donors[6].tolist() == labels[0].tolist() and donors[0].tolist() == labels[1].tolist()
