"""Running a block with other weights: AIM's auxiliary and complementary blocks.

``torch.func.functional_call`` runs the original block's own code with substituted parameters,
so an auxiliary block is "the network structure identical to E_d^m" (Sec. III-D1) for every
encoder family without re-implementing any layer. Buffers (BatchNorm running statistics) are
passed as clones: the passes normalise with batch statistics exactly like the original block in
training, but their updates land in the throw-away clones, never in the original block.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn
from torch.func import functional_call


def decoupled_parameter_names(block: nn.Module) -> list[str]:
    """Names of the weight matrices/kernels of a block (ndim >= 2): what PDM decouples.

    1-D parameters (biases, normalisation affine) are not decoupled: the auxiliary and
    complementary blocks reuse the original ones (spec s. 3).
    """
    return [n for n, p in block.named_parameters() if p.dim() >= 2]


def call_with_weights(
    block: nn.Module, weights: Mapping[str, Tensor], x: Tensor, detach_rest: bool = False
) -> Tensor:
    """``block(x)`` with ``weights`` substituted; other parameters are the block's own.

    Args:
        weights: replacement tensors for (a subset of) the block's parameters, same shapes.
        detach_rest: detach the block's own remaining parameters, so the call sends no gradient
            to the original block (used for the decoupler-only ``L_pdm``).
    """
    params: dict[str, Tensor] = {}
    for name, p in block.named_parameters():
        if name in weights:
            params[name] = weights[name]
        else:
            params[name] = p.detach() if detach_rest else p
    for name, buf in block.named_buffers():
        params[name] = buf.clone()  # BN statistics updated here are discarded
    return functional_call(block, params, (x,))
