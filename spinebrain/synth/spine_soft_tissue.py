"""The smooth soft tissue around a generated spine: skin, fat, muscle, lungs, canal and ribs' phase.

Fields are functions of the straightened coordinates (s along the spine, u right, v anterior),
evaluated on the renderer's coarse grid and thresholded at full resolution (:mod:`.spine_render`).
Per-level sizes are tables of (level, mm) anchors interpolated along s.
"""

from __future__ import annotations

import numpy as np

from spinebrain.synth.spine_anatomy import SpineAnatomy


# ----------------------------------------------------------------------------------------------
# per-level parameters as functions of s


def _level_table(anatomy: SpineAnatomy) -> dict[str, np.ndarray]:
    vs = anatomy.vertebrae
    c2 = anatomy.by_name("C2")
    body = lambda v: v if v.name != "C1" else c2  # noqa: E731  (C1 has no body: the canal follows C2)
    return {
        "s": np.array([v.s for v in vs]),
        "a": np.array([body(v).size.width / 2 for v in vs]),
        "b": np.array([body(v).size.depth / 2 for v in vs]),
        "ca": np.array([body(v).size.canal_width / 2 for v in vs]),
        "cb": np.array([body(v).size.canal_depth / 2 for v in vs]),
        "tp": np.array([v.size.transverse_span / 2 for v in vs]),
        "spl": np.array([v.size.spinous_length for v in vs]),
    }


def _anchor(anatomy: SpineAnatomy, pairs) -> tuple[np.ndarray, np.ndarray]:
    """(s, value) anchors from (level name, value) pairs, skipping levels this spine lacks."""
    pts = [(anatomy.by_name(n).s, val) for n, val in pairs if anatomy.by_name(n) is not None]
    s, val = zip(*pts)
    return np.array(s), np.array(val, float)


def _interp(s, anchors) -> np.ndarray:
    return np.interp(s, anchors[0], anchors[1])


# ----------------------------------------------------------------------------------------------
# soft tissue (coarse level sets)


def soft_tissue_fields(anatomy: SpineAnatomy, s, u, v, rng) -> dict[str, np.ndarray]:
    h = anatomy.habitus
    lv = _level_table(anatomy)
    a, b = np.interp(s, lv["s"], lv["a"]), np.interp(s, lv["s"], lv["b"])
    ca, cb = np.interp(s, lv["s"], lv["ca"]), np.interp(s, lv["s"], lv["cb"])
    vc = -(b + cb)  # canal centre: right behind the body
    width = _interp(s, _anchor(anatomy, [("C1", 55), ("C4", 52), ("C7", 68), ("T2", 135), ("T6", 150),
                                         ("T10", 150), ("L1", 145), ("L3", 145), ("L5", 160), ("S1", 170),
                                         ("S3", 160)])) * h["width"]
    front = _interp(s, _anchor(anatomy, [("C1", 45), ("C4", 55), ("C7", 60), ("T2", 120), ("T6", 165),
                                         ("T10", 175), ("L1", 160), ("L3", 150), ("L5", 140), ("S1", 130),
                                         ("S3", 110)])) * h["depth"]
    back = _interp(s, _anchor(anatomy, [("C1", 60), ("C4", 62), ("C7", 70), ("T2", 65), ("T6", 62),
                                        ("T12", 70), ("L3", 80), ("S1", 80), ("S3", 55)])) * h["muscle"]
    neck = s < anatomy.by_name("C7").s + 15
    fat = np.where(neck, 0.4, 1.0) * h["fat_mm"]
    out = {}
    centre, half = (front - back) / 2, (front + back) / 2
    out["inner"] = (u / width) ** 2 + ((v - centre) / half) ** 2
    out["skin"] = (u / (width + fat)) ** 2 + ((v - centre) / (half + fat)) ** 2

    # muscle: posterior compartment, psoas, trunk wall, whole neck except its visceral column
    posterior = np.maximum((v - vc - 4) / 20, (np.abs(u) - (a + 45 * h["muscle"])) / 20)
    rp = _interp(s, _anchor(anatomy, [("T12", 0.5), ("L1", 8), ("L3", 16), ("L5", 22), ("S1", 24), ("S3", 18)]))
    in_lumbar = (s > anatomy.by_name("T12").s if anatomy.by_name("T12") else s > 0)
    psoas = np.where(in_lumbar, ((np.abs(u) - a - 0.8 * rp) / (rp + 1e-3)) ** 2 + ((v - 0.1 * b) / (0.9 * rp + 1e-3)) ** 2 - 1, 1.0)
    wall = np.where(neck, 1.0, 0.8 - out["inner"])
    neck_muscle = np.where(neck, np.maximum(np.minimum((np.abs(u) - 20) / 10, (b + 4 - v) / 10), -1), 1.0)
    out["muscle"] = np.minimum.reduce([posterior, psoas, wall / 0.2, neck_muscle])

    # rib cage ellipse through the transverse-process tips; lungs inside it above the diaphragm
    thoracic = [x for x in anatomy.instances() if x.ribs]
    tp = np.interp(s, lv["s"], lv["tp"])
    ra = _interp(s, _anchor(anatomy, [("T1", 60), ("T3", 95), ("T6", 120), ("T9", 128), ("T12", 118)])) * h["width"]
    rc = _interp(s, _anchor(anatomy, [("T1", 25), ("T3", 45), ("T6", 65), ("T9", 70), ("T12", 65)])) * h["depth"]
    v_tip = vc - 4
    rb = (rc - v_tip) / np.sqrt(np.clip(1 - (tp / ra) ** 2, 0.2, 1))
    cage = (u / ra) ** 2 + ((v - rc) / rb) ** 2
    out["cage"], out["cage_scale"] = cage, np.sqrt(ra * rb)
    out["cage_ok"] = np.maximum((tp - 6 - np.abs(u)) / 10, (v - rc - 0.45 * rb) / 10)  # <0 where ribs may be
    rib_s = np.array([x.s - 0.15 * x.size.height for x in thoracic])
    drop = rng.uniform(0.35, 0.6)
    shifted = s - drop * np.clip(v - v_tip, 0, None)
    out["rib_phase"] = np.interp(shifted, rib_s, np.arange(len(rib_s)), left=-9, right=len(rib_s) + 8)
    spacing = float(np.diff(rib_s).mean()) if len(rib_s) > 1 else 25.0
    out["rib_spacing"] = spacing
    top = thoracic[0].s - 30
    diaphragm = anatomy.by_name("T9").s + h["diaphragm_level"] * spacing if anatomy.by_name("T9") else top + 200
    base = diaphragm + 45 * np.clip(cage, 0, 1)  # dome: lower towards the periphery
    mediastinum = np.maximum(np.minimum((35 + 0.3 * (v - vc) - np.abs(u)) / 10, 1), (vc - v) / 10)
    vertical = np.maximum((top - s) / 10, (s - base) / 10)
    out["lung"] = np.maximum.reduce([(cage - 0.9) / 0.1, -mediastinum, vertical, (a + 8 - np.abs(u)) / 10])
    out["trachea"] = np.where((s > anatomy.by_name("C5").s) & (s < anatomy.by_name("T4").s),
                              (u / 8) ** 2 + ((v - b - 22) / 8) ** 2, 9.0)

    out["aorta"] = _aorta(anatomy, s, u, v, b, rng)

    # head above C1: skull shell around a brain-like interior
    c1 = anatomy.by_name("C1").s
    out["head"] = (u / (70 * h["width"])) ** 2 + ((v - 15) / 92) ** 2 + ((s - (c1 - 75)) / 85) ** 2
    out["skull_ok"] = s < c1 - 14

    # spinal canal: dural sac (CSF) down to S2, cord (with conus) down to about L1/L2
    cord_end = anatomy.by_name("L1").s + rng.uniform(-10, 25) if anatomy.by_name("L1") else anatomy.by_name("S1").s - 60
    dural_end = anatomy.by_name("S2").s
    sac_a, sac_b = ca * 0.9, cb * 0.9
    out["csf"] = np.where(s < dural_end, (u / sac_a) ** 2 + ((v - vc) / sac_b) ** 2, 9.0)
    out["canal_fat"] = np.where(s < anatomy.by_name("S4").s, (u / ca) ** 2 + ((v - vc) / cb) ** 2, 9.0)
    cord_r = np.clip((cord_end - s) / 25.0, 0, 1)
    cord_a = np.where(s < anatomy.by_name("C7").s, 6.5, 4.5) * cord_r + 1e-3
    cord_b = np.where(s < anatomy.by_name("C7").s, 4.0, 3.8) * cord_r + 1e-3
    out["cord"] = (u / cord_a) ** 2 + ((v - vc + 0.5) / cord_b) ** 2
    return out


def _aorta(anatomy: SpineAnatomy, s, u, v, b, rng) -> np.ndarray:
    """Descending aorta left-anterior of the bodies from T4, its bifurcation at L4 into the common
    iliac arteries (level set, < 1 inside). A distractor: bright on contrast CT, dark or bright on MR."""
    top = anatomy.by_name("T4") or anatomy.vertebrae[10]
    lumbar = [x for x in anatomy.vertebrae if x.region == "lumbar"]
    fork = (lumbar[-2] if len(lumbar) > 1 else anatomy.by_name("S1")).s + rng.uniform(-15, 10)
    diaphragm = (anatomy.by_name("L1") or lumbar[0]).s if lumbar else fork
    radius = np.where(s < diaphragm, rng.uniform(10, 14), rng.uniform(8, 11))  # thoracic / abdominal
    trunk = ((u + 12 + 0.2 * b) / radius) ** 2 + ((v - b - radius - 2) / radius) ** 2
    spread = np.clip(s - fork, 0, None)
    iliac_r = 0.6 * radius
    iliac = np.minimum(((u - 8 - 0.55 * spread) / iliac_r) ** 2, ((u + 8 + 0.55 * spread) / iliac_r) ** 2) \
        + ((v - b - iliac_r - 2 + 0.1 * spread) / iliac_r) ** 2
    field = np.where(s < fork, trunk, iliac)
    return np.where((s > top.s) & (s < fork + 70), field, 9.0)
