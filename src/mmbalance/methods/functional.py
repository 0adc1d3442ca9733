"""The methods' maths as pure functions: the baselines' coefficients and scores
(``methods.md``) and AIM's equations (arXiv 2508.19769, Sec. III). Prototype distances and
scores live here once, shared by AIM, PMR and ``mmbalance diagnose``.

Nothing here holds state or touches a model, so each function is unit-tested against a hand
computation (``tests/test_baselines.py``, ``tests/test_aim_functional.py``).
Shapes: ``B`` batch, ``K`` classes, ``M`` modalities, ``D`` depths.
"""

from __future__ import annotations

import math
from itertools import combinations

import torch
import torch.nn.functional as F
from torch import Tensor


def true_class_score(logits: Tensor, labels: Tensor) -> Tensor:
    """``s = sum_i softmax(logits_i)[y_i]``: OGM's and PMR's per-modality score (a batch sum)."""
    # float32 even under bf16 autocast: the ratios of these sums drive the modulation
    return logits.detach().float().softmax(dim=1).gather(1, labels.unsqueeze(1)).sum()


def regression_score(prediction: Tensor, target: Tensor) -> Tensor:
    """The regression form of :func:`true_class_score` (docs/regression.md): the batch sum of
    ``exp(-||p_i - y_i||^2 / (2 sigma^2))``, sigma^2 the batch's target variance (mean over the
    T targets): the density of the truth under a Gaussian centred on the prediction, scaled to
    1 at an exact prediction, as the true-class probability is 1 at a certain right answer.
    A modality whose prediction (or its part of the fused one) follows the target scores
    higher; predicting the mean everywhere scores ``exp(-1/2) = 0.61`` per sample."""
    p = prediction.detach().float().reshape(target.shape[0], -1)
    y = target.detach().float().reshape(target.shape[0], -1)
    var = y.var(dim=0, unbiased=False).mean().clamp_min(1e-8) if y.shape[0] > 1 else y.new_ones(())
    return torch.exp(-(p - y).pow(2).sum(1) / (2 * var)).sum()


def split_score(part: Tensor, target: Tensor) -> Tensor:
    """OGM's score of a regression's split part ``head_m(f_m)`` (a share of the fused
    prediction, on no fixed scale): the batch size times ``corr(part, y)^2``, the share of the
    target's variance the best affine reading of the part explains, summed over the batch as
    the true-class probabilities are; 0 for a constant part or target."""
    p = part.detach().float().reshape(target.shape[0], -1)
    y = target.detach().float().reshape(target.shape[0], -1)
    pc, yc = p - p.mean(0), y - y.mean(0)
    denom = (pc.pow(2).sum(0) * yc.pow(2).sum(0)).sqrt()
    corr = torch.where(
        denom > 0, (pc * yc).sum(0) / denom.clamp_min(1e-12), torch.zeros_like(denom)
    )
    return corr.pow(2).mean() * y.shape[0]


def quantile_edges(targets: Tensor, bins: int) -> Tensor:
    """Inner edges ``[bins - 1]`` splitting a regression target into ``bins`` groups of equal
    count (quantiles of the first target column; repeated values merge bins): the
    pseudo-classes of a regression's prototypes (AIM, PMR; docs/regression.md)."""
    first = targets.detach().double().reshape(targets.shape[0], -1)[:, 0]
    levels = torch.linspace(0, 1, bins + 1, dtype=torch.float64)[1:-1]
    return torch.unique(torch.quantile(first, levels)).float()


def target_bins(targets: Tensor, edges: Tensor) -> Tensor:
    """The pseudo-class of every sample: the index of its first target's quantile bin."""
    first = targets.detach().float().reshape(targets.shape[0], -1)[:, 0]
    return torch.bucketize(first, edges.to(first.device), right=True)


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


# --- AIM (arXiv 2508.19769, Sec. III) ------------------------------------------------------

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


def prototype_logits(h: Tensor, prototypes: Tensor, temperature: float | Tensor = 1.0) -> Tensor:
    """``logit_k = -delta(h, p_k) / tau``: the argument of the softmax in Eqs. 9 and 10."""
    return -euclidean_distance(h, prototypes) / temperature


def auto_temperature(prototypes: Tensor, scale: float = 0.2) -> Tensor:
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
    mean = (pairwise.sum() - pairwise.diagonal().sum()) / (k * (k - 1))
    return scale * mean.clamp_min(1e-6)


def score_and_loss(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Performance ``s`` (Eq. 9) and loss ``L`` (Eq. 10) of one block at one depth.

    ``s`` is the batch mean of the softmax probability of the true class (detached: it is only
    ever used as a weight); ``L`` is the batch-mean cross-entropy (carries gradient).
    """
    prob = logits.detach().float().softmax(dim=1).gather(1, labels.unsqueeze(1)).squeeze(1)
    return prob.mean(), F.cross_entropy(logits, labels)


def regression_score_and_loss(prediction: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """AIM's Eqs. 9-10 for a regression scored by a block's own error (``regression_scores:
    error``): ``L = MSE / Var(y)`` (the batch's target variance, a constant of the step) and
    ``s = max(0, 1 - L)`` (detached): the block's R^2 on the batch, clipped at 0 as a
    probability is, so Eq. 12's and Eq. 14's weights read it as they read the true-class
    probability."""
    p = prediction.float().reshape(target.shape[0], -1)
    y = target.float().reshape(target.shape[0], -1)
    var = y.var(dim=0, unbiased=False).mean().detach().clamp_min(1e-8)
    loss = (p - y).pow(2).mean() / var
    return (1 - loss.detach()).clamp(0.0, 1.0), loss


def saturation(logits: Tensor, labels: Tensor, eps: float = 0.01) -> Tensor:
    """Share of samples whose true-class probability is below ``eps`` or above ``1 - eps``: a
    saturated softmax gives Eq. 9 no grading and Eq. 10 losses that are 0 or huge."""
    prob = logits.detach().float().softmax(dim=1).gather(1, labels.unsqueeze(1))
    return ((prob < eps) | (prob > 1 - eps)).float().mean()


def pam_weights(
    s: Tensor, s_aux: Tensor | None = None, aux_mask: Tensor | None = None
) -> tuple[Tensor, Tensor | None]:
    """Eq. 12: ``rho^m = exp(-s^m) / Z``, ``rho~^m = exp(-s~^m) / Z``.

    ``Z = sum_m [exp(-s^m) + exp(-s~^m)]`` over the M original and M auxiliary blocks of one
    depth. Without auxiliary blocks (the "w/o PAM" ablation) ``Z = sum_m exp(-s^m)``. Lower
    performance -> larger weight; over scores in [0, 1] a weight moves by a factor e at most.
    ``aux_mask [M]`` (0/1): the modalities that have an auxiliary block at this depth (a frozen
    block has none): the others' ``rho~`` is 0 and they leave ``Z``. Inputs ``[M]``; outputs
    are detached ("fixed weight").
    """
    e = torch.exp(-s.detach())
    if s_aux is None:
        return e / e.sum(), None
    e_aux = torch.exp(-s_aux.detach())
    if aux_mask is not None:
        e_aux = e_aux * aux_mask
    z = e.sum() + e_aux.sum()
    return e / z, e_aux / z


def pam_loss(
    losses: Tensor,
    rho: Tensor,
    losses_aux: Tensor | None = None,
    rho_aux: Tensor | None = None,
    aux_weight: float = 1.0,
) -> Tensor:
    """Eq. 11: ``L_d = sum_m [rho^m L^m + rho~^m L~^m]`` (auxiliary terms optional).

    ``aux_weight`` multiplies the auxiliary terms: AIM's ``pam_every`` k runs the auxiliary
    blocks on one step in k and weighs their terms by k there, so that over k steps the
    expected ``L_d`` is Eq. 11's (an importance weight, as a sub-batch is for a batch mean).
    """
    total = (rho * losses).sum()
    if losses_aux is not None and rho_aux is not None:
        total = total + aux_weight * (rho_aux * losses_aux).sum()
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
      reconstructing: relative errors of 0.9-5, see ``docs/aim-investigation.md``);
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
