"""Linear probes: how linearly readable are the learned representations?

The protocol is the thesis's (METHOD.md, STL-10): one dense layer on *frozen* features (the
encoder's final 1x1 conv, or the discriminator's layer before its logits), Adam 1e-3 with
beta1 0.5, batch 128, 200 epochs, trained on each of STL-10's ten 1,000-image folds
separately and tested on the 8,000 test images; mean +- SD over folds, and the probe's
parameter count (the thesis's "Cls" column: features x classes + classes). Variants in the
same code: a fine-tuned probe (the feature network trains too) and random-initialised
networks as baselines.

Two training paths, one loop:

* ``train_linear_probe``: precomputed features (frozen network, no augmentation). The fast
  path: the network runs once over the data, then 200 epochs of a single dense layer cost
  nothing. Used for the lorbms_scenes probes and for frozen STL-10 probes without augmentation.
* ``train_image_probe``: the network runs on every (augmented) batch; needed for the
  protocol's train-time augmentation and for fine-tuning.

Nothing here reads flags; ``evaluate.py`` maps them onto ``ProbeConfig``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import tensorflow as tf

from lorbms_tf import conventions

FeatureFn = Callable[..., tf.Tensor]  # (images, training=bool) -> [B, ...] features


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
  """The probe's optimiser and budget (the protocol's values are the defaults but epochs)."""
  epochs: int = 200
  batch_size: int = 128
  learning_rate: float = 1e-3
  beta_1: float = 0.5
  seed: int = 0


@dataclasses.dataclass
class ProbeResult:
  """One trained probe. ``num_params``: the dense layer only (the thesis's "Cls" column)."""
  accuracy: float
  train_accuracy: float
  num_params: int
  num_train: int
  num_test: int
  feature_dim: int
  extra: dict[str, Any] = dataclasses.field(default_factory=dict)
  # argmax on the test set (frozen-feature path), for breakdowns; not part of to_dict().
  predictions: np.ndarray | None = dataclasses.field(default=None, repr=False)

  def to_dict(self) -> dict[str, Any]:
    out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
           if f.name not in ("predictions", "extra")}
    out.update(self.extra)
    return out


@dataclasses.dataclass
class ProbeSummary:
  """Probes repeated over folds: mean +- SD (population SD over folds, as the thesis)."""
  mean: float
  std: float
  accuracies: list[float]
  num_params: int
  feature_dim: int

  @classmethod
  def from_results(cls, results: Sequence[ProbeResult]) -> "ProbeSummary":
    accuracies = [r.accuracy for r in results]
    return cls(float(np.mean(accuracies)), float(np.std(accuracies)), accuracies,
               results[0].num_params, results[0].feature_dim)

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class FeatureExtractor:
  """A named feature layer: ``fn(images, training=...)`` -> [B, ...] features.

  ``module`` is the network whose trainable variables a fine-tuned probe updates (the
  encoder, the discriminator); frozen probes never touch it.
  """
  name: str
  fn: FeatureFn
  module: Any = None


def encoder_extractor(encoder, name: str = "encoder") -> FeatureExtractor:
  """The encoder's final layer: [B, 3, 3, C] at 96 px, the 2x2 chunk grid at 64 px."""
  return FeatureExtractor(name, lambda images, training=False: encoder(images, training=training),
                          encoder)


def discriminator_extractor(discriminator, name: str = "discriminator") -> FeatureExtractor:
  """The discriminator's layer before its logits: [B, 6, 6, 336] at 96 px (coco preset)."""
  return FeatureExtractor(
      name, lambda images, training=False: discriminator.features(images, training=training),
      discriminator)


def probe_param_count(feature_dim: int, num_classes: int) -> int:
  """Parameters of the probe: a [feature_dim, num_classes] kernel plus one bias per class."""
  return feature_dim * num_classes + num_classes


def _flatten(features: tf.Tensor) -> tf.Tensor:
  return tf.reshape(features, [tf.shape(features)[0], -1])


def extract_features(extractor: FeatureExtractor | FeatureFn,
                     batches: Iterable, label_key: str | None = "label",
                     ) -> tuple[np.ndarray, np.ndarray | None]:
  """Runs a frozen feature layer over batches -> (features [N, D] float32, labels [N] or None).

  ``batches``: dicts with "image" (and ``label_key``), or plain image arrays.
  """
  fn = extractor.fn if isinstance(extractor, FeatureExtractor) else extractor
  features, labels = [], []
  for batch in batches:
    # Eager on purpose: one pass over the data is compute-bound (measured: no faster traced
    # on CPU), and tracing per network (every checkpoint, every baseline) is not free.
    images = batch["image"] if isinstance(batch, Mapping) else batch
    features.append(np.asarray(_flatten(fn(tf.convert_to_tensor(images, tf.float32),
                                           training=False))))
    if isinstance(batch, Mapping) and label_key and label_key in batch:
      labels.append(np.asarray(batch[label_key]))
  feats = np.concatenate(features).astype(np.float32)
  return feats, (np.concatenate(labels).astype(np.int64) if labels else None)


def _make_head(feature_dim: int, num_classes: int, seed: int):
  import keras  # pylint: disable=import-outside-toplevel
  head = keras.layers.Dense(num_classes, name="probe",
                            kernel_initializer=keras.initializers.GlorotUniform(seed=seed))
  head.build((None, feature_dim))
  return head


def _optimizer(config: ProbeConfig):
  import keras  # pylint: disable=import-outside-toplevel
  return keras.optimizers.Adam(config.learning_rate, beta_1=config.beta_1)


def _mean_equal(a: np.ndarray, b: np.ndarray) -> float:
  return float(np.mean(a == b)) if len(b) else float("nan")


def train_linear_probe(train_features: np.ndarray, train_labels: np.ndarray,
                       test_features: np.ndarray, test_labels: np.ndarray,
                       num_classes: int, config: ProbeConfig = ProbeConfig()) -> ProbeResult:
  """One dense layer on fixed features, softmax cross-entropy; returns test accuracy.

  Features are flattened ([N, ...] -> [N, D]) and used as they are (no normalisation: the
  protocol has none, and a per-feature scale would be a second trained layer in disguise).
  All epochs run inside one traced graph (``fit_softmax_regression``), shared by every probe
  with the same data shape: an evaluation trains dozens of probes (folds x feature layers x
  checkpoints), and tracing each one would cost more than training it.
  """
  x_train = np.asarray(train_features, np.float32).reshape(len(train_features), -1)
  x_test = np.asarray(test_features, np.float32).reshape(len(test_features), -1)
  y_train = np.asarray(train_labels, np.int64)
  y_test = np.asarray(test_labels, np.int64)
  feature_dim = x_train.shape[1]
  kernel, bias = fit_softmax_regression(x_train, y_train, num_classes, config)

  def predict(x):
    return np.argmax(x @ kernel + bias, -1) if len(x) else np.zeros([0], np.int64)
  test_predictions = predict(x_test)
  return ProbeResult(
      accuracy=_mean_equal(test_predictions, y_test),
      train_accuracy=_mean_equal(predict(x_train), y_train),
      num_params=int(kernel.size + bias.size),
      num_train=len(y_train), num_test=len(y_test), feature_dim=feature_dim,
      predictions=test_predictions)


def fit_softmax_regression(x: np.ndarray, y: np.ndarray, num_classes: int,
                           config: ProbeConfig = ProbeConfig()) -> tuple[np.ndarray, np.ndarray]:
  """Trains the probe's dense layer (Glorot-uniform kernel, zero bias) with Adam exactly as
  Keras's (beta2 0.999, epsilon 1e-7), reshuffled every epoch; returns (kernel, bias)."""
  x = tf.constant(np.asarray(x, np.float32))
  y = tf.constant(np.asarray(y, np.int32))
  feature_dim = int(x.shape[1])
  limit = float(np.sqrt(6.0 / (feature_dim + num_classes)))
  kernel = tf.Variable(tf.random.stateless_uniform([feature_dim, num_classes], [config.seed, 1],
                                                   -limit, limit))
  bias = tf.Variable(tf.zeros([num_classes]))
  slots = [tf.Variable(tf.zeros_like(v)) for v in (kernel, bias, kernel, bias)]
  _train_epochs(x, y, kernel, bias, *slots, tf.constant(config.epochs),
                tf.constant(config.batch_size), tf.constant(config.learning_rate, tf.float32),
                tf.constant(config.beta_1, tf.float32), tf.constant(config.seed, tf.int64))
  return kernel.numpy(), bias.numpy()


@tf.function  # traced once per data/variable shape; not reduce_retracing: see below
def _train_epochs(x, y, kernel, bias, m_kernel, m_bias, v_kernel, v_bias, epochs, batch_size,
                  learning_rate, beta_1, seed):
  # Relaxed (None) variable shapes made the bias gradient's broadcast fail at run time
  # (TF 2.20), so each probe size gets its own exact-shape trace.
  beta_2, epsilon = 0.999, 1e-7
  n = tf.shape(x)[0]
  num_batches = (n + batch_size - 1) // batch_size
  step = tf.constant(0.0)
  for epoch in tf.range(epochs):
    order = tf.argsort(tf.random.stateless_uniform([n], tf.stack([seed, tf.cast(epoch, tf.int64)])))
    for b in tf.range(num_batches):
      index = order[b * batch_size:tf.minimum((b + 1) * batch_size, n)]
      xb, yb = tf.gather(x, index), tf.gather(y, index)
      with tf.GradientTape() as tape:
        logits = tf.matmul(xb, kernel) + bias
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(yb, logits))
      grads = tape.gradient(loss, [kernel, bias])
      step += 1.0
      rate = learning_rate * tf.sqrt(1.0 - beta_2 ** step) / (1.0 - beta_1 ** step)
      for var, m, v, g in zip((kernel, bias), (m_kernel, m_bias), (v_kernel, v_bias), grads):
        m.assign(beta_1 * m + (1.0 - beta_1) * g)
        v.assign(beta_2 * v + (1.0 - beta_2) * tf.square(g))
        var.assign_sub(rate * m / (tf.sqrt(v) + epsilon))


def train_image_probe(extractor: FeatureExtractor,
                      train_batches: Callable[[int], Iterable[Mapping[str, Any]]],
                      test_batches: Iterable[Mapping[str, Any]], num_classes: int,
                      config: ProbeConfig = ProbeConfig(), fine_tune: bool = False,
                      label_key: str = "label") -> ProbeResult:
  """A probe trained on images through the feature network, batch by batch.

  ``train_batches(epoch)`` returns that epoch's (augmented, shuffled) batches of
  {"image", label_key}; ``test_batches`` the fixed test view. With ``fine_tune`` the feature
  network's variables train too (same optimiser), which is the thesis's "fine-tuned" row;
  the network object is changed in place, so pass a copy you can discard.
  """
  head = None
  optimizer = _optimizer(config)
  variables: list = []
  step = None
  num_train = 0
  for epoch in range(config.epochs):
    for batch in train_batches(epoch):
      images = tf.convert_to_tensor(batch["image"], tf.float32)
      labels = tf.convert_to_tensor(batch[label_key], tf.int64)
      if head is None:  # the feature size is known after the first batch
        feature_dim = int(np.prod(extractor.fn(images[:1], training=False).shape[1:]))
        head = _make_head(feature_dim, num_classes, config.seed)
        variables = list(head.trainable_variables)
        if fine_tune:
          variables += list(extractor.module.trainable_variables)
        optimizer.build(variables)

        @tf.function(reduce_retracing=True)
        def step(x, y):
          with tf.GradientTape() as tape:
            features = extractor.fn(x, training=fine_tune)
            if not fine_tune:
              features = tf.stop_gradient(features)
            logits = head(_flatten(features))
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
          optimizer.apply(tape.gradient(loss, variables), variables)
          return loss
      step(images, labels)
      if epoch == 0:
        num_train += int(labels.shape[0])
  if head is None:
    raise ValueError("train_batches yielded no data")

  def predict(x):
    return head(_flatten(extractor.fn(x, training=False)))
  correct = total = 0
  for batch in test_batches:
    logits = predict(tf.convert_to_tensor(batch["image"], tf.float32))
    labels = np.asarray(batch[label_key])
    correct += int(np.sum(np.argmax(np.asarray(logits), -1) == labels))
    total += len(labels)
  return ProbeResult(
      accuracy=correct / max(total, 1), train_accuracy=float("nan"),
      num_params=int(sum(np.prod(v.shape) for v in head.weights)),
      num_train=num_train, num_test=total, feature_dim=int(head.weights[0].shape[0]),
      extra={"fine_tuned": fine_tune})


# --------------------------------------------------------------------------------------------
# STL-10 protocol
# --------------------------------------------------------------------------------------------

STL10_NUM_CLASSES = 10


def fold_probes_on_features(train_features: np.ndarray, train_labels: np.ndarray,
                            train_ids: np.ndarray, test_features: np.ndarray,
                            test_labels: np.ndarray, folds: Sequence[np.ndarray],
                            num_classes: int = STL10_NUM_CLASSES,
                            config: ProbeConfig = ProbeConfig()) -> ProbeSummary:
  """Frozen-feature probes, one per fold (``folds``: id arrays into the training split)."""
  position = {int(i): p for p, i in enumerate(np.asarray(train_ids))}
  results = []
  for fold, ids in enumerate(folds):
    rows = np.array([position[int(i)] for i in ids if int(i) in position], np.int64)
    if rows.size == 0:
      raise ValueError(f"fold {fold}: none of its ids is in the training split")
    fold_config = dataclasses.replace(config, seed=config.seed + fold)
    results.append(train_linear_probe(train_features[rows], train_labels[rows], test_features,
                                      test_labels, num_classes, fold_config))
  return ProbeSummary.from_results(results)


def stl10_linear_probes(extractors: Sequence[FeatureExtractor], data_dir: str | None = None,
                        config: ProbeConfig = ProbeConfig(), num_folds: int = 10,
                        augment: bool = False, fine_tune: Sequence[str] = (),
                        make_fine_tune_copy: Callable[[str], FeatureExtractor] | None = None,
                        spec: str = "stl10", image_size: int = 96,
                        test_limit: int | None = None) -> dict[str, ProbeSummary]:
  """The thesis's STL-10 table: one ``ProbeSummary`` per extractor (and per fine-tuned one).

  augment=False: frozen features of the central-crop view, computed once (fast; **ours** as a
  budget option). augment=True: the protocol's random-area crops + flips every epoch, so the
  network runs on every batch. ``fine_tune`` names extractors to also probe fine-tuned
  (their rows are called "<name> (fine-tuned)"); ``make_fine_tune_copy(name)`` must return a
  fresh extractor on a network copy, since fine-tuning changes the network.
  """
  from lorbms_tf.data import pipeline, sources  # pylint: disable=import-outside-toplevel
  if fine_tune and make_fine_tune_copy is None:
    raise ValueError("fine-tuned probes need make_fine_tune_copy (fine-tuning changes the "
                     "network, so it must run on a copy)")

  # Built once: iterating a tf.data pipeline again replays it (the test view is fixed).
  test_view = pipeline.probe_dataset(spec, "test", config.batch_size, training=False,
                                     image_size=image_size, data_dir=data_dir)
  if test_limit is not None:
    test_view = test_view.unbatch().take(test_limit).batch(config.batch_size)
  test_batches = lambda: test_view  # pylint: disable=unnecessary-lambda-assignment

  train_view = pipeline.probe_dataset(spec, "train", config.batch_size, training=False,
                                      image_size=image_size, data_dir=data_dir)
  train_ids = np.concatenate([b["id"].numpy() for b in train_view.map(lambda b: {"id": b["id"]})])
  folds = [sources.stl10_fold_ids(k, train_ids) for k in range(num_folds)]

  table: dict[str, ProbeSummary] = {}
  for extractor in extractors:
    if not augment:
      x_train, y_train = extract_features(extractor, train_view)
      x_test, y_test = extract_features(extractor, test_batches())
      table[extractor.name] = fold_probes_on_features(
          x_train, y_train, train_ids, x_test, y_test, folds, STL10_NUM_CLASSES, config)
    else:
      table[extractor.name] = _image_fold_probes(
          lambda name=extractor.name, e=extractor: e, folds, test_batches, config, spec,
          image_size, data_dir, fine_tune=False)
    if extractor.name in fine_tune:
      table[f"{extractor.name} (fine-tuned)"] = _image_fold_probes(
          lambda name=extractor.name: make_fine_tune_copy(name), folds, test_batches, config,
          spec, image_size, data_dir, fine_tune=True, augment=augment)
  return table


def _image_fold_probes(make_extractor, folds, test_batches, config, spec, image_size, data_dir,
                       fine_tune: bool, augment: bool = True) -> ProbeSummary:
  from lorbms_tf.data import pipeline  # pylint: disable=import-outside-toplevel
  results = []
  for fold, ids in enumerate(folds):
    fold_config = dataclasses.replace(config, seed=config.seed + fold)
    # One pipeline per fold: each pass over it draws new crops, flips and order (its seeds
    # and shuffle re-randomise per iteration), so it serves every epoch.
    fold_view = pipeline.probe_dataset(spec, "train", config.batch_size, training=augment,
                                       image_size=image_size, seed=fold_config.seed,
                                       ids=ids, data_dir=data_dir)
    results.append(train_image_probe(make_extractor(), lambda epoch, view=fold_view: view,
                                     test_batches(), STL10_NUM_CLASSES, fold_config,
                                     fine_tune=fine_tune))
  return ProbeSummary.from_results(results)


# --------------------------------------------------------------------------------------------
# lorbms_scenes probes
# --------------------------------------------------------------------------------------------

def standardize(train_features: np.ndarray, test_features: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
  """Zero mean, unit variance per feature, with the *training* rows' statistics.

  A fixed affine map that a linear probe could absorb, so it changes no probe's capacity,
  only its conditioning: without it, features of very different scales (pixels in [-1, 1],
  chunks in the hundreds) get very different results from the same Adam budget.
  """
  mean = train_features.mean(0, keepdims=True)
  scale = train_features.std(0, keepdims=True) + 1e-6
  return (train_features - mean) / scale, (test_features - mean) / scale


def quadrant_probe(train_chunks: np.ndarray, train_shapes: np.ndarray, test_chunks: np.ndarray,
                   test_shapes: np.ndarray, num_classes: int,
                   config: ProbeConfig = ProbeConfig(), standardized: bool = False
                   ) -> ProbeResult:
  """Per-quadrant probe: predict the label of quadrant i (its shape, or colour) from chunk i.

  One dense layer shared by the four positions (its examples are all (chunk i, label i)
  pairs), so it asks whether a chunk *on its own* says which object its quadrant holds: the
  property object transfer relies on. ``*_chunks``: [N, 2, 2, C] (or [N, 4, C]); labels
  [N, 4] in 0..num_classes-1. ``standardized``: see ``standardize``.
  Also reports per-position accuracy and the majority-class baseline.
  """
  def as_rows(chunks):
    chunks = np.asarray(chunks, np.float32)
    return chunks.reshape(len(chunks) * conventions.NUM_QUADRANTS, -1)

  y_train = np.asarray(train_shapes, np.int64).reshape(-1)
  y_test = np.asarray(test_shapes, np.int64).reshape(-1)
  x_train, x_test = as_rows(train_chunks), as_rows(test_chunks)
  if standardized:
    x_train, x_test = standardize(x_train, x_test)
  result = train_linear_probe(x_train, y_train, x_test, y_test, num_classes, config)
  correct = (result.predictions == y_test).reshape(-1, conventions.NUM_QUADRANTS)
  for i, name in enumerate(conventions.QUADRANT_NAMES):
    result.extra[f"accuracy_{name}"] = float(correct[:, i].mean())
  majority = np.bincount(y_train, minlength=num_classes).argmax()
  result.extra["majority_baseline"] = float(np.mean(y_test == majority))
  return result


def whole_image_probe(train_features: np.ndarray, train_labels: np.ndarray,
                      test_features: np.ndarray, test_labels: np.ndarray, num_classes: int,
                      config: ProbeConfig = ProbeConfig()) -> ProbeResult:
  """Whole-image probe: the scene label (shape of the largest object) from all four chunks."""
  result = train_linear_probe(train_features, train_labels, test_features, test_labels,
                              num_classes, config)
  y_train = np.asarray(train_labels, np.int64)
  majority = np.bincount(y_train, minlength=num_classes).argmax()
  result.extra["majority_baseline"] = float(np.mean(np.asarray(test_labels) == majority))
  return result
