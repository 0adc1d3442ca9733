"""timm backbones as block encoders (``type: timm``; ``pip install 'mmbalance[timm]'``).

Built through timm's own API, ``timm.create_model(name, pretrained=False, num_classes=0,
in_chans=C)``: nothing is downloaded; weights come from ``pretrained_file`` (a local file,
``models/weights.py``; timm's own checkpoint filter of the model's family runs first, e.g. a
ViT's position embeddings resampled to the data's image size). The blocks are what timm's
``feature_info`` reports (a CNN's stages, a ViT's layers), or the module names given in
``blocks``; ``depth`` groups them into that many consecutive stages (12 ViT layers as 4 blocks
of 3, to match a 4-stage encoder of another modality for AIM). The network runs its own
``forward_features`` and ``forward_head(pre_logits=True)``; hooks read the blocks
(:class:`mmbalance.models.wrap.HookedEncoder`). 1-channel spectrograms set ``in_chans`` 1;
video ``[C, T, H, W]`` runs frame by frame (folded into the batch, averaged after pooling).
Models with a patch embedding (ViT, DeiT, ...) are built for the data's image size.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import Tensor, nn

from mmbalance.errors import ConfigError
from mmbalance.models.base import BlockEncoder
from mmbalance.models.input_norm import InputNorm, check_norm_spec, numbers
from mmbalance.models.wrap import HookedEncoder, _prefixed
from mmbalance.structured import check_positive

TIMM_INSTALL = (
    "pip install 'mmbalance[timm]' plus the torchvision release built for your torch (timm "
    "imports torchvision: torch 2.13 -> torchvision 0.28, 2.14 -> 0.29). docs/encoders.md says "
    "why the CPU-only torch 2.13.0 build cannot take one, and what to do"
)


def import_timm() -> Any:
    """timm, or an error saying how to install it (and why it may not import)."""
    try:
        import timm
    except ImportError as err:
        raise ConfigError(f"type: timm needs the timm package: {TIMM_INSTALL} ({err})") from err
    except RuntimeError as err:  # torchvision built for another torch: its operators fail
        raise ConfigError(
            f"type: timm: timm is installed but cannot be imported: {err}. Its torchvision does "
            f"not match this torch ({_torch_version()}): {TIMM_INSTALL}"
        ) from err
    return timm


def _torch_version() -> str:
    import torch

    return torch.__version__


@dataclass
class TimmConfig:
    """Options of ``type: timm``."""

    name: str = "resnet18"  # a timm model name (timm.list_models())
    in_chans: int | None = None  # None: the data's channels
    # module names of the blocks; None: the modules timm's feature_info reports (without the
    # stem's own entry)
    blocks: list[str] | None = None
    depth: int | None = None  # group the blocks into this many consecutive stages
    kwargs: dict[str, Any] = field(default_factory=dict)  # to timm.create_model
    # per-channel input standardisation (models/input_norm.py): None (the input as the data
    # gives it), "data" (the training split's mean and std), "pretrained" (the mean and std
    # timm's pretrained_cfg records for the model) or {mean: [...], std: [...]}. A ViT
    # trained from scratch needs one (docs/encoders.md); a CNN with BatchNorm does not.
    normalize: Any = None

    def validate(self, where: str) -> None:
        check_norm_spec(self.normalize, self.in_chans, where)
        if self.in_chans is not None:
            check_positive(self.in_chans, f"{where}.in_chans")
        if self.depth is not None:
            check_positive(self.depth, f"{where}.depth")
        for key in ("pretrained", "pretrained_cfg_overlay", "num_classes", "in_chans"):
            if key in self.kwargs:
                what = (
                    "would download weights: give a local file as pretrained_file"
                    if key.startswith("pretrained")
                    else "is set by mmbalance (an encoder has no classifier; in_chans is an option)"
                )
                raise ConfigError(f"{where}.kwargs.{key}: {what}")


class TimmEncoder(HookedEncoder):
    """A timm model: the ``normalize`` option's standardisation (none by default), then
    ``forward_features`` and ``forward_head(pre_logits=True)``."""

    def map_pretrained_keys(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        # timm's own filter for the model's family (ViT position embeddings resampled, input
        # convs adapted, ...) on the file's keys, then the wrapper's inner. prefix
        module = sys.modules.get(type(self.inner).__module__)
        filter_fn = getattr(module, "checkpoint_filter_fn", None)
        if callable(filter_fn) and not any(k.startswith("inner.") for k in state):
            # a filter that does not fit this file leaves the plain keys, checked by the loader
            with contextlib.suppress(Exception):
                state = dict(filter_fn(state, self.inner))
        return _prefixed(state, self.state_dict())


def _default_blocks(model: nn.Module) -> list[str]:
    """The modules timm's ``feature_info`` names, without a stem-level entry (a leaf module
    at reduction <= 2, e.g. ResNet's ``act1``)."""
    info = getattr(model, "feature_info", None)
    entries = list(info) if info is not None else []
    names = []
    for e in entries:
        item = e if isinstance(e, dict) else {}
        module = item.get("module")
        if not module:
            continue
        mod = model.get_submodule(module)
        if item.get("reduction", 4) <= 2 and not list(mod.children()):
            continue
        names.append(module)
    return names


def _closest(name: str, timm: Any) -> str:
    close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
    if not close:
        close = timm.list_models(f"*{name.split('_')[0]}*")[:5]
    return f"; close matches: {', '.join(close)}" if close else ""


def build_timm(cfg: TimmConfig, shape: tuple[int, ...], where: str) -> BlockEncoder:
    """The ``type: timm`` factory."""
    timm = import_timm()
    if len(shape) not in (3, 4):
        raise ConfigError(
            f"{where}: timm models take images [C, H, W] (spectrograms [1, F, T]) or video "
            f"[C, T, H, W]; got samples shaped {list(shape)}"
        )
    channels = shape[0]
    if cfg.in_chans is not None and cfg.in_chans != channels:
        raise ConfigError(f"{where}.in_chans: got {cfg.in_chans}; the data has {channels} channels")
    if not timm.is_model(cfg.name):
        raise ConfigError(f"{where}.name: no timm model {cfg.name!r}{_closest(cfg.name, timm)}")
    kwargs = {"pretrained": False, "num_classes": 0, "in_chans": channels, **cfg.kwargs}
    try:
        model = timm.create_model(cfg.name, **kwargs)
        size = tuple(int(s) for s in shape[-2:])
        embed = getattr(model, "patch_embed", None)
        if embed is not None and tuple(getattr(embed, "img_size", size)) != size:
            model = timm.create_model(cfg.name, **{"img_size": size, **kwargs})
    except (TypeError, ValueError, AssertionError, RuntimeError) as err:
        raise ConfigError(f"{where}: timm.create_model({cfg.name!r}, ...) failed: {err}") from err
    names = cfg.blocks or _default_blocks(model)
    if not names:
        raise ConfigError(
            f"{where}: timm's feature_info names no blocks for {cfg.name!r}; name them with "
            f"blocks: [...] (its modules: {', '.join(n for n, _ in model.named_children())})"
        )
    depth = cfg.depth or len(names)
    if depth > len(names):
        raise ConfigError(f"{where}.depth: got {depth}; {cfg.name!r} has {len(names)} blocks")
    groups = [list(g) for g in np.array_split(np.array(names, dtype=object), depth)]
    check_norm_spec(cfg.normalize, channels, where)
    return TimmEncoder(
        model,
        groups,
        tuple(shape),
        fold_frames=len(shape) == 4,
        where=where,
        features=model.forward_features,
        # a partial of the bound method (not a lambda): a deepcopy of the encoder rebinds it
        head=functools.partial(model.forward_head, pre_logits=True),
        input_norm=_input_norm(cfg, model, channels, where),
    )


def _input_norm(cfg: TimmConfig, model: nn.Module, channels: int, where: str) -> InputNorm | None:
    """The module of the ``normalize`` option (checked by :func:`check_norm_spec`)."""
    spec = cfg.normalize
    if spec is None:
        return None
    if spec == "data":
        return InputNorm(channels, from_data=True, where=where)
    if spec == "pretrained":
        pcfg = getattr(model, "pretrained_cfg", None) or {}
        mean, std = pcfg.get("mean"), pcfg.get("std")
        if mean is None or std is None:
            raise ConfigError(
                f"{where}.normalize: timm records no mean/std for {cfg.name!r}; give "
                "{mean: [...], std: [...]} or 'data'"
            )
        mean, std = numbers(mean), numbers(std)
        if channels != len(mean) and len(mean) != 1:
            if channels != 1:
                raise ConfigError(
                    f"{where}.normalize: pretrained: timm's mean/std of {cfg.name!r} have "
                    f"{len(mean)} channels, the data {channels}; give {{mean: [...], std: "
                    "[...]}} or 'data'"
                )
            # a 1-channel input into a 3-channel model: timm adapts the first conv by summing
            # its RGB filters (adapt_input_conv), i.e. reads grey as R = G = B; the average
            # statistics are what that grey input had
            mean, std = [sum(mean) / len(mean)], [sum(std) / len(std)]
        return InputNorm(channels, mean, std, where=where)
    return InputNorm(channels, numbers(spec["mean"]), numbers(spec["std"]), where=where)
