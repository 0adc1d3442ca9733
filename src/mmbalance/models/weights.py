"""Encoder weights from a local file, and frozen encoder parts.

Every encoder family takes the same three options (``model.encoder(s)``):

- ``pretrained_file``: a state dict (``.pt``/``.pth``, read with ``weights_only=True``, or
  ``.safetensors``) loaded into the encoder. Keys are matched after the family's own mapping
  (ResNet18: torchvision's ``conv1``/``layerN`` names; timm: the model's own names), a
  ``module.`` prefix (DataParallel) dropped; a first convolution saved for 3 channels is
  inflated to the data's 1 or 2 (averaged over the input channels and repeated: the usual
  cross-modal transfer). Classifier weights (``fc.``, ``head.``, ``classifier.``) in the file
  are not expected and dropped.
- ``strict`` (default true): every weight of the encoder must come from the file, with the
  right shape; false loads what fits and reports the rest.
- ``freeze``: ``true`` freezes the whole encoder; a block (its 1-based depth, or its module
  name) freezes the stem and every block up to it. Frozen parameters do not train (no gradient,
  left out of the optimiser), and frozen BatchNorm layers keep their running statistics.

Nothing is downloaded: weights come from a file the user names.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mmbalance.errors import ConfigError

log = logging.getLogger("mmbalance")

# Classifier heads a backbone's checkpoint may carry; an encoder has none (pooled features).
HEAD_PREFIXES = ("fc.", "head.", "classifier.", "head_dist.", "last_linear.")


@dataclass
class EncoderWeights:
    """The options every encoder family shares (``model.encoder`` / ``model.encoders.<m>``)."""

    pretrained_file: str | None = None  # a local state dict (.pt / .pth / .safetensors)
    strict: bool = True  # every encoder weight must come from the file, shape included
    # true: the whole encoder; N or a block's module name: the stem and blocks 1..N
    freeze: bool | int | str = False

    def validate(self, where: str) -> None:
        if isinstance(self.freeze, int) and not isinstance(self.freeze, bool) and self.freeze < 0:
            raise ConfigError(
                f"{where}.freeze: got {self.freeze}; expected true, false, a depth >= 1 or a "
                "block's module name"
            )


COMMON_FIELDS = ("pretrained_file", "strict", "freeze")


@dataclass
class LoadReport:
    """What loading a weights file did: keys loaded, and every mismatch."""

    loaded: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)  # "key: file [..] vs encoder [..]"
    inflated: list[str] = field(default_factory=list)  # first convs averaged to fewer channels

    def problems(self, limit: int = 5) -> str:
        parts = []
        if self.missing:
            parts.append(f"missing keys {self.missing[:limit]}")
        if self.mismatched:
            parts.append(f"shape mismatches {self.mismatched[:limit]}")
        if self.unexpected:
            parts.append(f"unexpected keys {self.unexpected[:limit]}")
        return "; ".join(parts)


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """A state dict from a local file; errors name the file and what it holds instead."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ConfigError(f"pretrained weights file {str(path)!r} does not exist")
    if not path.is_file():
        raise ConfigError(f"pretrained weights file {str(path)!r} is not a file")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as err:
            raise ConfigError(
                f"{str(path)!r} is a .safetensors file: install the 'safetensors' package"
            ) from err
        try:
            return dict(load_file(str(path)))
        except Exception as err:
            raise ConfigError(f"cannot read pretrained weights {str(path)!r}: {err}") from err
    try:
        # weights_only: a weights file from the internet must not be able to run code
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ConfigError(f"cannot read pretrained weights {str(path)!r}: {err}") from err
    for key in ("state_dict", "model", "model_state_dict"):  # common checkpoint wrappers
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        kind = type(obj).__name__
        raise ConfigError(
            f"pretrained weights {str(path)!r}: expected a state dict (name -> tensor); got "
            f"{kind}" + (f" with keys {sorted(map(str, obj))[:5]}" if isinstance(obj, dict) else "")
        )
    return {str(k): v for k, v in obj.items()}


def _first_conv(module: nn.Module) -> str | None:
    """The state-dict key of the first convolution's weight (in module order)."""
    for name, mod in module.named_modules():
        if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            return f"{name}.weight" if name else "weight"
    return None


def load_weights(encoder: nn.Module, path: str | Path, strict: bool, where: str) -> LoadReport:
    """Load ``path`` into ``encoder`` (module docstring); a :class:`ConfigError` names the file
    and the first mismatching keys when ``strict`` and anything does not fit."""
    state = read_state_dict(path)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    mapper = getattr(encoder, "map_pretrained_keys", None)
    if callable(mapper):
        state = mapper(state)
    own = encoder.state_dict()
    report = LoadReport()
    first = _first_conv(encoder)
    if first is not None and first in state and first in own:
        got, want = state[first], own[first]
        if (
            got.dim() == want.dim()
            and got.shape[1] != want.shape[1]
            and (got.shape[0] == want.shape[0] and got.shape[2:] == want.shape[2:])
        ):
            state[first] = got.mean(dim=1, keepdim=True).repeat(
                1, want.shape[1], *[1] * (got.dim() - 2)
            )
            report.inflated.append(f"{first}: {got.shape[1]} -> {want.shape[1]} channels")
    usable: dict[str, Tensor] = {}
    for key, value in state.items():
        if key not in own:
            if not key.startswith(HEAD_PREFIXES):
                report.unexpected.append(key)
        elif value.shape != own[key].shape:
            report.mismatched.append(
                f"{key}: file {list(value.shape)} vs encoder {list(own[key].shape)}"
            )
        else:
            usable[key] = value
    # BatchNorm's batch counters are not weights: a file without them is complete
    report.missing = sorted(
        k
        for k in own
        if k not in usable
        and not k.endswith("num_batches_tracked")
        and k not in {m.split(":")[0] for m in report.mismatched}
    )
    problems = report.problems()
    if strict and problems:
        raise ConfigError(
            f"{where}.pretrained_file: {str(path)!r} does not fit this encoder: {problems} "
            f"({len(usable)} of {len(own)} weights fit). Check the architecture and its options, "
            "or set strict: false to load what fits"
        )
    merged = {**own, **usable}
    encoder.load_state_dict(merged)
    report.loaded = len(usable)
    log.info(
        "%s: loaded %d of %d weights from %s%s%s",
        where,
        report.loaded,
        len(own),
        path,
        f" (inflated {report.inflated})" if report.inflated else "",
        f"; not loaded: {problems}" if problems else "",
    )
    return report


def frozen_depth(encoder: Any, freeze: bool | int | str, where: str) -> int:
    """How many leading blocks ``freeze`` covers (the stem with them): ``D`` for true, 0 for
    false, N for a depth, the block's depth for its module name."""
    depth = len(encoder.blocks)
    if freeze is True:
        return depth
    if freeze is False:
        return 0
    if isinstance(freeze, int):
        if not 1 <= freeze <= depth:
            raise ConfigError(
                f"{where}.freeze: got {freeze}; the encoder has blocks 1..{depth} (true freezes "
                "all of it)"
            )
        return freeze
    names = list(getattr(encoder, "block_names", [])) or [f"blocks.{d}" for d in range(depth)]
    if freeze in names:
        return names.index(freeze) + 1
    import difflib

    close = difflib.get_close_matches(freeze, names, n=3)
    raise ConfigError(
        f"{where}.freeze: no block named {freeze!r}; the blocks are {names}"
        + (f" (did you mean {close[0]!r}?)" if close else "")
    )


def apply_freeze(encoder: Any, count: int) -> None:
    """Freeze the stem and the first ``count`` blocks (``count`` 0: nothing)."""
    if count <= 0:
        return
    parts: list[nn.Module] = [encoder.stem, *list(encoder.blocks)[:count]]
    if count == len(encoder.blocks):
        parts.append(encoder)  # the whole encoder: pooling layers and norms after the blocks too
    for part in parts:
        for p in part.parameters():
            p.requires_grad_(False)
    encoder.frozen_blocks = count
    encoder.frozen_modules = parts


def is_frozen(module: nn.Module) -> bool:
    """Whether ``module`` has parameters and none of them trains."""
    params = list(module.parameters())
    return bool(params) and not any(p.requires_grad for p in params)
