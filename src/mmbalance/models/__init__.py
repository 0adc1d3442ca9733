"""Block-structured multimodal models."""

from mmbalance.models.base import BlockEncoder, FeatureInfo, Intermediates, eval_mode, per_sample
from mmbalance.models.builder import ENCODERS, build_encoder, build_model, register_encoder
from mmbalance.models.fusion import FUSIONS, Fusion, FusionConfig, create_fusion
from mmbalance.models.mlp import MLPConfig, MLPEncoder
from mmbalance.models.multimodal import ModelOutput, MultimodalModel, UnimodalHeads
from mmbalance.models.resnet import ResNet18Config, ResNet18Encoder
from mmbalance.models.transformer import TransformerConfig, TransformerEncoder
from mmbalance.models.weights import EncoderWeights, load_weights
from mmbalance.models.wrap import as_block_encoder, wrap_encoder

__all__ = [
    "ENCODERS",
    "FUSIONS",
    "BlockEncoder",
    "EncoderWeights",
    "FeatureInfo",
    "Fusion",
    "FusionConfig",
    "Intermediates",
    "MLPConfig",
    "MLPEncoder",
    "ModelOutput",
    "MultimodalModel",
    "ResNet18Config",
    "ResNet18Encoder",
    "TransformerConfig",
    "TransformerEncoder",
    "UnimodalHeads",
    "as_block_encoder",
    "build_encoder",
    "build_model",
    "create_fusion",
    "eval_mode",
    "load_weights",
    "per_sample",
    "register_encoder",
    "wrap_encoder",
]
