"""Build a :class:`MultimodalModel` from a ``ModelConfig`` and the data's modality shapes.

Encoder ``type: auto`` picks by the per-sample shape: ``[F]`` -> MLP, ``[T, F]`` ->
Transformer, ``[C, H, W]`` or ``[C, T, H, W]`` -> ResNet18 (with the small-input stem when the
image side is <= 64 px). ``type: timm`` builds a timm backbone; :func:`register_encoder` adds a
family of the user's own (``docs/encoders.md``). Every family also takes ``pretrained_file``,
``strict`` and ``freeze`` (``models/weights.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn

from mmbalance.errors import ConfigError
from mmbalance.models.base import BlockEncoder, eval_mode
from mmbalance.models.fusion import FUSIONS, FusionConfig, create_fusion
from mmbalance.models.init import init_regression_head, init_weights
from mmbalance.models.mlp import MLPConfig, MLPEncoder
from mmbalance.models.multimodal import MultimodalModel, UnimodalHeads
from mmbalance.models.resnet import ResNet18Config, ResNet18Encoder
from mmbalance.models.timm_encoder import TimmConfig, build_timm
from mmbalance.models.transformer import TransformerConfig, TransformerEncoder
from mmbalance.models.weights import (
    COMMON_FIELDS,
    EncoderWeights,
    apply_freeze,
    frozen_depth,
    load_weights,
)
from mmbalance.models.wrap import as_block_encoder
from mmbalance.structured import from_dict, init_fields


def _resnet(cfg: ResNet18Config, shape: tuple[int, ...], where: str) -> BlockEncoder:
    if len(shape) not in (3, 4):
        raise ConfigError(
            f"{where}: resnet18 needs samples shaped [C, H, W] or [C, T, H, W]; got {list(shape)}"
        )
    channels = shape[0]
    if cfg.in_channels is not None and cfg.in_channels != channels:
        raise ConfigError(
            f"{where}.in_channels: got {cfg.in_channels}; the data has {channels} channels"
        )
    return ResNet18Encoder(channels, cfg.width, cfg.small_input)


def _transformer(cfg: TransformerConfig, shape: tuple[int, ...], where: str) -> BlockEncoder:
    if len(shape) != 2:
        raise ConfigError(f"{where}: transformer needs samples shaped [T, F]; got {list(shape)}")
    return TransformerEncoder(shape[1], cfg)


def _mlp(cfg: MLPConfig, shape: tuple[int, ...], where: str) -> BlockEncoder:
    features = 1
    for s in shape:
        features *= s
    return MLPEncoder(features, cfg)


@dataclass(frozen=True)
class EncoderEntry:
    config_cls: type
    factory: Callable[[Any, tuple[int, ...], str], BlockEncoder]
    description: str


ENCODERS: dict[str, EncoderEntry] = {
    "resnet18": EncoderEntry(
        ResNet18Config, _resnet, "ResNet18 (4 stages = 4 blocks), images/video/spectrograms"
    ),
    "transformer": EncoderEntry(
        TransformerConfig, _transformer, "Transformer, one layer = one block, sequences [T, F]"
    ),
    "mlp": EncoderEntry(MLPConfig, _mlp, "MLP, one hidden layer = one block, vectors [F]"),
    "timm": EncoderEntry(
        TimmConfig, build_timm, "a timm backbone (pip install 'mmbalance[timm]'), images/video"
    ),
}
BUILT_IN = frozenset(ENCODERS)


@dataclass
class NoEncoderOptions:
    """A registered encoder family without options of its own."""


def register_encoder(
    name: str,
    builder: Callable[[Any, tuple[int, ...]], nn.Module],
    options: type | None = None,
    *,
    description: str = "",
    replace: bool = False,
) -> None:
    """Make an encoder family known to configs (``model.encoders.<m>: {type: name, ...}``),
    ``compare`` grids and :func:`mmbalance.train`, without editing the package.

    Args:
        name: the ``type`` configs use.
        builder: ``builder(options, sample_shape) -> nn.Module`` for one modality; the module
            is a :class:`BlockEncoder`, follows the protocol (``stem``, ``blocks``, ``pool``),
            or is wrapped by the builder with :func:`mmbalance.wrap_encoder`.
        options: a dataclass of the family's options (checked, and written with every default
            into the run's config.yaml, like the built-in families'); ``pretrained_file``,
            ``strict`` and ``freeze`` come with every family.
        description: one line for ``mmbalance list``.
        replace: allow re-registering a name (a built-in family's name is never replaced).

    A run's config.yaml names the type: the process that resumes or evaluates it must have
    registered it too (``plugins:`` in the config imports the module that does, docs/encoders.md).
    """
    if not isinstance(name, str) or not name or name == "auto" or "." in name:
        raise ConfigError(f"register_encoder: got name {name!r}; expected a word other than auto")
    if name in BUILT_IN:
        raise ConfigError(f"register_encoder: {name!r} is a built-in encoder family")
    if name in ENCODERS and not replace:
        raise ConfigError(
            f"register_encoder: {name!r} is already registered; choose another name or pass "
            "replace=True"
        )
    if not callable(builder):
        raise ConfigError(f"register_encoder: builder must be callable; got {builder!r}")
    options = options or NoEncoderOptions
    if not dataclasses.is_dataclass(options):
        raise ConfigError(f"register_encoder: options must be a dataclass; got {options!r}")
    taken = {f.name for f in dataclasses.fields(options)} & {"type", *COMMON_FIELDS}
    if taken:
        raise ConfigError(
            f"register_encoder: option(s) {sorted(taken)} of {options.__name__} are reserved "
            "(type, and the options every family has)"
        )

    def factory(cfg: Any, shape: tuple[int, ...], where: str) -> BlockEncoder:
        return as_block_encoder(builder(cfg, shape), shape, where)

    doc = (builder.__doc__ or "").strip().splitlines()
    ENCODERS[name] = EncoderEntry(options, factory, description or (doc[0] if doc else name))


def resolve_encoder_type(kind: str, shape: tuple[int, ...]) -> tuple[str, dict[str, Any]]:
    """Map ``auto`` to a concrete encoder family (and defaults) for a sample shape."""
    if kind != "auto":
        return kind, {}
    if len(shape) == 1:
        return "mlp", {}
    if len(shape) == 2:
        return "transformer", {}
    side = min(shape[-2:])
    return "resnet18", {"small_input": side <= 64, "width": 0.25 if side <= 64 else 1.0}


def _family(kind: str, where: str) -> EncoderEntry:
    """The registered encoder family ``kind`` (``auto`` already resolved), or a clear error."""
    if kind not in ENCODERS:
        raise ConfigError(
            f"{where}.type: got {kind!r}; expected one of auto, {', '.join(ENCODERS)}"
        )
    return ENCODERS[kind]


def _split_common(options: dict[str, Any], where: str) -> EncoderWeights:
    """Take the options every family shares out of ``options`` (checked)."""
    common = {k: options.pop(k) for k in COMMON_FIELDS if k in options}
    return from_dict(EncoderWeights, common, where)


def check_encoder_spec(spec: Mapping[str, Any], where: str) -> None:
    """Refuse an encoder mapping that no sample shape could build, before any data is read:
    an unknown ``type``, an option the named family does not have (or, for ``auto``, that no
    family has), a value out of range."""
    options = dict(spec)
    kind = options.pop("type", "auto")
    _split_common(options, where)
    if kind != "auto":
        from_dict(_family(kind, where).config_cls, options, where)
        return
    known = {f.name for e in ENCODERS.values() for f in dataclasses.fields(e.config_cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(
            f"{where}: unknown field(s) {', '.join(unknown)} for any encoder (type: auto); "
            f"allowed: {', '.join(sorted(known))}"
        )


def merge_encoder_specs(base: Mapping[str, Any], own: Mapping[str, Any]) -> dict[str, Any]:
    """A modality's encoder mapping: ``model.encoders.<m>`` over ``model.encoder``. The base's
    options carry over unless the modality names another encoder family (a transformer's
    ``layers`` mean nothing to an MLP)."""
    kinds = {base.get("type", "auto"), own.get("type", "auto")} - {"auto"}
    if len(kinds) > 1:
        return dict(own)
    return {**base, **own}


def resolve_encoder(
    spec: Mapping[str, Any], shape: tuple[int, ...], where: str
) -> tuple[str, Any, EncoderWeights]:
    """``(family, its config, the shared weight options)`` for a mapping and a sample shape:
    ``auto`` resolved, every default filled in, values checked."""
    options = dict(spec)
    kind = options.pop("type", "auto")
    weights = _split_common(options, where)
    kind, defaults = resolve_encoder_type(kind, shape)
    cfg: Any = from_dict(_family(kind, where).config_cls, {**defaults, **options}, where)
    return kind, cfg, weights


def build_encoder(
    spec: Mapping[str, Any], shape: tuple[int, ...], where: str
) -> tuple[BlockEncoder, dict[str, Any]]:
    """One encoder from its config mapping (``type`` plus that family's options and the shared
    ones), its weights loaded and its frozen part frozen; and the mapping as built (every
    default written: what config.yaml records)."""
    kind, cfg, weights = resolve_encoder(spec, shape, where)
    encoder = ENCODERS[kind].factory(cfg, shape, where)
    if not isinstance(encoder, BlockEncoder):  # a registered family's factory checks this too
        encoder = as_block_encoder(encoder, shape, where)
    if kind not in ("resnet18", "transformer", "mlp"):  # not written here: check what it returns
        _check_output(encoder, shape, where)
    if weights.pretrained_file:
        load_weights(encoder, weights.pretrained_file, weights.strict, where)
    apply_freeze(encoder, frozen_depth(encoder, weights.freeze, where))
    return encoder, {"type": kind, **init_fields(cfg), **init_fields(weights)}


@torch.no_grad()
def _check_output(encoder: BlockEncoder, shape: tuple[int, ...], where: str) -> None:
    """One dummy sample through the encoder: the fusion needs ``[N, out_dim]``."""
    with eval_mode(encoder):
        device = next(encoder.parameters()).device
        out = encoder(torch.zeros(1, *shape, device=device))
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, encoder.out_dim):
        got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(
            f"{where}: the encoder returns {got} for one sample; the fusion needs one feature "
            f"vector per sample, [1, out_dim={encoder.out_dim}] (pool the last block's output)"
        )


def build_model(
    model_cfg: Any,
    shapes: Mapping[str, tuple[int, ...]],
    num_classes: int,
    available: list[str] | None = None,
    task: str = "classification",
) -> MultimodalModel:
    """Build the model for modalities with per-sample ``shapes`` and ``num_classes`` classes.

    Args:
        model_cfg: a :class:`mmbalance.config.ModelConfig`.
        shapes: per-sample input shape of each modality, in the modalities' order.
        num_classes: K.
        available: every modality the data has, when the model is built for a subset of them
            (a unimodal run): per-modality settings of the others are then not an error.
        task: ``"regression"``: ``num_classes`` is the number of targets T and the heads start
            at zero (:func:`mmbalance.models.init.init_regression_head`).
    """
    known = set(available or []) | set(shapes)
    unknown = sorted(set(model_cfg.encoders) - known)
    if unknown:
        raise ConfigError(
            f"model.encoders: no modality named {', '.join(unknown)}; "
            f"the data has {', '.join(sorted(known))}"
        )
    encoders: dict[str, BlockEncoder] = {}
    resolved: dict[str, dict[str, Any]] = {}
    for m, shape in shapes.items():
        spec = merge_encoder_specs(model_cfg.encoder, model_cfg.encoders.get(m, {}))
        if model_cfg.pretrained.get(m):
            spec["pretrained_file"] = model_cfg.pretrained[m]
        where = f"model.encoders.{m}" if m in model_cfg.encoders else "model.encoder"
        encoders[m], resolved[m] = build_encoder(spec, tuple(shape), where)
    dims = {m: e.out_dim for m, e in encoders.items()}
    fusion_name = model_cfg.fusion
    if fusion_name not in FUSIONS:
        raise ConfigError(
            f"model.fusion: got {fusion_name!r}; expected one of {', '.join(FUSIONS)}"
        )
    if len(shapes) == 1 and FUSIONS[fusion_name].min_modalities > 1:
        fusion_name = "concat"  # one modality: nothing to fuse, the head reads it directly
    fusion = create_fusion(
        fusion_name, dims, from_dict(FusionConfig, model_cfg.fusion_options, "model.fusion_options")
    )
    head = nn.Linear(fusion.out_dim, num_classes)
    init_weights(fusion)
    init_weights(head)
    heads = UnimodalHeads(dims, num_classes) if model_cfg.unimodal_heads else None
    if task == "regression":
        init_regression_head(head)
        for h in heads.heads.values() if heads is not None else []:
            init_regression_head(cast(nn.Linear, h))
    model = MultimodalModel(encoders, fusion, head, heads, {m: tuple(s) for m, s in shapes.items()})
    # what each encoder was built from (auto resolved, defaults filled in): config.yaml of a run
    # records it, so the run folder's config rebuilds this model whatever the shapes say
    model.encoder_specs = resolved
    return model
