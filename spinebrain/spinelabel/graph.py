"""Parts-based graphical model that names vertebra detections (Forsberg et al. 2017, after Lootus 2014).

Written by hand: no maintained library offers this layered shortest-path labelling, and the whole
algorithm is a small dynamic programme over ~26 layers.

Model. One *layer* per vertebra level in cranio-caudal order (``SpineShapeModel.levels``). For
each pair of adjacent levels the model holds the displacement ``y = x_lower - x_upper`` (RAS mm):
mean ``mu``, covariance ``Sigma`` and an allowed box ``R`` (``PairModel``), fitted from point
annotations (``fit_shape_model``). Coordinates are 3D; a 2D (sagittal) model is the special case
where every point has the same R coordinate.

Labelling. A labelling is a path through the layers, one detection per layer. The edge cost from
candidate i (level l) to candidate j (next level) is the paper's

    d_l(x_i, x_j) = (y - mu_l)^T Sigma_l^-1 (y - mu_l) / (p_i * p_j)    when y lies in R_l,

and there is no edge otherwise. The best path covers as many standard layers as possible (T13 / L6
do not count), then has the lowest cost. Beyond the paper:

* Transitional anatomy. T13 and L6 are *optional* layers, present only when training saw them. A path may
  skip one for free (T12 -> L1 uses the T12/L1 pair model) or pass through it (T12 -> T13 -> L1) at a small
  ``transitional_penalty``; so a 6-lumbar spine is labelled L1..L6 when more detections lie between two known levels.
* Missed detections. A path may jump over ``max_gap`` missing levels with the summed model (mu_l + mu_l+1,
  Sigma_l + Sigma_l+1, summed box) at ``gap_penalty`` per level, reported in ``LabellingResult.missing``.
* Constraints. The anchor detection (C2 / S1 detector; a whole-spine model may pin both ends) must take its layer
  (its p is the better of its two detectors'); a user-set point is a candidate with p = 1 that must take its layer
  and outranks the anchor detector (with user points the anchor is kept only where it agrees with them).
* Uncertainty. The same chain shifted by +-1..k levels is solved too (``alternatives``). Without
  an anchor or user point the label certainty is the share of the best path among them (costs
  read as -2 log likelihood), capped at ``max_unanchored_certainty``, and ``anchored`` is False.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from spinebrain.anatomy import VERTEBRA_LABELS, vertebra_index
from spinebrain.errors import InputError, ModelError
from spinebrain.points import LabelledPoint

#: Every vertebra name in cranio-caudal order, transitional ones included (T12, T13, L1 ... L5, L6, S1).
FULL_ORDER = sorted(VERTEBRA_LABELS, key=vertebra_index)
TRANSITIONAL = ("T13", "L6")
_MIN_PROBABILITY = 1e-3  # keeps 1 / (p_i * p_j) finite for a detection reported with p = 0


@dataclass
class Candidate:
    """One detection: centroid (RAS mm), detector probability p_i, anchor-detector probability."""

    position: np.ndarray
    probability: float
    anchor_probability: float = 0.0
    levels: np.ndarray | None = None  # level-class probabilities of a detector with a level output
    ends: tuple[float, float] | None = None  # its L5 and S1 heatmap heights here
    beyond: float = 0.0  # an anchor answer's vertebra heat one vertebra further out (heatmap detectors; 0: none)
    second_anchor_probability: float = 0.0  # a whole-spine model's answer for its other anchor (C2)
    rib: float | None = None  # P(this vertebra carries a rib), from the rib classifier (None: not asked)
    sacrum: float | None = None  # P(this is the sacrum), from a package's sacrum classifier (None: not asked)


@dataclass
class PairModel:
    """Displacement x_lower - x_upper between two adjacent levels: Gaussian plus allowed box [lower, upper]."""

    mean: np.ndarray
    covariance: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    samples: int = 0

    def combined(self, other: PairModel) -> PairModel:
        """Displacement over two steps (this one, then ``other``), taking the steps as independent."""
        return PairModel(self.mean + other.mean, self.covariance + other.covariance,
                         self.lower + other.lower, self.upper + other.upper, min(self.samples, other.samples))

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "covariance": self.covariance.tolist(),
                "lower": self.lower.tolist(), "upper": self.upper.tolist(), "samples": int(self.samples)}

    @classmethod
    def from_dict(cls, data: dict) -> PairModel:
        return cls(*(np.asarray(data[key], dtype=float) for key in ("mean", "covariance", "lower", "upper")),
                   int(data.get("samples", 0)))


@dataclass
class SpineShapeModel:
    """Layers (levels in cranio-caudal order) and a PairModel for each adjacent (upper, lower) pair."""

    levels: list[str]
    pairs: dict[tuple[str, str], PairModel]

    def __post_init__(self):
        self.levels = sorted(self.levels, key=vertebra_index)
        for upper, lower in zip(self.standard_levels, self.standard_levels[1:]):
            if (upper, lower) not in self.pairs:
                raise ModelError(f"The spine shape model has no displacement model for {upper}-{lower}; refit it.")

    @property
    def standard_levels(self) -> list[str]:
        return [level for level in self.levels if level not in TRANSITIONAL]

    def displacement(self, upper: str, lower: str) -> PairModel | None:
        """x_lower - x_upper: the fitted pair, else the sum along the standard levels between; None: no chain."""
        if (upper, lower) in self.pairs:
            return self.pairs[(upper, lower)]
        start, end = self.levels.index(upper), self.levels.index(lower)
        chain = [upper] + [lv for lv in self.levels[start + 1:end] if lv not in TRANSITIONAL] + [lower]
        steps = [self.pairs.get(pair) for pair in zip(chain, chain[1:])]
        if len(chain) == 2 or any(step is None for step in steps):
            return None
        total = steps[0]
        for step in steps[1:]:
            total = total.combined(step)
        return total

    def spine_direction(self) -> np.ndarray:
        """Unit vector of the summed mean displacements: the overall cranio-caudal direction."""
        total = sum(pair.mean for pair in self.pairs.values())
        return total / np.linalg.norm(total)

    def median_step(self) -> float:
        """Median distance (mm) between the centres of adjacent vertebrae, over the fitted pairs."""
        return float(np.median([np.linalg.norm(pair.mean) for pair in self.pairs.values()]))

    def outwards(self, level: str) -> np.ndarray:
        """Unit vector along the spine towards the end nearer ``level`` (the feet for L5 / S1, the head for C2)."""
        return (1.0 if self.levels.index(level) >= len(self.levels) / 2 else -1.0) * self.spine_direction()

    def one_step_beyond(self, origin, point, level: str, off_axis_steps: float = 0.5) -> bool:
        """Whether ``point`` is the next vertebra's place beyond ``origin`` towards ``level``'s end (RAS mm)."""
        offset = np.asarray(point, float) - np.asarray(origin, float)
        outwards, step = self.outwards(level), self.median_step()
        along = float(np.dot(offset, outwards))  # 0.5-1.5 steps along the spine, at most off_axis_steps off it
        return 0.5 * step <= along <= 1.5 * step and np.linalg.norm(offset - along * outwards) <= off_axis_steps * step

    def to_dict(self) -> dict:
        """JSON-able form (for the model card / package)."""
        return {"levels": list(self.levels),
                "pairs": [{"levels": list(key), **pair.to_dict()} for key, pair in self.pairs.items()]}

    @classmethod
    def from_dict(cls, data: dict) -> SpineShapeModel:
        try:
            pairs = {tuple(item["levels"]): PairModel.from_dict(item) for item in data["pairs"]}
            return cls(list(data["levels"]), pairs)
        except (KeyError, TypeError, ValueError) as error:
            raise ModelError(f"The spine shape model is malformed ({error}); "
                             "use a model written by this version.") from None


def fit_shape_model(annotated_cases: list[list[LabelledPoint]], levels: list[str] | None = None,
                    range_margin: float = 0.25, min_sd_mm: float = 2.0) -> SpineShapeModel:
    """Fit mu, Sigma and the allowed box R of every adjacent-level displacement from annotated cases.

    ``levels`` restricts the layers (default: every level seen). Two levels are adjacent in a case
    when only transitional levels (T13, L6) lie between them in the full order, so T12->L1 comes
    from 12-thoracic cases and T12->T13->L1 from 13-thoracic ones; a transitional level becomes a
    layer only where training saw it. Sigma gets ``min_sd_mm``^2 added on its diagonal so it stays
    invertible with one or two samples (or a flat 2D axis); the box is the observed min/max widened
    on each axis by ``range_margin`` times the mean step length (so it scales from cervical to lumbar).
    """
    annotated_cases = list(annotated_cases)
    wanted = set(levels) if levels is not None else None
    samples: dict[tuple[str, str], list[np.ndarray]] = {}
    for number, case in enumerate(annotated_cases):
        points = _case_points(case, number)
        names = sorted(points, key=vertebra_index)
        for upper, lower in zip(names, names[1:]):
            keep = wanted is None or {upper, lower} <= wanted
            if keep and _adjacent(upper, lower):
                samples.setdefault((upper, lower), []).append(points[lower] - points[upper])
    if not samples:
        raise InputError("The annotations hold no two adjacent vertebrae; give cases with consecutive labels.")
    pairs = {pair: _fit_pair(np.array(ys), range_margin, min_sd_mm) for pair, ys in samples.items()}
    seen = {name for pair in pairs for name in pair}
    if wanted is not None and wanted - seen:
        raise InputError(f"None of the {len(annotated_cases)} training cases shows "
                         f"{', '.join(sorted(wanted - seen, key=vertebra_index))} beside a neighbour, so the shape "
                         "model cannot place it; train on more cases or add annotations of those levels.")
    span = sorted(seen, key=vertebra_index)
    first, last = FULL_ORDER.index(span[0]), FULL_ORDER.index(span[-1])
    standard = [lv for lv in FULL_ORDER[first:last + 1] if lv not in TRANSITIONAL]  # no holes in between
    layer_levels = sorted(set(standard) | seen, key=vertebra_index)
    for upper, lower in zip(standard, standard[1:]):
        if (upper, lower) not in pairs:
            raise InputError(f"None of the {len(annotated_cases)} training cases shows {upper} and {lower} together, "
                             "so the shape model cannot join them; train on more cases or add annotations that "
                             "include both.")
    return SpineShapeModel(layer_levels, pairs)


def _case_points(case: list[LabelledPoint], number: int) -> dict[str, np.ndarray]:
    points: dict[str, np.ndarray] = {}
    for point in case:
        if point.label not in VERTEBRA_LABELS:
            raise InputError(f"Training case {number} has an unknown vertebra name {point.label!r}; "
                             "use C1...S1, T13 or L6.")
        if point.label in points:
            raise InputError(f"Training case {number} has {point.label} twice; keep one point per vertebra.")
        points[point.label] = np.asarray(point.ras, dtype=float)
    return points


def _adjacent(upper: str, lower: str) -> bool:
    between = FULL_ORDER[FULL_ORDER.index(upper) + 1:FULL_ORDER.index(lower)]
    return all(name in TRANSITIONAL for name in between)


def _fit_pair(ys: np.ndarray, range_margin: float, min_sd_mm: float) -> PairModel:
    """Gaussian and box of one pair. The box is at least mean +- max(3 SD, ``range_margin`` x step) on
    every axis, so a pair seen in few training cases (a narrow observed min/max) still admits normal spines."""
    mean = ys.mean(axis=0)
    sample_cov = np.cov(ys, rowvar=False) if len(ys) > 1 else np.zeros((ys.shape[1], ys.shape[1]))
    covariance = sample_cov + min_sd_mm**2 * np.eye(ys.shape[1])
    margin = range_margin * np.linalg.norm(mean)
    floor = np.maximum(3.0 * np.sqrt(np.diag(covariance)), margin)
    lower = np.minimum(ys.min(axis=0) - margin, mean - floor)
    upper = np.maximum(ys.max(axis=0) + margin, mean + floor)
    return PairModel(mean, covariance, lower, upper, len(ys))


# --------------------------------------------------------------------------------------------
# Labelling


@dataclass
class Assignment:
    level: str
    candidate: int | None  # index into the candidates given; None for a user-set point
    position: np.ndarray
    confidence: float
    user_set: bool = False


@dataclass
class Alternative:
    """The best labelling when the chain is moved ``shift`` levels (+ = towards the sacrum)."""

    shift: int
    cost: float
    assignments: list[Assignment]


@dataclass
class LabellingResult:
    assignments: list[Assignment]  # cranio-caudal order
    cost: float
    anchored: bool  # an anchor detection or a user-set point fixes the levels
    certainty: float  # 0..1, how sure the level naming is (per-point confidence = p_i * certainty)
    missing: list[str] = field(default_factory=list)  # levels jumped over inside the path
    alternatives: list[Alternative] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the user should check (e.g. a transitional count)

    def to_points(self) -> list[LabelledPoint]:
        return [LabelledPoint(a.level, tuple(float(v) for v in a.position),
                              None if a.user_set else round(float(a.confidence), 4), a.user_set)
                for a in self.assignments]


@dataclass
class _Problem:
    """Constraints of one labelling run over the solver's candidates (detections, then user points)."""

    allowed: np.ndarray  # (L, M) bool: candidate m may take layer l
    constrained: list[int]  # layers that must be in the path


def label_candidates(candidates: list[Candidate], model: SpineShapeModel, anchor: tuple[str, int] | None = None,
                     fixed: dict[str, np.ndarray] | None = None, *, max_gap: int = 1, gap_penalty: float = 10.0,
                     transitional_penalty: float = 5.0, max_shift: int = 3,
                     max_unanchored_certainty: float = 0.5) -> LabellingResult:
    """Name the detections: the path covering most layers at least cost, under the anchor / user constraints.

    ``anchor`` is (level, index of the candidate the anchor detector picked), or a tuple of such pins (both ends of
    a whole spine); ``fixed`` maps a level to the position of a point the user set (hard constraint). Raises
    InputError when the constraints cannot lie on one spine (e.g. user points in the wrong order).
    """
    fixed = {level: np.asarray(pos, dtype=float) for level, pos in (fixed or {}).items()}
    for level in fixed:
        if level not in model.levels:
            raise InputError(f"The user point {level} is not a level this model labels ({model.levels[0]}..."
                             f"{model.levels[-1]}); run SpineLabel again with region whole (C1-S1), then name it.")
    pins = () if anchor is None else ((anchor,) if isinstance(anchor[0], str) else tuple(anchor))
    for level, index in pins:
        if level not in model.levels or not 0 <= index < len(candidates):
            raise InputError(f"The anchor ({level}, candidate {index}) does not fit this model "
                             "or the candidate list.")
    solver = _Solver(candidates, model, fixed, max_gap, gap_penalty, transitional_penalty)
    if solver.n_candidates == 0:
        return LabellingResult([], 0.0, False, 0.0)
    path, cost = solver.solve(solver.problem(() if fixed else pins))
    if path is None:
        raise InputError("The fixed points cannot be joined into one spine; check their labels and positions.")
    if fixed and pins:
        path, cost, pins = _with_agreeing_anchor(solver, path, cost, pins)
    elif fixed:
        pins = ()
    alternatives = _shifted_alternatives(solver, path, max_shift)
    anchored = bool(fixed) or bool(pins)
    if fixed:
        certainty = 1.0
    elif pins:
        certainty = min(max(candidates[i].anchor_probability, candidates[i].second_anchor_probability) or 1.0
                        for _, i in pins)
    else:
        certainty = min(_share_of_best(cost, alternatives), max_unanchored_certainty)
    return LabellingResult(solver.assignments(path, certainty), cost, anchored, certainty,
                           solver.missing_levels(path), alternatives)


class _Solver:
    """Dynamic programme over the layers; edge cost matrices are computed once and reused."""

    def __init__(self, candidates, model, fixed, max_gap, gap_penalty, transitional_penalty):
        self.model, self.levels = model, model.levels
        self.max_gap, self.gap_penalty, self.transitional_penalty = max_gap, gap_penalty, transitional_penalty
        self.n_candidates = len(candidates) + len(fixed)
        dim = len(model.spine_direction())
        positions = [np.asarray(c.position, dtype=float) for c in candidates] + list(fixed.values())
        if any(p.shape != (dim,) for p in positions):
            raise InputError(f"Every candidate and user point needs {dim} coordinates, like the shape model.")
        self.positions = np.array(positions, dtype=float).reshape(-1, dim)
        # an anchor detection counts with the better of its two detectors' probabilities
        detected = [max(c.probability, c.anchor_probability) for c in candidates]
        self.probabilities = np.clip(detected + [1.0] * len(fixed), _MIN_PROBABILITY, 1.0)
        self.fixed_levels = list(fixed)
        self.n_detections = len(candidates)
        self._edges: dict[tuple[int, int], np.ndarray | None] = {}
        self.direction = model.spine_direction()

    def problem(self, pins=(), user_points_fixed: bool = True) -> _Problem:
        """Permissions: pinned candidates ((level, index): anchors / shift pivot) and each user point may only take
        their own layer.

        With ``user_points_fixed`` False the user points are ordinary candidates with p = 1.
        """
        allowed = np.ones((len(self.levels), self.n_candidates), dtype=bool)
        constraints = []
        if user_points_fixed:
            constraints = [(level, self.n_detections + k) for k, level in enumerate(self.fixed_levels)]
        constraints += list(pins)
        for level, index in constraints:
            layer = self.levels.index(level)
            allowed[:, index] = False
            allowed[layer, :] = False
            allowed[layer, index] = True
        layers = sorted({self.levels.index(level) for level, _ in constraints})
        return _Problem(allowed, layers)

    def edge(self, a: int, b: int) -> np.ndarray | None:
        """(M, M) cost of candidate i at layer a followed by j at layer b; inf where there is no edge."""
        if (a, b) not in self._edges:
            self._edges[(a, b)] = self._edge_costs(a, b)
        return self._edges[(a, b)]

    def _edge_costs(self, a: int, b: int) -> np.ndarray | None:
        pair = self.model.displacement(self.levels[a], self.levels[b])
        if pair is None:
            return None
        y = self.positions[None, :, :] - self.positions[:, None, :]  # y[i, j] = x_j - x_i
        inside = np.all((y >= pair.lower) & (y <= pair.upper), axis=-1)
        forward = y @ self.direction > 0  # paths run strictly one way along the spine: no candidate twice
        diff = y - pair.mean
        mahalanobis = np.einsum("ijk,kl,ijl->ij", diff, np.linalg.inv(pair.covariance), diff)
        cost = mahalanobis / np.outer(self.probabilities, self.probabilities)
        skipped = self.levels[a + 1:b]
        cost = cost + self.gap_penalty * sum(lv not in TRANSITIONAL for lv in skipped) + self._node_penalty(b)
        return np.where(inside & forward, cost, np.inf)

    def _coverage(self, layer: int) -> int:
        """What a layer adds to a path's coverage: 1 for a standard level, 0 for an optional T13 / L6.

        So a transitional layer never wins by coverage; it is used only where the detections need it (e.g. six
        lumbar-like detections between a fixed L1 and S1), else it would shift every name."""
        return 0 if self.levels[layer] in TRANSITIONAL else 1

    def coverage(self, path) -> int:
        return sum(self._coverage(layer) for layer, _ in path)

    def _node_penalty(self, layer: int) -> float:
        return self.transitional_penalty if self.levels[layer] in TRANSITIONAL else 0.0

    def _predecessors(self, b: int, constrained: list[int]) -> list[int]:
        """Layers a < b a path may come from: next layer, or a jump over optional / up to max_gap missing levels."""
        result = []
        for a in range(b - 1, -1, -1):
            if any(a < c < b for c in constrained):
                break  # never jump over a layer that must be in the path
            missing = sum(lv not in TRANSITIONAL for lv in self.levels[a + 1:b])
            if missing > self.max_gap:
                break
            result.append(a)
        return result

    def solve(self, problem: _Problem) -> tuple[list[tuple[int, int]] | None, float]:
        """Best path as [(layer, candidate)] top to bottom, and its cost: most layers first, then least cost."""
        n_layers, n = problem.allowed.shape
        first = problem.constrained[0] if problem.constrained else n_layers - 1
        last = problem.constrained[-1] if problem.constrained else 0
        count = np.zeros((n_layers, n), dtype=int)  # 1 + standard layers on the best path ending here (0: unreachable)
        cost = np.full((n_layers, n), np.inf)
        back = np.full((n_layers, n, 2), -1, dtype=int)
        for b in range(n_layers):
            if b <= first:  # a path may start here only if it can still reach every constrained layer
                count[b] = problem.allowed[b] * (1 + self._coverage(b))
                cost[b] = np.where(problem.allowed[b], self._node_penalty(b), np.inf)
            for a in self._predecessors(b, problem.constrained):
                edge = self.edge(a, b)
                if edge is None:
                    continue
                valid = (count[a][:, None] > 0) & problem.allowed[b][None, :] & np.isfinite(edge)
                new_count = np.where(valid, count[a][:, None] + self._coverage(b), 0)
                new_cost = np.where(valid, cost[a][:, None] + edge, np.inf)
                best_count = new_count.max(axis=0)
                best_i = np.argmin(np.where(new_count == best_count, new_cost, np.inf), axis=0)
                best_cost = new_cost[best_i, np.arange(n)]
                better = (best_count > count[b]) | ((best_count == count[b]) & (best_cost < cost[b]))
                better &= best_count > 0
                count[b, better], cost[b, better] = best_count[better], best_cost[better]
                back[b, better] = np.stack([np.full(better.sum(), a), best_i[better]], axis=1)
        ends = np.zeros_like(count)
        ends[last:] = count[last:]
        if ends.max() == 0:
            return None, np.inf
        layer, index = _best_end(ends, cost)
        total = float(cost[layer, index])
        path = [(layer, index)]
        while back[layer, index, 0] >= 0:
            layer, index = back[layer, index]
            path.append((int(layer), int(index)))
        return path[::-1], total

    def assignments(self, path, certainty: float) -> list[Assignment]:
        result = []
        for layer, index in path:
            user = index >= self.n_detections
            confidence = 1.0 if user else float(self.probabilities[index]) * certainty
            result.append(Assignment(self.levels[layer], None if user else int(index),
                                     self.positions[index].copy(), confidence, user))
        return result

    def missing_levels(self, path) -> list[str]:
        layers = [layer for layer, _ in path]
        return [lv for a, b in zip(layers, layers[1:]) for lv in self.levels[a + 1:b] if lv not in TRANSITIONAL]


def _with_agreeing_anchor(solver: _Solver, path, cost: float, pins: tuple):
    """The user's points outrank the anchor detector, but an anchor that agrees with them is kept.

    It agrees when the path through both covers as many standard levels and costs at most one
    ``gap_penalty`` more; e.g. a user L1 and a detected S1 with seven vertebrae between need L6.
    Returns (path, cost, the anchor pins or ()).
    """
    both, both_cost = solver.solve(solver.problem(pins))
    if both is not None and (solver.coverage(both) >= solver.coverage(path)
                             and both_cost <= cost + solver.gap_penalty):
        return both, both_cost, pins
    return path, cost, ()


def _best_end(count: np.ndarray, cost: np.ndarray) -> tuple[int, int]:
    masked = np.where(count == count.max(), cost, np.inf)
    layer, index = np.unravel_index(np.argmin(masked), masked.shape)
    return int(layer), int(index)


def _shifted_alternatives(solver: _Solver, path, max_shift: int) -> list[Alternative]:
    """Best path with the first standard-level point of ``path`` pinned ``shift`` levels away (no anchor, no user lock).

    An alternative that explains fewer detections than ``path`` (it ran off the model's end) pays
    ``gap_penalty`` per detection left out, so its cost compares directly with the best path's.
    """
    standard = solver.model.standard_levels
    pivot_layer, pivot = next(((lay, idx) for lay, idx in path if solver.levels[lay] not in TRANSITIONAL), path[0])
    pivot_level = solver.levels[pivot_layer]
    if pivot_level in TRANSITIONAL:
        return []
    alternatives = []
    for shift in [s for k in range(1, max_shift + 1) for s in (-k, k)]:
        position = standard.index(pivot_level) + shift
        if not 0 <= position < len(standard):
            continue
        alt_path, alt_cost = solver.solve(solver.problem(((standard[position], pivot),), user_points_fixed=False))
        if alt_path is not None:
            left_out = max(len(path) - len(alt_path), 0)
            alternatives.append(Alternative(shift, alt_cost + solver.gap_penalty * left_out,
                                            solver.assignments(alt_path, 1.0)))
    return alternatives


def _share_of_best(cost: float, alternatives: list[Alternative]) -> float:
    """Weight of the best path among itself and its shifted versions, weights exp(-cost / 2)."""
    costs = np.array([cost] + [alt.cost for alt in alternatives])
    weights = np.exp(-(costs - costs.min()) / 2.0)
    return float(weights[0] / weights.sum())
