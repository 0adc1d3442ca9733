"""Block-structured multimodal models."""

from mmbalance.models.base import BlockEncoder, FeatureInfo, Intermediates, eval_mode, per_sample
from mmbalance.models.builder import ENCODERS, build_encoder, build_model
from mmbalance.models.fusion import FUSIONS, Fusion, FusionConfig, create_fusion
from mmbalance.models.mlp import MLPConfig, MLPEncoder
from mmbalance.models.multimodal import ModelOutput, MultimodalModel, UnimodalHeads
from mmbalance.models.resnet import ResNet18Config, ResNet18Encoder
from mmbalance.models.transformer import TransformerConfig, TransformerEncoder

__all__ = [
    "ENCODERS",
    "FUSIONS",
    "BlockEncoder",
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
    "build_encoder",
    "build_model",
    "create_fusion",
    "eval_mode",
    "per_sample",
]
