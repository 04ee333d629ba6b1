"""Tissue model on whole synthetic brains from the held-out B7 label maps (17-20): the model-selection set.

Renders each held-out map as a skull-stripped brain at 1 mm in T1-, T2- and FLAIR-like tissue orders
(the training synthesis: random means, blur, bias, noise), runs the network once and scores, against
the map's own tissue classes, the network's argmax inside the brain and the intensity refinement
(:mod:`spinebrain.brainseg.refine`) at several prior weights. The refinement's weight is chosen here,
never on the real brains (B5, B2), which stay held out for reporting.

    python benchmarks/eval_brainseg_synthetic.py --model Resources/Models/brain-tissue-synth
    python benchmarks/eval_brainseg_synthetic.py --run-dir RUN  # a training run's best weights so far
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
DATA = Path(os.environ.get("SPINEBRAIN_TEST_DATA", ROOT.parent / "shared" / "data"))
#: (prior weight, EM rounds) tried; one round = class statistics from the network's own soft labels
SETTINGS = ((1.0, 8), (0.5, 8), (0.2, 8), (1.0, 1), (0.5, 1), (0.2, 1))


def rendered_brains(maps, seed: int = 11):
    """(name, stripped image at 1 mm, true tissue map) per held-out map and contrast order."""
    from spinebrain.brainseg.synthesis import CSF, GM, WM, LabelMapBank, LabelMapSynthesiser, SynthesisSettings

    orders = {"T1-like": (CSF, GM, WM), "T2-like": (WM, GM, CSF), "FLAIR-like": (CSF, WM, GM)}
    bank = LabelMapBank.from_folder(DATA / "B7_synthseg_label_maps", 1.0,
                                    [f"training_seg_{m:02d}.nii.gz" for m in maps])
    rng = np.random.default_rng(seed)
    for label_map in bank.maps:
        brain = bank.brain[label_map.indices]
        box = tuple(slice(max(0, a.min() - 4), a.max() + 5) for a in np.nonzero(brain))
        labels = label_map.indices[box]
        for contrast, order in orders.items():
            settings = SynthesisSettings(contrast_orders=((1.0, order),), p_random_contrast=0.0, p_thick=0.0)
            image = LabelMapSynthesiser(bank, settings).render(labels, rng, strip=True, normalise=False)
            yield f"{label_map.name} {contrast}", _image(image), _image(bank.tissue[labels])


def _image(array):
    return sitk.GetImageFromArray(np.ascontiguousarray(array))


def dice_per_class(labels: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    return {name: float(2 * np.sum((labels == c) & (truth == c)) / max(1, np.sum(labels == c) + np.sum(truth == c)))
            for c, name in ((1, "CSF"), (2, "GM"), (3, "WM"))}


def main() -> int:
    import torch

    from spinebrain.brainseg.pipeline import _largest_filled, _probabilities, load_tissue_model, normalised
    from spinebrain.brainseg.refine import refine_tissue

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model package folder")
    parser.add_argument("--run-dir", help="training run folder (its best.safetensors)")
    parser.add_argument("--maps", type=int, nargs="+", default=[17, 18, 19, 20])
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.model:
        model = load_tissue_model(args.model)
    else:
        import tempfile

        from eval_brainseg_tissue import model_from_run

        model = load_tissue_model(str(model_from_run(Path(args.run_dir), Path(tempfile.mkdtemp()))))
    rows = []
    for name, image, truth in rendered_brains(args.maps):
        brain = _largest_filled(sitk.Cast(sitk.NotEqual(image, 0), sitk.sitkUInt8))
        inside = sitk.GetArrayViewFromImage(brain).astype(bool)
        prepared = normalised(image, brain, strip=True)
        probabilities = _probabilities(prepared, model, "cpu", None, None)
        reference = np.where(inside, sitk.GetArrayViewFromImage(truth), 0)
        row = {"case": name, "network": dice_per_class(np.where(inside, probabilities[1:].argmax(0) + 1, 0), reference)}
        for weight, rounds in SETTINGS:
            labels = refine_tissue(probabilities, sitk.GetArrayViewFromImage(prepared), inside, prior_weight=weight,
                                   rounds=rounds)
            row[f"refined w={weight} r={rounds}"] = dice_per_class(labels, reference)
        rows.append(row)
        print(name + ": " + "; ".join(f"{k} " + "/".join(f"{v:.3f}" for v in d.values())
                                       for k, d in row.items() if k != "case"), flush=True)
    print("\nmean Dice CSF / GM / WM over", len(rows), "synthetic brains")
    summary = {}
    for key in [k for k in rows[0] if k != "case"]:
        means = {c: float(np.mean([r[key][c] for r in rows])) for c in ("CSF", "GM", "WM")}
        summary[key] = means
        print(f"{key:16s} " + " / ".join(f"{v:.3f}" for v in means.values()) + f"   (mean {np.mean(list(means.values())):.3f})")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
