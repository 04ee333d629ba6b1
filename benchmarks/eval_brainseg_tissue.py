"""Brain tissue model on the real brains in ../shared/data (never trained on): B5 with its FSL FAST reference,
B2 patient07 T1 and FLAIR (no tissue reference: volumes, and T1-vs-FLAIR agreement).

    python benchmarks/eval_brainseg_tissue.py --model Resources/Models/brain-tissue-synth
    python benchmarks/eval_brainseg_tissue.py --run-dir out/models/.runs/brain-tissue-synth  # best weights so far

B5 reference (data README): inside the brain (largest component of bet > 0; the two artificial spheres
are the other components and are ignored), argmax of CSF = 1 - GM - WM, GM = pve_1, WM = pve_2.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("SPINEBRAIN_TEST_DATA", ROOT.parent / "shared" / "data"))


def b5_reference() -> tuple[sitk.Image, sitk.Image, sitk.Image]:
    """(T1, reference tissue map, voxels to ignore: the spheres)."""
    folder = DATA / "B5_nii2mesh_t1_fast"
    t1 = sitk.ReadImage(str(folder / "bet.nii.gz"))
    components = sitk.GetArrayFromImage(sitk.RelabelComponent(sitk.ConnectedComponent(t1 > 0), sortByObjectSize=True))
    gm = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "pve_1.nii.gz")))
    wm = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "pve_2.nii.gz")))
    classes = np.stack([np.clip(1 - gm - wm, 0, 1), gm, wm]).argmax(0) + 1
    reference = np.where(components == 1, classes, 0).astype(np.uint8)
    ignore = ((components > 1)).astype(np.uint8)
    return t1, _like(reference, t1), _like(ignore, t1)


def synthetic_heads(maps: list[int], spacing: float = 1.5, seed: int = 5):
    """Whole heads with skull and scalp rendered from held-out B7 maps: (name, image, true tissue map)."""
    from spinebrain.brainseg.synthesis import LabelMapBank, LabelMapSynthesiser, SynthesisSettings

    names = [f"training_seg_{m:02d}.nii.gz" for m in maps]
    bank = LabelMapBank.from_folder(DATA / "B7_synthseg_label_maps", spacing, names)
    synthesiser = LabelMapSynthesiser(bank, SynthesisSettings(p_thick=0.0))
    rng = np.random.default_rng(seed)
    for label_map in bank.maps:
        image = sitk.GetImageFromArray(synthesiser.render(label_map.indices, rng, strip=False, normalise=False))
        tissue = sitk.GetImageFromArray(bank.tissue[label_map.indices])
        for volume in (image, tissue):
            volume.SetSpacing((spacing,) * 3)
        yield label_map.name, image, tissue


def _like(array, image):
    result = sitk.GetImageFromArray(array)
    result.CopyInformation(image)
    return result


def model_from_run(run_dir: Path, folder: Path) -> Path:
    from safetensors.torch import load_file

    from spinebrain.brainseg.training import TissueRecipe
    from spinebrain.models import save_model_package

    card = TissueRecipe(maps="", out=str(folder)).card()
    card.metrics = {"note": f"interim weights from {run_dir} (best.safetensors), for evaluation only"}
    return save_model_package(folder, load_file(str(run_dir / "best.safetensors")), card, overwrite=True)


def main() -> int:
    import torch

    from spinebrain.brainseg.pipeline import load_tissue_model, segment_tissue
    from spinebrain.brainseg.quantify import tissue_metrics, tissue_volumes

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model package folder")
    parser.add_argument("--run-dir", help="training run folder (its best.safetensors)")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--heads", type=int, nargs="*", default=[],
                        help="also whole heads (skull kept) rendered from these held-out B7 maps, e.g. 17 18")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-refine", action="store_true", help="the network's argmax, without the intensity refinement")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model_path = args.model or model_from_run(Path(args.run_dir), Path(tempfile.mkdtemp()))
    model = load_tissue_model(str(model_path))
    figures = {"model": model.card.id, "model_path": str(model_path)}

    t1, reference, ignore = b5_reference()
    started = time.perf_counter()
    result = segment_tissue(t1, model, refine=not args.no_refine)
    figures["B5"] = {"seconds": round(time.perf_counter() - started, 1), "mask": result.mask_source,
                     "threads": args.threads, "refine": not args.no_refine,
                     "peak_memory_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2, 2),
                     "metrics": tissue_metrics(result.labels, reference, ignore)}
    print(f"B5 (1 mm, {t1.GetSize()}): {figures['B5']['seconds']} s on {args.threads} thread(s), peak memory of "
          f"this process so far {figures['B5']['peak_memory_gb']} GB")
    for record in figures["B5"]["metrics"]:
        print(f"B5 {record['structure']:20s} Dice {record['dice']:.3f}  HD95 {record['hd95']:5.1f} mm  "
              f"ASSD {record['assd']:.2f} mm  volume {record['volume predicted']:.0f} vs {record['volume reference']:.0f} mL")

    maps = {}
    for contrast in ("T1", "FLAIR"):
        image = sitk.ReadImage(str(DATA / "B2_ms_lesjak2017_mni" / "patient07" / f"{contrast}.nii.gz"))
        result = segment_tissue(image, model, name=f"B2 {contrast}", refine=not args.no_refine)
        maps[contrast] = result.labels
        figures[f"B2_{contrast}"] = {"mask": result.mask_source, "volumes": tissue_volumes(result.labels)}
        print(f"B2 patient07 {contrast}: " + ", ".join(
            f"{r['structure']} {r['volume']:.0f} mL ({100 * r['fraction of intracranial volume']:.0f} %)"
            for r in figures[f"B2_{contrast}"]["volumes"]))
    agreement = tissue_metrics(maps["FLAIR"], maps["T1"])
    figures["B2_T1_vs_FLAIR_dice"] = {r["structure"]: r["dice"] for r in agreement}
    print("B2 T1 vs FLAIR Dice: " + ", ".join(f"{k} {v:.3f}" for k, v in figures["B2_T1_vs_FLAIR_dice"].items()))
    if args.heads:
        for name, image, tissue in synthetic_heads(args.heads):
            result = segment_tissue(image, model, name=name, refine=not args.no_refine)
            truth = sitk.Cast(tissue > 0, sitk.sitkUInt8)
            overlap = sitk.LabelOverlapMeasuresImageFilter()
            overlap.Execute(truth, result.brain_mask)
            dice = {r["structure"]: r["dice"] for r in tissue_metrics(result.labels, tissue)}
            figures[f"head_{name}"] = {"mask": result.mask_source, "brain_mask_dice": overlap.GetDiceCoefficient(),
                                       "dice": dice}
            print(f"synthetic head {name} (skull kept, mask {result.mask_source}): brain mask Dice "
                  f"{overlap.GetDiceCoefficient():.3f}; " + ", ".join(f"{k} {v:.3f}" for k, v in dice.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
