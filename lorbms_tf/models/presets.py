"""Network sizes. `coco` = the thesis's original sizes; `small` = same structure for a 2-core CPU.

One frozen dataclass holds every size, so a preset is data (and is written to the work dir's
config.json), and the networks are functions of it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from lorbms_tf.models.layers import check_norm


# Sizes of the decoder's per-chunk projection: powers of two, up to 16 px of a 32 px quadrant
# (at least one upsampling stage is kept).
DECODER_PROJECTIONS = (0, 2, 4, 8, 16)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """All network sizes. Defaults are the `small` preset: ~17x fewer FLOPs per image than `coco`
  (measured with lorbms_tf.flops: 0.77 vs 13.4 GFLOP forward per training image)."""
  # Encoder: FC-DenseNet down path (CoordConv, stem conv, dense blocks + transition down).
  encoder_stem_filters: int = 16
  encoder_blocks: tuple[int, ...] = (1, 2, 2, 3, 3)
  encoder_growth: int = 8
  chunk_channels: int = 64  # C of the [B, 2, 2, C] chunk grid
  encoder_norm: str = "instance"  # layers.NORMS; the thesis: instance norm
  # Decoder: per stage, nearest upsample + 3x3 SN conv, then a dense block of SN convs.
  decoder_up_filters: tuple[int, ...] = (128, 96, 64, 32, 16)
  decoder_blocks: tuple[int, ...] = (3, 2, 2, 1, 1)
  decoder_growth: int = 8
  decoder_norm: str = "none"  # layers.NORMS; the thesis: none, with spectral norm on every conv
  decoder_spectral_norm: bool = True
  # Ours (0 = the thesis): each chunk -> a p x p map of its quadrant by one shared dense layer,
  # in place of the first log2(p) upsampling convs (models/decoder.py says why).
  decoder_projection: int = 0
  # PatchGAN discriminator: 4x4 stride-2 convs.
  discriminator_filters: tuple[int, ...] = (32, 64, 96, 128)
  discriminator_spectral_norm: bool = True  # the thesis: spectral norm on convs 2-4
  # Quadrant classifier (AlexNet-style with batch norm) on the 6-channel (I_mix, I_qi) pair.
  classifier_filters: tuple[int, ...] = (32, 48, 64, 64)
  classifier_dense: tuple[int, ...] = (256,)

  def __post_init__(self):
    if len(self.encoder_blocks) != 5:
      # Five 2x2 poolings take 64 px to the 2x2 chunk grid of the 4-object assumption.
      raise ValueError(f"encoder_blocks needs 5 dense blocks (64 px -> 2x2), got {self.encoder_blocks}")
    if len(self.decoder_blocks) != 5 or len(self.decoder_up_filters) != 5:
      raise ValueError("decoder_blocks and decoder_up_filters need 5 stages (2x2 -> 64 px)")
    if self.decoder_projection not in DECODER_PROJECTIONS:
      raise ValueError(f"decoder_projection must be one of {DECODER_PROJECTIONS} "
                       f"(0 = upsampling convs from the 2x2 grid), got {self.decoder_projection}")
    check_norm(self.encoder_norm)
    check_norm(self.decoder_norm)
    if len(self.discriminator_filters) != 4:
      raise ValueError("the PatchGAN discriminator has 4 strided convs (64 px -> 4x4 logits)")

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, values: dict[str, Any]) -> "ModelConfig":
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - fields
    if unknown:
      raise ValueError(f"unknown model config fields: {sorted(unknown)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


PRESETS: dict[str, ModelConfig] = {
    # The thesis's final model ("exp73"): encoder 2.83M, decoder 5.34M, discriminator 1,188,391 trainable params.
    "coco": ModelConfig(
        encoder_stem_filters=48,
        encoder_blocks=(4, 5, 7, 10, 12),
        encoder_growth=16,
        chunk_channels=192,
        decoder_up_filters=(416, 288, 192, 128, 64),
        decoder_blocks=(12, 10, 7, 5, 4),
        decoder_growth=16,
        discriminator_filters=(42, 84, 168, 336),
        classifier_filters=(96, 256, 384, 256),
        classifier_dense=(1024, 1024),
    ),
    "small": ModelConfig(),
    # Seconds-long runs in tests and configs/smoke.flags.
    "tiny": ModelConfig(
        encoder_stem_filters=8,
        encoder_blocks=(1, 1, 1, 1, 1),
        encoder_growth=4,
        chunk_channels=16,
        decoder_up_filters=(16, 16, 12, 8, 8),
        decoder_blocks=(1, 1, 1, 1, 1),
        decoder_growth=4,
        discriminator_filters=(8, 16, 16, 32),
        classifier_filters=(8, 16, 16, 16),
        classifier_dense=(32,),
    ),
}


def get_preset(name: str) -> ModelConfig:
  try:
    return PRESETS[name]
  except KeyError:
    raise ValueError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}") from None
