"""AIM's equations (arXiv 2508.19769) against hand computations on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch

from mmbalance.methods import functional as AF
from mmbalance.methods.aim.decoupler import LayerDecoupler, layer_decoupler_size


def test_prototype_logits_are_negative_euclidean_distances_over_temperature() -> None:
    h = torch.tensor([[0.0, 0.0], [3.0, 5.0]])
    p = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    # distances: sample 0 -> [5, 1]; sample 1 -> [1, sqrt(9 + 16) = 5]
    assert torch.allclose(AF.prototype_logits(h, p), torch.tensor([[-5.0, -1.0], [-1.0, -5.0]]))
    assert torch.allclose(
        AF.prototype_logits(h, p, 2.0), torch.tensor([[-2.5, -0.5], [-0.5, -2.5]])
    )


def test_eq9_score_and_eq10_loss() -> None:
    logits = torch.tensor([[-5.0, -1.0], [-1.0, -5.0]])
    y = torch.tensor([1, 1])
    s, loss = AF.score_and_loss(logits, y)
    p_hi = 1 / (1 + math.exp(-4))  # softmax prob of the nearer prototype
    assert s.item() == pytest.approx((p_hi + (1 - p_hi)) / 2)
    assert loss.item() == pytest.approx((-math.log(p_hi) - math.log(1 - p_hi)) / 2, rel=1e-6)
    assert not s.requires_grad


def test_eq12_weights_with_and_without_auxiliary_blocks() -> None:
    s = torch.tensor([0.8, 0.2])
    s_aux = torch.tensor([0.5, 0.1])
    rho, rho_aux = AF.pam_weights(s, s_aux)
    z = math.exp(-0.8) + math.exp(-0.2) + math.exp(-0.5) + math.exp(-0.1)
    assert rho.tolist() == pytest.approx([math.exp(-0.8) / z, math.exp(-0.2) / z])
    assert rho_aux.tolist() == pytest.approx([math.exp(-0.5) / z, math.exp(-0.1) / z])
    assert (rho.sum() + rho_aux.sum()).item() == pytest.approx(1.0)
    # "w/o PAM": normalised over the original blocks only.
    rho_only, none = AF.pam_weights(s)
    z2 = math.exp(-0.8) + math.exp(-0.2)
    assert none is None and rho_only.tolist() == pytest.approx(
        [math.exp(-0.8) / z2, math.exp(-0.2) / z2]
    )


def test_eq11_pam_loss() -> None:
    losses = torch.tensor([1.0, 2.0])
    losses_aux = torch.tensor([3.0, 4.0])
    rho = torch.tensor([0.1, 0.2])
    rho_aux = torch.tensor([0.3, 0.4])
    assert AF.pam_loss(losses, rho, losses_aux, rho_aux).item() == pytest.approx(
        0.1 + 0.4 + 0.9 + 1.6
    )
    assert AF.pam_loss(losses, rho).item() == pytest.approx(0.5)
    # pam_every 4: the auxiliary terms weighted 4 on the step that has them
    assert AF.pam_loss(losses, rho, losses_aux, rho_aux, 4.0).item() == pytest.approx(
        0.5 + 4 * (0.9 + 1.6)
    )


def test_eq14_alpha_is_the_population_coefficient_of_variation() -> None:
    assert AF.dam_alpha(torch.tensor([0.2, 0.6])).item() == pytest.approx(0.2 / 0.4)
    s = torch.tensor([[0.2, 0.6], [0.5, 0.5], [0.1, 0.2]])  # [D, M]
    # depth 3: mean 0.15, std 0.05
    assert AF.dam_alpha(s).tolist() == pytest.approx([0.5, 0.0, 0.05 / 0.15])
    three = torch.tensor([0.3, 0.6, 0.9])  # mean 0.6, std sqrt(0.06)
    assert AF.dam_alpha(three).item() == pytest.approx(math.sqrt(0.06) / 0.6)


def test_eq15_modulation_loss_and_its_gradient() -> None:
    alpha = torch.tensor([0.5, 2.0], requires_grad=True)
    depth_losses = torch.tensor([1.0, 3.0], requires_grad=True)
    total = AF.modulation_loss(alpha, depth_losses)
    assert total.item() == pytest.approx(6.5)
    total.backward()
    assert alpha.grad is None  # alpha is a fixed weight
    assert depth_losses.grad.tolist() == [0.5, 2.0]


def test_eq16_orthogonality_is_the_cosine_similarity_matrix() -> None:
    p = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, -2.0]])
    o = AF.orthogonality(p)
    r = 1 / math.sqrt(2)
    expected = torch.tensor([[1.0, r, 0.0], [r, 1.0, -r], [0.0, -r, 1.0]])
    assert torch.allclose(o, expected, atol=1e-6)


def test_eq8_reconstruction_as_written_per_element_and_relative() -> None:
    w = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    r = torch.tensor([[1.0, 0.0], [3.0, 5.0]])
    # ||W - R||_F^2 = 4 + 1 = 5; ||W||_F^2 = 1 + 4 + 9 + 16 = 30
    assert AF.reconstruction_loss(w, r, "sum").item() == pytest.approx(5.0)
    assert AF.reconstruction_loss(w, r, "mean").item() == pytest.approx(5.0 / 4)
    assert AF.reconstruction_loss(w, r).item() == pytest.approx(5.0 / 30)  # relative (default)


def test_eq7_rowwise_decoupler_against_hand_computation() -> None:
    dec = LayerDecoupler((2, 2), latent=2, mode="rowwise")
    with torch.no_grad():
        dec.phi_lat.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
        dec.phi_lat.bias.zero_()
        dec.phi_mask.weight.zero_()
        dec.phi_mask.bias.copy_(torch.tensor([0.0, math.log(3.0)]))  # sigmoid -> [1/2, 3/4]
        dec.psi.weight.copy_(torch.eye(2))
        dec.psi.bias.copy_(torch.tensor([0.0, 1.0]))
    w = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    out = dec(w, detach_params=False)
    lat = torch.tensor([[1.0, 4.0], [3.0, 8.0]])  # rows through Phi_lat
    mask = torch.tensor([0.5, 0.75])
    assert torch.allclose(out.mask, mask.expand(2, 2))
    assert torch.allclose(out.aux, lat * mask + torch.tensor([0.0, 1.0]))
    assert torch.allclose(out.comp, lat * (1 - mask) + torch.tensor([0.0, 1.0]))
    assert torch.allclose(out.recon, lat + torch.tensor([0.0, 1.0]))


def test_hard_mask_keeps_the_top_share_per_row_with_the_sigmoids_gradient() -> None:
    """``mask_hard``: with ``mask_share`` 0.5 and identity maps, each row's 2 largest latent
    coordinates (of 4) get 1, the others 0; theta_b is W on those coordinates and theta_g on
    the rest; the gradient is the soft mask's (straight-through)."""
    dec = LayerDecoupler((4, 4), latent=4, mode="rowwise", mask_share=0.5, hard=True)
    with torch.no_grad():
        dec.phi_lat.weight.copy_(torch.eye(4))
        dec.phi_lat.bias.zero_()
        dec.phi_mask.weight.copy_(torch.eye(4))  # logits follow the row's own pattern
        dec.phi_mask.bias.zero_()
        dec.psi.weight.copy_(torch.eye(4))
        dec.psi.bias.zero_()
    w = torch.tensor(
        [[4.0, -1.0, 3.0, 0.5], [0.1, 0.2, -0.3, 0.4], [1.0, 2.0, 3.0, 4.0], [0.0, 5.0, 1.0, 0.0]]
    )
    out = dec(w, detach_params=False)
    expected = torch.tensor(
        [[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0], [0.0, 0.0, 1.0, 1.0], [0.0, 1.0, 1.0, 0.0]]
    )
    assert torch.allclose(out.mask.detach(), expected, atol=1e-6)
    assert torch.allclose(out.aux, w * expected, atol=1e-6)
    assert torch.allclose(out.comp, w * (1 - expected), atol=1e-6)
    soft = LayerDecoupler((4, 4), latent=4, mode="rowwise", mask_share=0.5)
    soft.load_state_dict(dec.state_dict())
    g_hard = torch.autograd.grad(out.mask.sum(), dec.phi_mask.weight)[0]
    g_soft = torch.autograd.grad(soft(w, detach_params=False).mask.sum(), soft.phi_mask.weight)[0]
    assert torch.allclose(g_hard, g_soft)


def test_decoupler_views_conv_kernels_row_wise_or_whole() -> None:
    kernel = (8, 4, 3, 3)
    row = LayerDecoupler(kernel, 16, "rowwise")
    assert (row.rows, row.phi_lat.in_features) == (8, 36)
    whole = LayerDecoupler(kernel, 16, "layer")
    assert (whole.rows, whole.phi_lat.in_features) == (1, 288)
    out = row(torch.randn(kernel), detach_params=False)
    assert out.aux.shape == out.comp.shape == out.recon.shape == kernel
    assert sum(p.numel() for p in row.parameters()) == layer_decoupler_size(kernel, 16, "rowwise")
    # The spec's figure: a full ResNet18 stage-4 conv (512x512x3x3) row-wise vs literally.
    assert layer_decoupler_size((512, 512, 3, 3), 512, "layer") > 1_200_000_000


def test_normalized_alpha_keeps_the_depth_ratios_at_mean_one() -> None:
    alpha = AF.dam_alpha(torch.tensor([[0.2, 0.6], [0.4, 0.5], [0.3, 0.3]]))
    # by hand: d1 std 0.2 / mean 0.4 = 0.5; d2 0.05 / 0.45 = 1/9; d3 0
    assert alpha.tolist() == pytest.approx([0.5, 1 / 9, 0.0])
    norm = AF.normalize_alpha(alpha)
    mean = (0.5 + 1 / 9) / 3
    assert norm.tolist() == pytest.approx([0.5 / mean, (1 / 9) / mean, 0.0])
    assert float(norm.mean()) == pytest.approx(1.0)
