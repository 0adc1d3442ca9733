"""Any ``nn.Module`` as a block encoder (``docs/encoders.md``).

mmbalance's per-depth methods (AIM's prototypes, auxiliary blocks and decoupler; PMR, D&R,
InfoReg, diagnose) need what timm's ``forward_intermediates`` / ``feature_info`` expose: the
blocks, each block's input and output, and a pooled feature. A module gets there in one of
three ways:

1. it *is* one: a :class:`~mmbalance.models.base.BlockEncoder` subclass, used as it is;
2. it follows the protocol: attributes ``stem`` (a module), ``blocks`` (a sequence of modules)
   and ``pool`` (a module or a method ``pool(h)`` / ``pool(h, frames)``), optionally
   ``out_dim``: :class:`ProtocolEncoder` reads them;
3. the user names them: :func:`wrap_encoder` with module paths. With ``stem`` named, the
   encoder is ``pool(blocks[D-1](... blocks[0](stem(x))))``, run block by block; without it,
   the module's own ``forward`` runs and forward hooks read each block's input and output
   (:class:`HookedEncoder`: any wiring between the blocks is kept, and methods that change
   what passes between blocks, Greedy's MMTM, refuse it).

Pooling a block output that is not already ``[N, C]``: the mean over space (``[N, C, H, W]``)
or tokens (``[N, L, C]``); video frames folded into the batch are averaged last.
"""

from __future__ import annotations

import difflib
import inspect
import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from mmbalance.errors import ConfigError
from mmbalance.models.base import BlockEncoder, Intermediates, eval_mode

log = logging.getLogger("mmbalance")


def pool_any(h: Tensor, frames: int = 1) -> Tensor:
    """``[N, C]`` from a block output: mean over space ``[N, C, H, W]`` (or more axes) or
    over tokens ``[N, L, C]``; then over the ``frames`` folded into the batch."""
    if h.dim() == 2:
        pooled = h
    elif h.dim() == 3:
        pooled = h.mean(dim=1)
    else:
        pooled = h.flatten(2).mean(dim=2)
    if frames == 1:
        return pooled
    return pooled.reshape(-1, frames, pooled.shape[1]).mean(dim=1)


def scale_any(h: Tensor, scale: Tensor, frames: int) -> Tensor:
    """``h`` times a per-sample channel scale ``[B, C]`` (MMTM), by the layout of
    :func:`pool_any`: channels on axis 1 of maps, on the last axis of token sequences."""
    scale = scale.repeat_interleave(frames, dim=0) if frames > 1 else scale
    if h.dim() == 2:
        return h * scale
    if h.dim() == 3:
        return h * scale[:, None, :]
    return h * scale.reshape(*scale.shape, *([1] * (h.dim() - 2)))


def _lookup(module: nn.Module, path: str, what: str, where: str) -> nn.Module:
    """The submodule at ``path``, or an error naming close matches."""
    try:
        return module.get_submodule(path)
    except AttributeError:
        names = [n for n, _ in module.named_modules() if n]
        close = difflib.get_close_matches(path, names, n=3)
        top = [n for n, _ in module.named_children()]
        raise ConfigError(
            f"{where}: {what} {path!r} is not a submodule of {type(module).__name__}"
            + (f"; did you mean {', '.join(map(repr, close))}?" if close else "")
            + f" (its top-level modules: {', '.join(top)})"
        ) from None


class _Frames:
    """Video handling shared by the wrappers: ``[B, C, T, H, W]`` folded into ``[B*T, C, H, W]``
    when ``fold_frames`` (a 2-D network on each frame, as the ResNet18 path does)."""

    fold_frames: bool

    def prepare(self, x: Tensor) -> tuple[Tensor, int]:
        if self.fold_frames and x.dim() == 5:
            b, c, t, h, w = x.shape
            return x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w), t
        return x, 1


class _Views:
    """Holds module views (an ``nn.Sequential`` of existing submodules, the list of blocks)
    outside ``nn.Module``'s registry: the parameters stay registered once, under the wrapped
    module's own names (``inner.<name>``), so its state dict is the user's module's."""

    def _set_view(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)


class ProtocolEncoder(_Frames, _Views, BlockEncoder):
    """A module with ``stem``, ``blocks`` and ``pool`` (the protocol of the module docstring)."""

    _pool: Callable[..., Tensor]

    def __init__(self, module: nn.Module, sample_shape: tuple[int, ...], fold_frames: bool) -> None:
        super().__init__()
        self.inner = module
        self.fold_frames = fold_frames
        self._set_view("stem", module.stem)
        self._set_view("blocks", list(module.blocks))  # type: ignore[arg-type]
        pool = module.pool
        self._pool_takes_frames = (
            not isinstance(pool, nn.Module) and len(inspect.signature(pool).parameters) >= 2  # type: ignore[arg-type]
        )
        self._set_view("_pool", pool)
        self.out_dim = int(getattr(module, "out_dim", 0)) or _out_dim(self, sample_shape)
        disable_unused(self, sample_shape, type(module).__name__)

    def pool(self, h: Tensor, frames: int) -> Tensor:
        if self._pool_takes_frames:
            return self._pool(h, frames)
        return pool_any(self._pool(h), frames)

    def scale_channels(self, h: Tensor, scale: Tensor, frames: int) -> Tensor:
        return scale_any(h, scale, frames)

    def map_pretrained_keys(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        return _prefixed(state, self.state_dict())


class SequentialEncoder(ProtocolEncoder):
    """``pool(blocks[D-1](... blocks[0](stem(x))))`` from named submodules of ``module``."""

    def __init__(
        self,
        module: nn.Module,
        stem: Sequence[str],
        blocks: Sequence[str],
        pool: str | None,
        sample_shape: tuple[int, ...],
        fold_frames: bool,
        where: str,
    ) -> None:
        BlockEncoder.__init__(self)
        self.inner = module
        self.fold_frames = fold_frames
        self._names = list(blocks)
        self._set_view("stem", nn.Sequential(*[_lookup(module, p, "stem", where) for p in stem]))
        self._set_view("blocks", [_lookup(module, p, "block", where) for p in blocks])
        self._set_view("_pool", _lookup(module, pool, "pool", where) if pool else pool_any_module)
        self._pool_takes_frames = False
        self.out_dim = _out_dim(self, sample_shape)
        disable_unused(self, sample_shape, where)

    @property
    def block_names(self) -> list[str]:
        return list(self._names)


class _PoolAny(nn.Module):
    def forward(self, h: Tensor) -> Tensor:
        return pool_any(h)


pool_any_module = _PoolAny()


class HookedEncoder(_Frames, _Views, BlockEncoder):
    """The module's own forward, its blocks read by hooks (module docstring, way 3 without a
    stem). ``features(x)`` runs the network, ``head(features)`` pools its output to ``[N, C]``
    (the generic pooling when None). A group of consecutive modules can be one block."""

    runs_block_by_block = False
    _groups: list[list[nn.Module]]
    _features: Callable[[Tensor], Tensor]
    _head: Callable[[Tensor], Tensor] | None

    def __init__(
        self,
        module: nn.Module,
        blocks: Sequence[Sequence[str]],
        sample_shape: tuple[int, ...],
        fold_frames: bool,
        where: str,
        features: Callable[[Tensor], Tensor] | None = None,
        head: Callable[[Tensor], Tensor] | None = None,
        input_norm: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.inner = module
        self.fold_frames = fold_frames
        # applied to the input before the module's forward (models/input_norm.py); set before
        # the dummy forward below
        self.input_norm = input_norm
        groups = [[_lookup(module, p, "block", where) for p in group] for group in blocks]
        self._names = ["+".join(g) if len(g) > 1 else g[0] for g in blocks]
        self._set_view("blocks", [g[0] if len(g) == 1 else nn.Sequential(*g) for g in groups])
        self._set_view("_groups", groups)
        self._set_view("_features", features or module)
        self._set_view("_head", head)
        self._set_view("stem", _NoStem(where))
        self.out_dim = self._check_calls(sample_shape, where)
        disable_unused(self, sample_shape, where)

    @property
    def block_names(self) -> list[str]:
        return list(self._names)

    def prepare(self, x: Tensor) -> tuple[Tensor, int]:
        if self.input_norm is not None:
            x = self.input_norm(x)
        return super().prepare(x)

    def _pooled(self, out: Tensor, frames: int) -> Tensor:
        if self._head is not None:
            out = self._head(out)
        return pool_any(out, frames)

    def forward(self, x: Tensor) -> Tensor:
        h, frames = self.prepare(x)
        return self._pooled(self._features(h), frames)

    def forward_intermediates(self, x: Tensor) -> Intermediates:
        h, frames = self.prepare(x)
        depth = len(self.blocks)
        inputs: list[Any] = [None] * depth
        outputs: list[Any] = [None] * depth
        # hooks live for this call only: a copy of the encoder (deepcopy) carries none that
        # would write into this one, and the auxiliary passes that call a block on their own
        # (AIM) are not recorded
        handles = []
        for d, group in enumerate(self._groups):
            handles.append(
                group[0].register_forward_pre_hook(
                    lambda m, a, d=d: inputs.__setitem__(d, a[0] if a else None)
                )
            )
            handles.append(
                group[-1].register_forward_hook(lambda m, a, o, d=d: outputs.__setitem__(d, o))
            )
        try:
            pooled = self._pooled(self._features(h), frames)
        finally:
            for handle in handles:
                handle.remove()
        return Intermediates(inputs, outputs, pooled, frames)

    def pool(self, h: Tensor, frames: int) -> Tensor:
        return pool_any(h, frames)

    def map_pretrained_keys(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        return _prefixed(state, self.state_dict())

    @torch.no_grad()
    def _check_calls(self, sample_shape: tuple[int, ...], where: str) -> int:
        """One dummy forward: every block called with a tensor and giving one; the width of
        the pooled feature."""
        calls = [0] * len(self.blocks)
        handles = [
            g[0].register_forward_pre_hook(lambda m, a, d=d: calls.__setitem__(d, calls[d] + 1))
            for d, g in enumerate(self._groups)
        ]
        try:
            with eval_mode(self):
                inter = self.forward_intermediates(_dummy(self, sample_shape))
        finally:
            for handle in handles:
                handle.remove()
        for d, (n, inp, out) in enumerate(zip(calls, inter.inputs, inter.outputs, strict=True)):
            if n != 1 or not isinstance(inp, Tensor) or not isinstance(out, Tensor):
                raise ConfigError(
                    f"{where}: block {self._names[d]!r} was called {n} time(s) in the forward "
                    "pass, or not with one tensor in and one out; name modules the forward "
                    "calls once each, each mapping a tensor to a tensor"
                )
        return int(inter.pooled.shape[1])


class _NoStem(nn.Module):
    """The stem of a hooked encoder: part of its module's forward, not a module of its own."""

    def __init__(self, where: str) -> None:
        super().__init__()
        self.where = where

    def forward(self, x: Tensor) -> Tensor:
        from mmbalance.errors import CapabilityError

        raise CapabilityError(
            f"{self.where}: this encoder runs its module's own forward (its blocks read through "
            "hooks), so it cannot be run block by block; name its stem (wrap_encoder(..., "
            "stem=[...])) for a method that needs that"
        )


def disable_unused(encoder: BlockEncoder, sample_shape: tuple[int, ...], where: str) -> None:
    """Parameters of the wrapped module that the encoder's forward never uses (its classifier,
    say) get ``requires_grad=False``: they would otherwise sit in the optimiser and in every
    method's per-encoder gradient as parameters without a gradient. One dummy forward and
    backward finds them (in eval mode: no BatchNorm statistic moves)."""
    params = [p for p in encoder.parameters() if p.requires_grad]
    if not params:
        return
    with eval_mode(encoder):
        out = encoder(_dummy(encoder, sample_shape))
    grads = torch.autograd.grad(out.float().sum(), params, allow_unused=True)
    names = {id(p): n for n, p in encoder.named_parameters()}
    unused = [p for p, g in zip(params, grads, strict=True) if g is None]
    for p in unused:
        p.requires_grad_(False)
    if unused:
        shown = ", ".join(names[id(p)] for p in unused[:6]) + (" ..." if len(unused) > 6 else "")
        log.info("%s: not in the encoder's forward, so not trained: %s", where, shown)


def _dummy(encoder: nn.Module, sample_shape: tuple[int, ...]) -> Tensor:
    device = next(encoder.parameters()).device
    return torch.zeros(2, *sample_shape, device=device)


@torch.no_grad()
def _out_dim(encoder: BlockEncoder, sample_shape: tuple[int, ...]) -> int:
    with eval_mode(encoder):
        return int(encoder(_dummy(encoder, sample_shape)).shape[1])


def _prefixed(state: dict[str, Tensor], own: dict[str, Tensor]) -> dict[str, Tensor]:
    """A file saved from the user's module (its own names) in the wrapper's ``inner.`` names;
    a file already in the wrapper's names passes through."""
    if any(k in own for k in state):
        return state
    return {f"inner.{k}": v for k, v in state.items()}


def as_block_encoder(
    module: nn.Module, sample_shape: tuple[int, ...], where: str, fold_frames: bool = False
) -> BlockEncoder:
    """``module`` as a block encoder: itself if it is one, read through the protocol if it
    has ``stem``, ``blocks`` and ``pool``; otherwise an error saying what to add."""
    if isinstance(module, BlockEncoder):
        return module
    if not isinstance(module, nn.Module):
        raise ConfigError(
            f"{where}: the encoder builder returned {type(module).__name__}, not a module"
        )
    have = {name: hasattr(module, name) for name in ("stem", "blocks", "pool")}
    if all(have.values()):
        return ProtocolEncoder(module, sample_shape, fold_frames)
    top = [n for n, _ in module.named_children()]
    lacking = [n for n, ok in have.items() if not ok]
    raise ConfigError(
        f"{where}: {type(module).__name__} is not a block encoder: it has no "
        f"{', '.join(lacking)}. Give it attributes stem (a module), blocks (its D blocks) and "
        "pool (a module or method), or wrap it: mmbalance.wrap_encoder(module, "
        f"blocks=[...], stem=[...], pool=...) with module names from: {', '.join(top)} "
        "(docs/encoders.md)"
    )


def wrap_encoder(
    module: nn.Module,
    blocks: Sequence[str | Sequence[str]],
    *,
    sample_shape: Sequence[int],
    stem: Sequence[str] | None = None,
    pool: str | None = None,
    fold_frames: bool = False,
    where: str = "wrap_encoder",
) -> BlockEncoder:
    """Any module as a block encoder, from the names of its parts (``module.named_modules()``).

    Args:
        module: the network (its classifier, if any, is simply not named).
        blocks: the D blocks, in order; an entry may be a list of consecutive modules that form
            one block (e.g. three ViT layers).
        sample_shape: one input sample's shape (the data's): the feature width is measured.
        stem: the modules before the first block, in order. Given, the encoder runs
            ``pool(blocks(stem(x)))`` block by block; left out, the module's own ``forward``
            runs and hooks read the blocks (its forward must then return features, pooled by
            the generic pooling when not ``[N, C]``).
        pool: a module turning the last block's output into ``[N, C]`` (stem mode); default
            the mean over space or tokens.
        fold_frames: video ``[B, C, T, H, W]`` run frame by frame through a 2-D network.
    """
    shape = tuple(int(s) for s in sample_shape)
    if not blocks:
        raise ConfigError(f"{where}: blocks: expected the names of at least one block")
    if stem is not None:
        flat = [b if isinstance(b, str) else None for b in blocks]
        if any(b is None for b in flat):
            raise ConfigError(f"{where}: blocks: grouped blocks need the hooked form (no stem)")
        return SequentialEncoder(module, stem, flat, pool, shape, fold_frames, where)  # type: ignore[arg-type]
    if pool is not None:
        raise ConfigError(f"{where}: pool needs stem (without it the module's forward pools)")
    groups = [[b] if isinstance(b, str) else list(b) for b in blocks]
    return HookedEncoder(module, groups, shape, fold_frames, where)
