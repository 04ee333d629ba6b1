"""MS lesion model on the real MS case B2 patient07 (never trained on, never tuned on): every lesion metric.

    python benchmarks/eval_brainseg_lesions.py --model Resources/Models/brain-lesion-synth
    python benchmarks/eval_brainseg_lesions.py --run-dir /work/runs/brainui/lesion_run   # best weights so far

B2 (data README): N4-corrected, skull-stripped, MNI-registered FLAIR / T1 / T2 with a 3-rater consensus
lesion mask (about 1.3 mL). Runs the product path (:func:`spinebrain.brainseg.case.segment_case`, task
lesion, brain mask = the skull-stripped input) once with FLAIR alone and once with FLAIR + T1 + T2, and
reports voxel-wise Dice / TPR / PPV / volume difference / HD / HD95 / ASSD and lesion-wise TPR / PPV
(lesions below the minimum size, the card's 10 mm³ unless ``--minimum``, are not counted on either side
in the lesion-wise scores; the voxel-wise ones use every voxel).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("SPINEBRAIN_TEST_DATA", ROOT.parent / "shared" / "data"))
B2 = DATA / "B2_ms_lesjak2017_mni" / "patient07"


def model_from_run(run_dir: Path, folder: Path) -> Path:
    from safetensors.torch import load_file

    from spinebrain.brainseg.lesion_training import LesionRecipe
    from spinebrain.models import save_model_package

    card = LesionRecipe(maps="", out=str(folder)).card()
    card.metrics = {"note": f"interim weights from {run_dir} (best.safetensors), for evaluation only"}
    return save_model_package(folder, load_file(str(run_dir / "best.safetensors")), card, overwrite=True)


def evaluate(model, inputs: tuple[str, ...], minimum: float | None, normalisation: str = "zscore") -> dict:
    from spinebrain.brainseg.case import BrainSegModels, BrainSegOptions, segment_case
    from spinebrain.brainseg.lesion_metrics import lesion_metrics

    sequences = {name: sitk.ReadImage(str(B2 / f"{name}.nii.gz")) for name in inputs}
    reference = sitk.ReadImage(str(B2 / "GOLD_STANDARD.nii.gz"))
    started = time.perf_counter()
    result = segment_case(sequences, BrainSegModels(None, model),
                          BrainSegOptions(task="lesion", normalisation=normalisation, minimum_lesion_mm3=minimum))
    seconds = time.perf_counter() - started
    predicted = sitk.Cast(result.labels == 4, sitk.sitkUInt8)
    predicted.CopyInformation(reference)
    used_minimum = model.minimum_mm3 if minimum is None else minimum
    metrics = lesion_metrics(predicted, sitk.Cast(reference > 0, sitk.sitkUInt8), used_minimum)
    return {"inputs": list(inputs), "normalisation": normalisation, "seconds": round(seconds, 1),
            "mask": result.mask_source, **metrics}


def main() -> int:
    import torch

    from spinebrain.brainseg.lesions import load_lesion_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model package folder")
    parser.add_argument("--run-dir", help="training run folder (its best.safetensors)")
    parser.add_argument("--minimum", type=float, help="minimum lesion size in mm³ (default: the card's)")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model_path = args.model or model_from_run(Path(args.run_dir), Path(tempfile.mkdtemp()))
    model = load_lesion_model(str(model_path))
    figures = {"model": model.card.id, "model_path": str(model_path), "case": "B2 patient07", "runs": []}
    for inputs in (("FLAIR",), ("FLAIR", "T1", "T2")):
        row = evaluate(model, inputs, args.minimum)
        figures["runs"].append(row)
        print(f"B2 patient07 [{'+'.join(inputs)}] Dice {row['dice']:.3f}  TPR {row['tpr']:.3f}  PPV {row['ppv']:.3f}  "
              f"volume {row['volume predicted']:.2f} vs {row['volume reference']:.2f} mL "
              f"({row['volume difference']:+.0f} %)  HD {row['hd']:.1f} mm  HD95 {row['hd95']:.1f} mm  "
              f"ASSD {row['assd']:.2f} mm  lesion-wise TPR {row['lesion-wise tpr']:.3f} "
              f"PPV {row['lesion-wise ppv']:.3f} ({row['reference lesions']} reference / {row['predicted lesions']} "
              f"predicted lesions >= {row['minimum lesion']:.0f} mm³)  {row['seconds']} s")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
