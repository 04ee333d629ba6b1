"""A dense heatmap detector for SpineLabel: a 2D U-Net on a few adjacent sagittal slices.

Instead of the paper's patch classifiers (:mod:`.detector`), one MONAI ``BasicUNet`` reads
``in_slices`` adjacent sagittal slices (2 mm pixels, 2 mm apart) and predicts, for the middle
slice, two heatmaps:

* ``vertebra`` -- a Gaussian around every vertebral-body centre (C1 ... S1, T13 / L6 included;
  not S2 and below), decaying in R too, so the stack of slice outputs peaks at the body centre in 3D;
* ``anchor`` -- the same around the last lumbar body (L5: the vertebra just above the sacrum),
  present only when the sacrum below it is in view. Every real set masks L5, while S1 is masked
  in few of them; and a U-Net sees enough context to tell L5 from L4 only with the sacrum in view.

Inference (:func:`heatmap_candidates`): the network runs on a band of sagittal slices around the
volume's middle R (every few slices first, then the slices near those that show bodies, on the part
of the plane around them: :func:`predict_band`); 3D local maxima of the stacked vertebra heatmap above a threshold,
thinned by non-maximum suppression, are the candidates (probability = peak height), and the best
anchor peak marks the candidate nearest it. The graphical model (:mod:`.graph`) names them, as for
the paper detector. Settings live in the card's ``extra["heatmap"]`` (defaults :data:`DEFAULT_HEATMAP`).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy import ndimage
from scipy.special import expit, softmax

from ..models.onnx_network import OnnxNetwork
from .architectures import HEATMAP
from .candidates import Detection, attach_anchor
from .graph import Candidate
from .slices import SagittalSlab, extract_sagittal_slab

ARCHITECTURE = HEATMAP
OUTPUTS = ("vertebra", "anchor")
#: Card ``extra["heatmap"]`` defaults: slice step and band half-width (mm), peak thresholds, peak window (mm),
#: the coarse-to-fine search (every 5th slice first) and the plane window of the later slices (:func:`spine_window`).
DEFAULT_HEATMAP = {"slice_step_mm": 2.0, "band_mm": 40.0, "threshold": 0.3, "anchor_threshold": 0.5,
                   "peak_window_mm": [10.0, 16.0], "nms_fraction": 0.5, "nms_r_scale": 0.4, "batch": 2,
                   "coarse_step": 5, "dense_mm": 20.0, "coarse_share": 0.3, "gap_threshold": 0.2,
                   "window_margin_mm": 40.0, "window_min_px": 128}
#: A body's R run is read from its heat's maximum within this many pixels of the peak on every slice: a spine
#: tilted in the coronal plane moves its bodies up or down from slice to slice (12 degrees: 4 mm over 20 mm).
RUN_REACH_PX = 2
#: Vertebra heat (on the coarse slices) that the windowed dense pass keeps in view.
WINDOW_LEVEL = 0.1
#: A gap between two successive detections is "one vertebra missing" when they lie this many median
#: steps apart; a weak peak within GAP_MIDDLE_SHARE of a step of the gap's middle fills it.
GAP_STEPS, GAP_MIDDLE_SHARE, GAP_OFF_SPINE_MM = (1.5, 2.5), 0.35, 25.0
#: CT is scaled with a fixed HU window (bone to fat), MR between robust percentiles.
CT_WINDOW_HU = (-250.0, 1250.0)
MR_PERCENTILES = (0.5, 99.5)


def __getattr__(name: str):
    """``HeatmapDetector`` (the torch network, :mod:`.heatmap_network`) imported when first asked for: naming
    scans with the ONNX export needs no torch (the card's architecture keeps this module's path)."""
    if name == "HeatmapDetector":
        from .heatmap_network import HeatmapDetector

        return HeatmapDetector
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ------------------------------------------------------------------------------------ intensities


def looks_like_ct(arrays) -> bool:
    """Hounsfield units: fat and air lie well below 0, which MR magnitudes never do."""
    return float(np.percentile(arrays, 0.5)) < -150.0


def normalise_slab(arrays, ct: bool | None = None, window=CT_WINDOW_HU) -> np.ndarray:
    """To [0, 1]: CT by the HU ``window``, MR between robust percentiles of the whole slab."""
    arrays = np.asarray(arrays, dtype=np.float32)
    ct = looks_like_ct(arrays) if ct is None else ct
    low, high = window if ct else np.percentile(arrays, MR_PERCENTILES)
    if high <= low:
        return np.zeros_like(arrays)
    return np.clip((arrays - low) / (high - low), 0.0, 1.0).astype(np.float32)


def slice_stack(arrays: np.ndarray, index: int, in_slices: int) -> np.ndarray:
    """The ``in_slices`` slices centred on ``index`` (edge slices repeated at the slab's ends)."""
    half = in_slices // 2
    picks = np.clip(np.arange(index - half, index - half + in_slices), 0, len(arrays) - 1)
    return arrays[picks]


# -------------------------------------------------------------------------------------- targets


def gaussian_heatmap(shape, centres_px, slice_offsets_mm, pixel_mm: float, sigma_mm: float, sigma_r_mm: float):
    """Max over centres of exp(-d_inplane^2 / 2 sigma^2 - d_R^2 / 2 sigma_R^2) on a (rows, cols) grid.

    ``centres_px``: (N, 2) row, column; ``slice_offsets_mm``: (N,) R distance of each centre from the slice.
    """
    heatmap = np.zeros(shape, np.float32)
    rows, cols = np.arange(shape[0])[:, None], np.arange(shape[1])[None, :]
    for (row, col), offset in zip(np.asarray(centres_px, float).reshape(-1, 2), np.ravel(slice_offsets_mm)):
        distance2 = ((rows - row) ** 2 + (cols - col) ** 2) * pixel_mm**2
        np.maximum(heatmap, np.exp(-distance2 / (2 * sigma_mm**2) - offset**2 / (2 * sigma_r_mm**2)), out=heatmap)
    return heatmap


# ------------------------------------------------------------------------------------ inference


def settings(card) -> dict:
    return {**DEFAULT_HEATMAP, **card.extra.get("heatmap", {})}


def predict_band(network: HeatmapDetector, image, pixel_mm: float, options: dict, device="cpu"):
    """(slab, heatmaps (outputs, slices, rows, cols)) on the band of sagittal slices around the middle R.

    Coarse to fine (card ``coarse_step``, ``dense_mm``, ``coarse_share``): the network first runs on
    every ``coarse_step``-th slice of the band; then on every slice within ``dense_mm`` of each
    coarse slice whose vertebra evidence reaches ``coarse_share`` of the best one's. A body's
    heatmap spans about +-15 mm in R, so the slices left out lie away from every body and stay 0.
    ``coarse_step`` 1 runs every slice (the plain dense band).

    With ``window_margin_mm`` > 0 the later slices run only on the rows and columns around the
    coarse slices' vertebra heat (:func:`spine_window`): most of a wide CT plane is air, organs and
    table, and the U-Net is most of the time.
    """
    step = float(options["slice_step_mm"])
    each = int(round(float(options["band_mm"]) / step))
    slab = extract_sagittal_slab(image, pixel_mm, each, step)
    arrays = normalise_slab(slab.arrays)
    heatmaps = int(options.get("heatmaps", network.kwargs["outputs"]))
    maps = np.zeros((network.kwargs["outputs"], *arrays.shape), np.float32)
    coarse = list(range(len(arrays) % int(options["coarse_step"]) // 2, len(arrays), int(options["coarse_step"])))
    _run_slices(network, arrays, coarse, maps, heatmaps, int(options["batch"]), device)
    evidence = np.array([_slice_evidence(maps[0, s], float(options["threshold"])) for s in coarse])
    if evidence.max() > 0:
        reach = int(round(float(options["dense_mm"]) / step))
        chosen = [s for s, e in zip(coarse, evidence) if e >= float(options["coarse_share"]) * evidence.max()]
        dense = sorted({d for s in chosen for d in range(s - reach, s + reach + 1) if 0 <= d < len(arrays)} - set(coarse))
        window = spine_window(maps[0, coarse], options, pixel_mm)
        _run_slices(network, arrays, dense, maps, heatmaps, int(options["batch"]), device, window)
        done = set(coarse) | set(dense)
        for _ in range(len(arrays)):  # a peak whose R run reaches slices not run yet: run those, look again
            todo = _unfinished_peaks(maps[0], done, options)
            if not todo:
                break
            _run_slices(network, arrays, todo, maps, heatmaps, int(options["batch"]), device, window)
            done |= set(todo)
    return slab, maps


def spine_window(vertebra: np.ndarray, options: dict, pixel_mm: float) -> tuple[slice, slice]:
    """(rows, columns) of the plane around the vertebra heat of the slices run so far.

    ``vertebra``: (slices, rows, columns). The box holding heat >= :data:`WINDOW_LEVEL` grows by
    ``window_margin_mm`` each way and to at least ``window_min_px`` (the training patch: the network
    never saw a smaller field), within the plane. The whole plane when there is no margin setting, no
    heat, or a plane narrower than that patch in either axis (a thin CT crop: cutting its other axis
    would leave the network a strip it was never trained on, and save little).
    """
    rows, cols = vertebra.shape[1:]
    margin_mm = float(options.get("window_margin_mm") or 0.0)
    least = int(options.get("window_min_px") or 0)
    hot = vertebra.max(axis=0) >= WINDOW_LEVEL
    if margin_mm <= 0 or not hot.any() or min(rows, cols) < least:
        return slice(0, rows), slice(0, cols)
    margin = int(np.ceil(margin_mm / pixel_mm))
    return tuple(_widened(extent.start - margin, extent.stop + margin, least, size)
                 for extent, size in zip(_true_box(hot), (rows, cols)))


def _true_box(mask: np.ndarray) -> tuple[slice, ...]:
    """Per axis, the index range holding every True voxel of ``mask`` (which has at least one)."""
    others = [tuple(a for a in range(mask.ndim) if a != axis) for axis in range(mask.ndim)]
    return tuple(slice(int(hits[0]), int(hits[-1]) + 1) for hits in (np.flatnonzero(mask.any(axis=o)) for o in others))


def _widened(start: int, stop: int, least: int, size: int) -> slice:
    """[start, stop) grown evenly to ``least`` long, then moved (not shrunk) to fit in [0, size)."""
    grow = max(least - (stop - start), 0)
    start, stop = start - grow // 2, stop + grow - grow // 2
    shift = max(-start, 0) - max(stop - size, 0)
    return slice(max(start + shift, 0), min(stop + shift, size))


def _unfinished_peaks(vertebra: np.ndarray, done: set[int], options: dict) -> list[int]:
    """Slices not run yet that a peak's test needs: its maximum-filter window and its R run (+1 slice each side)."""
    step = float(options["slice_step_mm"])
    half = round(float(options["peak_window_mm"][0]) / step / 2)
    window = (2 * half + 1, 3, 3)
    todo = set()
    for index, height in find_peaks(vertebra, float(options["threshold"]), window, refine=False):
        s, row, col = (int(v) for v in index)
        low, high = s, s
        while low - 1 in done and vertebra[low - 1, row, col] > 0.5 * height:
            low -= 1
        while high + 1 in done and vertebra[high + 1, row, col] > 0.5 * height:
            high += 1
        todo |= {n for n in range(min(low - 1, s - half), max(high + 1, s + half) + 1)
                 if 0 <= n < len(vertebra) and n not in done}
    return sorted(todo)


def _slice_evidence(vertebra_map: np.ndarray, threshold: float) -> float:
    """How much body one slice shows: the summed vertebra heat above the peak threshold."""
    return float(vertebra_map[vertebra_map >= threshold].sum())


def _run_slices(network, arrays, indices, maps, heatmaps: int, batch: int, device,
                window: tuple[slice, slice] = (slice(None), slice(None))) -> None:
    """The network on the stacks centred on ``indices`` (within the plane ``window``), written into ``maps``
    (sigmoid heatmaps, softmax levels); ``maps`` stays 0 outside the window."""
    rows, cols = window
    in_slices = int(network.kwargs["in_slices"])
    for start in range(0, len(indices), batch):
        chunk = indices[start:start + batch]
        stacks = np.stack([slice_stack(arrays, s, in_slices)[:, rows, cols] for s in chunk])
        logits = _logits(network, stacks, device)
        out = [expit(logits[:, :heatmaps])]
        if logits.shape[1] > heatmaps:  # level classes: one distribution per pixel
            out.append(softmax(logits[:, heatmaps:], axis=1))
        maps[:, chunk, rows, cols] = np.concatenate(out, axis=1).transpose(1, 0, 2, 3)


def _logits(network, stacks: np.ndarray, device) -> np.ndarray:
    """The network's logits of a batch, as float32 numpy: the ONNX export directly, a torch network on ``device``."""
    if isinstance(network, OnnxNetwork):  # numpy in, numpy out, no torch imported
        return network(stacks)
    import torch

    with torch.inference_mode():
        return network(torch.from_numpy(stacks).to(device)).float().cpu().numpy()


def find_peaks(volume: np.ndarray, threshold: float, window_px, refine: bool = True) -> list[tuple[np.ndarray, float]]:
    """3D local maxima of a (slices, rows, cols) heatmap above ``threshold``: (sub-voxel index, height).

    Hand-written (a maximum filter and a weighted centroid): MONAI and SimpleITK offer no 3D peak
    finder with sub-voxel refinement. The centroid is taken over the peak's neighbourhood values
    above half its height, so a peak between two slices lands between them.
    """
    window_px = np.maximum(np.asarray(window_px, int), 1)
    hot = volume >= threshold
    if not hot.any():
        return []
    # only the box of voxels above the threshold can hold a peak; the heat (>= 0) outside it is lower
    # than any of them, as the filter's constant 0 is, so searching the box alone finds the same peaks
    box = _true_box(hot)
    part = volume[box]
    local_max = (ndimage.maximum_filter(part, size=window_px, mode="constant") == part) & hot[box]
    plateaus, _ = ndimage.label(local_max, structure=np.ones((3, 3, 3), bool))  # equal neighbours: one peak
    flat = plateaus.ravel()
    members = np.flatnonzero(flat)
    _, firsts = np.unique(flat[members], return_index=True)  # each plateau's first voxel in raster order
    offset = np.array([b.start for b in box])
    peaks = []
    for index in np.stack(np.unravel_index(members[firsts], part.shape), -1) + offset:
        height = float(volume[tuple(index)])
        if not refine:  # the voxel of the maximum is enough
            peaks.append((index.astype(float), height))
            continue
        box = tuple(slice(max(i - 1, 0), i + 2) for i in index)
        values = np.clip(volume[box] - 0.5 * height, 0.0, None)
        grid = np.stack(np.meshgrid(*[np.arange(b.start, b.start + n) for b, n in zip(box, values.shape)],
                                    indexing="ij"), -1)
        position = (grid * values[..., None]).sum(axis=(0, 1, 2)) / values.sum()
        rows, cols = (slice(max(i - RUN_REACH_PX, 0), i + RUN_REACH_PX + 1) for i in index[1:])
        position[0] = _run_centre(volume[:, rows, cols].max(axis=(1, 2)), int(index[0]), 0.5 * height)
        peaks.append((position, height))
    return peaks


def _run_centre(profile: np.ndarray, index: int, level: float) -> float:
    """Weighted centre of the run of ``profile`` above ``level`` that holds ``index``.

    Across R the heatmap of a body is often flat-topped (a body is 40 mm wide and its middle
    slices look alike), so the 3-voxel centroid would stick to one side of the plateau.
    """
    low = index
    while low > 0 and profile[low - 1] > level:
        low -= 1
    high = index
    while high < len(profile) - 1 and profile[high + 1] > level:
        high += 1
    weights = profile[low:high + 1] - level
    return float(np.dot(np.arange(low, high + 1), weights) / weights.sum()) if weights.sum() > 0 else float(index)


def peak_points(slab: SagittalSlab, volume: np.ndarray, threshold: float, options: dict) -> list[tuple[np.ndarray, float]]:
    """Peaks as (RAS position, height), strongest first, none closer than the card's NMS distance to a stronger one."""
    slice_mm, inplane_mm = (float(v) for v in options["peak_window_mm"])
    step = float(options["slice_step_mm"])
    window = (2 * round(slice_mm / step / 2) + 1, 2 * round(inplane_mm / slab.pixel_mm / 2) + 1,
              2 * round(inplane_mm / slab.pixel_mm / 2) + 1)
    peaks = [(slab.pixel_to_ras(*index), height) for index, height in find_peaks(volume, threshold, window)]
    return sorted(peaks, key=lambda p: -p[1])


def suppress_near(points: list[tuple[np.ndarray, float]], distance_mm: float,
                  r_scale: float = 1.0) -> list[tuple[np.ndarray, float]]:
    """Greedy non-maximum suppression (strongest first): one body gives one point.

    Left-right (R) differences count ``r_scale`` times: a body is wider than it is tall, so a weaker
    answer beside a body centre, at its height, is the same body seen on its lateral slices.
    """
    scale = np.array([r_scale, 1.0, 1.0])
    kept: list[tuple[np.ndarray, float]] = []
    for position, height in points:
        if all(np.linalg.norm((position - other) * scale) >= distance_mm for other, _ in kept):
            kept.append((position, height))
    return kept


def gap_fillers(strong: list[tuple[np.ndarray, float]], weak: list[tuple[np.ndarray, float]], step_mm: float,
                direction: np.ndarray, r_scale: float = 1.0) -> list[tuple[np.ndarray, float]]:
    """Weak peaks (below the detection threshold) that fill a one-vertebra gap between successive detections.

    A compressed or otherwise unusual body answers below the threshold while its neighbours answer
    clearly (L1 of the VerSe map in A8); the graph would then skip its level. A weak peak counts only
    where two successive detections along the spine lie ``GAP_STEPS`` local steps apart (the gaps
    next to this one, as steps shrink from the lumbar to the thoracic spine; ``step_mm`` without
    neighbours) and it sits near the middle between them (left-right offsets count ``r_scale`` times,
    as in :func:`suppress_near`), so the graph is offered exactly the vertebra the shape says is
    there (at the neighbours' mean R). Detections more than ``GAP_OFF_SPINE_MM`` left or right of the
    others' median are off the spine and left out of the gaps, yet one in a gap's middle fills it (a spine
    curved to one side: else its own peak doubles it). Hand-written: a rule on our detections; no library has it.
    """
    if len(strong) < 2:
        return []
    middle_r = float(np.median([p[0] for p, _ in strong]))
    on_spine = [p for p, _ in strong if abs(float(p[0]) - middle_r) <= GAP_OFF_SPINE_MM]
    ordered = sorted(on_spine, key=lambda p: float(np.dot(p, direction)))
    gaps = [float(np.linalg.norm(b - a)) for a, b in zip(ordered, ordered[1:])]
    scale = np.array([r_scale, 1.0, 1.0])
    low, high = GAP_STEPS
    fillers = []
    for k, gap in enumerate(gaps):
        beside = gaps[max(k - 1, 0):k] + gaps[k + 1:k + 2]
        local = float(np.median(beside)) if beside else step_mm
        if not low * local <= gap <= high * local:
            continue
        middle, reach = 0.5 * (ordered[k] + ordered[k + 1]), GAP_MIDDLE_SHARE * local
        near = [(p, h) for p, h in weak if float(np.linalg.norm((p - middle) * scale)) <= reach]
        if near and not any(float(np.linalg.norm((p - middle) * scale)) <= reach for p, _ in strong):
            position, height = max(near, key=lambda p: p[1])  # R: the neighbours' (a weak answer's is flat across R)
            fillers.append((np.array([middle[0], position[1], position[2]]), height))
    return fillers


def anchor_answers(peaks: list[tuple[np.ndarray, float]], threshold: float, most: int = 3):
    """The anchor answers to hand to the graph: none unless the best peak reaches ``threshold``.

    The threshold decides whether an anchor is in view; its place is then chosen among the answers at
    least half as strong as the best (the graph step tries the lowest first), because L4 answers
    nearly as strongly as L5.
    """
    peaks = sorted(peaks, key=lambda p: -p[1])[:most]
    if not peaks or peaks[0][1] < threshold:
        return []
    return [(position, height) for position, height in peaks if height >= 0.5 * peaks[0][1]]


def sacrum_below(answers: list[tuple[np.ndarray, float]], weak: float, peaks: list[tuple[np.ndarray, float]],
                 shape_model, anchor_level: str) -> list[tuple[np.ndarray, float]]:
    """The strongest weak anchor answer (at least ``weak``) below which the spine goes on for two more vertebrae.

    Why: now and then the L5 heatmap answers only weakly (0.35-0.6) on a scan with L5 and the sacrum in view,
    and the chain is left unanchored. A weak answer is trusted only where vertebra heat (``peaks``, down to the
    gap threshold) lies one vertebra beyond it and one beyond that (S1, then the sacrum below it): a scan that ends
    at L5 (CT from the VerSe map), where the detector answers on L4, has at most one. Empty otherwise.
    """
    def beyond(origin):
        return [p for p, _ in peaks if shape_model.one_step_beyond(origin, p, anchor_level)]

    if not answers:
        return []
    position, height = max(answers, key=lambda a: a[1])  # only the strongest answer may be taken
    if height >= weak and any(beyond(next_one) for next_one in beyond(position)):
        return [(position, height)]
    return []


def anchor_channels(card) -> dict[str, int]:
    """Anchor level -> heatmap channel (card extra ``anchor_channels``; default: the card's anchor in channel 1).

    A whole-spine model has two: L5 (channel 1) and C2 (channel 2); each names the spine from its end.
    """
    channels = card.extra.get("anchor_channels", {card.extra.get("anchor_level", "L5"): 1})
    return {str(level): int(channel) for level, channel in channels.items()}


def heatmap_candidates(image, model, progress=None) -> tuple[list[Candidate], int | None]:
    """The pipeline's detect step for a heatmap card: (candidates, index of the anchored candidate or None).

    A whole-spine model's second anchor (C2, :func:`anchor_channels`) answers on the same detections: its
    strength rides along as ``Candidate.second_anchor_probability``.
    """
    options = settings(model.card)
    if progress is not None:
        progress.update("spine-label", 0.2, "heatmap detector on the sagittal band")
    slab, maps = predict_band(model.networks, image, model.pixel_mm, options, model.device)
    step_mm = model.shape_model.median_step()
    nms_mm = float(options["nms_fraction"]) * step_mm
    threshold, gap_threshold = float(options["threshold"]), float(options.get("gap_threshold") or 0.0)
    filling = 0.0 < gap_threshold < threshold
    # one peak search and one suppression: a peak's place does not depend on the threshold, and the greedy
    # suppression (strongest first) keeps the same peaks above the threshold whatever weaker ones follow
    raw = peak_points(slab, maps[0], gap_threshold if filling else threshold, options)
    peaks = suppress_near(raw, nms_mm, float(options["nms_r_scale"]))
    vertebrae = [p for p in peaks if p[1] >= threshold]
    if filling:  # a gap's weak answer may lie beside a stronger one off the spine, which the suppression kept
        vertebrae += gap_fillers(vertebrae, raw, step_mm, model.shape_model.spine_direction(),
                                 float(options["nms_r_scale"]))
    candidates = [Candidate(np.asarray(p, float), float(h)) for p, h in vertebrae]
    heatmaps = int(options.get("heatmaps", model.networks.kwargs["outputs"]))
    if heatmaps >= 3 and maps.shape[0] > heatmaps:  # S1 heatmap and level classes: evidence per candidate
        candidates = [with_level_evidence(c, slab, maps, heatmaps) for c in candidates]
    channels = anchor_channels(model.card)
    found = {level: _with_anchor(candidates, slab, maps[channel], peaks, model, level, options, nms_mm,
                                 second=level != model.anchor_level)
             for level, channel in channels.items()}
    candidates, anchor = found.pop(model.anchor_level)
    for other, _ in found.values():  # attach_anchor keeps the detections' order: the lists align
        candidates = [replace(c, second_anchor_probability=o.anchor_probability) for c, o in zip(candidates, other)]
    return candidates, anchor


def _with_anchor(candidates, slab, anchor_map, peaks, model, level: str, options: dict, nms_mm: float,
                 second: bool = False):
    """(candidates with the anchor answers of ``anchor_map`` attached, index of the anchored one or None).

    ``second``: a whole-spine model's second anchor (C2): its own threshold (card ``second_anchor_threshold``,
    default ``anchor_threshold``), and only answers at the end of the detected spine count (:func:`at_the_end`).
    """
    threshold = float(options["anchor_threshold"])
    if second:
        threshold = float(options.get("second_anchor_threshold") or threshold)
    weak = float(options.get("weak_anchor_threshold") or threshold)
    answer_peaks = suppress_near(peak_points(slab, anchor_map, min(0.5 * threshold, weak), options), nms_mm,
                                 float(options["nms_r_scale"]))
    if second:
        answer_peaks = at_the_end(answer_peaks, [c.position for c in candidates], model.shape_model, level)
    answered = anchor_answers(answer_peaks, threshold) or sacrum_below(answer_peaks, weak, peaks, model.shape_model,
                                                                       level)
    answers = [Detection(p, h, h, 1, ()) for p, h in answered]
    candidates, anchor = attach_anchor(candidates, answers, nms_mm, add_unmatched=False)
    candidates = candidates if second else [with_heat_beyond(c, peaks, model.shape_model, level) for c in candidates]
    return candidates, anchor  # a second anchor's answers only ride along: the heat beyond them is never read


#: Beyond C2 lies only C1 (often two or more detections: its arch and lateral masses), and at times a false
#: detection in the skull base: a second-anchor answer with more vertebra detections than this over 1.5 steps beyond
#: it (past C1) is not C2. Measured: the whole model's C2 channel answers on L5 and S1 too, often more strongly than
#: on C2 (development seeds 52001-52030); dropped before the strongest answers are chosen, they can neither outrank
#: nor crowd out the true one.
MOST_BEYOND_SECOND_ANCHOR = 2


def at_the_end(answers: list[tuple[np.ndarray, float]], detections, shape_model, level: str):
    """The ``answers`` with at most :data:`MOST_BEYOND_SECOND_ANCHOR` ``detections`` over 1.5 steps beyond them
    towards ``level``'s end of the spine (the head for C2)."""
    outwards, step = shape_model.outwards(level), shape_model.median_step()
    points = np.asarray(detections, float).reshape(-1, 3)

    def beyond(origin) -> int:
        return int(np.sum((points - np.asarray(origin, float)) @ outwards > 1.5 * step))

    return [(position, height) for position, height in answers if beyond(position) <= MOST_BEYOND_SECOND_ANCHOR]


def with_heat_beyond(candidate: Candidate, peaks: list[tuple[np.ndarray, float]], shape_model, anchor_level: str):
    """An anchor answer with the strongest vertebra-heat peak about one vertebra beyond it (``Candidate.beyond``).

    ``peaks`` reach down to the gap threshold (0.2) when gap filling is on: the sacrum under S1 answers there
    (0.35-0.8 on generated scans) while nothing does under the L5 of a scan that ends at L5 (at most 0.13 on CT
    from the VerSe map).
    """
    if candidate.anchor_probability <= 0:
        return candidate
    heights = [h for p, h in peaks if shape_model.one_step_beyond(candidate.position, p, anchor_level)]
    return replace(candidate, beyond=max(heights, default=0.0))


def with_level_evidence(candidate: Candidate, slab: SagittalSlab, maps: np.ndarray, heatmaps: int,
                        half=(1, 2, 2)) -> Candidate:
    """The candidate with its level-class probabilities (mean over a small box around it) and L5 / S1 heights (max).

    The box (3 slices x 5 x 5 pixels, 6 x 10 x 10 mm) stays inside the body core the level classes were taught on.
    """
    index = np.rint(slab.ras_to_pixel(np.asarray(candidate.position, float)[None])[0]).astype(int)
    box = tuple(slice(max(i - h, 0), min(i + h + 1, n)) for i, h, n in zip(index, half, maps.shape[1:]))
    levels = maps[(slice(heatmaps, None), *box)].reshape(maps.shape[0] - heatmaps, -1).mean(axis=1)
    ends = tuple(float(maps[(c, *box)].max()) for c in (1, 2))
    return Candidate(candidate.position, candidate.probability, candidate.anchor_probability,
                     levels / max(float(levels.sum()), 1e-9), ends)


__all__ = ["HeatmapDetector", "heatmap_candidates", "anchor_channels", "anchor_answers",
           "normalise_slab", "gaussian_heatmap", "find_peaks",
           "suppress_near", "predict_band", "spine_window", "with_level_evidence", "slice_stack", "looks_like_ct", "OUTPUTS", "DEFAULT_HEATMAP"]
