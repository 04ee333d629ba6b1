"""Seed 002's loss against hand-computed values, and the 3D network's output layout."""

import math

import numpy as np
import pytest
import torch

from spinebrain.spinesegment.loss3d import IterativeInstanceLoss, instance_loss, surface_weights
from spinebrain.spinesegment.network3d import IterativeInstanceNet, split_outputs


def logit(p):
    return math.log(p / (1 - p))


def test_loss_matches_the_hand_computed_case():
    # two voxels: target [1, 0], probabilities [0.8, 0.3], weights [2, 3]; completeness p 0.9, truly complete
    segmentation = torch.tensor([logit(0.8), logit(0.3)]).reshape(1, 1, 2, 1, 1)
    target = torch.tensor([1.0, 0.0]).reshape(1, 1, 2, 1, 1)
    weights = torch.tensor([2.0, 3.0]).reshape(1, 1, 2, 1, 1)
    loss = instance_loss(segmentation, torch.tensor([logit(0.9)]), target, weights, torch.tensor([1.0]), lam=0.1)
    false_positive = 3 * 0.3 / 2  # sum w (1 - t) p, per voxel of the patch
    false_negative = 2 * 1 * (1 - 0.8) / 2  # sum w t (1 - p)
    expected = 0.1 * false_positive + false_negative - math.log(0.9)
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_false_positives_cost_lambda_of_false_negatives():
    target = torch.zeros(1, 1, 4, 1, 1)
    target[0, 0, :2] = 1
    ones = torch.ones_like(target)
    all_on = instance_loss(torch.full_like(target, 20.0), torch.tensor([0.0]), target, ones, torch.tensor([0.0]), 0.1)
    all_off = instance_loss(torch.full_like(target, -20.0), torch.tensor([0.0]), target, ones, torch.tensor([0.0]), 0.1)
    bce = math.log(2)
    assert float(all_on) - bce == pytest.approx(0.1 * 2 / 4, abs=1e-6)  # two false positives, lambda-weighted
    assert float(all_off) - bce == pytest.approx(2 / 4, abs=1e-6)  # two false negatives


def test_surface_weights_follow_the_formula():
    target = np.zeros((1, 1, 6), bool)
    target[0, 0, 2:5] = True
    distances = np.array([2, 1, 1, 2, 1, 1], float)  # to the target's surface, from either side
    expected = 8 * np.exp(-distances ** 2 / 36) + 1
    np.testing.assert_allclose(surface_weights(target)[0, 0], expected, rtol=1e-6)
    np.testing.assert_array_equal(surface_weights(np.zeros((2, 2, 2), bool)), 1.0)


def test_network_output_layout_feeds_the_loss():
    torch.manual_seed(0)
    network = IterativeInstanceNet(in_channels=2, filters=4, levels=2, dropout=0.0)
    output = network(torch.randn(2, 2, 16, 16, 16))
    assert output.shape == (2, 2, 16, 16, 16)
    segmentation, complete = split_outputs(output)
    assert segmentation.shape == (2, 1, 16, 16, 16) and complete.shape == (2,)
    assert torch.all(output[:, 1] == complete[:, None, None, None])  # broadcast completeness channel
    label = torch.zeros(2, 3, 16, 16, 16)
    label[:, 0, 4:10, 4:10, 4:10] = 1
    label[:, 1] = 1
    loss = IterativeInstanceLoss()(output, label)
    loss.backward()
    assert torch.isfinite(loss) and network.segmentation.weight.grad is not None
    assert network.classifier[-1].weight.grad.abs().sum() > 0  # the completeness branch learns too
