"""Object-level metrics of mixing: does a swapped chunk carry its object, and can C tell?

The thesis only showed pictures of object transfer. On ``lorbms_scenes`` every quadrant's
object is known, so transfer can be *counted*:

* **Object-transfer fidelity**: mix test scenes as in training (known masks and donors), let a
  supervised quadrant classifier (trained on ground truth, see ``image_metrics.SceneClassifier``)
  label each quadrant of I_mix, and count the quadrants that show the object of their source:
  the donor's where the quadrant was replaced, the reference's where it was kept. Quadrants
  whose donor and reference hold the same object cannot tell the sources apart, so the
  *informative* fidelity counts only the others; ``replaced_shows_reference`` is the share
  of informative replaced quadrants that still show the reference's object (the transfer
  failed cleanly), and the rest of the failures show something else (blur, a third shape).
* **Mask-classifier accuracy**: the model's own classifier C sees (I_mix, I_qi) and says
  whether quadrant i was replaced. High accuracy means the mix leaves visible seams, which the
  generator is trained to hide; chance is the majority rate of the mask.

Pure numpy on labels and logits, plus ``mix_all`` to run a mixing function over a test set.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
import tensorflow as tf

from lorbms_tf import conventions


def object_ids(shapes: np.ndarray, colors: np.ndarray | None = None,
               num_colors: int = 9) -> np.ndarray:
  """One id per (shape, colour) so "same object" can mean shape and colour; colour -1 = empty."""
  shapes = np.asarray(shapes, np.int64)
  if colors is None:
    return shapes
  return shapes * num_colors + (np.asarray(colors, np.int64) + 1)


def object_transfer_fidelity(predicted: np.ndarray, reference: np.ndarray, donor: np.ndarray,
                             mask: np.ndarray) -> dict[str, float]:
  """Share of quadrants of I_mix that show the object of their source.

  Args:
    predicted: [N, 4] object labels read off I_mix (by the quadrant classifier).
    reference: [N, 4] ground-truth objects of the reference images.
    donor: [N, 4] ground-truth objects of the donor for each quadrant (the image whose
      chunk i would be used; for kept quadrants the donor that was *not* used).
    mask: [N, 4] of {0, 1}, 1 = replaced.
  Returns fidelity overall / on replaced / on kept quadrants, the same on informative
  quadrants (donor != reference), the failure split and the counts.
  """
  predicted, reference, donor = (np.asarray(a) for a in (predicted, reference, donor))
  mask = np.asarray(mask).astype(bool)
  if not predicted.shape == reference.shape == donor.shape == mask.shape:
    raise ValueError(f"shapes differ: predicted {predicted.shape}, reference {reference.shape}, "
                     f"donor {donor.shape}, mask {mask.shape}")
  source = np.where(mask, donor, reference)
  other = np.where(mask, reference, donor)
  correct = predicted == source
  informative = donor != reference

  def share(values, where):
    return float(values[where].mean()) if where.any() else float("nan")

  everywhere = np.ones_like(mask)
  return {
      "fidelity": share(correct, everywhere),
      "fidelity_replaced": share(correct, mask),
      "fidelity_kept": share(correct, ~mask),
      "fidelity_informative": share(correct, informative),
      "fidelity_informative_replaced": share(correct, informative & mask),
      "fidelity_informative_kept": share(correct, informative & ~mask),
      # Failures on informative quadrants: the *other* source's object, or neither.
      "replaced_shows_reference": share(predicted == other, informative & mask),
      "kept_shows_donor": share(predicted == other, informative & ~mask),
      "shows_neither": share((predicted != source) & (predicted != other), informative),
      "num_quadrants": int(mask.size),
      "num_replaced": int(mask.sum()),
      "num_informative": int(informative.sum()),
  }


def own_position_logits(logits: np.ndarray) -> np.ndarray:
  """[N, 4, 4] C outputs (row i = C(I_mix, I_qi)) -> [N, 4] logit at position i of pair i."""
  logits = np.asarray(logits)
  if logits.ndim == 2:
    return logits
  return np.diagonal(logits, axis1=1, axis2=2)


def mask_classifier_accuracy(logits: np.ndarray, mask: np.ndarray) -> dict[str, float]:
  """How well C tells replaced from kept quadrants (logit > 0 = "replaced").

  ``logits``: [N, 4, 4] (as ``LorbmsModel``'s classifier pass) or already [N, 4].
  Balanced accuracy averages the two recalls, so an imbalanced mask cannot inflate it;
  ``majority_baseline`` is what always answering the more common class scores.
  """
  scores = own_position_logits(logits)
  mask = np.asarray(mask).astype(bool)
  if scores.shape != mask.shape:
    raise ValueError(f"logits {scores.shape} do not match mask {mask.shape}")
  said_replaced = scores > 0
  recall_replaced = float(said_replaced[mask].mean()) if mask.any() else float("nan")
  recall_kept = float((~said_replaced)[~mask].mean()) if (~mask).any() else float("nan")
  replaced_rate = float(mask.mean())
  return {
      "accuracy": float((said_replaced == mask).mean()),
      "balanced_accuracy": float(np.nanmean([recall_replaced, recall_kept])),
      "recall_replaced": recall_replaced,
      "recall_kept": recall_kept,
      "majority_baseline": max(replaced_rate, 1.0 - replaced_rate),
      "replaced_rate": replaced_rate,
  }


MixFn = Callable[[tf.Tensor], Mapping[str, tf.Tensor]]


def mix_all(mix_fn: MixFn, images: np.ndarray, batch_size: int,
            keys: tuple[str, ...] = ("mixed", "mask", "donor_index")) -> dict[str, np.ndarray]:
  """Runs batch-partner mixing over a whole test set, one I_mix per image.

  ``mix_fn(images [B, ...]) -> dict`` with at least ``keys``; ``donor_index`` indexes into its
  batch and is returned as an index into ``images``. Every batch has ``batch_size`` images
  (the last one is filled up with images from the start and the extra rows dropped), since
  partners come from the batch and a batch of one would have none.
  """
  images = np.asarray(images, np.float32)
  n = len(images)
  if n < 2:
    raise ValueError("mixing needs at least 2 images (partners come from the batch)")
  batch_size = max(2, min(batch_size, n))
  outputs: dict[str, list[np.ndarray]] = {key: [] for key in keys}
  for begin in range(0, n, batch_size):
    index = np.arange(begin, begin + batch_size) % n
    keep = min(batch_size, n - begin)
    out = mix_fn(tf.constant(images[index]))
    for key in keys:
      value = out[key]
      if tf.as_dtype(value.dtype).is_floating:  # float32 whatever the dtype policy (bf16 sums drift)
        value = tf.cast(value, tf.float32)
      value = np.asarray(value)
      if key == "donor_index":
        value = index[value.astype(np.int64)]
      outputs[key].append(value[:keep])
  return {key: np.concatenate(values) for key, values in outputs.items()}


def donor_labels(labels: np.ndarray, donor_index: np.ndarray) -> np.ndarray:
  """[N, 4] per-quadrant labels of the donors: labels[donor_index[n, i], i]."""
  labels = np.asarray(labels)
  donor_index = np.asarray(donor_index, np.int64)
  quadrant = np.arange(conventions.NUM_QUADRANTS)[None, :]
  return labels[donor_index, quadrant]


def transfer_objects(networks, references: np.ndarray, donors: np.ndarray,
                     masks: np.ndarray) -> np.ndarray:
  """Object transfer, Dec(Z_mix): chunk i from the donor where ``masks[:, i]`` is 1.

  ``networks``: ``checkpoints.Networks`` (its encoder and ``model.render``). ``references``
  [B, H, W, 3] in [-1, 1]; ``donors`` [B, H, W, 3] (one donor for every quadrant) or
  [B, 4, H, W, 3] (donor i for quadrant i); ``masks`` [B, 4]. Returns [B, H, W, 3] numpy.
  """
  references = tf.convert_to_tensor(references, tf.float32)
  donors = tf.convert_to_tensor(donors, tf.float32)
  if donors.shape.rank == 4:
    donors = tf.repeat(donors[:, None], conventions.NUM_QUADRANTS, axis=1)
  batch = tf.shape(references)[0]
  reference_chunks = networks.encoder(references, training=False)
  donor_chunks = networks.encoder(tf.reshape(donors, [-1, *donors.shape[2:]]), training=False)
  donor_chunks = tf.reshape(donor_chunks,
                            [batch, conventions.NUM_QUADRANTS, *donor_chunks.shape[1:]])
  result = networks.model.render(reference_chunks, donor_chunks,
                                 tf.convert_to_tensor(masks, tf.float32))
  return np.asarray(result)
