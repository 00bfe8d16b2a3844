"""Trains LORBMS: `python -m lorbms_tf.train --flagfile=configs/scenes.flags --workdir=runs/x`.

The only place (with evaluate.py and render.py) that reads absl FLAGS: they become a
TrainConfig here and the library takes it from there. Re-running with the same --workdir
resumes from the latest checkpoint.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging

from lorbms_tf import cli, losses, train_lib
from lorbms_tf import lorbms
from lorbms_tf.lorbms import LorbmsConfig
from lorbms_tf.eval.image_metrics import SceneClassifierConfig
from lorbms_tf.eval.scenes_eval import ScenesEvalConfig
from lorbms_tf.models import PRESETS
from lorbms_tf.models.presets import DECODER_PROJECTIONS
from lorbms_tf.models.layers import NORMS

_D = train_lib.TrainConfig(workdir="")
_O = LorbmsConfig()

flags.DEFINE_string("workdir", None, "Run directory: checkpoints, TensorBoard logs, grids. Resumes if present.")
flags.DEFINE_string("dataset", _D.dataset, "coco | stl10 | celeb_a | scenes | folder:PATH | tfrecord:GLOB")
flags.DEFINE_string("data_dir", None, "tensorflow_datasets data dir (default: tfds's own)")
flags.DEFINE_enum("preset", _D.preset, sorted(PRESETS), "Network sizes: coco = the thesis's original.")
flags.DEFINE_enum("encoder_norm", None, list(NORMS),
                  "Encoder normalisation over the preset's (thesis: instance).")
flags.DEFINE_enum("decoder_norm", None, list(NORMS),
                  "Decoder normalisation over the preset's (thesis: none).")
flags.DEFINE_enum("decoder_spectral_norm", "preset", ["preset", "true", "false"],
                  "Spectral norm on the decoder's convs (thesis: true).")
flags.DEFINE_enum("decoder_projection", "preset", ["preset"] + [str(p) for p in DECODER_PROJECTIONS],
                  "Each chunk -> a p x p map of its quadrant by one shared dense layer, in place "
                  "of the decoder's first log2(p) upsampling convs (thesis: 0, none).")
flags.DEFINE_enum("discriminator_spectral_norm", "preset", ["preset", "true", "false"],
                  "Spectral norm on the discriminator's convs 2-4 (thesis: true).")
flags.DEFINE_integer("batch_size", _D.batch_size, "Global batch size (split across replicas).")
flags.DEFINE_integer("total_steps", _D.total_steps, "Training iterations in all.")
flags.DEFINE_integer("checkpoint_every", _D.checkpoint_every, "Iterations between checkpoints.")
flags.DEFINE_integer("keep_checkpoints", _D.keep_checkpoints, "Checkpoints kept.")
flags.DEFINE_integer("log_every", _D.log_every, "Iterations between log lines / TensorBoard scalars.")
flags.DEFINE_integer("image_every", _D.image_every, "Iterations between image grids.")
flags.DEFINE_integer("steps_per_execution", _D.steps_per_execution, "Iterations per tf.function call.")
flags.DEFINE_list("profile_steps", None, "A,B: profiler trace of iterations [A, B) into WORKDIR/tb.")
flags.DEFINE_float("max_train_seconds", None, "Stop (and checkpoint) after this wall-clock budget.")
flags.DEFINE_float("g_learning_rate", _D.g_learning_rate, "Adam rate of encoder + decoder.")
flags.DEFINE_float("d_learning_rate", _D.d_learning_rate, "Adam rate of the discriminator.")
flags.DEFINE_float("c_learning_rate", _D.c_learning_rate, "Adam rate of the classifier (decayed).")
flags.DEFINE_integer("c_decay_steps", _D.c_decay_steps, "Classifier rate x c_decay_rate every N steps.")
flags.DEFINE_float("c_decay_rate", _D.c_decay_rate, "Classifier rate decay factor.")
flags.DEFINE_float("beta_1", _D.beta_1, "Adam beta_1 of all three optimizers.")
flags.DEFINE_integer("lr_decay_steps", _D.lr_decay_steps,
                     "Ours: G and D rates fall linearly to 0 over the last N iterations "
                     "(0 = constant, the thesis).")
flags.DEFINE_float("rec_weight", _O.rec_weight, "Weight of L_rec in L_G (0 = ablation).")
flags.DEFINE_enum("rec_distance", _O.rec_distance, list(losses.REC_DISTANCES),
                  "Per-pixel distance of L_rec: l1 (the thesis) or l2 (ours: mean squared error).")
flags.DEFINE_float("adv_weight", _O.adv_weight, "Weight of L_adv in L_G (0 = ablation).")
flags.DEFINE_float("cls_weight", _O.cls_weight, "Weight of L_cls in L_G (0 = ablation).")
flags.DEFINE_boolean("adaptive_adv_weight", _O.adaptive_adv_weight,
                     "Ours: adv_weight is the ratio of the adversarial to the reconstruction "
                     "gradient norm at the decoder's output layer, kept every step (thesis: off).")
flags.DEFINE_integer("adv_warmup_steps", _O.adv_warmup_steps,
                     "Ours: ramp adv_weight linearly from 0 over N iterations (0 = off, thesis).")
flags.DEFINE_enum("generator_losses", _O.generator_losses, list(lorbms.GENERATOR_LOSSES),
                  "Terms that reach the encoder and decoder: lorbms (all, the thesis), "
                  "autoencoder (d(I_ref, I_hat) only), autoencoder_cycle (+ the cycle). D and C "
                  "are trained either way.")
flags.DEFINE_float("cycle_weight", _O.cycle_weight, "The cycle term's share of rec_weight (thesis: 1).")
flags.DEFINE_enum("cycle_gradient", _O.cycle_gradient, list(lorbms.CYCLE_GRADIENTS),
                  "full: the cycle's gradient runs back through I_mix (thesis); stop_mixed: not.")
flags.DEFINE_enum("decoder_batches", _O.decoder_batches, list(lorbms.DECODER_BATCHES),
                  "joint: I_mix and I_hat in one decoder call (shared batch-norm statistics); "
                  "separate: one call each.")
flags.DEFINE_float("collage_weight", _O.collage_weight,
                   "Ours: weight (x rec_weight) of d(I_mix, quadrant collage of donors and "
                   "reference); 0 = off (thesis).")
flags.DEFINE_float("latent_weight", _O.latent_weight,
                   "Ours: weight (x rec_weight) of the latent cycle |Enc(I_mix) - Z_mix| (relative), "
                   "trained into the decoder only; 0 = off (thesis).")
flags.DEFINE_float("cycle_noise", _O.cycle_noise,
                   "Ours: std of Gaussian noise on I_mix before the cycle re-encodes it "
                   "(closes hidden channels); 0 = off (thesis).")
flags.DEFINE_integer("generator_steps", _O.generator_steps, "G updates per iteration (thesis: 2).")
flags.DEFINE_integer("partner_k", _O.partner_k, "Neighbour rank r is drawn from 0..k-1.")
flags.DEFINE_float("threshold_quantile", _O.threshold_quantile, "Constraint 3 threshold quantile.")
flags.DEFINE_enum("partners", _D.partners, list(train_lib.PARTNERS),
                  "batch: nearest chunks within the batch; index: the similarity component's table.")
flags.DEFINE_string("neighbour_table", None, "Neighbour table dir for --partners=index.")
flags.DEFINE_enum("strategy", _D.strategy, list(train_lib.STRATEGIES),
                  "tf.distribute strategy (multi_worker reads TF_CONFIG).")
flags.DEFINE_enum("jit_compile", "auto", ["auto", "true", "false"], "XLA (auto: GPU only).")
flags.DEFINE_enum("precision", "auto", ["auto", *train_lib.PRECISIONS],
                  "Keras dtype policy (auto: mixed_float16 on a GPU, mixed_bfloat16 on a CPU "
                  "with native bf16, else float32).")
flags.DEFINE_boolean("flip", _D.flip, "Random horizontal flips (batch partners only).")
flags.DEFINE_integer("seed", _D.seed, "Seed of initial weights, data order, crops and mixing draws.")
flags.DEFINE_boolean("deterministic", _D.deterministic,
                     "Deterministic ops: same flags and seed give the same losses (CPU).")
flags.DEFINE_float("max_skipped_fraction", _D.max_skipped_fraction,
                   "Stop when more than this share of the source's files are bad (unreadable, "
                   "truncated, undecodable, too small or too large); each is named once in the log.")
flags.DEFINE_boolean("allow_resume_changes", _D.allow_resume_changes,
                     "Resume a work dir's run even when the data, objective, batch, partners or "
                     "rates differ (recorded in config.json); by default that is refused.")
flags.DEFINE_integer("eval_every", _D.eval_every,
                     "Light evaluation (lorbms_scenes: I_hat L1, shape/colour probes, fidelity, "
                     "scenes FID) every N iterations and at the end; 0 = off.")
flags.DEFINE_string("eval_dataset", None, "lorbms_scenes config of --eval_every (default: --dataset).")
flags.DEFINE_integer("eval_test_scenes", _D.eval_config.num_test, "Test scenes of --eval_every.")
flags.DEFINE_integer("eval_probe_scenes", _D.eval_config.num_probe_train,
                     "Training scenes the --eval_every probes learn from.")
flags.DEFINE_integer("eval_classifier_scenes", _D.eval_config.classifier.train_scenes,
                     "Scenes the --eval_every domain classifier (fidelity, scenes FID) trains on.")
flags.DEFINE_integer("eval_classifier_epochs", _D.eval_config.classifier.epochs,
                     "Its epochs (it is trained once and cached).")
flags.mark_flag_as_required("workdir")

FLAGS = flags.FLAGS


def _tristate(value: str) -> bool | None:
  return None if value == "auto" else value == "true"


def _preset_or_bool(value: str) -> bool | None:
  return None if value == "preset" else value == "true"


def config_from_flags() -> train_lib.TrainConfig:
  profile = None
  if FLAGS.profile_steps:
    if len(FLAGS.profile_steps) != 2:
      raise ValueError(f"--profile_steps takes A,B, got {','.join(FLAGS.profile_steps)}")
    profile = tuple(int(v) for v in FLAGS.profile_steps)
  objective = LorbmsConfig(rec_weight=FLAGS.rec_weight, rec_distance=FLAGS.rec_distance,
                           adv_weight=FLAGS.adv_weight,
                           cls_weight=FLAGS.cls_weight, adv_warmup_steps=FLAGS.adv_warmup_steps,
                           adaptive_adv_weight=FLAGS.adaptive_adv_weight,
                           generator_steps=FLAGS.generator_steps,
                           generator_losses=FLAGS.generator_losses,
                           cycle_weight=FLAGS.cycle_weight, cycle_gradient=FLAGS.cycle_gradient,
                           decoder_batches=FLAGS.decoder_batches,
                           collage_weight=FLAGS.collage_weight,
                           latent_weight=FLAGS.latent_weight, cycle_noise=FLAGS.cycle_noise,
                           partner_k=FLAGS.partner_k, threshold_quantile=FLAGS.threshold_quantile,
                           seed=FLAGS.seed)
  return train_lib.TrainConfig(
      workdir=FLAGS.workdir, dataset=FLAGS.dataset, data_dir=FLAGS.data_dir, preset=FLAGS.preset,
      encoder_norm=FLAGS.encoder_norm, decoder_norm=FLAGS.decoder_norm,
      decoder_spectral_norm=_preset_or_bool(FLAGS.decoder_spectral_norm),
      decoder_projection=None if FLAGS.decoder_projection == "preset" else int(FLAGS.decoder_projection),
      discriminator_spectral_norm=_preset_or_bool(FLAGS.discriminator_spectral_norm),
      batch_size=FLAGS.batch_size, total_steps=FLAGS.total_steps,
      checkpoint_every=FLAGS.checkpoint_every, keep_checkpoints=FLAGS.keep_checkpoints,
      log_every=FLAGS.log_every, image_every=FLAGS.image_every,
      steps_per_execution=FLAGS.steps_per_execution, profile_steps=profile,
      max_train_seconds=FLAGS.max_train_seconds, g_learning_rate=FLAGS.g_learning_rate,
      d_learning_rate=FLAGS.d_learning_rate, c_learning_rate=FLAGS.c_learning_rate,
      c_decay_steps=FLAGS.c_decay_steps, c_decay_rate=FLAGS.c_decay_rate, beta_1=FLAGS.beta_1,
      lr_decay_steps=FLAGS.lr_decay_steps,
      objective=objective, partners=FLAGS.partners, neighbour_table=FLAGS.neighbour_table,
      strategy=FLAGS.strategy, jit_compile=_tristate(FLAGS.jit_compile),
      precision=None if FLAGS.precision == "auto" else FLAGS.precision, flip=FLAGS.flip, seed=FLAGS.seed,
      deterministic=FLAGS.deterministic, eval_every=FLAGS.eval_every,
      eval_dataset=FLAGS.eval_dataset,
      max_skipped_fraction=FLAGS.max_skipped_fraction,
      allow_resume_changes=FLAGS.allow_resume_changes,
      eval_config=ScenesEvalConfig(
          num_test=FLAGS.eval_test_scenes, num_probe_train=FLAGS.eval_probe_scenes,
          classifier=SceneClassifierConfig(train_scenes=FLAGS.eval_classifier_scenes,
                                           epochs=FLAGS.eval_classifier_epochs)))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    config = config_from_flags()
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  logging.info("training config: %s", config)
  train_lib.train(config)


def run():
  cli.run(main)


if __name__ == "__main__":
  run()
