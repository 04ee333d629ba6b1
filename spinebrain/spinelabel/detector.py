"""The vertebra detectors of Forsberg 2017, run densely over whole sagittal slices.

Architecture (paper): conv-conv-maxpool-conv-conv-maxpool-FC-FC-output(softmax), 3x3 kernels and
3x3 pooling windows, leaky ReLU, 50 % dropout on the FC layers, trained on patches with
categorical cross-entropy and SGD with Nesterov momentum. Here convolutions are unpadded ("valid")
and the pools have stride 2, so a patch classifies from its own pixels only; the FC layers are
convolutions (FC1's kernel covers the whole feature map left after the two pools, FC2 and the
output are 1x1), so the same weights classify one patch or a whole slice.

Dense inference (:func:`detect_dense`) pads the slice by half a patch and runs the network
*a trous*: the pools keep stride 1 and every later layer is dilated by the stride it has lost
(2 after the first pool, 4 after the second). The output then has one value per input pixel, and
the value at pixel p is exactly the patch classifier's output for the patch centred at p
(rows ``p - patch//2 ... p - patch//2 + patch - 1``, likewise for columns). ``full_resolution=False``
instead runs the strided network (16x less work) and interpolates its stride-4 map: exact on the
pixels whose row and column are multiples of 4, bilinear in between.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from scipy import ndimage

from ..errors import InputError
from .architectures import DETECTOR_PAIR
from .patch_inference import (POOL_KERNEL, POOL_STRIDE, detect_dense, detect_slab, normalise_intensities,  # noqa: F401
                              pad_for_patches)
from .slices import SagittalSlab
from .targets import CENTRE, balanced_sample, pixel_classes, points_on_slice

ARCHITECTURE = "spinebrain.spinelabel.detector.VertebraDetector"
#: Paper patch sizes (pixels): lumbar 24 (2 mm pixels), S1 32 (2 mm), cervical and C2 32 (1 mm).
PATCH_SIZE = {"lumbar": 24, "lumbar-anchor": 32, "cervical": 32, "cervical-anchor": 32}
#: The anchor vertebra of each region's anchor detector.
ANCHOR = {"cervical": "C2", "lumbar": "S1"}


def _feature_size(patch: int) -> int:
    """Spatial size left after conv, conv, pool, conv, conv, pool (valid convolutions)."""
    size = patch
    for _ in range(2):
        size = (size - 4 - POOL_KERNEL) // POOL_STRIDE + 1
    return size


class VertebraDetector(torch.nn.Module):
    """Two-class patch classifier (0 = not a vertebra centre, 1 = vertebra centre), fully convolutional.

    ``forward`` takes (B, in_channels, H, W) with H, W >= ``patch`` and returns logits
    (B, classes, h, w) on a stride-4 grid (1x1 for a single patch); :meth:`dense_logits` gives
    one output per pixel (see the module docstring).
    """

    def __init__(self, patch: int = 24, channels=(32, 64), fc: int = 256, in_channels: int = 1,
                 classes: int = 2, dropout: float = 0.5, negative_slope: float = 0.01):
        super().__init__()
        self.feature_size = _feature_size(int(patch))
        if self.feature_size < 1:
            raise ValueError(f"patch {patch} is too small for two 3x3 pools; use at least 20 pixels")
        if len(channels) != 2:
            raise ValueError(f"channels must give two filter counts, got {channels!r}")
        self.kwargs = {"patch": int(patch), "channels": [int(c) for c in channels], "fc": int(fc),
                       "in_channels": int(in_channels), "classes": int(classes), "dropout": float(dropout),
                       "negative_slope": float(negative_slope)}
        act = ("leakyrelu", {"negative_slope": negative_slope})

        def conv(cin, cout, kernel=3, drop=None):
            return Convolution(2, cin, cout, kernel_size=kernel, padding=0, act=act, norm=None,
                               dropout=drop, adn_ordering="AD" if drop else "A")

        c1, c2 = channels
        self.convs = torch.nn.ModuleList([conv(in_channels, c1), conv(c1, c1), conv(c1, c2), conv(c2, c2)])
        self.fc1 = conv(c2, fc, kernel=self.feature_size, drop=dropout)
        self.fc2 = conv(fc, fc, kernel=1, drop=dropout)
        self.output = Convolution(2, fc, classes, kernel_size=1, padding=0, conv_only=True)
        self._initialise(negative_slope)

    def _initialise(self, negative_slope: float) -> None:
        """He initialisation for leaky ReLU: with PyTorch's default (a third of the variance) the
        signal fades through the stack and training sits on the class-prior plateau for long."""
        for module in self.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight, a=negative_slope, nonlinearity="leaky_relu")
                torch.nn.init.zeros_(module.bias)

    @property
    def patch(self) -> int:
        return self.kwargs["patch"]

    @property
    def config(self) -> dict:
        """The model card's ``network`` entry: rebuild with ``spinebrain.models.build_network``."""
        return {"architecture": ARCHITECTURE, "kwargs": dict(self.kwargs, channels=list(self.kwargs["channels"]))}

    def _run(self, x: torch.Tensor, dense: bool) -> torch.Tensor:
        def apply(block, x, dilation):
            return block.adn(F.conv2d(x, block.conv.weight, block.conv.bias, dilation=dilation))

        stride = 1 if dense else POOL_STRIDE
        dilation = 1
        for index, block in enumerate(self.convs):
            x = apply(block, x, dilation)
            if index % 2 == 1:  # a pool after every second convolution
                x = F.max_pool2d(x, POOL_KERNEL, stride=stride, dilation=dilation)
                dilation *= POOL_STRIDE if dense else 1
        x = apply(self.fc1, x, dilation)
        x = apply(self.fc2, x, 1)
        return self.output(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, dense=False)

    def dense_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits at every window position: (B, classes, H - E + 1, W - E + 1), E = the used receptive field."""
        return self._run(x, dense=True)

    def classify_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """Logits (N, classes) of N patches (N, in_channels, patch, patch)."""
        return self.forward(patches)[:, :, 0, 0]


# -- patches -------------------------------------------------------------------------------------
def extract_patches(array, rows, cols, patch: int, pad_value: float = 0.0) -> np.ndarray:
    """(N, patch, patch) patches centred on the integer pixels (rows[n], cols[n]) of a 2D slice.

    Outside the slice the patches hold ``pad_value`` (0 = the low end of :func:`normalise_intensities`),
    the same padding :func:`detect_dense` uses.
    """
    windows = np.lib.stride_tricks.sliding_window_view(pad_for_patches(np.asarray(array, np.float32), patch, pad_value),
                                                       (patch, patch))
    return np.ascontiguousarray(windows[np.asarray(rows, int), np.asarray(cols, int)])


def sample_training_patches(slice_array, classes, patch: int, rng: np.random.Generator,
                            positive: int = CENTRE) -> tuple[np.ndarray, np.ndarray]:
    """Balanced training patches of one normalised slice: (patches (N, patch, patch), labels (N,) 1 = positive)."""
    classes = np.asarray(classes)
    if np.shape(slice_array) != classes.shape:
        raise InputError("The slice and its pixel classes differ in shape; compute the classes on the same slice.")
    indices = balanced_sample(classes, rng, positive)
    rows, cols = np.unravel_index(indices, classes.shape)
    labels = (classes.ravel()[indices] == positive).astype(np.int64)
    return extract_patches(slice_array, rows, cols, patch), labels


def training_patches_from_slab(slab: SagittalSlab, points_ras, patch: int, rng: np.random.Generator,
                               anchor_ras=None, **class_options) -> tuple[np.ndarray, np.ndarray]:
    """Balanced patches and labels from every slice of a slab, given the case's annotated centres (RAS).

    The slab is normalised as a whole (:func:`normalise_intensities`). Each slice uses the points
    lying on it; the vertebra spacing comes from all points (adjacent in S order) so a slice with
    one point still gets the right radii. With ``anchor_ras`` (the C2 / S1 point) the targets are
    the anchor detector's, and slices the anchor does not lie on give no patches.
    ``class_options`` go to :func:`~spinebrain.spinelabel.targets.pixel_classes`.
    """
    points = np.asarray(points_ras, dtype=float).reshape(-1, 3)
    if len(points) < 2 and "spacing_mm" not in class_options:
        raise InputError("A training case needs at least two annotated vertebrae (or an explicit spacing_mm).")
    by_height = points[np.argsort(-points[:, 2])]
    class_options.setdefault("spacing_mm", float(np.median(np.linalg.norm(np.diff(by_height, axis=0), axis=1))))
    arrays = normalise_intensities(slab.arrays)
    patches, labels = [np.zeros((0, patch, patch), np.float32)], [np.zeros(0, np.int64)]
    for index in range(len(slab)):
        on_slice = points_on_slice(slab, points, index)
        if len(on_slice) == 0:
            continue
        anchor_index = None
        if anchor_ras is not None:
            anchor_px = points_on_slice(slab, anchor_ras, index)
            if len(anchor_px) == 0:
                continue
            anchor_index = int(np.argmin(np.linalg.norm(on_slice - anchor_px[0], axis=1)))
        classes = pixel_classes(arrays[index].shape, on_slice, slab.pixel_mm, anchor_index=anchor_index,
                                **class_options)
        slice_patches, slice_labels = sample_training_patches(arrays[index], classes, patch, rng)
        patches.append(slice_patches)
        labels.append(slice_labels)
    return np.concatenate(patches), np.concatenate(labels)


# -- training ------------------------------------------------------------------------------------
def train_detector(
    patches,
    labels,
    model: VertebraDetector | None = None,
    epochs: int = 10,
    batch_size: int = 64,
    learning_rate: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    seed: int = 0,
    callback: Callable[[int, float], None] | None = None,
    device: torch.device | str = "cpu",
) -> tuple[VertebraDetector, list[float]]:
    """Train a detector on patches (N, patch, patch) with labels (N,) in {0, 1}; returns (model, loss per epoch).

    Categorical cross-entropy, SGD with Nesterov momentum (the paper), cosine learning-rate decay, run by the
    training engine (MONAI's SupervisedTrainer, :mod:`spinebrain.training`); the final weights are kept. A new
    :class:`VertebraDetector` of the patches' size is made when ``model`` is None. Seeded; the
    global torch random state is left untouched. ``callback(epoch, mean_loss)`` runs after every epoch.
    """
    patches = torch.as_tensor(np.asarray(patches, dtype=np.float32))
    if patches.ndim == 3:
        patches = patches[:, None]
    targets = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    if patches.ndim != 4 or patches.shape[-1] != patches.shape[-2] or len(patches) != len(targets):
        raise InputError("Training needs square patches (N, size, size) and one label per patch.")
    if len(targets) == 0:
        raise InputError("There are no training patches; check that the annotations lie on the slices.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if model is None:
            model = VertebraDetector(patch=patches.shape[-1], in_channels=patches.shape[1])
        if model.patch != patches.shape[-1]:
            raise InputError(f"The patches are {patches.shape[-1]} pixels but the model expects {model.patch}.")
        losses = _run_engine(model, patches, targets, epochs, batch_size, learning_rate, momentum, weight_decay,
                             seed, callback, torch.device(device))
    return model.eval(), losses


class _GlobalPermutation(torch.utils.data.Sampler):
    """Each epoch's order from ``torch.randperm`` on torch's global generator, drawn when the epoch's first batch
    is fetched. Shuffle and dropout then share one seeded stream in the same order as the paper loop this engine
    replaced (commit 6873769), so both give the same weights (``benchmarks/bench_detector_engine_parity.py``).
    A DataLoader ``shuffle=True`` would draw from its own generator and shift the dropout masks."""

    def __init__(self, length: int):
        self.length = length

    def __iter__(self):
        yield from torch.randperm(self.length).tolist()

    def __len__(self) -> int:
        return self.length


def _patch_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of (B, 2, 1, 1) patch logits against (B,) labels, the paper loop's loss term for term."""
    return F.cross_entropy(logits[:, :, 0, 0], targets)


def _run_engine(model, patches, targets, epochs, batch_size, learning_rate, momentum, weight_decay, seed, callback,
                device) -> list[float]:
    """The training loop on :func:`spinebrain.training.run_training` (MONAI SupervisedTrainer): per batch zero the
    gradients, forward, cross-entropy, backward, SGD step, cosine schedule step, as the paper loop did."""
    import tempfile

    from ignite.engine import Events

    from ..training import EngineSettings, run_training
    from ..training.distributed import DistributedContext

    model.to(device).train()
    optimiser = torch.optim.SGD(model.parameters(), lr=learning_rate, momentum=momentum, nesterov=True,
                                weight_decay=weight_decay)
    # the loader's own generator only seeds worker processes (none here); the order comes from the global stream
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(patches, targets), batch_size=batch_size,
                                         sampler=_GlobalPermutation(len(targets)),
                                         generator=torch.Generator().manual_seed(seed))
    # cosine decay to 5 % of the rate, stepped per batch: large steps early, settling into a minimum by the last epoch
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, epochs * len(loader), eta_min=0.05 * learning_rate)
    losses, totals = [], [0.0, 0]

    def add_loss(engine):  # the epoch's loss weighted by batch size (the last batch may be smaller)
        count = len(engine.state.batch[0])
        totals[0] += engine.state.output["loss"].item() * count
        totals[1] += count

    def end_epoch(engine):
        losses.append(totals[0] / totals[1])
        totals[:] = [0.0, 0]
        if callback is not None:
            callback(engine.state.epoch - 1, losses[-1])

    with tempfile.TemporaryDirectory(prefix="spinelabel-train-") as run_dir:
        settings = EngineSettings(run_dir, epochs, resume=False, schedule_per_epoch=False)
        run_training(model, optimiser, _patch_cross_entropy, loader, None, None, settings,
                     DistributedContext(device=device), lr_scheduler=schedule,
                     extra_handlers=[(Events.ITERATION_COMPLETED, add_loss), (Events.EPOCH_COMPLETED, end_epoch)])
    return losses


class DetectorPair(torch.nn.Module):
    """The general vertebra detector and the end-vertebra (C2 / S1) anchor detector, saved together."""

    def __init__(self, vertebra: dict, anchor: dict):
        super().__init__()
        self.vertebra = VertebraDetector(**vertebra)
        self.anchor = VertebraDetector(**anchor)

    @classmethod
    def from_detectors(cls, vertebra: VertebraDetector, anchor: VertebraDetector) -> DetectorPair:
        pair = cls(vertebra.kwargs, anchor.kwargs)
        pair.vertebra.load_state_dict(vertebra.state_dict())
        pair.anchor.load_state_dict(anchor.state_dict())
        return pair.eval()

    @property
    def config(self) -> dict:
        """The card's ``network`` entry (rebuilt by :func:`spinebrain.models.build_network`)."""
        return {"architecture": DETECTOR_PAIR,
                "kwargs": {"vertebra": self.vertebra.config["kwargs"], "anchor": self.anchor.config["kwargs"]}}

    def onnx_parts(self) -> dict:
        """What :func:`spinebrain.models.onnx_network.export_onnx` exports: each detector's strided network (the
        pipeline runs ``full_resolution=False``; the dilated dense map stays torch's)."""
        return {name: (detector, 1, int(detector.kwargs["in_channels"]))
                for name, detector in (("vertebra", self.vertebra), ("anchor", self.anchor))}
