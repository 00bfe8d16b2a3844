"""LORBMS networks and their presets."""

from lorbms_tf.models.classifier import (AlexNetStyle, QuadrantClassifier, TransferNet,
                                         build_classifier, build_transfer_net)
from lorbms_tf.models.decoder import Decoder, build_decoder
from lorbms_tf.models.discriminator import Discriminator, build_discriminator
from lorbms_tf.models.encoder import Encoder, build_encoder
from lorbms_tf.models.layers import count_params
from lorbms_tf.models.presets import PRESETS, ModelConfig, get_preset
