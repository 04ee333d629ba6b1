"""Rib evidence: does a detected vertebra carry a rib? The last one that does is T12 (a second anchor).

Why: counting from the sacrum cannot tell a spine with six lumbar vertebrae (or four) from a normal one,
and a short view with no sacrum cannot be counted at all; the last rib names T12 whatever the count
below it. The heatmap detector sees three sagittal slices near the midline, where ribs never show, so
this is a separate small classifier on planes across the spine through each detected body: five planes
perpendicular to the local spine axis, 192 x 192 mm at 3 mm pixels, from half a body above to half a
body below its centre (rib heads and necks sit beside the body, the shafts leave laterally), plus a
channel that is 1 inside the scan's field of view (a narrow sagittal MR shows no ribs: the classifier
must be able to say it cannot tell).

Torch-free (SimpleITK and NumPy): the command line runs the classifier's ONNX export.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from .heatmap import looks_like_ct, normalise_slab

#: Plane offsets along the spine axis (mm; + = caudal), plane size (pixels) and pixel (mm).
PLANE_OFFSETS_MM = (-10.0, -5.0, 0.0, 5.0, 10.0)
PLANE_PX, PLANE_PIXEL_MM = 64, 3.0
CHANNELS = len(PLANE_OFFSETS_MM) + 1  # the planes and the field-of-view mask
_OUTSIDE = -1.0e9  # resampled value outside the scan (no scan holds it)
#: The scan must reach this far left and right of a body (mm) for its rib answer to count: beyond the transverse
#: processes' tips (35-45 mm), where a rib and a process differ. Sagittal MR of the lumbar spine (50-80 mm wide) does not.
MIN_LATERAL_MM = 60.0


#: The largest R component a local spine direction may have (about 64 degrees off S-I; a scoliotic curve's local tilt
#: stays well below): beyond, the neighbours lie side by side and the body is taken as straight up and down.
_MOST_LATERAL_CAUDAL = 0.9


def spine_axes(positions: np.ndarray) -> np.ndarray:
    """(N, 3, 3): per body (RAS, ordered head to feet) its right, anterior and caudal unit axes.

    The caudal axis is the local direction of the chain (central difference; one-sided at the ends; straight
    down with one body, or where the neighbours lie nearly side by side: a detection beside the spine at a body's
    height, fresh 174005, left no right axis and the resampling refused the grid); right and anterior are RAS x and y
    made perpendicular to it.
    """
    positions = np.asarray(positions, float).reshape(-1, 3)
    axes = np.zeros((len(positions), 3, 3))
    for k in range(len(positions)):
        before, after = positions[max(k - 1, 0)], positions[min(k + 1, len(positions) - 1)]
        caudal = after - before if len(positions) > 1 else np.zeros(3)
        caudal = caudal / max(np.linalg.norm(caudal), 1e-9)
        if abs(caudal[0]) > _MOST_LATERAL_CAUDAL or not caudal.any():
            caudal = np.array([0.0, 0.0, -1.0])
        right = np.array([1.0, 0.0, 0.0]) - caudal[0] * caudal
        right /= max(np.linalg.norm(right), 1e-9)
        axes[k] = right, np.cross(right, caudal), caudal
    return axes


def raw_planes(image: sitk.Image, centre_ras, axes: np.ndarray) -> np.ndarray:
    """(planes, PLANE_PX, PLANE_PX) float32 scan values on the planes through one body; :data:`_OUTSIDE` outside.

    ``axes``: the body's (right, anterior, caudal) unit vectors (RAS), as :func:`spine_axes` gives them.
    """
    right, anterior, caudal = (np.asarray(a, float) for a in axes)
    to_lps = np.array([-1.0, -1.0, 1.0])
    half = (PLANE_PX - 1) / 2.0 * PLANE_PIXEL_MM
    first = np.asarray(centre_ras, float) - half * right - half * anterior + PLANE_OFFSETS_MM[0] * caudal
    step = float(np.diff(PLANE_OFFSETS_MM).mean())
    direction = np.stack([right * to_lps, anterior * to_lps, caudal * to_lps], axis=1)  # columns: grid axes
    planes = sitk.Resample(image, [PLANE_PX, PLANE_PX, len(PLANE_OFFSETS_MM)], sitk.Transform(), sitk.sitkLinear,
                           (first * to_lps).tolist(), (PLANE_PIXEL_MM, PLANE_PIXEL_MM, step),
                           direction.ravel().tolist(), _OUTSIDE, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(planes)  # (planes, anterior, right)


def normalised(raw: np.ndarray, ct: bool) -> np.ndarray:
    """(CHANNELS, PLANE_PX, PLANE_PX): the planes scaled as the heatmap band is (0 outside) and the field-of-view mask."""
    inside = raw > _OUTSIDE / 2
    out = np.zeros((CHANNELS, PLANE_PX, PLANE_PX), np.float32)
    if inside.any():
        out[:-1] = np.where(inside, normalise_slab(np.where(inside, raw, np.median(raw[inside])), ct), 0.0)
    out[-1] = inside[len(PLANE_OFFSETS_MM) // 2]
    return out


def body_planes(image: sitk.Image, positions: np.ndarray) -> np.ndarray:
    """(N, CHANNELS, PLANE_PX, PLANE_PX): the planes of every body, ``positions`` (RAS) ordered head to feet.

    CT or MR is judged on the planes' own values (fat and air below -150 HU), not on the whole scan: cheaper.
    """
    positions = np.asarray(positions, float).reshape(-1, 3)
    if not len(positions):
        return np.zeros((0, CHANNELS, PLANE_PX, PLANE_PX), np.float32)
    raw = [raw_planes(image, p, a) for p, a in zip(positions, spine_axes(positions))]
    values = np.concatenate([r[r > _OUTSIDE / 2] for r in raw])
    ct = bool(len(values)) and looks_like_ct(values)
    return np.stack([normalised(r, ct) for r in raw])


# ------------------------------------------------------------------------------------ the classifier at run time

#: Card ``extra["ribs"]``: ``weights_file`` / ``sha256`` (safetensors), ``network`` (architecture, kwargs), ``onnx``
#: (``file``, ``sha256``, ``weights_sha256``), ``share`` (the posterior a rib boundary needs to name by), ``floor``;
#: optionally ``sacrum``: a second classifier of the same planes (the same keys for its files) whose last answer is
#: P(is the sacrum) (:mod:`.sacrum_evidence`), kept apart so that the rib answers every rule was measured on stay.
CARD_KEY, SACRUM_KEY = "ribs", "sacrum"


class RibModel:
    """The package's rib classifier, torch or its ONNX export: ``probabilities(planes)`` -> (N,) P(carries a rib);
    ``answers(planes)`` -> (N, 1 or 2): that, and P(is the sacrum) where the package holds a sacrum classifier."""

    def __init__(self, network, device="cpu", min_lateral_mm: float = MIN_LATERAL_MM, sacrum=None):
        self.network, self.device, self.sacrum = network, device, sacrum
        self.min_lateral_mm = float(min_lateral_mm)  # narrower scans get no answer (:func:`with_rib_evidence`)

    def move_to(self, device) -> None:
        """Run the torch networks on ``device`` (an ONNX export stays on the CPU)."""
        for network in (self.network, self.sacrum):
            if hasattr(network, "to"):
                network.to(device)
                self.device = device

    def probabilities(self, planes: np.ndarray, batch: int = 32) -> np.ndarray:
        """(N,) P(carries a rib)."""
        return self.answers(planes, batch)[:, 0]

    def answers(self, planes: np.ndarray, batch: int = 32) -> np.ndarray:
        """(N, 1) P(carries a rib), or (N, 2) with P(is the sacrum) (the sacrum classifier's last answer)."""
        rib = _sigmoid(self._logits(self.network, planes, batch))[:, :1]
        if self.sacrum is None:
            return rib
        return np.concatenate([rib, _sigmoid(self._logits(self.sacrum, planes, batch))[:, -1:]], axis=1)

    def _logits(self, network, planes: np.ndarray, batch: int) -> np.ndarray:
        from ..models.onnx_network import OnnxNetwork

        if isinstance(network, OnnxNetwork):
            parts = [network(planes[k:k + batch]) for k in range(0, len(planes), batch)]
        else:
            import torch

            with torch.inference_mode():
                parts = [network(torch.from_numpy(np.ascontiguousarray(planes[k:k + batch], np.float32)).to(
                    self.device)).cpu().numpy() for k in range(0, len(planes), batch)]
        return np.concatenate(parts) if parts else np.zeros((0, 1))


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


def rib_export_usable(folder, card) -> bool:
    """True where the package has no rib classifier, or ONNX exports of its current weights (a run without torch)."""
    entry = card.extra.get(CARD_KEY)
    return not entry or all(_export_current(folder, part) for part in (entry, entry.get(SACRUM_KEY)) if part)


def _export_current(folder, entry: dict) -> bool:
    from pathlib import Path

    export = entry.get("onnx") or {}
    exported = Path(folder) / str(export.get("file", ""))
    return export.get("weights_sha256") == entry.get("sha256") and exported.is_file()


def load_rib_classifier(folder, card, device="cpu", onnx: bool = True) -> RibModel | None:
    """The rib classifier a heatmap package holds, with its sacrum classifier if it has one (None without a rib
    classifier); the files are checked against the card.

    ``onnx``: run the ONNX exports (CPU) when they name the current weights; else torch on ``device``.
    """
    from ..models.onnx_network import onnxruntime_installed

    entry = card.extra.get(CARD_KEY)
    if not entry:
        return None
    exported = onnx and rib_export_usable(folder, card) and onnxruntime_installed()
    network = _network(folder, card.id, entry, device, exported, "rib classifier")
    sacrum = entry.get(SACRUM_KEY)
    second = _network(folder, card.id, sacrum, device, exported, "sacrum classifier") if sacrum else None
    return RibModel(network, "cpu" if exported else device, float(entry.get("min_lateral_mm", MIN_LATERAL_MM)), second)


def _network(folder, card_id: str, entry: dict, device, exported: bool, what: str):
    """One classifier of a card entry: its ONNX export (``exported``) or its torch network on ``device``."""
    from pathlib import Path

    from ..errors import ModelError
    from ..models.package import sha256_file

    folder = Path(folder)
    weights = folder / str(entry.get("weights_file", ""))
    if not weights.is_file() or sha256_file(weights) != entry.get("sha256"):
        raise ModelError(f"The {what} {weights} of model {card_id!r} is missing or does not match the sha256 "
                         "in its card: it is corrupted; reinstall the model.")
    if exported:
        onnx_file = folder / str(entry["onnx"]["file"])
        if sha256_file(onnx_file) != entry["onnx"].get("sha256"):
            raise ModelError(f"The ONNX export {onnx_file} of model {card_id!r} does not match the sha256 in its "
                             "card: it is corrupted; reinstall the model.")
        from ..models.onnx_network import OnnxNetwork

        return OnnxNetwork(onnx_file, {}, 1)
    from safetensors.torch import load_file

    from ..models.network import network_class

    network = network_class(entry["network"]["architecture"])(**entry["network"].get("kwargs", {}))
    network.load_state_dict(load_file(str(weights)))
    return network.eval().to(device)


def rib_decision(card) -> dict:
    """The card's options for naming by the last rib (:data:`.rib_evidence.DEFAULT_RIBS` keys)."""
    from .rib_evidence import DEFAULT_RIBS

    entry = card.extra.get(CARD_KEY) or {}
    return {key: float(entry.get(key, value)) for key, value in DEFAULT_RIBS.items()}




def lateral_reach_mm(planes: np.ndarray) -> float:
    """How far the scan reaches left and right of the body (the smaller side, mm), on the middle plane's centre row."""
    row = planes[-1, PLANE_PX // 2]
    inside = np.flatnonzero(row > 0.5)
    if not len(inside):
        return 0.0
    middle = (PLANE_PX - 1) / 2.0
    return float(min(middle - inside.min(), inside.max() - middle)) * PLANE_PIXEL_MM


def with_rib_evidence(image: sitk.Image, candidates: list, classifier: RibModel | None, direction,
                      min_lateral_mm: float | None = None) -> list:
    """The candidates with ``rib`` (P(carries a rib)) from the planes through each, and ``sacrum`` (P(is the sacrum))
    where the classifier answers that too; unchanged without a classifier.

    A body the scan does not show ``min_lateral_mm`` (default: the classifier's, from its card) to both sides gets no answer (``rib`` None): the classifier,
    taught on generated scans, would answer from other cues there (measured: a real sagittal MR of 50 mm width had
    its T12 taken for rib-free).
    """
    from dataclasses import replace

    if classifier is None or not candidates:
        return candidates
    order = sorted(range(len(candidates)), key=lambda k: float(np.dot(candidates[k].position, direction)))
    planes = body_planes(image, np.array([candidates[k].position for k in order], float))
    reach = classifier.min_lateral_mm if min_lateral_mm is None else min_lateral_mm
    seen = np.array([lateral_reach_mm(p) >= reach for p in planes], bool)
    chances = np.full((len(order), 2), np.nan)
    if seen.any():
        answers = classifier.answers(planes[seen])
        chances[seen, :answers.shape[1]] = answers
    ribs = {k: [float(c) if np.isfinite(c) else None for c in row] for k, row in zip(order, chances)}
    return [replace(c, rib=ribs[k][0], sacrum=ribs[k][1]) for k, c in enumerate(candidates)]
