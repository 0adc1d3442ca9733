"""AIM's equations as pure functions of tensors (arXiv 2508.19769, Sec. III).

Nothing here holds state or touches a model, so each function is unit-tested against a hand
computation. Shapes: ``B`` batch, ``K`` classes, ``M`` modalities, ``D`` depths.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# Added under the square root so the distance has a finite gradient when h equals a prototype.
DISTANCE_EPS = 1e-8


def euclidean_distance(h: Tensor, prototypes: Tensor) -> Tensor:
    """``delta[h_i, p_k] = ||h_i - p_k||_2`` for ``h [B, F]``, ``prototypes [K, F]`` -> ``[B, K]``.

    The paper's delta (Eqs. 8-10) is the Euclidean distance, not its square.
    """
    # ||h||^2 - 2 h.p + ||p||^2: one [B, K] matmul instead of a [B, K, F] difference tensor,
    # which for a flattened ResNet stage-1 map (F = 200k) would cost hundreds of MB per call.
    # Always float32, autocast off: in bf16 (8 bits of mantissa) the difference of these
    # large terms would lose the distance entirely.
    with torch.autocast(h.device.type, enabled=False):
        h, prototypes = h.float(), prototypes.float()
        d2 = h.pow(2).sum(1, keepdim=True) - 2.0 * (h @ prototypes.T) + prototypes.pow(2).sum(1)
    return torch.sqrt(d2.clamp_min(0.0) + DISTANCE_EPS)


def prototype_logits(
    h: Tensor, prototypes: Tensor, temperature: float | Tensor = 1.0, metric: str = "euclidean"
) -> Tensor:
    """``logit_k = -delta(h, p_k) / tau``: the argument of the softmax in Eqs. 9 and 10.

    ``metric="squared"`` uses ``delta^2`` (prototypical networks): then the softmax is that of
    a linear classifier with weights ``2 p_k / tau`` and biases ``-||p_k||^2 / tau``.
    """
    distances = euclidean_distance(h, prototypes)
    if metric == "squared":
        distances = distances.pow(2)
    return -distances / temperature


def auto_temperature(prototypes: Tensor, scale: float = 0.2, metric: str = "euclidean") -> Tensor:
    """A scale-free ``tau``: ``scale`` times the mean distance between two of the K
    prototypes (detached).

    The paper's ``tau = 1`` makes Eq. 9 depend on the feature scale: distances between whole
    ResNet feature maps are in the hundreds, so every softmax saturates to 0 or 1, while pooled
    features give distances below 1 and softmaxes stuck at chance. In units of the prototypes'
    own spacing, the logit gap between two classes is at most ``1 / scale`` (triangle
    inequality: ``|delta(h, p_k) - delta(h, p_j)| <= delta(p_k, p_j)``), so no softmax
    saturates beyond it (at 0.2 and K = 10, a sample sitting on its prototype scores at most
    0.94), whatever the depth, encoder or feature scale, and a sample halfway between
    prototypes scores near chance. A constant of the step, it also gives the encoder no
    incentive to shrink or blow up its features to lower the loss.
    """
    p = prototypes.detach().float()
    k = p.shape[0]
    if k < 2:
        return torch.ones((), device=p.device)
    pairwise = euclidean_distance(p, p)
    if metric == "squared":
        pairwise = pairwise.pow(2)
    mean = (pairwise.sum() - pairwise.diagonal().sum()) / (k * (k - 1))
    return scale * mean.clamp_min(1e-6)


def score_and_loss(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Performance ``s`` (Eq. 9) and loss ``L`` (Eq. 10) of one block at one depth.

    ``s`` is the batch mean of the softmax probability of the true class (detached: it is only
    ever used as a weight); ``L`` is the batch-mean cross-entropy (carries gradient).
    """
    prob = logits.detach().float().softmax(dim=1).gather(1, labels.unsqueeze(1)).squeeze(1)
    return prob.mean(), F.cross_entropy(logits, labels)


def saturation(logits: Tensor, labels: Tensor, eps: float = 0.01) -> Tensor:
    """Share of samples whose true-class probability is below ``eps`` or above ``1 - eps``: a
    saturated softmax gives Eq. 9 no grading and Eq. 10 losses that are 0 or huge."""
    prob = logits.detach().float().softmax(dim=1).gather(1, labels.unsqueeze(1))
    return ((prob < eps) | (prob > 1 - eps)).float().mean()


def pam_weights(s: Tensor, s_aux: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """Eq. 12: ``rho^m = exp(-s^m) / Z``, ``rho~^m = exp(-s~^m) / Z``.

    ``Z = sum_m [exp(-s^m) + exp(-s~^m)]`` over the M original and M auxiliary blocks of one
    depth. Without auxiliary blocks (the "w/o PAM" ablation) ``Z = sum_m exp(-s^m)``.
    Lower performance -> larger weight. Inputs ``[M]``; outputs are detached ("fixed weight").
    """
    e = torch.exp(-s.detach())
    if s_aux is None:
        return e / e.sum(), None
    e_aux = torch.exp(-s_aux.detach())
    z = e.sum() + e_aux.sum()
    return e / z, e_aux / z


def pam_loss(
    losses: Tensor, rho: Tensor, losses_aux: Tensor | None = None, rho_aux: Tensor | None = None
) -> Tensor:
    """Eq. 11: ``L_d = sum_m [rho^m L^m + rho~^m L~^m]`` (auxiliary terms optional)."""
    total = (rho * losses).sum()
    if losses_aux is not None and rho_aux is not None:
        total = total + (rho_aux * losses_aux).sum()
    return total


def dam_alpha(s: Tensor) -> Tensor:
    """Eq. 14: coefficient of variation of the M original-block scores at one depth.

    ``alpha_d = sqrt(mean_m (s^m - s_bar)^2) / s_bar`` (population std), detached. Works on
    ``[M]`` or ``[D, M]`` (one alpha per depth).
    """
    s = s.detach()
    mean = s.mean(-1)
    std = (s - mean.unsqueeze(-1)).pow(2).mean(-1).sqrt()
    return std / mean.clamp_min(1e-12)


def normalize_alpha(alpha: Tensor) -> Tensor:
    """``alpha_d / mean_d alpha_d`` (``dam_normalize``): Eq. 14's relative weighting of the
    depths, with mean 1 so that ``lambda_mod`` alone sets the strength of Eq. 15."""
    return alpha / alpha.mean().clamp_min(1e-12)


def modulation_loss(alpha: Tensor, depth_losses: Tensor) -> Tensor:
    """Eq. 15: ``L_mod = sum_d alpha_d L_d``."""
    return (alpha.detach() * depth_losses).sum()


def reconstruction_loss(weight: Tensor, reconstruction: Tensor, kind: str = "relative") -> Tensor:
    """The ``L_re`` term of Eq. 8 for one weight tensor, ``||theta - Psi(Phi_lat(theta))||_F^2``.

    - ``sum``: the paper's squared Frobenius norm as written;
    - ``mean``: divided by the number of elements (this library's first reading; it shrinks
      ``L_re`` by ~1/numel against ``L_g`` in Eq. 8's sum, so the decoupler stopped
      reconstructing: relative errors of 0.9-5, see ``docs/aim.md``);
    - ``relative`` (default): divided by ``||theta||_F^2`` (a constant of the step): the
      relative error, scale-free across layers and comparable to ``L_g``; its minimiser for a
      fixed ``theta`` is the paper's.
    """
    squared = (weight - reconstruction).pow(2).sum()
    if kind == "sum":
        return squared
    if kind == "mean":
        return squared / weight.numel()
    if kind == "relative":
        return squared / weight.detach().pow(2).sum().clamp_min(1e-12)
    raise ValueError(f"reconstruction_loss: unknown kind {kind!r}")


def orthogonality(prototypes: Tensor) -> Tensor:
    """Eq. 16: ``O = <S(P), S(P)^T>``: ``[K, K]`` cosine similarities of flattened prototypes."""
    flat = F.normalize(prototypes.reshape(prototypes.shape[0], -1).float(), dim=1)
    return flat @ flat.T
