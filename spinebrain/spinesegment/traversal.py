"""The iterative traversal of seed 002, as a state machine independent of any network.

The volume is an array ``[z, y, x]`` on the model grid in which the traversal runs from the
*high* end of axis 0 downwards (the pipeline flips the scan for the other direction). A predictor
maps (image patch, memory patch) to (probability patch, completeness probability); the traversal:

1. **search**: slides the patch over the volume with step Δx = half a patch (high z first) until
   the prediction holds a fragment of at least ``n_min`` voxels (voxels above the threshold, not in
   memory, largest connected piece);
2. **follow**: moves the patch centre to the fragment's bounding-box centre and predicts again,
   until no axis moves more than ``δ_max`` voxels (converged), or for at most ``max_iterations``
   steps, then takes the midpoint of the last two positions;
3. **write**: the converged fragment becomes an instance (complete when the classifier says so,
   else flagged incomplete) and joins the instance memory;
4. **re-analyse** the same patch with the new memory: a fragment -> follow it (the next vertebra);
   none -> done (the paper: "stop when no fragment is left"); with ``continue_search`` the search
   resumes where it stopped instead, and the run ends with the search.

``start_points`` (e.g. SpineLabel's points on the model grid) are visited before the regular
search positions, which usually finds the first vertebra in one step. Every prediction counts as a
step (``steps`` by phase), so the saving can be measured.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from .sampler3d import extract

Predictor = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, float]]


@dataclass
class TraversalSettings:
    patch: int = 32
    n_min: int = 16
    delta_max: int = 2
    max_iterations: int = 20
    threshold: float = 0.5
    max_steps: int = 300  # a safety net: a run never exceeds it, whatever the predictor does
    #: False (the paper): the run ends when the re-analysis after a vertebra finds no fragment.
    #: True: the search then resumes where it stopped (finds spine parts beyond a gap; slower).
    continue_search: bool = False


@dataclass
class Instance:
    mask: np.ndarray  # bool, whole volume
    complete_probability: float
    centre: tuple[int, int, int]
    iterations: int
    converged: bool  # False: stopped at the iteration cap (midpoint taken)
    #: the network's probabilities over the instance (its fragment grown by one voxel), whole volume;
    #: sub-voxel detail for bringing the instance back to a finer grid
    probability: np.ndarray | None = None

    @property
    def complete(self) -> bool:
        return self.complete_probability >= 0.5


@dataclass
class TraversalResult:
    instances: list[Instance]
    memory: np.ndarray
    steps: dict[str, int] = field(default_factory=lambda: {"search": 0, "follow": 0, "reanalyse": 0})

    @property
    def total_steps(self) -> int:
        return sum(self.steps.values())


def search_positions(shape, patch: int, start_points: Iterable = ()) -> Iterator[tuple[int, int, int]]:
    """Start points first (highest z first), then a grid with step half a patch, high z first."""
    for point in sorted((tuple(int(round(c)) for c in p) for p in start_points), key=lambda p: -p[0]):
        yield point
    step = max(1, patch // 2)
    axes = [_grid(n, patch, step) for n in shape]
    for z in axes[0][::-1]:
        for y in axes[1]:
            for x in axes[2]:
                yield (z, y, x)


def _grid(size: int, patch: int, step: int) -> list[int]:
    """Centres covering ``size`` voxels with patches ``patch`` wide, ``step`` apart."""
    if size <= patch:
        return [size // 2]
    centres = list(range(patch // 2, size - patch // 2, step))
    if centres[-1] != size - patch // 2:
        centres.append(size - patch // 2)
    return centres


class Traversal:
    """One traversal of one volume (see the module docstring); :meth:`run` returns the instances."""

    def __init__(self, volume: np.ndarray, predictor: Predictor, settings: TraversalSettings, progress=None):
        self.volume, self.predictor, self.settings = volume, predictor, settings
        self.memory = np.zeros(volume.shape, bool)
        self.result = TraversalResult([], self.memory)
        self.progress = progress

    # -- one prediction ---------------------------------------------------------------------
    def predict(self, centre, phase: str) -> tuple[np.ndarray, float, tuple[slice, ...], tuple[slice, ...]]:
        """(probability patch, completeness, volume slices, patch slices) at ``centre``; counts a step."""
        if self.result.total_steps >= self.settings.max_steps:
            raise StopIteration
        self.result.steps[phase] += 1
        p = self.settings.patch
        image = extract(self.volume, centre, p, 0.0)
        memory = extract(self.memory, centre, p, False).astype(np.float32)
        probability, complete = self.predictor(image, memory)
        volume_slices, patch_slices = _overlap(centre, p, self.volume.shape)
        if self.progress is not None:
            self.progress(self.result)
        return probability, float(complete), volume_slices, patch_slices

    def fragment(self, probability, volume_slices, patch_slices) -> np.ndarray | None:
        """The largest connected piece above threshold and outside memory (patch coordinates), if ≥ n_min."""
        candidate = probability >= self.settings.threshold
        inside = np.zeros(candidate.shape, bool)  # parts of the patch outside the volume never count
        inside[patch_slices] = True
        candidate &= inside
        candidate[patch_slices] &= ~self.memory[volume_slices]
        if candidate.sum() < self.settings.n_min:
            return None
        labels, count = ndimage.label(candidate)
        sizes = np.bincount(labels.ravel())[1:]
        largest = labels == (int(np.argmax(sizes)) + 1)
        return largest if largest.sum() >= self.settings.n_min else None

    def fragment_centre(self, fragment: np.ndarray, centre) -> np.ndarray:
        where = np.argwhere(fragment)
        box_centre = (where.min(0) + where.max(0)) / 2.0
        return np.rint(np.asarray(centre) - self.settings.patch // 2 + box_centre).astype(int)

    def clamp(self, centre) -> np.ndarray:
        return np.clip(np.asarray(centre, int), 0, np.array(self.volume.shape) - 1)

    # -- the state machine ------------------------------------------------------------------
    def run(self, start_points: Iterable = ()) -> TraversalResult:
        positions = search_positions(self.volume.shape, self.settings.patch, start_points)
        try:
            for position in positions:
                probability, _, volume_slices, patch_slices = self.predict(position, "search")
                fragment = self.fragment(probability, volume_slices, patch_slices)
                while fragment is not None:  # follow, write, re-analyse: the next vertebra in this patch
                    centre = self.clamp(self.fragment_centre(fragment, position))
                    instance = self.follow(centre)
                    if instance is None:
                        break
                    self.result.instances.append(instance)
                    self.memory |= instance.mask
                    position = instance.centre
                    probability, _, volume_slices, patch_slices = self.predict(position, "reanalyse")
                    fragment = self.fragment(probability, volume_slices, patch_slices)
                if self.result.instances and not self.settings.continue_search:
                    break
        except StopIteration:
            pass
        return self.result

    def follow(self, centre) -> Instance | None:
        """Move the patch to the fragment until converged (or the cap's midpoint); the instance, or None if lost."""
        history = [np.asarray(centre)]
        converged = False
        for iteration in range(1, self.settings.max_iterations + 1):
            probability, complete, volume_slices, patch_slices = self.predict(history[-1], "follow")
            fragment = self.fragment(probability, volume_slices, patch_slices)
            if fragment is None:
                return None
            moved_to = self.clamp(self.fragment_centre(fragment, history[-1]))
            if np.abs(moved_to - history[-1]).max() <= self.settings.delta_max:
                converged = True
                break
            history.append(moved_to)
        if not converged:  # the cap: the midpoint of the last two positions
            midpoint = self.clamp(np.rint((history[-1] + history[-2]) / 2.0))
            history.append(midpoint)
            probability, complete, volume_slices, patch_slices = self.predict(midpoint, "follow")
            fragment = self.fragment(probability, volume_slices, patch_slices)
            if fragment is None:
                return None
        mask = np.zeros(self.volume.shape, bool)
        mask[volume_slices] = fragment[patch_slices]
        soft = np.zeros(self.volume.shape, np.float32)
        near = ndimage.binary_dilation(fragment)
        soft[volume_slices] = (probability * near)[patch_slices]
        soft[volume_slices] *= ~(self.memory[volume_slices] & ~mask[volume_slices])  # never inside earlier ones
        return Instance(mask, complete, tuple(int(c) for c in history[-1]), iteration, converged, soft)


def _overlap(centre, patch: int, shape) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Slices of the volume and of the patch where a patch centred on ``centre`` overlaps the volume."""
    volume_slices, patch_slices = [], []
    for c, extent in zip(centre, shape, strict=True):
        start = int(c) - patch // 2
        lo, hi = max(start, 0), min(start + patch, extent)
        volume_slices.append(slice(lo, max(lo, hi)))
        patch_slices.append(slice(lo - start, max(lo, hi) - start))
    return tuple(volume_slices), tuple(patch_slices)


def run_traversal(volume: np.ndarray, predictor: Predictor, settings: TraversalSettings, start_points=(),
                  progress=None) -> TraversalResult:
    return Traversal(volume, predictor, settings, progress).run(start_points)
