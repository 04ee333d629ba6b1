"""Acquisition: which part of the spine is scanned, on what voxel grid, in which orientation.

The grid is an oblique box in RAS: ``origin_ras + direction_ras @ diag(spacing) @ (i, j, k)``.
Axis k is always the slice axis (the thick one). ``spinebrain.geometry`` turns it into a
SimpleITK image (LPS) so no convention is re-derived here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from spinebrain import geometry
from spinebrain.errors import InputError
from spinebrain.synth.spine_anatomy import SpineAnatomy, SpineOptions

VIEWS = ("cervical", "thoracic", "lumbar", "whole", "short")
ORIENTATIONS = ("sagittal", "axial", "coronal", "oblique")

# Columns (i, j, k) of the RAS direction for each standard acquisition, before random sign flips.
_BASE_AXES = {
    "sagittal": np.array([[0, -1, 0], [0, 0, -1], [1, 0, 0]], float).T,  # i: A->P, j: S->I, k: L->R
    "axial": np.array([[-1, 0, 0], [0, -1, 0], [0, 0, 1]], float).T,  # i: R->L, j: A->P, k: I->S (LPS-like)
    "coronal": np.array([[-1, 0, 0], [0, 0, -1], [0, 1, 0]], float).T,  # i: R->L, j: S->I, k: P->A
}


@dataclass
class Grid:
    size: tuple[int, int, int]  # (ni, nj, nk)
    spacing: tuple[float, float, float]
    direction_ras: np.ndarray  # 3x3, columns = RAS unit vectors of i, j, k
    origin_ras: np.ndarray  # RAS of voxel (0, 0, 0)

    def ijk_to_ras(self) -> np.ndarray:
        m = np.eye(4)
        m[:3, :3] = self.direction_ras @ np.diag(self.spacing)
        m[:3, 3] = self.origin_ras
        return m

    def ras_to_ijk(self, ras) -> np.ndarray:
        inv = np.linalg.inv(self.ijk_to_ras())
        ras = np.asarray(ras, float)
        return ras @ inv[:3, :3].T + inv[:3, 3]

    def contains(self, ras) -> np.ndarray:
        """True for points inside the field of view (the voxels' extent, half a voxel beyond centres)."""
        ijk = self.ras_to_ijk(ras)
        return np.all((ijk >= -0.5) & (ijk <= np.array(self.size) - 0.5), axis=-1)

    def reference_image(self, pixel_id=sitk.sitkUInt8) -> sitk.Image:
        image = sitk.Image([int(n) for n in self.size], pixel_id)
        return geometry.set_geometry_from_ijk_to_ras(image, self.ijk_to_ras())


def _random_rotation(rng, max_deg: float) -> np.ndarray:
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = np.deg2rad(rng.uniform(-max_deg, max_deg))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def sample_direction(rng, orientation: str) -> tuple[np.ndarray, str]:
    if orientation == "random":
        orientation = str(rng.choice(ORIENTATIONS, p=[0.4, 0.3, 0.1, 0.2]))
    if orientation not in ORIENTATIONS:
        raise InputError(f"Unknown orientation {orientation!r}; use one of {', '.join(ORIENTATIONS)} or random.")
    base = "sagittal" if orientation == "oblique" else orientation
    if orientation == "oblique":
        base = str(rng.choice(list(_BASE_AXES)))
    direction = _BASE_AXES[base] * rng.choice([-1.0, 1.0], size=3)  # scanners store either sense
    if np.linalg.det(direction) < 0 and rng.random() < 0.5:
        direction[:, 0] *= -1  # keep both handednesses in the mix
    tilt = 25.0 if orientation == "oblique" else 3.0
    return _random_rotation(rng, tilt) @ direction, orientation


def sample_spacing(rng, modality: str) -> tuple[float, float, float]:
    if modality == "ct" and rng.random() < 0.5:
        iso = rng.uniform(0.5, 1.5)
        return (iso, iso, float(rng.uniform(iso, 3.0)))
    in_plane = float(rng.uniform(0.5, 3.0) if modality != "ct" else rng.uniform(0.5, 1.5))
    return (in_plane, in_plane, float(rng.uniform(max(in_plane, 1.0), 6.0)))


def view_range(anatomy: SpineAnatomy, view: str, rng) -> tuple[float, float]:
    """Arc-length interval [s0, s1] the field of view must cover along the spine."""
    by = {v.name: v for v in anatomy.vertebrae}
    names = [v.name for v in anatomy.instances()]
    last_thoracic = [n for n in names if n.startswith("T")][-1]
    lumbar = [n for n in names if n.startswith("L")]
    top_lumbar = lumbar[0] if lumbar else "S1"
    if view == "cervical":
        return by["C1"].s - rng.uniform(20, 45), by[str(rng.choice(["C7", "T1", "T2", "T3"]))].s + rng.uniform(0, 15)
    if view == "thoracic":
        return by[str(rng.choice(["C6", "C7", "T1", "T2"]))].s, by[str(rng.choice([last_thoracic, top_lumbar]))].s
    if view == "lumbar":
        start = by[str(rng.choice([last_thoracic, top_lumbar, "T11" if "T11" in by else top_lumbar]))].s
        return start - rng.uniform(0, 15), by["S2"].s + rng.uniform(0, 30)
    if view == "whole":
        return by["C1"].s - rng.uniform(10, 40), by["S3"].s + rng.uniform(0, 20)
    # short: a few levels that include neither C2 nor S1 (margins cover processes and oblique axes)
    c2, s1 = by["C2"], by["S1"]
    low = c2.s + c2.size.height / 2 + 45.0
    high = s1.s - s1.size.height / 2 - 45.0
    length = rng.uniform(50.0, 110.0)
    start = rng.uniform(low, max(low, high - length))
    return start, start + length


def plan_grid(anatomy: SpineAnatomy, s_range, direction: np.ndarray, spacing, rng, options: SpineOptions,
              short: bool = False) -> Grid:
    """Smallest box on the given axes holding the spine over ``s_range`` with random soft-tissue margins."""
    s = np.linspace(s_range[0], s_range[1], 40)
    half_width = rng.uniform(25.0, 60.0) if short else rng.uniform(35.0, 180.0)
    posterior = rng.uniform(55.0, 110.0)
    anterior = rng.uniform(30.0, 60.0) if short else rng.uniform(40.0, 200.0)
    # margins along the mid-range axes: the straightened frame fans out far from a curved spine
    centre, _, right, front = (x[0] for x in anatomy.frame([np.mean(s_range)]))
    line = anatomy.frame(s)[0]
    corners = [line + u * right + v * front for u in (-half_width, half_width) for v in (-posterior, anterior)]
    pts = np.concatenate(corners) @ direction  # coordinates along the grid axes
    lo, hi = pts.min(0), pts.max(0)
    if short:  # along the axis closest to the spine keep exactly the chosen span (no oblique creep)
        tangent = anatomy.frame([np.mean(s_range)])[1][0] @ direction
        axis = int(np.argmax(np.abs(tangent)))
        half = (s_range[1] - s_range[0]) / 2
        lo[axis], hi[axis] = centre @ direction[:, axis] - half, centre @ direction[:, axis] + half
    spacing = np.asarray(spacing, float)
    size = np.maximum(np.ceil((hi - lo) / spacing).astype(int) + 1, 4)
    while np.prod(size.astype(float)) > options.max_voxels:
        spacing = spacing * 1.1
        size = np.maximum(np.ceil((hi - lo) / spacing).astype(int) + 1, 4)
    origin = direction @ lo
    return Grid(tuple(int(n) for n in size), tuple(float(x) for x in spacing), direction, origin)


def enlarge_to_spine(grid: Grid, anatomy: SpineAnatomy) -> tuple[Grid, tuple[int, int, int]]:
    """Same axes and spacing, shifted by whole voxels and grown to hold every vertebra.

    Returns the new grid and the (i, j, k) offset of the original grid's voxel (0, 0, 0) in it.
    """
    s = np.linspace(anatomy.vertebrae[0].s - 40, anatomy.vertebrae[-1].s + 30, 80)
    corners = np.concatenate([anatomy.to_ras(s, np.full_like(s, u), np.full_like(s, v))
                              for u in (-110, 110) for v in (-110, 60)])
    ijk = grid.ras_to_ijk(corners)
    lo = np.minimum(np.floor(ijk.min(0)).astype(int), 0)
    hi = np.maximum(np.ceil(ijk.max(0)).astype(int), np.array(grid.size) - 1)
    origin = grid.origin_ras + grid.direction_ras @ (np.array(grid.spacing) * lo)
    big = Grid(tuple(int(n) for n in hi - lo + 1), grid.spacing, grid.direction_ras, origin)
    return big, tuple(int(x) for x in -lo)
