"""Coefficients and scores of the baseline methods, as pure functions (``methods.md``).

Each is unit-tested against a hand computation in ``tests/test_baseline_functional.py``.
Shapes: ``M`` modalities, ``B`` batch, ``K`` classes.
"""

from __future__ import annotations

import math
from itertools import combinations

import torch
from torch import Tensor


def true_class_score(logits: Tensor, labels: Tensor) -> Tensor:
    """``s = sum_i softmax(logits_i)[y_i]``: OGM's and PMR's per-modality score (a batch sum)."""
    # float32 even under bf16 autocast: the ratios of these sums drive the modulation
    return logits.detach().float().softmax(dim=1).gather(1, labels.unsqueeze(1)).sum()


def ogm_ratio(scores: Tensor) -> Tensor:
    """``rho_m = s_m / min_{j != m} s_j`` (``[M]``).

    For two modalities this is OGM's ``rho_a = s_a / s_v`` and ``rho_v = s_v / s_a``; for more,
    each modality is compared with the weakest other one (the BalanceBenchmark generalisation).
    """
    m = scores.shape[0]
    others = (
        scores.unsqueeze(0).expand(m, m).masked_fill(torch.eye(m, dtype=torch.bool), float("inf"))
    )
    return scores / others.min(dim=1).values


def ogm_coefficients(scores: Tensor, alpha: float) -> Tensor:
    """OGM's gradient coefficients ``k_m`` (CVPR22; official code): ``1 - tanh(alpha * rho_m)``
    for a modality with ``rho_m > 1`` (it dominates), 1 otherwise."""
    rho = ogm_ratio(scores)
    return torch.where(rho > 1, 1 - torch.tanh(alpha * rho), torch.ones_like(rho))


def pmr_betas(scores: Tensor, alpha: float) -> Tensor:
    """PMR's prototype-loss weights: ``alpha`` for the weakest modality, 0 for the others.

    Two modalities: ``rho = p_a / p_v > 1`` -> ``beta_a = 0, beta_v = alpha`` and vice versa
    (official code). Modalities tied for weakest all get ``alpha``;
    when every score is equal (rho = 1) nothing is modulated.
    """
    weakest = scores == scores.min()
    if bool(weakest.all()):
        return torch.zeros_like(scores)
    return torch.where(weakest, torch.full_like(scores, alpha), torch.zeros_like(scores))


def minmax_scale(x: Tensor, low: float = -1.0, high: float = 1.0) -> Tensor:
    """Per-feature min-max scaling to ``[low, high]`` (scikit-learn's MinMaxScaler)."""
    lo, hi = x.min(dim=0).values, x.max(dim=0).values
    span = torch.where(hi > lo, hi - lo, torch.ones_like(hi))  # constant features -> low
    return low + (x - lo) / span * (high - low)


def kmeans(x: Tensor, k: int, seed: int = 0, iters: int = 100) -> Tensor:
    """Cluster assignments ``[N]`` from Lloyd's algorithm with k-means++ seeding (deterministic)."""
    g = torch.Generator().manual_seed(seed)
    x = x.double()
    centers = [x[torch.randint(len(x), (1,), generator=g)].squeeze(0)]
    for _ in range(1, k):
        d2 = torch.cdist(x, torch.stack(centers)).pow(2).min(dim=1).values
        if float(d2.sum()) == 0:
            centers.append(x[torch.randint(len(x), (1,), generator=g)].squeeze(0))
            continue
        centers.append(x[torch.multinomial(d2 / d2.sum(), 1, generator=g)].squeeze(0))
    c = torch.stack(centers)
    assign = torch.cdist(x, c).argmin(dim=1)
    for _ in range(iters):
        for j in range(k):
            members = x[assign == j]
            if len(members):
                c[j] = members.mean(0)
        new = torch.cdist(x, c).argmin(dim=1)
        if torch.equal(new, assign):
            break
        assign = new
    return assign


def cluster_purity(assign: Tensor, labels: Tensor) -> float:
    """Accuracy after majority voting inside each cluster."""
    correct = 0
    for j in assign.unique():
        correct += int(torch.bincount(labels[assign == j]).max())
    return correct / len(labels)


def relearn_weight(gap: float, lam: float) -> float:
    """D&R's re-initialisation strength ``w = tanh(lambda * gap)``."""
    return float(torch.tanh(torch.tensor(lam * gap)))


def opm_drop_probabilities(scores: Tensor, q_base: float, lam: float) -> Tensor:
    """OPM's feature-drop probabilities ``q_m`` (TPAMI24, ``methods.md`` s. 3).

    ``q_m = q_base (1 + lambda tanh(relu(rho_m - 1)))`` for a modality that dominates
    (``rho_m > 1``, :func:`ogm_ratio`), 0 otherwise; clipped to ``[0, 1]``.
    """
    rho = ogm_ratio(scores)
    t = torch.tanh(torch.relu(rho - 1))
    q = torch.where(t > 0, q_base * (1 + lam * t), torch.zeros_like(rho))
    return q.clamp(0.0, 1.0)


def opm_rescale(dims: Tensor, q: Tensor) -> Tensor:
    """``1 / (1 - theta)`` with ``theta = sum_m d_m q_m / sum_m d_m``: keeps the expected fused
    feature norm when a share ``theta`` of the feature dimensions is dropped."""
    theta = (dims * q).sum() / dims.sum()
    return 1.0 / (1.0 - theta).clamp_min(1e-6)


def shapley_responses(
    outputs: dict[frozenset[str], Tensor], modalities: list[str]
) -> dict[str, Tensor]:
    """AGM's per-modality responses from the ``2^M`` padded passes (``methods.md`` s. 4).

    ``outputs[S]`` is the model's output with the modalities outside ``S`` zeroed. Response
    ``m_m = phi_m + f(empty) / M`` where ``phi_m`` is the Shapley value of modality m, so the
    responses sum to ``f(all)``. For two modalities this is AGM's
    ``m_a = (f(a,v) - f(0,v) + f(a,0)) / 2``.
    """
    n = len(modalities)
    out = {}
    for m in modalities:
        others = [o for o in modalities if o != m]
        total = outputs[frozenset()] / n
        for size in range(n):
            weight = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
            for subset in combinations(others, size):
                s = frozenset(subset)
                total = total + weight * (outputs[s | {m}] - outputs[s])
        out[m] = total
    return out


def agm_ratios(losses: Tensor) -> Tensor:
    """``r_m = exp(mean_{j != m} l_j - l_m)``; two modalities: ``r_a = exp(l_v - l_a)``."""
    n = losses.shape[0]
    others = (losses.sum() - losses) / (n - 1)
    return torch.exp(others - losses)


def agm_kappa(losses: Tensor, running: Tensor, alpha: float) -> Tensor:
    """``kappa_m = exp(alpha * min(rbar_m - r_m, 10))``: ``r`` from this step's losses, ``rbar``
    from their running means (the target the modalities are steered back to)."""
    diff = agm_ratios(running) - agm_ratios(losses)
    return torch.exp(alpha * diff.clamp(max=10.0))


def gblending_weight(
    train_start: float,
    val_start: float,
    train_end: float,
    val_end: float,
    negative_gain: str = "zero",
) -> float:
    """G-Blending's unnormalised weight ``G / O^2`` of one output.

    ``G = L^V_start - L^V_end`` (generalisation gained), ``O = (L^V_end - L^T_end) -
    (L^V_start - L^T_start)`` (overfitting gained); O is floored at 1e-8 in magnitude. An
    output whose validation loss *rose* (``G < 0``) gets weight 0 (``negative_gain="zero"``):
    the paper's ratio rewards generalisation gained, and BalanceBenchmark's ``|G / O^2|``
    (``"abs"``) would reward losing it just as much.
    """
    gain = val_start - val_end
    over = (val_end - train_end) - (val_start - train_start)
    if negative_gain == "abs":
        return abs(gain) / max(over * over, 1e-16)
    return max(gain, 0.0) / max(over * over, 1e-16)


def relative_speed(grad_sq: float, param_sq: float) -> float:
    """Greedy's learning-speed increment of one group: ``sum ||g||^2 / sum ||theta||^2``."""
    return grad_sq / max(param_sq, 1e-12)


def greedy_imbalance(main: list[float], bypass: list[float]) -> float:
    """Greedy's conditional utilisation difference
    ``d = log10(M_bypass_0 / M_main_0) - log10(M_bypass_1 / M_main_1)``."""
    eps = 1e-12
    return math.log10(max(bypass[0], eps) / max(main[0], eps)) - math.log10(
        max(bypass[1], eps) / max(main[1], eps)
    )


def owm_alpha(batch_index: int, batches: int) -> float:
    """MLA's projector coefficient ``alpha = 0.1 ** (1 + i / n)`` with ``i`` the batch index
    *within the epoch* and ``n`` the batches per epoch (official ``utils/utils.py``
    ``GSPlugin.before_update``, lines 26-27): it sweeps [0.1, 0.01) every epoch. (A global step
    in place of ``i`` shrinks it tenfold per epoch and hardens the projection.)"""
    return 0.1 ** (1 + batch_index / max(batches, 1))


def owm_update(projection: Tensor, features: Tensor, alpha: float) -> Tensor:
    """One recursive-least-squares update of MLA's gradient projector (OWM):
    ``r`` = batch-mean feature, ``k = P r^T``, ``P <- P - k k^T / (alpha + r k)``, then
    ``P <- P / ||P||_F``."""
    r = features.detach().mean(0, keepdim=True)  # [1, d]
    k = projection @ r.T  # [d, 1]
    p = projection - (k @ k.T) / (alpha + float(r @ k))
    return p / p.norm()


def entropy_weights(logits: list[Tensor]) -> Tensor:
    """MLA's test-time fusion weights ``[M, B]``: per sample, a softmax over modalities of
    ``max_j e_j - e_m`` where ``e_m`` is the entropy of modality m's prediction (confident
    modalities weigh more)."""
    ent = torch.stack([-(lg.softmax(1) * lg.log_softmax(1)).sum(1) for lg in logits])  # [M, B]
    return (ent.max(dim=0, keepdim=True).values - ent).softmax(dim=0)
