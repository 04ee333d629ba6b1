"""The network's tissue map refined by the scan's own intensities: a Gaussian mixture with the network as prior.

The network (trained on synthetic images only) knows *which* intensity cluster is CSF, GM or WM in a
scan of any contrast, and roughly where each tissue lies; the scan itself says most precisely where
one tissue ends and the next begins. This step joins the two the way atlas-based segmenters (SAMSEG,
FSL FAST) join an atlas and the image, with the network's probabilities in the atlas's place:

    posterior_k(x)  ∝  prior_k(x)^w  ·  N(y(x); mean_k, sd_k)        k in CSF, GM, WM, inside the brain

started from the network's own soft assignment (so the class order, i.e. the contrast, comes from the
network, never from an assumed T1 order) and updated by expectation-maximisation for a few rounds.
``w`` (``prior_weight``) below 1 lets the intensities speak where the network is unsure.

Hand-written because no MONAI or SimpleITK filter fits a mixture with a per-voxel prior (SimpleITK's
``ScalarImageKmeansImageFilter`` has none); it is a few array operations on the brain's voxels.
"""

from __future__ import annotations

import numpy as np

#: how many EM rounds; the class parameters settle within a handful on every brain tried
ROUNDS = 8
#: the prior weight when the model card names none (its ``refine_prior_weight``, chosen per model on
#: synthetic held-out brains by ``benchmarks/eval_brainseg_synthetic.py``)
DEFAULT_PRIOR_WEIGHT = 0.5
CARD_KEY = "refine_prior_weight"


def refine_tissue(probabilities: np.ndarray, intensities: np.ndarray, inside: np.ndarray,
                  prior_weight: float = DEFAULT_PRIOR_WEIGHT, rounds: int = ROUNDS) -> np.ndarray:
    """Tissue labels (1 CSF, 2 GM, 3 WM inside ``inside``, 0 elsewhere) from the network's probabilities.

    ``probabilities``: (4, ...) background, CSF, GM, WM on the scan's grid; ``intensities``: the scan (any
    scale) on the same grid; ``inside``: the brain mask (bool). Background is not a class inside the brain.
    """
    prior = np.clip(probabilities[1:4, inside].astype(np.float32).T, 1e-4, None)  # (n, 3)
    log_prior = prior_weight * np.log(prior / prior.sum(1, keepdims=True))
    values = intensities[inside].astype(np.float32)
    values = (values - values.mean()) / max(float(values.std()), 1e-6)
    # the class parameters are fitted on a regular sample of the voxels (every ``step``-th: plenty for
    # three Gaussians, and it keeps the step well under a second); the final posterior is taken everywhere
    step = max(1, len(values) // 200_000)
    sample_values, sample_log_prior = values[::step], log_prior[::step]
    network = np.exp(sample_log_prior / max(prior_weight, 1e-6))
    start = _gaussians(sample_values, network)
    posterior = network
    for _ in range(rounds):
        gaussians = _gaussians(sample_values, posterior)
        posterior = _posterior(sample_values, sample_log_prior, *gaussians)
    labels = np.zeros(inside.shape, np.uint8)
    if _collapsed(start, gaussians):
        labels[inside] = log_prior.argmax(1) + 1  # the network's own answer
    else:
        labels[inside] = _posterior(values, log_prior, *gaussians).argmax(1) + 1
    return labels


def _collapsed(start, end) -> bool:
    """The fit left the network's reading of the scan: the tissues' brightness order changed, or a tissue
    kept under a third of the share the network gave it (its cluster merged into a neighbour's). The
    scan then has no three clear clusters (low contrast, strong lesions), and the network is trusted."""
    order_changed = not np.array_equal(np.argsort(start[0]), np.argsort(end[0]))
    return bool(order_changed or np.any(end[2] < start[2] / 3))


def _posterior(values, log_prior, means, sds, weights) -> np.ndarray:
    log_post = log_prior - 0.5 * ((values[:, None] - means) / sds) ** 2 + (np.log(weights) - np.log(sds))
    log_post -= log_post.max(1, keepdims=True)
    posterior = np.exp(log_post)
    return posterior / posterior.sum(1, keepdims=True)


def _gaussians(values: np.ndarray, responsibility: np.ndarray):
    """Mean, sd and overall weight of each class under soft ``responsibility`` (n, 3)."""
    total = responsibility.sum(0) + 1e-9
    means = (responsibility * values[:, None]).sum(0) / total
    variance = (responsibility * (values[:, None] - means) ** 2).sum(0) / total
    sds = np.sqrt(np.maximum(variance, 1e-4))
    return (means.astype(np.float32), sds.astype(np.float32),
            (total / total.sum()).astype(np.float32))
