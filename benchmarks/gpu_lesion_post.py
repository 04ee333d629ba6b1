"""After the GPU lesion run: package its weights in a scratch models folder and score them on B2 patient07,
beside the bundled model's card figures (same case, same product path, same metrics as
``eval_brainseg_lesions.py``, whose :func:`evaluate` this calls).

    python benchmarks/gpu_lesion_post.py --returned /work/runs/gpu/lesion --models /work/runs/gpu-lesion/models

``--returned``: the folder the device run wrote (``/tmp/gpu/lesion`` there): ``models/<id>/`` when the
run ended normally, else ``run/best.safetensors`` (a killed run), which is packaged here with the
recipe's card (``--patch`` must then match the run's).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
BUNDLED = ROOT / "Resources" / "Models" / "brain-lesion-synth"
KEYS = ("dice", "tpr", "ppv", "lesion-wise tpr", "lesion-wise ppv", "reference lesions", "predicted lesions",
        "volume predicted", "hd95")


def package(returned: Path, models: Path, model_id: str, patch: int) -> Path:
    """The returned package copied into ``models`` (or one built from the run's best weights)."""
    target = models / model_id
    if target.exists():
        shutil.rmtree(target)
    models.mkdir(parents=True, exist_ok=True)
    built = returned / "models" / model_id
    if (built / "model_card.json").is_file():
        shutil.copytree(built, target)
        return target
    from safetensors.torch import load_file

    from spinebrain.brainseg.lesion_training import LesionRecipe
    from spinebrain.models import save_model_package

    best = returned / "run" / "best.safetensors"
    if not best.is_file():
        raise SystemExit(f"Neither {built} nor {best} exists; give the folder the GPU run returned.")
    card = LesionRecipe(maps="", out=str(models), model_id=model_id, patch=patch).card()
    card.metrics = {"note": f"weights from {best} (the run ended before it wrote its package)"}
    return save_model_package(models, load_file(str(best)), card, overwrite=True)


def main() -> int:
    import torch
    from eval_brainseg_lesions import evaluate

    from spinebrain.brainseg.lesions import load_lesion_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--returned", required=True, help="the returned run folder (/work/runs/gpu/lesion)")
    parser.add_argument("--models", required=True, help="scratch models folder for the package")
    parser.add_argument("--id", default="brain-lesion-synth")
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    path = package(Path(args.returned), Path(args.models), args.id, args.patch)
    model = load_lesion_model(str(path))
    bundled = json.loads((BUNDLED / "model_card.json").read_text()).get("metrics", {}).get("B2_patient07", {})
    print(f"package {path}; synthetic validation: {json.dumps(model.card.metrics)}")
    figures = {"model_path": str(path), "case": "B2 patient07", "runs": []}
    for inputs in (("FLAIR",), ("FLAIR", "T1", "T2")):
        row = evaluate(model, inputs, None)
        figures["runs"].append(row)
        name = "+".join(inputs)
        print(f"B2 patient07 [{name}]")
        for key in KEYS:
            old = bundled.get(name, {}).get(key)
            print(f"  {key:18s} GPU {row[key]:8.3f}   bundled {old if old is not None else float('nan'):8.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
