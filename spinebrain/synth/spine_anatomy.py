"""Random spine anatomy: which levels exist, their sizes, and the curved centreline they sit on.

Everything here is geometry in patient RAS millimetres (superior = +S, anterior = +A) and in the
"straightened" frame of the centreline: arc length ``s`` (0 at the top, growing caudally),
``u`` towards the patient's right and ``v`` anterior, both perpendicular to the centreline.
No voxels are made here; :mod:`spine_render` draws the shapes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from scipy.ndimage import gaussian_filter1d

from spinebrain.anatomy import VERTEBRA_LABELS
from spinebrain.synth import morphometry as mm


@dataclass
class SpineOptions:
    """Knobs of the generator; the defaults follow MORPHOMETRY.md."""

    scoliosis_probability: float = 0.15
    max_scoliosis_mm: float = 25.0  # lateral deviation at the apex of the curve
    max_axial_rotation_deg: float = 10.0  # vertebral rotation at the apex of a scoliosis
    rate_eleven_thoracic: float = mm.RATE_ELEVEN_THORACIC
    rate_thirteen_thoracic: float = mm.RATE_THIRTEEN_THORACIC
    rate_six_lumbar: float = mm.RATE_SIX_LUMBAR
    rate_four_lumbar: float = mm.RATE_FOUR_LUMBAR
    rate_lstv: float = mm.RATE_LSTV
    size_sd: float = 0.06  # between-person SD of the overall size factor
    curvature_scale: float = 1.0  # 0 gives a straight spine (handy in tests)
    max_voxels: int = 12_000_000  # spacing is coarsened when a random grid would be larger
    coarse_mm: float = 4.0  # grid step of the smooth fields (coordinates, soft tissue, bias)
    supersample_thick_slices: bool = True  # average sub-slices for partial volume in thick slices
    render_full_spine: bool = False  # extend the grid to hold every vertebra (same spacing/axes)


@dataclass
class Vertebra:
    name: str  # "L3"; sacral segments below S1 are "S2".."S5"
    label: int  # VerSe value; 0 for the sacral segments that are not instances
    region: str  # "C1", "C2", "cervical", "thoracic", "lumbar", "sacral"
    s: float  # arc length of the body centre
    size: mm.LevelSize
    ribs: bool = False
    lstv: bool = False  # enlarged transverse processes of a transitional last lumbar vertebra
    disc_brightness: float = 1.0  # relative MR T2 signal of the disc below (degeneration < 1)
    ala_half_span: float = 0.0  # sacral segments: half width across the alae


@dataclass
class SpineAnatomy:
    vertebrae: list[Vertebra]
    s: np.ndarray  # (n,) arc length samples of the centreline, 1 mm apart
    points: np.ndarray  # (n, 3) RAS centreline
    tangent: np.ndarray  # (n, 3) unit, pointing caudally
    right: np.ndarray  # (n, 3) unit "u" axis (rotated with the vertebrae)
    anterior: np.ndarray  # (n, 3) unit "v" axis
    habitus: dict = field(default_factory=dict)  # body-shape factors for the soft tissue
    variants: dict = field(default_factory=dict)  # transitional anatomy, scoliosis, curvature

    def instances(self) -> list[Vertebra]:
        return [v for v in self.vertebrae if v.label > 0]

    def by_name(self, name: str) -> Vertebra | None:
        return next((v for v in self.vertebrae if v.name == name), None)

    def frame(self, s) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Centreline point, tangent, right and anterior axes at arc lengths ``s`` (N,) -> (N, 3) each.

        Beyond the ends the centreline continues straight along its end tangent.
        """
        s = np.asarray(s, dtype=float)
        position = np.clip((s - self.s[0]) / (self.s[1] - self.s[0]), 0, len(self.s) - 1.000001)
        index = position.astype(np.int64)  # the samples are evenly spaced: no search needed
        w = (position - index)[..., None]
        out = [arr[index] * (1 - w) + arr[index + 1] * w
               for arr in (self.points, self.tangent, self.right, self.anterior)]
        s_clamped = np.clip(s, self.s[0], self.s[-1])
        out[0] = out[0] + (s - s_clamped)[..., None] * out[1]
        return tuple(out)

    def to_ras(self, s, u, v) -> np.ndarray:
        """Straightened coordinates to RAS millimetres (exact inverse of the renderer's projection
        close to the spine)."""
        p, _, r, a = self.frame(s)
        return p + np.asarray(u, float)[..., None] * r + np.asarray(v, float)[..., None] * a


def sample_level_names(rng: np.random.Generator, options: SpineOptions) -> tuple[list[str], dict]:
    """Cervical-to-S1 names with transitional counts at the configured rates (cheap: no geometry)."""
    u = rng.random(3)
    n_thoracic = 11 if u[0] < options.rate_eleven_thoracic else (
        13 if u[0] < options.rate_eleven_thoracic + options.rate_thirteen_thoracic else 12)
    n_lumbar = 6 if u[1] < options.rate_six_lumbar else (
        4 if u[1] < options.rate_six_lumbar + options.rate_four_lumbar else 5)
    names = [f"C{i}" for i in range(1, 8)] + [f"T{i}" for i in range(1, n_thoracic + 1)]
    names += [f"L{i}" for i in range(1, n_lumbar + 1)] + ["S1"]
    variants = {"thoracic_count": n_thoracic, "lumbar_count": n_lumbar, "lstv": bool(u[2] < options.rate_lstv)}
    return names, variants


def _region(name: str) -> str:
    if name in ("C1", "C2"):
        return name
    return {"C": "cervical", "T": "thoracic", "L": "lumbar", "S": "sacral"}[name[0]]


def endplate_cup(vert: "Vertebra") -> float:
    """Central concavity (mm) of this vertebra's endplates (MORPHOMETRY-based, see morphometry.ENDPLATE_CUP)."""
    if vert.name == "S1":
        return mm.ENDPLATE_CUP["S1"]
    return mm.ENDPLATE_CUP.get(vert.region, 0.0)


def rim_gap(upper: "Vertebra", lower: "Vertebra") -> float:
    """Rim-to-rim gap (mm) between two bodies: the disc's middle height less both endplate concavities.
    Fused sacral segments keep their remnant disc as it is."""
    if lower.region == "sacral" and lower.name != "S1":
        return upper.size.disc
    return max(1.0, upper.size.disc - endplate_cup(upper) - endplate_cup(lower))


def _disc_brightness(name: str, region: str, index: int, count: int, age: float, rng) -> float:
    """Relative T2 signal of the disc below a level: degeneration grows with age, most at the lower
    lumbar and lower cervical discs (bright young nucleus about 1, dark degenerated disc 0.2-0.6)."""
    risk = np.clip((age - 20.0) / 60.0, 0.0, 0.9)
    if (region == "lumbar" and index >= count - 3) or name in ("C4", "C5", "C6"):
        risk = min(1.0, 1.4 * risk)
    return float(rng.uniform(0.2, 0.6) if rng.random() < risk else rng.uniform(0.8, 1.1))


def _scaled(size: mm.LevelSize, factor: float, rng: np.random.Generator) -> mm.LevelSize:
    """One person's version of a level: overall factor plus a little per-level jitter."""
    jitter = lambda sd=0.03: factor * (1.0 + sd * rng.standard_normal())  # noqa: E731
    return replace(
        size,
        height=size.height * jitter(), width=size.width * jitter(), depth=size.depth * jitter(),
        disc=size.disc * factor * float(np.clip(1.0 + 0.15 * rng.standard_normal(), 0.5, 1.4)),
        canal_depth=size.canal_depth * jitter(0.06), canal_width=size.canal_width * jitter(0.05),
        pedicle_width=size.pedicle_width * jitter(0.08), pedicle_height=size.pedicle_height * jitter(0.05),
        spinous_length=size.spinous_length * jitter(0.12), transverse_span=size.transverse_span * jitter(0.06),
        spinous_angle=size.spinous_angle + 5.0 * rng.standard_normal(),
    )


def _stack_vertebrae(names, variants, rng, options, age: float = 50.0) -> list[Vertebra]:
    """Place each body centre along the arc length: half (rim) heights plus the rim-to-rim gap between."""
    factor = float(np.clip(1.0 + options.size_sd * rng.standard_normal(), 0.8, 1.2))
    vertebrae: list[Vertebra] = []
    s = 0.0
    for index, name in enumerate(names):
        size = _scaled(mm.LEVEL_SIZES[name], factor, rng)
        region = _region(name)
        if name == "C1":
            s = 12.0  # C1 ring centre; the skull base sits above s = 0
        elif name == "C2":
            s = vertebrae[-1].s + 6.0 + size.height / 2  # dens rises through the C1 ring
        vert = Vertebra(name, VERTEBRA_LABELS[name], region, 0.0, size, ribs=region == "thoracic",
                        disc_brightness=_disc_brightness(name, region, index, len(names) - 1, age, rng),
                        ala_half_span=size.transverse_span / 2 if name == "S1" else 0.0)
        if name not in ("C1", "C2"):
            above = vertebrae[-1]
            s = above.s + above.size.height / 2 + rim_gap(above, vert) + size.height / 2
        vert.s = s
        vertebrae.append(vert)
    lumbar = [v for v in vertebrae if v.region == "lumbar"]
    if variants["lstv"] and lumbar:
        lumbar[-1].lstv = True
    # fused lower sacral segments: bone, but not label instances
    for k, (height, width, ala) in enumerate(mm.SACRAL_SEGMENTS, start=2):
        above = vertebrae[-1]
        size = replace(mm.LEVEL_SIZES["S1"], height=height * factor, width=width * factor,
                       depth=mm.LEVEL_SIZES["S1"].depth * factor * (1 - 0.12 * (k - 1)),
                       disc=1.5, canal_depth=max(4.0, 14.0 - 3.0 * (k - 1)), canal_width=max(8.0, 28.0 - 5.0 * (k - 1)),
                       spinous_length=10.0, transverse_span=2 * ala * factor)
        vert = Vertebra(f"S{k}", 0, "sacral", 0.0, size, ala_half_span=ala * factor)
        vert.s = above.s + above.size.height / 2 + rim_gap(above, vert) + size.height / 2
        vertebrae.append(vert)
    return vertebrae


def _region_span(vertebrae, first: str, last: str) -> tuple[float, float]:
    by_name = {v.name: v for v in vertebrae}
    a, b = by_name.get(first), by_name.get(last)
    return (a.s if a else vertebrae[0].s), (b.s if b else vertebrae[-1].s)


def _curvature(s: np.ndarray, vertebrae, rng, options) -> tuple[np.ndarray, dict]:
    """Sagittal curvature dθ/ds (rad/mm): each region's angle spread evenly, then smoothed."""
    thoracic = [v.name for v in vertebrae if v.region == "thoracic"]
    lumbar = [v.name for v in vertebrae if v.region == "lumbar"]
    angles = {
        "cervical_lordosis": float(rng.normal(*mm.CERVICAL_LORDOSIS)),
        "thoracic_kyphosis": float(np.clip(rng.normal(*mm.THORACIC_KYPHOSIS), 5, 80)),
        "lumbar_lordosis": float(np.clip(rng.normal(*mm.LUMBAR_LORDOSIS), 0, 80)),
        "sacral_kyphosis": float(np.clip(rng.normal(*mm.SACRAL_KYPHOSIS), 25, 85)),
    }
    spans = {
        "cervical_lordosis": (_region_span(vertebrae, "C2", "C7"), -1.0),
        "thoracic_kyphosis": (_region_span(vertebrae, "T3", thoracic[-1]), +1.0),
        "lumbar_lordosis": (_region_span(vertebrae, lumbar[0] if lumbar else "S1", "S1"), -1.0),
        "sacral_kyphosis": (_region_span(vertebrae, "S1", vertebrae[-1].name), +1.0),
    }
    kappa = np.zeros_like(s)
    for key, ((a, b), sign) in spans.items():
        inside = (s >= a) & (s < b)
        if b > a:
            kappa[inside] += sign * np.deg2rad(angles[key]) * options.curvature_scale / (b - a)
    return gaussian_filter1d(kappa, 15.0), angles


def _scoliosis(s, vertebrae, rng, options) -> tuple[np.ndarray, np.ndarray, dict]:
    """Lateral offset (mm) and axial rotation (rad) along s; zero unless a scoliosis is drawn."""
    if rng.random() >= options.scoliosis_probability:
        return np.zeros_like(s), np.zeros_like(s), {"scoliosis": False}
    top, bottom = _region_span(vertebrae, "T2", "S1")
    start = rng.uniform(top, top + 0.4 * (bottom - top))
    length = rng.uniform(0.35, 0.6) * (bottom - top)
    amplitude = rng.uniform(0.3, 1.0) * options.max_scoliosis_mm * rng.choice([-1, 1])
    phase = np.clip((s - start) / length, 0, 1)
    offset = amplitude * np.sin(np.pi * phase)
    rotation = np.deg2rad(options.max_axial_rotation_deg) * (offset / options.max_scoliosis_mm if options.max_scoliosis_mm else 0)
    return offset, rotation, {"scoliosis": True, "scoliosis_apex_mm": float(amplitude)}


def _frames(points: np.ndarray, rotation: np.ndarray):
    """Tangent and rotated right/anterior axes along a polyline (Gram-Schmidt against +R)."""
    tangent = np.gradient(points, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    right = np.array([1.0, 0.0, 0.0]) - tangent[:, :1] * tangent
    right /= np.linalg.norm(right, axis=1, keepdims=True)
    anterior = np.cross(right, tangent)  # right x caudal = anterior
    c, s = np.cos(rotation)[:, None], np.sin(rotation)[:, None]
    return tangent, c * right + s * anterior, -s * right + c * anterior


def sample_anatomy(rng: np.random.Generator, options: SpineOptions) -> SpineAnatomy:
    names, variants = sample_level_names(rng, options)
    # age 18-88, mean about 58 (spine imaging is mostly of older adults): drives disc degeneration here
    # and bone density / marrow fat in the contrast
    age = float(18.0 + 70.0 * rng.beta(2.2, 1.6))
    vertebrae = _stack_vertebrae(names, variants, rng, options, age)
    last = vertebrae[-1]
    s = np.arange(-60.0, last.s + last.size.height / 2 + 40.0, 1.0)
    kappa, angles = _curvature(s, vertebrae, rng, options)
    theta = np.cumsum(kappa)  # angle of the tangent from "caudal" towards anterior
    # make the C2-S1 chord vertical (plus a small tilt): the patient lies along the table axis
    sagittal = np.stack([np.cumsum(np.sin(theta)), -np.cumsum(np.cos(theta))], axis=1)
    i2, i26 = (np.searchsorted(s, v.s) for v in (vertebrae[1], next(v for v in vertebrae if v.name == "S1")))
    chord = sagittal[i26] - sagittal[i2]
    tilt = np.arctan2(chord[0], -chord[1]) - np.deg2rad(rng.normal(0, 3.0))
    rot = np.array([[np.cos(tilt), -np.sin(tilt)], [np.sin(tilt), np.cos(tilt)]])
    sagittal = sagittal @ rot  # rotate the curve by -tilt
    offset, rotation, scoliosis = _scoliosis(s, vertebrae, rng, options)
    points = np.stack([offset, sagittal[:, 0], sagittal[:, 1]], axis=1)
    points -= points[np.searchsorted(s, vertebrae[1].s)]  # C2 body centre at the origin (before shift)
    points += rng.normal(0, 20.0, 3)  # the spine is not at the scanner's isocentre
    tangent, right, anterior = _frames(points, rotation)
    habitus = {
        "width": float(rng.uniform(0.85, 1.2)), "depth": float(rng.uniform(0.85, 1.3)),
        "fat_mm": float(rng.uniform(4.0, 35.0)), "muscle": float(rng.uniform(0.8, 1.2)),
        "diaphragm_level": float(rng.uniform(-0.5, 1.5)), "visceral_fat": float(rng.uniform(0.1, 0.5)),
        "age": age,
    }
    variants.update(scoliosis)
    variants["curvature_deg"] = angles
    variants["names"] = [v.name for v in vertebrae if v.label]
    return SpineAnatomy(vertebrae, s, points, tangent, right, anterior, habitus, variants)
