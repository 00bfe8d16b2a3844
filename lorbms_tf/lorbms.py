"""LorbmsModel: the four networks and one training iteration that reads like the method.

    Z_ref = Enc(I_ref)                      Z_qi = chunk i of Enc(I_qi)
    mask  = constraints(distances)          Z_mix = where(mask, Z_qi, Z_ref)
    I_mix = Dec(Z_mix)    I_hat = Dec(Z_ref)
    I'_ref = Dec(where(mask, Z_ref, Enc(I_mix)))                         (cycle)
    L_G = w_rec (|I_ref - I_hat| + |I_ref - I'_ref|) + w_adv L_adv + w_cls L_cls
    (ours, off by default) + w_rec w_lat |Enc(I_mix) - sg(Z_mix)| / mean|sg(Z_mix)|, decoder only

`generator_losses` names which terms reach the encoder and decoder ("lorbms": all of them, as
above; "autoencoder": d(I_ref, I_hat) alone; "autoencoder_cycle": both reconstruction terms).
D and C are trained on the same pass whatever reaches G, so every variant is evaluated alike.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
import tensorflow as tf

from lorbms_tf import conventions, losses, mixing
from lorbms_tf.models import (ModelConfig, build_classifier, build_decoder, build_discriminator,
                              build_encoder)


# Which loss terms reach the generator (encoder + decoder); see generator_loss_weights.
GENERATOR_LOSSES = ("lorbms", "autoencoder", "autoencoder_cycle")
# "full": the cycle's gradient runs back through I_mix into the first decoder pass (the thesis);
# "stop_mixed": I_mix is a constant to the cycle, which then trains the encoder's reading of
# I_mix and the second decoder pass only.
CYCLE_GRADIENTS = ("full", "stop_mixed")
# "joint": I_mix and I_hat decoded in one call (batch-norm statistics over both halves);
# "separate": one call each, so batch norm never normalises reference codes by mixed ones.
DECODER_BATCHES = ("joint", "separate")


@dataclasses.dataclass(frozen=True)
class LorbmsConfig:
  """Training-objective settings (sizes live in ModelConfig). A field with help metadata is a
  flag of ``lorbms_tf.train`` (lorbms_tf/config_flags.py)."""
  rec_weight: float = dataclasses.field(default=0.904, metadata={
      "help": "Weight of L_rec in L_G (0 = ablation)."})
  rec_distance: str = dataclasses.field(default="l1", metadata={  # the thesis: l1
      "choices": losses.REC_DISTANCES,
      "help": "Per-pixel distance of L_rec: l1 (the thesis) or l2 (ours: mean squared error)."})
  adv_weight: float = dataclasses.field(default=0.052, metadata={
      "help": "Weight of L_adv in L_G (0 = ablation)."})
  cls_weight: float = dataclasses.field(default=0.044, metadata={
      "help": "Weight of L_cls in L_G (0 = ablation)."})
  # Ours (False = the thesis's fixed weight): adv_weight is then the ratio of the adversarial
  # term's gradient norm to the reconstruction term's, both at the decoder's output layer, and
  # the weight follows it every step (Esser et al. 2021's adaptive weight). A fixed weight
  # lets a discriminator that wins early drown reconstruction (see README, what makes it learn).
  adaptive_adv_weight: bool = dataclasses.field(default=False, metadata={
      "help": "Ours: adv_weight is the ratio of the adversarial to the reconstruction gradient "
              "norm at the decoder's output layer, kept every step (thesis: off)."})
  # Ours (0 = off, as the thesis): ramp adv_weight linearly from 0 over this many iterations.
  # Measured on lorbms_scenes: the GAN term stalls early reconstruction (see README).
  adv_warmup_steps: int = dataclasses.field(default=0, metadata={
      "help": "Ours: ramp adv_weight linearly from 0 over N iterations (0 = off, thesis)."})
  generator_steps: int = dataclasses.field(default=1, metadata={  # the thesis used 2
      "help": "G updates per iteration (thesis: 2)."})
  partner_k: int = dataclasses.field(default=1, metadata={  # drawn per sample
      "help": "Neighbour rank r is drawn from 0..k-1."})
  # Constraint 3: replace other quadrants only below this quantile of the candidate distances
  # (per batch), or below a fixed `threshold` when one is given (e.g. from the neighbour table).
  threshold_quantile: float = dataclasses.field(default=0.5, metadata={
      "help": "Constraint 3 threshold quantile."})
  threshold: float | None = None  # not a flag
  generator_losses: str = dataclasses.field(default="lorbms", metadata={
      "choices": GENERATOR_LOSSES,
      "help": "Terms that reach the encoder and decoder: lorbms (all, the thesis), autoencoder "
              "(d(I_ref, I_hat) only), autoencoder_cycle (+ the cycle). D and C are trained "
              "either way."})
  cycle_weight: float = dataclasses.field(default=1.0, metadata={
      "help": "The cycle term's share of rec_weight (thesis: 1)."})
  cycle_gradient: str = dataclasses.field(default="full", metadata={
      "choices": CYCLE_GRADIENTS,
      "help": "full: the cycle's gradient runs back through I_mix (thesis); stop_mixed: not."})
  decoder_batches: str = dataclasses.field(default="joint", metadata={
      "choices": DECODER_BATCHES,
      "help": "joint: I_mix and I_hat in one decoder call (shared batch-norm statistics); "
              "separate: one call each."})
  # Ours (0 = off, as the thesis): w_rec * this * d(I_mix, collage), the collage being quadrant
  # i of donor image i where replaced, of I_ref where kept (mixing.quadrant_collage): a pixel
  # target for the mixed scene that holds under the 4-object assumption.
  collage_weight: float = dataclasses.field(default=0.0, metadata={
      "help": "Ours: weight (x rec_weight) of d(I_mix, quadrant collage of donors and "
              "reference); 0 = off (thesis)."})
  # Ours (0 = off, as the thesis): w_rec * this * the latent cycle, |Enc(I_mix) - Z_mix| over all
  # four chunks relative to mean |Z_mix| (Z_mix held constant). Its gradient trains the decoder
  # only: render each chunk, the donor's included, so that the encoder reads it back. The
  # thesis's cycle checks only the kept quadrants and discards the transferred ones.
  latent_weight: float = dataclasses.field(default=0.0, metadata={
      "help": "Ours: weight (x rec_weight) of the latent cycle |Enc(I_mix) - Z_mix| "
              "(relative), trained into the decoder only; 0 = off (thesis)."})
  # Ours (0 = off, as the thesis): Gaussian noise of this standard deviation added to I_mix
  # before the cycle re-encodes it (training only). A cycle through the encoder lets the
  # decoder hide what the second pass needs in faint patterns of I_mix (steganography, Chu et
  # al. 2017); noise closes that channel, so the cycle can only use what I_mix visibly shows.
  cycle_noise: float = dataclasses.field(default=0.0, metadata={
      "help": "Ours: std of Gaussian noise on I_mix before the cycle re-encodes it (closes "
              "hidden channels); 0 = off (thesis)."})
  seed: int = 0  # the command line sets it from the training's --seed

  def __post_init__(self):
    for name, allowed in (("generator_losses", GENERATOR_LOSSES),
                          ("cycle_gradient", CYCLE_GRADIENTS), ("decoder_batches", DECODER_BATCHES)):
      if getattr(self, name) not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
    if self.generator_steps < 1:
      raise ValueError(f"generator_steps must be >= 1, got {self.generator_steps}")
    if self.partner_k < 1:
      raise ValueError(f"partner_k must be >= 1, got {self.partner_k}")
    if not 0.0 <= self.threshold_quantile <= 1.0:
      raise ValueError(f"threshold_quantile must be in [0, 1], got {self.threshold_quantile}")
    if self.adv_warmup_steps < 0:
      raise ValueError(f"adv_warmup_steps must be >= 0, got {self.adv_warmup_steps}")
    if self.rec_distance not in losses.REC_DISTANCES:
      raise ValueError(f"rec_distance must be one of {losses.REC_DISTANCES}, "
                       f"got {self.rec_distance!r}")
    for name in ("rec_weight", "adv_weight", "cls_weight", "cycle_weight", "collage_weight",
                 "latent_weight", "cycle_noise"):
      if getattr(self, name) < 0:
        raise ValueError(f"{name} must be >= 0 (0 is the ablation), got {getattr(self, name)}")


def generator_loss_weights(config: LorbmsConfig) -> dict[str, float]:
  """The weight of each loss term in L_G (adv before its warm-up ramp). A term absent from the
  dict is not added at all, so no gradient of it reaches the encoder or the decoder ("latent"
  reaches the decoder only and is not part of g_loss: train_step adds it)."""
  weights = {"direct": config.rec_weight}
  if config.generator_losses in ("lorbms", "autoencoder_cycle"):
    weights["cycle"] = config.rec_weight * config.cycle_weight
  if config.generator_losses == "lorbms":
    weights.update(adv=config.adv_weight, cls=config.cls_weight,
                   collage=config.rec_weight * config.collage_weight,
                   latent=config.rec_weight * config.latent_weight)
  return {name: w for name, w in weights.items() if w > 0}


_TRACKED = ("g_loss", "rec_loss", "rec_direct", "rec_cycle", "rec_collage", "rec_latent",
            "adv_loss", "cls_loss",
            "cls_accuracy",
            "d_loss", "d_real", "d_fake", "replaced_quadrants", "threshold", "adv_weight")


class LorbmsModel(keras.Model):
  """Encoder, decoder, PatchGAN discriminator and quadrant classifier, trained together.

  A batch is a dict with "image" [B, 64, 64, 3] in [-1, 1] and, for index partners,
  "candidates" [B, 4, 64, 64, 3] (the replacement image for each quadrant) and
  "candidate_distances" [B, 4]. Without candidates, partners come from the batch itself:
  for each quadrant, the nearest same-position chunk among the other images.
  """

  def __init__(self, model_config: ModelConfig, config: LorbmsConfig = LorbmsConfig(), **kwargs):
    super().__init__(**kwargs)
    self.model_config, self.config = model_config, config
    self.encoder = build_encoder(model_config)
    self.decoder = build_decoder(model_config)
    self.discriminator = build_discriminator(model_config)
    self.classifier = build_classifier(model_config)
    # Per-replica random streams inside a strategy (Keras SeedGenerator repeats across replicas).
    self.rng = tf.random.Generator.from_seed(config.seed)
    self.iteration = tf.Variable(0, dtype=tf.int64, trainable=False, name="iteration")
    self.trackers = {name: keras.metrics.Mean(name=name) for name in _TRACKED}
    self.built = True  # every network was built above

  def _maybe_symbolic_build(self, iterator=None, data_batch=None):
    # Keras 3.15 "symbolically builds" a model before fit under a tf.distribute strategy by
    # strategy.reduce-ing the first batch, which fails for a dict batch. There is nothing to
    # build: the networks are built in __init__ and the optimizers in compile().
    return

  @property
  def generator_variables(self) -> list:
    return self.encoder.trainable_variables + self.decoder.trainable_variables

  @property
  def metrics(self):
    # Keras resets these each epoch and logs them itself.
    return list(self.trackers.values())

  def compile(self, g_optimizer, d_optimizer, c_optimizer, **kwargs):
    super().compile(**kwargs)
    self.g_optimizer, self.d_optimizer, self.c_optimizer = g_optimizer, d_optimizer, c_optimizer
    # Built eagerly (inside the strategy scope when there is one): Keras 3 under
    # MirroredStrategy cannot create optimizer slots inside the replicated train step.
    g_optimizer.build(self.generator_variables)
    d_optimizer.build(self.discriminator.trainable_variables)
    c_optimizer.build(self.classifier.trainable_variables)

  def call(self, images, training=False):
    """Plain autoencoding, I_hat = Dec(Enc(I)): what a caller of the model gets."""
    return self.decoder(self.encoder(images, training=training), training=training)

  # --- the generator pass ------------------------------------------------------------------

  def _partners(self, images, reference_list, candidates, candidate_distances, training):
    """Donor chunks [B, 4, C], donor images [B, 4, H, W, 3] and their distances [B, 4]."""
    if candidates is not None:
      batch = tf.shape(images)[0]
      flat = tf.reshape(candidates, [-1, *images.shape[1:]])
      candidate_chunks = self.encoder(flat, training=training)
      candidate_chunks = tf.reshape(
          candidate_chunks, [batch, conventions.NUM_QUADRANTS, *candidate_chunks.shape[1:]])
      return (mixing.select_donor_chunks(candidate_chunks), candidates,
              tf.cast(candidate_distances, tf.float32))
    batch = tf.shape(images)[0]
    # Ranks are drawn below min(k, B - 1): an image is never its own partner.
    max_rank = tf.minimum(self.config.partner_k, batch - 1)
    rank = self.rng.uniform([batch], minval=0, maxval=max_rank, dtype=tf.int32)
    donor_index, distances = mixing.batch_partners(tf.stop_gradient(reference_list), rank)
    donor_list = mixing.gather_donor_chunks(reference_list, donor_index)
    return donor_list, tf.gather(images, donor_index), distances, donor_index

  def generator_pass(self, images, candidates=None, candidate_distances=None, training=True):
    """Everything the losses need, as a dict; `donor_index` only for batch partners."""
    reference_chunks = self.encoder(images, training=training)
    reference_list = conventions.chunks_to_list(reference_chunks)
    donor_list, donor_images, distances, *donor_index = self._partners(
        images, reference_list, candidates, candidate_distances, training)
    if self.config.threshold is None:
      threshold = mixing.distance_threshold(distances, self.config.threshold_quantile)
    else:
      threshold = tf.constant(self.config.threshold, tf.float32)
    mask = mixing.mix_mask(distances, threshold)
    mixed_list = mixing.mix_chunks(reference_list, donor_list, mask)
    mixed_chunks = conventions.list_to_chunks(mixed_list)
    if self.config.decoder_batches == "joint":
      # One decoder call for I_mix and I_hat (instance norm and SN are per-sample / per-weight).
      decoded = self.decoder(tf.concat([mixed_chunks, reference_chunks], 0), training=training)
      mixed, reconstructed = tf.split(decoded, 2, axis=0)
    else:
      mixed = self.decoder(mixed_chunks, training=training)
      reconstructed = self.decoder(reference_chunks, training=training)
    noisy = mixed
    if self.config.cycle_noise > 0 and training:
      noisy = mixed + tf.cast(self.config.cycle_noise * self.rng.normal(tf.shape(mixed)),
                              mixed.dtype)
    cycle_input = noisy if self.config.cycle_gradient == "full" else tf.stop_gradient(noisy)
    remixed_list = conventions.chunks_to_list(self.encoder(cycle_input, training=training))
    cycle_list = mixing.cycle_chunks(reference_list, remixed_list, mask)
    cycle = self.decoder(conventions.list_to_chunks(cycle_list), training=training)
    out = dict(reference=images, mixed=mixed, reconstructed=reconstructed, cycle=cycle, mask=mask,
               distances=distances, threshold=threshold, donor_images=donor_images,
               reference_chunks=reference_chunks, mixed_chunks=mixed_chunks)
    if self.config.latent_weight > 0:
      # Enc(I_mix) with I_mix live (the latent cycle trains the decoder through it).
      out["remixed_chunks"] = (conventions.list_to_chunks(remixed_list)
                               if self.config.cycle_gradient == "full"
                               else self.encoder(noisy, training=training))
    if donor_index:
      out["donor_index"] = donor_index[0]
    return out

  def classifier_logits(self, mixed, donor_images, training=False):
    """C(I_mix, I_qi) for the 4 quadrants in one batched call: [B, 4, 4]."""
    n = conventions.NUM_QUADRANTS
    pairs = tf.concat([tf.repeat(mixed[:, None], n, axis=1), tf.cast(donor_images, mixed.dtype)], -1)
    logits = self.classifier(tf.reshape(pairs, [-1, *pairs.shape[2:]]), training=training)
    return tf.reshape(logits, [-1, n, n])

  def compute_losses(self, data, training=True) -> tuple[dict[str, Any], dict[str, tf.Tensor]]:
    """The generator pass, D, C and every loss part (g_loss with the fixed adv_weight)."""
    out = self.generator_pass(data["image"], data.get("candidates"), data.get("candidate_distances"),
                              training=training)
    images = tf.cast(data["image"], out["mixed"].dtype)
    # Real and fake through D in one call: one spectral-norm update per forward pass.
    d_logits = self.discriminator(tf.concat([images, out["mixed"]], 0), training=training)
    real_logits, fake_logits = tf.split(d_logits, 2, axis=0)
    rec = losses.reconstruction_loss(images, out["reconstructed"], out["cycle"],
                                     self.config.rec_distance)
    adv = losses.generator_adversarial_loss(fake_logits)
    cls = losses.classifier_loss(
        self.classifier_logits(out["mixed"], out["donor_images"], training), out["mask"])
    dis = losses.discriminator_loss(real_logits, fake_logits)
    collage = losses.pixel_distance(
        mixing.quadrant_collage(images, out["donor_images"], out["mask"]), out["mixed"],
        self.config.rec_distance)
    latent = (losses.latent_cycle_loss(out["remixed_chunks"], out["mixed_chunks"])
              if "remixed_chunks" in out else tf.zeros([], tf.float32))
    c = self.config
    weights = generator_loss_weights(c)
    adv_weight = tf.constant(weights.get("adv", 0.0), tf.float32)
    if c.adv_warmup_steps:
      ramp = tf.cast(self.iteration + 1, tf.float32) / float(c.adv_warmup_steps)
      adv_weight = adv_weight * tf.minimum(ramp, 1.0)
    # Summed in the thesis's order, so that the default objective stays bit-exact: w_rec (direct +
    # cycle_weight * cycle) + w_adv adv + w_cls cls (+ the collage term). An absent term is never
    # added: its gradient cannot reach G.
    g_loss = tf.zeros([], tf.float32)
    if "direct" in weights:
      rec_terms = rec["direct"] + c.cycle_weight * rec["cycle"] if "cycle" in weights else rec["direct"]
      g_loss = c.rec_weight * rec_terms
    if "adv" in weights:
      g_loss += adv_weight * adv["total"]
    if "cls" in weights:
      g_loss += c.cls_weight * cls["total"]
    if "collage" in weights:
      g_loss += weights["collage"] * collage
    values = dict(g_loss=g_loss, rec_loss=rec["total"], rec_direct=rec["direct"], rec_cycle=rec["cycle"],
                  rec_collage=collage, rec_latent=latent,
                  adv_loss=adv["total"], cls_loss=cls["total"], cls_accuracy=cls["accuracy"],
                  d_loss=dis["total"], d_real=dis["real"], d_fake=dis["fake"],
                  replaced_quadrants=tf.reduce_mean(tf.reduce_sum(out["mask"], -1)),
                  threshold=tf.cast(out["threshold"], tf.float32), adv_weight=adv_weight)
    return out, values

  # --- training -----------------------------------------------------------------------------

  @staticmethod
  def _scaled(optimizer, loss):
    """What to differentiate (computed inside the tape, or the tape never sees it)."""
    # Raw means are per replica and gradients are summed across replicas: divide first.
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return optimizer.scale_loss(loss / replicas)  # loss scaling under mixed precision

  def train_step(self, data):
    if not isinstance(data, dict):
      data = {"image": data}
    g_vars = self.generator_variables
    d_vars = self.discriminator.trainable_variables
    c_vars = self.classifier.trainable_variables
    weights = generator_loss_weights(self.config)
    adaptive = self.config.adaptive_adv_weight and "adv" in weights
    latent = "latent" in weights
    for g_step in range(self.config.generator_steps):
      last = g_step == self.config.generator_steps - 1
      # One forward pass serves G, and on the last G step D and C too (persistent tape).
      with tf.GradientTape(persistent=last or adaptive or latent) as tape:
        _, values = self.compute_losses(data, training=True)
        if adaptive:
          values = self._adapt_adv_weight(tape, values)
        g_loss = self._scaled(self.g_optimizer, values["g_loss"])
        if latent:
          latent_loss = self._scaled(self.g_optimizer, weights["latent"] * values["rec_latent"])
        if last:
          d_loss = self._scaled(self.d_optimizer, values["d_loss"])
          c_loss = self._scaled(self.c_optimizer, values["cls_loss"])
      g_grads = tape.gradient(g_loss, g_vars)
      if latent:
        g_grads = self._add_decoder_only(g_grads, tape.gradient(
            latent_loss, self.decoder.trainable_variables))
      self.g_optimizer.apply(g_grads, g_vars)
    self.d_optimizer.apply(tape.gradient(d_loss, d_vars), d_vars)
    self.c_optimizer.apply(tape.gradient(c_loss, c_vars), c_vars)
    del tape
    self.iteration.assign_add(1)
    return self._track(values)

  def _add_decoder_only(self, g_grads, decoder_grads):
    """g_grads (encoder's, then decoder's variables) plus a term's gradient on the decoder's."""
    num_encoder = len(self.encoder.trainable_variables)
    added = [g if d is None else (d if g is None else g + d)
             for g, d in zip(g_grads[num_encoder:], decoder_grads)]
    return list(g_grads[:num_encoder]) + added

  def _adapt_adv_weight(self, tape, values):
    """Rescales the adversarial term so that, at the decoder's output layer, its gradient norm
    is adv_weight (after warm-up) times the reconstruction term's (Esser et al. 2021)."""
    kernel = self.decoder.output_kernel
    with tape.stop_recording():  # (ops in here are not recorded: differentiate tensors only)
      rec_grad = tape.gradient(values["rec_loss"], kernel)
      adv_grad = tape.gradient(values["adv_loss"], kernel)
    rec_norm = self.config.rec_weight * tf.norm(tf.cast(rec_grad, tf.float32))
    ratio = tf.stop_gradient(tf.minimum(
        rec_norm / (tf.norm(tf.cast(adv_grad, tf.float32)) + 1e-8), 1e4))
    adv_weight = values["adv_weight"] * ratio
    g_loss = values["g_loss"] + (adv_weight - values["adv_weight"]) * values["adv_loss"]
    return {**values, "g_loss": g_loss, "adv_weight": adv_weight}

  def test_step(self, data):
    if not isinstance(data, dict):
      data = {"image": data}
    _, values = self.compute_losses(data, training=False)
    return self._track(values)

  def _track(self, values):
    for name, value in values.items():
      self.trackers[name].update_state(value)
    results = {name: tracker.result() for name, tracker in self.trackers.items()}
    if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
      # Keras 3.15 reduces multi-worker logs with reduce("MEAN", axis=0): give them that axis.
      results = {name: value[None] for name, value in results.items()}
    return results

  # --- inference helpers (evaluation, rendering, export) -----------------------------------

  def mix_batch(self, images, training=False) -> dict[str, tf.Tensor]:
    """Batch-partner mixing as in training: dict(mixed, mask, donor_index, reference, ...)."""
    return self.generator_pass(tf.convert_to_tensor(images, tf.float32), training=training)

  def render(self, reference_chunks, donor_chunks, mask) -> tf.Tensor:
    """Object transfer: Dec(Z_mix) for reference chunks [B, 2, 2, C], the donors' chunk grids
    [B, 4, 2, 2, C] (donor i supplies quadrant i) and a mask [B, 4] (1 = take the donor's)."""
    reference_list = conventions.chunks_to_list(reference_chunks)
    donor_list = mixing.select_donor_chunks(donor_chunks)
    mixed = mixing.mix_chunks(reference_list, donor_list, tf.cast(mask, tf.float32))
    return self.decoder(conventions.list_to_chunks(mixed), training=False)
