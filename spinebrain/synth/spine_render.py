"""Draw the anatomy on a voxel grid: a tissue map, a vertebra instance map and a signal modifier.

Speed comes from three choices:
* every voxel gets straightened coordinates (s, u, v) -- arc length, right, anterior -- computed on a
  coarse grid (nearest centreline point + one Newton step) and upsampled trilinearly;
* smooth soft-tissue level sets (skin, muscle, lungs, canal, ribs' phase) are also evaluated on the
  coarse grid and only thresholded at full resolution;
* vertebra shapes (superellipsoids and capsules in the straightened frame) are evaluated only on
  the voxels of each vertebra's bounding box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.ndimage import gaussian_filter, maximum_filter
from scipy.spatial import cKDTree

from spinebrain.anatomy import PELVIS_LABELS
from spinebrain.synth import spine_pelvis as pelvis
from spinebrain.synth.spine_acquisition import Grid
from spinebrain.synth.spine_anatomy import SpineAnatomy, Vertebra, endplate_cup, rim_gap
from spinebrain.synth.spine_soft_tissue import soft_tissue_fields

# Tissue classes of the tissue label map.
AIR, FAT, MUSCLE, SOFT, LUNG, CORTICAL, CANCELLOUS, DISC, CSF, CORD, VESSEL = range(11)
TISSUE_NAMES = ("air", "fat", "muscle", "soft_tissue", "lung", "cortical_bone", "cancellous_bone",
                "disc", "csf", "cord", "vessel")
SACRUM_LABEL, COCCYX_LABEL = PELVIS_LABELS["Sacrum"], PELVIS_LABELS["Coccyx"]  # in the label map, S1 stays 26
FLOATING_RIB_END_MM = (30.0, -5.0)  # anterior ends of the 11th and 12th ribs (v, mm)
CORTEX_MM = 1.2  # cortical shell thickness of the shapes
BODY_Q = 14.0  # exponent along the spine axis of the bodies' superellipsoid (higher = sharper rims)
CUP_RADIUS = 0.75  # the endplate concavity covers the inner 75 % of the endplate; the rim outside is flat
# height scale so the body is as tall as the table's (rim) height at 90 % of its radius, near the
# anterior and posterior walls where VBHa / VBHp are measured, despite the rounded edges
_RIM_SCALE = float((1.0 - 0.9 ** BODY_Q) ** (-1.0 / BODY_Q))


@dataclass
class Rendered:
    tissue: np.ndarray  # uint8 [k', j, i] on the (possibly slice-supersampled) grid
    labels: np.ndarray  # uint8 [k', j, i]
    modifier: np.ndarray  # float32 [k', j, i]: per-structure signal factor (disc degeneration, nucleus)
    texture: np.ndarray | None  # float32 [k', j, i]: smooth random field, SD 1 (None if not asked for)
    bias: np.ndarray | None  # float32 [k', j, i]: smooth random field in [-1, 1] (None if not asked for)
    n_sub: int  # sub-slices per output slice along k


# ----------------------------------------------------------------------------------------------
# coordinate fields


class _Fields:
    """Fine-grid geometry plus a coarse grid whose smooth fields are upsampled on demand."""

    def __init__(self, grid: Grid, n_sub: int, coarse_mm: float):
        self.grid, self.n_sub = grid, n_sub
        ni, nj, nk = grid.size
        self.shape = (nk * n_sub, nj, ni)  # fine array shape [k', j, i]
        fine_spacing = np.array([grid.spacing[0], grid.spacing[1], grid.spacing[2] / n_sub])
        # coarse step >= about coarse_mm even for coarse voxels (the projection costs ~1 us per point)
        self.step = np.maximum(1, np.ceil(coarse_mm / fine_spacing - 0.25)).astype(int)  # (i, j, k')
        counts = [int(np.ceil((n - 1) / c)) + 1 for n, c in zip((ni, nj, nk * n_sub), self.step)]
        self.coarse_shape = (counts[2], counts[1], counts[0])
        kk, jj, ii = np.meshgrid(*(np.arange(c, dtype=float) * st for c, st in
                                   zip(self.coarse_shape, self.step[::-1])), indexing="ij")
        k_cont = (kk + 0.5) / n_sub - 0.5
        ijk = np.stack([ii.ravel(), jj.ravel(), k_cont.ravel()], axis=1)
        m = grid.ijk_to_ras()
        self.coarse_ras = ijk @ m[:3, :3].T + m[:3, 3]

    def upsample(self, coarse: np.ndarray, block=None) -> np.ndarray:
        """Trilinear upsampling of a coarse field to the fine grid, or to the fine ``block`` slices only."""
        c = np.ascontiguousarray(coarse, dtype=np.float32).reshape(self.coarse_shape)
        block = block or tuple(slice(0, n) for n in self.shape)
        steps = self.step[::-1]
        c0 = [b.start // st for b, st in zip(block, steps)]
        c1 = [min(n, -(-(b.stop - 1) // st) + 1) for b, st, n in zip(block, steps, self.coarse_shape)]
        sub = torch.from_numpy(np.ascontiguousarray(c[c0[0]:c1[0], c0[1]:c1[1], c0[2]:c1[2]]))
        size = [(b - a - 1) * st + 1 for a, b, st in zip(c0, c1, steps)]
        if any(n > 1 for n in sub.shape):
            sub = torch.nn.functional.interpolate(sub[None, None], size=size, mode="trilinear", align_corners=True)[0, 0]
        off = [b.start - a * st for b, a, st in zip(block, c0, steps)]
        return sub[off[0]:off[0] + block[0].stop - block[0].start, off[1]:off[1] + block[1].stop - block[1].start,
                   off[2]:off[2] + block[2].stop - block[2].start].numpy()

    def below(self, coarse: np.ndarray, level: float):
        """(fine block, upsampled values) around the coarse cells where ``coarse`` may fall below ``level``;
        None when it nowhere does. Saves upsampling where a structure is absent."""
        c = np.asarray(coarse).reshape(self.coarse_shape)
        hit = c < level
        if not hit.any():
            return None
        idx = [np.nonzero(hit.any(axis=tuple(a for a in range(3) if a != ax)))[0] for ax in range(3)]
        block = tuple(slice(max(0, (i[0] - 1) * st), min(n, (i[-1] + 1) * st + 1))
                      for i, st, n in zip(idx, self.step[::-1], self.shape))
        return block, self.upsample(c, block)


def _straighten(anatomy: SpineAnatomy, ras: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(s, u, v) of RAS points: nearest centreline sample, then Newton steps along the tangent."""
    _, idx = cKDTree(anatomy.points).query(ras, k=1)
    s = anatomy.s[idx].astype(float)
    for _ in range(2):
        p, t, _, _ = anatomy.frame(s)
        s = s + np.einsum("nd,nd->n", ras - p, t)
    p, _, r, a = anatomy.frame(s)
    d = ras - p
    return s, np.einsum("nd,nd->n", d, r), np.einsum("nd,nd->n", d, a)


# ----------------------------------------------------------------------------------------------
# vertebra shapes in the straightened frame (ds along the spine, u right, v anterior)


def _superellipsoid(ds, u, v, centre, a, b, h, p=3.0, q=BODY_Q, cup=0.0, waist=0.0):
    """Normalised implicit value (<1 inside) of a rounded box-like body of half height ``h`` at its rim.

    ``cup``: central endplate concavity (mm); ``waist``: the sides' inward curve at mid-height
    (fraction of the radius), as in real bodies whose mid-height section is smaller than the endplates.
    """
    z = np.abs(ds - centre[2])
    r = (np.abs((u - centre[0]) / a) ** p + np.abs((v - centre[1]) / b) ** p) ** (1.0 / p)
    if waist:
        r = r / (1.0 - waist * np.clip(1.0 - (z / h) ** 2, 0.0, 1.0))
    hz = h * _RIM_SCALE - cup * np.clip(1.0 - (r / CUP_RADIUS) ** 2, 0.0, 1.0)
    return (r ** q + (z / np.maximum(hz, 0.5)) ** q) ** (1.0 / q)


def _capsule(ds, u, v, p0, p1, radius):
    """Distance (in radii) from a segment p0->p1 given as (u, v, ds); radius = (r_u, r_v, r_s)."""
    r = np.asarray(radius, float)
    a = np.asarray(p0, float) / r
    d = (np.asarray(p1, float) - np.asarray(p0, float)) / r
    x0 = u * np.float32(1 / r[0]) - np.float32(a[0])
    x1 = v * np.float32(1 / r[1]) - np.float32(a[1])
    x2 = ds * np.float32(1 / r[2]) - np.float32(a[2])
    dd = float(d @ d)
    if dd < 1e-9:
        return np.sqrt(x0 * x0 + x1 * x1 + x2 * x2)
    d = (d / dd).astype(np.float32), d.astype(np.float32)
    t = np.clip(x0 * d[0][0] + x1 * d[0][1] + x2 * d[0][2], 0, 1)
    x0 -= d[1][0] * t
    x1 -= d[1][1] * t
    x2 -= d[1][2] * t
    return np.sqrt(x0 * x0 + x1 * x1 + x2 * x2)


class _Shape:
    """Union of primitives, each with its own cortical thickness (in its normalised units)."""

    def __init__(self, ds, u, v):
        self.ds, self.u, self.v = ds, u, v
        self.bone = np.zeros(ds.shape, bool)
        self.core = np.zeros(ds.shape, bool)

    def add(self, f, thickness_units):
        self.bone |= f < 1
        self.core |= f < 1 - thickness_units

    def body(self, centre, a, b, h, p=3.0, cup=0.0, waist=0.0):
        f = _superellipsoid(self.ds, self.u, self.v, centre, a, b, h, p=p, cup=cup, waist=waist)
        self.add(f, CORTEX_MM / min(a, b, h))

    def capsule(self, p0, p1, radius):
        self.add(_capsule(self.ds, self.u, self.v, p0, p1, radius), CORTEX_MM / min(radius))


def _posterior_elements(sh: _Shape, vert: Vertebra, gap_above: float, gap_below: float):
    z = vert.size
    h, b = z.height / 2, z.depth / 2
    ca, cb = z.canal_width / 2, z.canal_depth / 2
    vc = -(b + cb)
    pw = max(z.pedicle_width, 3.0)
    pu = ca + pw / 2
    ds_p, ds_l = -0.15 * z.height, 0.1 * z.height
    ph = max(z.pedicle_height / 2, 3.0)
    lam = {"cervical": 2.5, "C2": 3.5, "thoracic": 3.5, "lumbar": 4.5}.get(vert.region, 4.0)
    for side in (-1, 1):
        sh.capsule((side * pu, -b + 2, ds_p), (side * pu, vc, ds_p), (pw / 2, pw / 2, ph))  # pedicle
        sh.capsule((side * pu, vc - 0.3 * cb, ds_l), (0, vc - cb - lam, ds_l), (lam, lam, 0.38 * z.height))  # lamina
        # articular processes: the inferior ones reach down to meet the superior ones of the level below
        sh.capsule((side * pu, vc - 0.3 * cb + 1.5, -h - 0.55 * gap_above), (side * pu, vc - 0.3 * cb + 1.5, -0.1 * h),
                   (4.0, 4.0, 5.0))
        sh.capsule((side * pu, vc - 0.3 * cb - 2.0, 0.2 * h), (side * pu, vc - 0.3 * cb - 2.0, h + 0.55 * gap_below),
                   (4.0, 4.0, 5.0))
        tip = z.transverse_span / 2 * (1.35 if vert.lstv else 1.0)
        tr = 6.0 if vert.lstv else {"cervical": 3.5, "C2": 3.5, "thoracic": 5.0}.get(vert.region, 4.5)
        if vert.region in ("cervical", "C2"):
            start, end = (side * pu, -b + 3, ds_p), (side * tip, -0.4 * b, ds_p + 2)
        elif vert.region == "thoracic":
            start, end = (side * pu, vc - 0.2 * cb, ds_p), (side * tip, vc - cb - 4, ds_p + 2)
        else:
            start, end = (side * pu, vc + 0.2 * cb, ds_p), (side * tip, vc - 2, ds_p + 2)
        sh.capsule(start, end, (tr, tr, tr * (1.8 if vert.lstv else 1.4)))
    angle = np.deg2rad(z.spinous_angle)
    root = (0, vc - cb - lam * 0.5, ds_l)
    tip = (0, root[1] - z.spinous_length * np.cos(angle), ds_l + z.spinous_length * np.sin(angle))
    thick = {"lumbar": 8.0, "thoracic": 5.0, "C2": 6.0}.get(vert.region, 4.0)
    sh.capsule(root, tip, (3.0, thick, thick))


def _c1(sh: _Shape, vert: Vertebra):
    z = vert.size
    tip = z.transverse_span / 2
    for side in (-1, 1):
        sh.capsule((side * 16, -1, 0), (side * 16, -2, 0), (7.5, 9.0, 8.0))  # lateral mass
        sh.capsule((side * 14, 4, 0), (0, 10, 0), (3.5, 3.5, 5.0))  # anterior arch
        sh.capsule((side * 15, -8, 0), (side * 8, -25, 1), (3.5, 3.5, 4.5))  # posterior arch
        sh.capsule((side * 8, -25, 1), (0, -27, 2), (3.5, 3.5, 4.5))
        sh.capsule((side * 20, -1, 0), (side * tip, -3, 1), (4.5, 4.5, 5.0))  # transverse process
    sh.capsule((0, -28, 2), (0, -30, 3), (4.0, 4.0, 5.5))  # posterior tubercle


def _vertebra_shape(vert: Vertebra, ds, u, v, gap_above, gap_below) -> _Shape:
    sh = _Shape(ds, u, v)
    z = vert.size
    if vert.name == "C1":
        _c1(sh, vert)
        return sh
    h, a, b = z.height / 2, z.width / 2, z.depth / 2
    if vert.region == "sacral" and vert.name != "S1":
        h += (z.disc + gap_above) / 4 + 0.5  # fused segments: bone bridges the remnant discs
    # p 3.6 and a 5 % waist: a real L3 body fills about 84 % (mid-height) to 95 % (endplates) of its
    # width x depth box (TPTBox sample CT, corpus sub-regions)
    sh.body((0, 0, 0), a, b, h, p=3.6, cup=endplate_cup(vert), waist=0.05 if vert.region != "sacral" else 0.0)
    if vert.name == "C2":
        sh.capsule((0, 0.5, -h + 2), (0, 0.5, -h - 12), (5.0, 5.0, 5.0))  # dens
        for side in (-1, 1):
            sh.capsule((side * (z.canal_width / 2 + 1), -2, -h - 2), (side * (z.canal_width / 2 + 1), -2, -h / 2),
                       (5.5, 6.0, 4.0))  # broad superior facets carrying C1's lateral masses
    if vert.region == "sacral":
        _sacral(sh, vert, gap_above)
    else:
        _posterior_elements(sh, vert, gap_above, gap_below)
    return sh


def _sacral(sh: _Shape, vert: Vertebra, gap_above):
    z = vert.size
    h, b = z.height / 2, z.depth / 2
    cb = z.canal_depth / 2
    vc = -(b + cb)
    sh.body((0, -0.35 * b, 0), vert.ala_half_span, 0.85 * b, 0.97 * h, p=4.0)  # alae / lateral parts
    sh.body((0, vc - 0.2 * cb, 0), z.canal_width / 2 + 8, cb + 6, 0.97 * h, p=3.0)  # dorsal wall
    sh.capsule((0, vc - cb - 5, -h + 3), (0, vc - cb - 7, h - 3), (3.0, 5.0, 5.0))  # median crest
    if vert.name == "S1":
        pu = z.canal_width / 2 + 4
        for side in (-1, 1):
            sh.capsule((side * pu, vc - 0.3 * cb + 1.5, -h - 0.55 * gap_above), (side * pu, vc, -0.2 * h), (4.5, 4.5, 5.0))


def _extent(vert: Vertebra, gap_above, gap_below) -> tuple[np.ndarray, np.ndarray]:
    """Loose (ds, u, v) box of a vertebra's shapes."""
    z = vert.size
    b, cb = z.depth / 2, z.canal_depth / 2
    lat = max(z.transverse_span / 2 * (1.4 if vert.lstv else 1.0), z.width / 2, vert.ala_half_span) + 10
    drop = z.spinous_length * np.sin(np.deg2rad(max(z.spinous_angle, 0))) + 12
    lo = np.array([-z.height / 2 - gap_above - 18, -lat, -(b + 2 * cb + z.spinous_length + 14)])
    hi = np.array([z.height / 2 + max(gap_below + 8, 0.1 * z.height + drop), lat, max(b, 12) + 8])
    return lo, hi


def _gaps(anatomy: SpineAnatomy) -> list[tuple[float, float]]:
    """Gap (mm) between each vertebra's body and its neighbours' bodies, above and below."""
    vs = anatomy.vertebrae
    out = []
    for i, v in enumerate(vs):
        above = rim_gap(vs[i - 1], v) if i > 0 and v.name != "C2" else 6.0
        below = rim_gap(v, vs[i + 1]) if i + 1 < len(vs) else v.size.disc
        out.append((above, below))
    return out


def _box_indices(fields: _Fields, anatomy: SpineAnatomy, s0, lo, hi):
    """Fine-array slices covering a straightened box (corners and edge midpoints mapped to voxels)."""
    corners = np.array(np.meshgrid(*[np.linspace(l, h, 3) for l, h in zip(lo, hi)], indexing="ij")).reshape(3, -1).T
    ras = anatomy.to_ras(s0 + corners[:, 0], corners[:, 1], corners[:, 2])
    ijk = fields.grid.ras_to_ijk(ras)
    ijk[:, 2] = (ijk[:, 2] + 0.5) * fields.n_sub - 0.5
    lo_i = np.floor(ijk.min(0)).astype(int) - 2
    hi_i = np.ceil(ijk.max(0)).astype(int) + 3
    k, j, i = fields.shape
    sl = tuple(slice(max(0, l), min(n, h)) for l, h, n in zip(lo_i[::-1], hi_i[::-1], (k, j, i)))
    if any(s.stop <= s.start for s in sl):
        return None
    return sl


def vertebra_mask_points(vert: Vertebra, ds, u, v, gap_above, gap_below) -> np.ndarray:
    """Bone mask of one vertebra at straightened points (used for completeness sampling)."""
    return _vertebra_shape(vert, ds, u, v, gap_above, gap_below).bone


# ----------------------------------------------------------------------------------------------
# main entry


def render(anatomy: SpineAnatomy, grid: Grid, rng: np.random.Generator, coarse_mm: float = 4.0,
           n_sub: int = 1, smooth_fields: bool = True) -> Rendered:
    """Tissue, labels and modifier on ``grid`` (k sub-sampled ``n_sub`` times); ``smooth_fields``
    also upsamples the texture and bias fields (MR needs them, CT can skip the cost)."""
    f = _Fields(grid, n_sub, coarse_mm)
    coords = _straighten(anatomy, f.coarse_ras)
    soft = soft_tissue_fields(anatomy, *coords, rng)
    rib_spacing = float(soft.pop("rib_spacing"))
    noise = gaussian_filter(rng.standard_normal(f.coarse_shape).astype(np.float32), 1.0)
    noise /= max(float(noise.std()), 1e-6)
    bias = gaussian_filter(rng.standard_normal(f.coarse_shape).astype(np.float32), 4.0)
    bias /= max(float(np.abs(bias).max()), 1e-6)

    tissue = np.zeros(f.shape, np.uint8)

    def paint(key, level, value):
        found = f.below(soft[key], level + 0.3)
        if found is not None:
            block, values = found
            tissue[block][values < level] = value

    paint("skin", 1, FAT)
    paint("inner", 1, SOFT)
    abdomen_start = (anatomy.by_name("T11") or anatomy.vertebrae[18]).s
    soft["visceral"] = np.where((coords[0] > abdomen_start) & (soft["inner"] < 0.8),
                                1.6 - 2 * anatomy.habitus["visceral_fat"] - noise.ravel(), 9.0)
    paint("visceral", 0, FAT)  # fat between the organs
    _paint_bowel_gas(soft, coords, anatomy, f, rng, abdomen_start, paint)
    soft["muscle"] = np.maximum(soft["muscle"], soft["inner"] - 1)
    paint("muscle", 0, MUSCLE)
    soft["lung"] = np.maximum(soft["lung"], soft["inner"] - 1)
    paint("lung", 0, LUNG)
    paint("trachea", 1, AIR)
    paint("aorta", 1, VESSEL)  # after the lungs and muscle: the vessels run in front of the spine
    paint("head", 1.12, FAT)
    paint("head", 1.06, SOFT)
    soft["skull"] = np.where(soft["skull_ok"] & (soft["canal_fat"] > 2.0), np.abs(soft["head"] - 0.93) / 0.07, 9.0)
    paint("skull", 1, CORTICAL)
    paint("skull", 0.45, CANCELLOUS)
    _draw_ribs(tissue, f, soft, anatomy, rib_spacing, coords)

    labels = np.zeros(f.shape, np.uint8)
    modifier = np.ones(f.shape, np.float32)
    gaps = _gaps(anatomy)
    vs = anatomy.vertebrae
    for i in range(len(vs) - 1):
        if vs[i].name != "C1" and vs[i].region != "sacral":
            _draw_disc(f, anatomy, coords, vs[i], vs[i + 1], tissue, modifier)
    for vert, (g_above, g_below) in zip(vs, gaps):
        lo, hi = _extent(vert, g_above, g_below)
        sl = _box_indices(f, anatomy, vert.s, lo, hi)
        if sl is None:
            continue
        ds, uu, vv = (f.upsample(c, sl) for c in coords)
        ds -= vert.s
        inside = np.nonzero((ds > lo[0]) & (ds < hi[0]) & (uu > lo[1]) & (uu < hi[1]) & (vv > lo[2]) & (vv < hi[2]))
        if inside[0].size == 0:
            continue
        sh = _vertebra_shape(vert, ds[inside], uu[inside], vv[inside], g_above, g_below)
        t_sub, l_sub = tissue[sl], labels[sl]
        idx = tuple(x[sh.bone] for x in inside)
        t_sub[idx] = np.where(sh.core[sh.bone], CANCELLOUS, CORTICAL)
        free = l_sub[idx] == 0  # the first (upper) vertebra keeps overlapping processes
        l_sub[tuple(x[free] for x in idx)] = vert.label or SACRUM_LABEL  # S2-S5: the sacrum's value
        modifier[sl][idx] = 1.0
    _draw_rib_necks(f, anatomy, coords, tissue, labels, gaps)
    _draw_pelvis(f, anatomy, coords, tissue, labels, rng)
    # the canal last, so it stays open through every level
    for key, value in (("canal_fat", FAT), ("csf", CSF)):
        found = f.below(soft[key], 1.3)
        if found is not None:
            block, values = found
            tissue[block][values < 1] = value
            labels[block][values < 1] = 0
    soft["cord"] = np.maximum(soft["cord"], soft["csf"])
    paint("cord", 1, CORD)
    smooth = (f.upsample(noise), f.upsample(bias)) if smooth_fields else (None, None)
    return Rendered(tissue, labels, modifier, *smooth, n_sub)


def _draw_rib_necks(f: _Fields, anatomy, coords, tissue, labels, gaps):
    """Each rib's neck and head, from the transverse process tip (where the cage's ribs start) to the
    back of the body: the head meets the disc above for T2-T9, its own body for T1 and T10-T12
    (costovertebral joints). Bone, not part of the vertebra's label, a joint space away from it."""
    ribbed = [(i, v) for i, v in enumerate(anatomy.vertebrae) if v.ribs]
    for rank, (index, vert) in enumerate(ribbed):
        z = vert.size
        h, a, b = z.height / 2, z.width / 2, z.depth / 2
        vc = -(b + z.canal_depth / 2)
        own_body = rank == 0 or rank >= len(ribbed) - 3
        head_ds = -0.2 * h if own_body else -h - gaps[index][0] / 2
        tip = z.transverse_span / 2
        lo, hi = np.array([head_ds - 8, -tip - 8, vc - 20]), np.array([8.0, tip + 8, 5.0])
        sl = _box_indices(f, anatomy, vert.s, lo, hi)
        if sl is None:
            continue
        ds, uu, vv = (f.upsample(c, sl) for c in coords)
        sh = _Shape(ds - vert.s, uu, vv)
        for side in (-1, 1):
            sh.capsule((side * (tip - 2), vc - z.canal_depth / 2 - 1, -0.15 * z.height + 2),
                       (side * (a + 2), -0.55 * b, head_ds), (4.0, 4.0, 4.5))
        near = maximum_filter((labels[sl] > 0).view(np.uint8), size=3) > 0
        bone = sh.bone & ~near
        t_sub = tissue[sl]
        t_sub[bone] = np.where(sh.core[bone], CANCELLOUS, CORTICAL)


def _paint_bowel_gas(soft, coords, anatomy, f: _Fields, rng, abdomen_start: float, paint):
    """Gas pockets in the bowel: blobs of air in front of the spine from the upper abdomen down,
    a dark distractor on CT and MR (about 2-6 % of the abdominal cavity, drawn from a smooth field)."""
    blobs = gaussian_filter(rng.standard_normal(f.coarse_shape).astype(np.float32), 1.2).ravel()
    blobs /= max(float(blobs.std()), 1e-6)
    s, _, v = coords
    body_front = np.interp(s, [x.s for x in anatomy.vertebrae], [x.size.depth / 2 for x in anatomy.vertebrae])
    cavity = (s > abdomen_start + 20) & (soft["inner"] < 0.7) & (v > body_front + 25)
    soft["gas"] = np.where(cavity, rng.uniform(1.6, 2.4) - blobs, 9.0)
    paint("gas", 0, AIR)


def _draw_pelvis(f: _Fields, anatomy, coords, tissue, labels, rng):
    """Coccyx segments below S5 (in the straightened frame, like the sacrum), then both ilia."""
    for s_c, hh, hw in pelvis.coccyx_segments(anatomy, rng):
        lo, hi = np.array([-hh - 2, -hw - 2, -hw - 2]), np.array([hh + 2, hw + 2, hw + 2])
        sl = _box_indices(f, anatomy, s_c, lo, hi)
        if sl is None:
            continue
        ds, uu, vv = (f.upsample(c, sl) for c in coords)
        sh = _Shape(ds - s_c, uu, vv)
        sh.body((0, 0, 0), hw, 0.7 * hw, hh, p=2.5)
        t_sub, l_sub = tissue[sl], labels[sl]
        bone = sh.bone & (l_sub == 0)
        t_sub[bone] = np.where(sh.core[bone], CANCELLOUS, CORTICAL)
        l_sub[bone] = COCCYX_LABEL
    spacing = (f.grid.spacing[0], f.grid.spacing[1], f.grid.spacing[2] / f.n_sub)
    pelvis.draw_ilia(tissue, labels, f.grid, f.n_sub, pelvis.pelvis_parameters(anatomy, rng), spacing,
                     CORTICAL, CANCELLOUS)


def _draw_ribs(tissue, f: _Fields, soft, anatomy, rib_spacing: float, coords):
    n_ribs = sum(1 for v in anatomy.instances() if v.ribs)
    valid = (soft["cage_ok"] < 0.5) & (soft["rib_phase"] > -0.6) & (soft["rib_phase"] < n_ribs - 0.4)
    soft["rib_gate"] = np.where(valid, np.abs(soft["cage"] - 1), 9.0)
    found = f.below(soft["rib_gate"], 0.25)
    if found is None:
        return
    block = found[0]
    cage, ok, phase, scale = (f.upsample(soft[k], block) for k in ("cage", "cage_ok", "rib_phase", "cage_scale"))
    nearest = np.round(phase)
    radial = (np.sqrt(np.maximum(cage, 0)) - 1) * scale / 3.5
    along = (phase - nearest) * rib_spacing / 5.5
    r2 = radial ** 2 + along ** 2
    rib = (ok < 0) & (r2 < 1) & (nearest >= 0) & (nearest < n_ribs)
    # the last two ribs float: they end in the flank instead of curving round to the front
    # (v: mm anterior of the centreline; the spinal canal is about -30)
    floating_end = np.full(n_ribs + 1, np.inf, np.float32)
    for k, end in zip((n_ribs - 2, n_ribs - 1), FLOATING_RIB_END_MM):
        if k >= 0:
            floating_end[k] = end
    vv = f.upsample(coords[2], block)
    rib &= vv < floating_end[np.clip(nearest, 0, n_ribs).astype(int)]
    sub = tissue[block]
    sub[rib] = CORTICAL
    sub[rib & (r2 < 0.3)] = CANCELLOUS


def _draw_disc(f: _Fields, anatomy, coords, upper: Vertebra, lower: Vertebra, tissue, modifier):
    top = upper.s + upper.size.height / 2 - 2.0
    bottom = lower.s - lower.size.height / 2 + 2.0
    if bottom <= top:
        return
    a = max(min(upper.size.width, lower.size.width) / 2, 5.0) * 1.02
    b = max(min(upper.size.depth, lower.size.depth) / 2, 5.0) * 1.02
    lo, hi = np.array([0.0, -a - 3, -b - 3]), np.array([bottom - top, a + 3, b + 3])
    sl = _box_indices(f, anatomy, top, lo, hi)
    if sl is None:
        return
    ss, uu, vv = (f.upsample(c, sl) for c in coords)
    r = (np.abs(uu / a) ** 2.6 + np.abs(vv / b) ** 2.6) ** (1 / 2.6)
    inside = (ss > top) & (ss < bottom) & (r < 1)
    t_sub, m_sub = tissue[sl], modifier[sl]
    t_sub[inside] = DISC
    m_sub[inside] = np.where(r[inside] < 0.6, upper.disc_brightness, 0.45)  # nucleus vs darker annulus
