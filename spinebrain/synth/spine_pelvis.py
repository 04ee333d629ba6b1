"""The bony pelvis around a generated sacrum: iliac wings, sacroiliac joints and the coccyx.

The detectors' S1 anchor must see what surrounds S1 in a real scan: iliac crests at about the
L4-L5 disc, the ilia meeting the sacral alae at the sacroiliac joints, the sacrum tapering into a
coccyx. The ilia are drawn in the patient's axes (a person lies with the pelvis level on the
table), centred on S1's body; the coccyx follows the centreline past S5 like the sacrum.

Each ilium is a curved plate: in an axial section an arc of an ellipse around the pelvic cavity,
from the sacroiliac joint (posterior) to the anterior superior iliac spine, widening towards the
crest (the wing opens laterally and anteriorly), thick at the crest, the posterior part and the
body near the acetabulum, thin (a few mm) in the iliac fossa. Bone within ``JOINT_MM`` of a
vertebra is left out: that gap is the sacroiliac joint (and keeps the wing off L5).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from spinebrain.anatomy import PELVIS_LABELS

JOINT_MM = 2.5  # sacroiliac joint space (real: 1-4 mm) and the least gap to any vertebra
COARSE_MM = 2.0  # grid step of the margin before upsampling
CORTEX_MM = 1.2  # as the vertebrae's shell (spine_render.CORTEX_MM)
_PHI_POSTERIOR = np.deg2rad(22.0)  # angular span of the wing's arc, measured from posterior


def pelvis_parameters(anatomy, rng) -> dict | None:
    """One person's pelvis (mm, patient axes, origin at S1's body centre); None without S1 or lumbar levels."""
    s1 = anatomy.by_name("S1")
    lumbar = [v for v in anatomy.vertebrae if v.region == "lumbar"]
    if s1 is None or len(lumbar) < 2:
        return None
    origin = anatomy.to_ras(np.array([s1.s]), np.array([0.0]), np.array([0.0]))[0]
    upper, lower = lumbar[-2], lumbar[-1]  # L4 and L5 in the usual count
    disc_s = (upper.s + upper.size.height / 2 + lower.s - lower.size.height / 2) / 2
    disc = anatomy.to_ras(np.array([disc_s]), np.array([0.0]), np.array([0.0]))[0]
    width = anatomy.habitus.get("width", 1.0)
    s3 = anatomy.by_name("S3") or s1
    low = anatomy.to_ras(np.array([s3.s]), np.array([0.0]), np.array([0.0]))[0] - origin
    crest = float(disc[2] - origin[2] + rng.normal(0.0, 5.0))
    return {
        "origin": origin,
        "crest": crest,  # highest point of the crest above S1's centre
        "bottom": crest - rng.uniform(115.0, 135.0),  # the ilium's body above the acetabulum
        "rx": (rng.uniform(50.0, 60.0), rng.uniform(110.0, 130.0) * np.sqrt(width)),  # lateral semi-axis, bottom/crest
        "ry": (rng.uniform(40.0, 50.0), rng.uniform(65.0, 80.0)),  # antero-posterior semi-axis, bottom/crest
        "centre_a": rng.uniform(0.0, 12.0),  # anterior offset of the arc's centre from S1
        "phi_anterior": (np.deg2rad(rng.uniform(90.0, 100.0)), np.deg2rad(rng.uniform(115.0, 125.0))),
        "fossa_mm": rng.uniform(3.0, 6.0),  # thickness of the thin iliac fossa
        # the auricular part, lateral to the alae of S1-S3: its medial face is the sacroiliac joint
        "auricular": {"x": s1.ala_half_span + rng.uniform(8.0, 14.0), "half_x": rng.uniform(18.0, 24.0),
                      "top": s1.size.height / 2 + rng.uniform(5.0, 12.0), "bottom": float(low[2]) - 8.0,
                      "y_top": -0.3 * s1.size.depth, "y_bottom": float(low[1]) - 0.3 * s3.size.depth,
                      "half_y": rng.uniform(20.0, 26.0)},
    }


def _ilium_margin(x, y, z, p) -> np.ndarray:
    """Signed distance-like margin (mm, > 0 inside) of one ilium at lateral x >= 0, anterior y, superior z."""
    t = np.clip((z - p["bottom"]) / (p["crest"] - p["bottom"]), 0.0, 1.0)
    rx = p["rx"][0] + (p["rx"][1] - p["rx"][0]) * t ** 0.7
    ry = p["ry"][0] + (p["ry"][1] - p["ry"][0]) * t
    xn, yn = x / rx, (y - p["centre_a"]) / ry
    rho = np.sqrt(xn * xn + yn * yn)
    phi = np.arctan2(xn, -yn)  # 0 posterior, pi/2 lateral, pi anterior
    radius = 0.5 * (rx + ry)
    phi_end = p["phi_anterior"][0] + (p["phi_anterior"][1] - p["phi_anterior"][0]) * t
    # thickness: thin fossa, thick posterior part (auricular surface, iliac tuberosity) and body
    thick = p["fossa_mm"] + 14.0 * np.clip((np.deg2rad(50) - phi) / np.deg2rad(25), 0, 1) \
        + 14.0 * np.clip(1.0 - t / 0.3, 0, 1)
    crest_z = p["crest"] - 30.0 * ((phi - np.deg2rad(70)) / np.deg2rad(55)) ** 2  # highest mid-crest
    thick = thick + 8.0 * np.clip(1.0 - (crest_z - z) / 12.0, 0, 1)  # the crest's thick rim
    along = np.minimum(phi - _PHI_POSTERIOR, phi_end - phi) * radius
    wing = np.minimum.reduce([thick / 2 - np.abs(rho - 1.0) * radius, crest_z - z, z - p["bottom"] + 10.0, along])
    return np.maximum(wing, _auricular_margin(x, y, z, p["auricular"]))


def _auricular_margin(x, y, z, a) -> np.ndarray:
    """Margin (mm) of the block that joins the wing to the sacrum; it follows the sacrum's backward slope."""
    w = np.clip((a["top"] - z) / (a["top"] - a["bottom"]), 0.0, 1.0)
    y_c = a["y_top"] + (a["y_bottom"] - a["y_top"]) * w
    half_z = (a["top"] - a["bottom"]) / 2
    f = (np.abs((x - a["x"]) / a["half_x"]) ** 3 + np.abs((y - y_c) / a["half_y"]) ** 3
         + np.abs((z - (a["top"] + a["bottom"]) / 2) / half_z) ** 3) ** (1 / 3)
    return (1.0 - f) * min(a["half_x"], a["half_y"])


def _block(grid, n_sub, shape, origin, p):
    """Fine-array slices covering both ilia (None when out of view)."""
    half = p["rx"][1] + 15.0
    lo = origin + np.array([-half, p["centre_a"] - p["ry"][1] - 25.0, p["bottom"] - 15.0])
    hi = origin + np.array([half, p["centre_a"] + p["ry"][1] + 15.0, p["crest"] + 10.0])
    corners = np.array(np.meshgrid(*zip(lo, hi), indexing="ij")).reshape(3, -1).T
    ijk = grid.ras_to_ijk(corners)
    ijk[:, 2] = (ijk[:, 2] + 0.5) * n_sub - 0.5
    a = np.floor(ijk.min(0)).astype(int)
    b = np.ceil(ijk.max(0)).astype(int) + 1
    sl = tuple(slice(max(0, l), min(n, h)) for l, h, n in zip(a[::-1], b[::-1], shape))
    return None if any(s.stop <= s.start for s in sl) else sl


def _margin_on_block(grid, n_sub, sl, params, spacing_fine) -> np.ndarray:
    """The ilia's margin on the fine block: evaluated on a grid about COARSE_MM apart and upsampled
    trilinearly (the margin is distance-like, so this is accurate and some 20x cheaper)."""
    step = [max(1, int(round(COARSE_MM / sp))) for sp in spacing_fine[::-1]]  # array order k, j, i
    axes = [np.arange(s.start, s.stop + st, st, dtype=np.float32)[: -(-(s.stop - s.start) // st) + 1]
            for s, st in zip(sl, step)]
    kk, jj, ii = np.meshgrid(*axes, indexing="ij")
    m = grid.ijk_to_ras().astype(np.float32)
    kc = (kk + np.float32(0.5)) / np.float32(n_sub) - np.float32(0.5)
    x, y, z = (m[r, 0] * ii + m[r, 1] * jj + m[r, 2] * kc + np.float32(m[r, 3] - params["origin"][r]) for r in range(3))
    coarse = _ilium_margin(np.abs(x), y, z, params).astype(np.float32)
    side = (x > 0).astype(np.float32)
    both = torch.from_numpy(np.stack([coarse, side]))[None]
    size = [(n - 1) * st + 1 for n, st in zip(coarse.shape, step)]
    if all(n > 1 for n in coarse.shape):
        both = torch.nn.functional.interpolate(both, size=size, mode="trilinear", align_corners=True)
    fine = both[0, :, : sl[0].stop - sl[0].start, : sl[1].stop - sl[1].start, : sl[2].stop - sl[2].start].numpy()
    return fine[0], fine[1] > 0.5


def draw_ilia(tissue, labels, grid, n_sub: int, params: dict | None, spacing_fine, cortical: int, cancellous: int) -> None:
    """Paint both ilia into ``tissue`` / ``labels`` ([k', j, i] arrays), in place, off the vertebrae."""
    if params is None:
        return
    sl = _block(grid, n_sub, tissue.shape, params["origin"], params)
    if sl is None:
        return
    margin, right = _margin_on_block(grid, n_sub, sl, params, spacing_fine)
    bone = margin > 0
    if not bone.any():
        return
    # the joint space: no ilium within JOINT_MM of any vertebra (sacral alae included)
    size = [2 * int(np.ceil(JOINT_MM / sp)) + 1 for sp in spacing_fine[::-1]]
    near = ndimage.maximum_filter((labels[sl] > 0).view(np.uint8), size=size) > 0
    bone &= ~near
    t_sub, l_sub = tissue[sl], labels[sl]
    t_sub[bone] = cortical
    t_sub[bone & (margin > CORTEX_MM)] = cancellous
    l_sub[bone & right] = PELVIS_LABELS["Right ilium"]
    l_sub[bone & ~right] = PELVIS_LABELS["Left ilium"]


def coccyx_segments(anatomy, rng) -> list[tuple[float, float, float]]:
    """(arc length of centre, half height, half width) of 3-4 small segments below S5, tapering."""
    last = anatomy.vertebrae[-1]
    if last.region != "sacral" or last.name == "S1":
        return []
    s = last.s + last.size.height / 2 + rng.uniform(1.5, 3.0)
    out = []
    for k in range(int(rng.integers(3, 5))):
        height = rng.uniform(6.0, 9.0) * (1 - 0.15 * k)
        out.append((s + height / 2, height / 2, max(3.0, last.size.width / 2 * (0.8 - 0.2 * k))))
        s += height + rng.uniform(1.0, 2.0)
    return out
