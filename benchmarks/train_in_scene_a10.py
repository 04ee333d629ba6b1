"""The Training module's console path on real scans: load A10 lumbar MR cases into an MRML scene, train a
3D vertebral-body model through TrainingLogic, register it, apply it to held-out scans and score it.

Usage: python benchmarks/train_in_scene_a10.py --data ../shared/data --work /tmp/a10-training
       [--train-cases 8] [--epochs 20] [--threads 1] [--picture docs/images/training_curves_a10.png]

Cases (splits.json, A10_vb3_lumbar_mr): the first ``--train-cases`` of 'train' are loaded as volume +
segmentation ("vertebral body" = every labelled body); the last two of them are the run's validation
cases (best epoch choice only). The model is then applied to every 'validation' scan of A10, never
seen in training or tuning, and scored with the Dice of the body mask (all bodies as one structure).
This is a demonstration of the workflow on a 2-core CPU, not a tuned model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def load_case(scene, folder: Path, name: str):
    from spinebrain_slicer.bridge import segmentation_node_from_labels, volume_node_from_image

    image = sitk.ReadImage(str(folder / "image.nii.gz"))
    bodies = sitk.Cast(sitk.ReadImage(str(folder / "vertebrae.nii.gz")) > 0, sitk.sitkUInt8)
    volume = volume_node_from_image(scene, sitk.Cast(image, sitk.sitkFloat32), name)
    segmentation_node_from_labels(scene, bodies, {1: "vertebral body"}, reference_volume_node=volume,
                                  name=f"{name} bodies")
    return volume, bodies


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return float(2.0 * np.logical_and(a, b).sum() / total) if total else float("nan")


def save_curves(epochs: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    numbers = [e["epoch"] for e in epochs]
    figure, loss_axes = plt.subplots(figsize=(6.4, 3.8), dpi=120)
    loss_axes.plot(numbers, [e["loss"] for e in epochs], "o-", color="#c0392b", label="training loss (Dice + CE)")
    loss_axes.set_xlabel("epoch")
    loss_axes.set_ylabel("training loss")
    metric_axes = loss_axes.twinx()
    metric_axes.plot(numbers, [e.get("val_mean_dice") for e in epochs], "s-", color="#2471a3",
                     label="validation Dice (2 held-out train patients)")
    metric_axes.set_ylabel("validation Dice")
    metric_axes.set_ylim(0, 1)
    lines = loss_axes.get_legend_handles_labels()[0] + metric_axes.get_legend_handles_labels()[0]
    loss_axes.legend(lines, [line.get_label() for line in lines], loc="upper center", bbox_to_anchor=(0.5, -0.2),
                     ncol=2, fontsize=8, frameon=False)
    loss_axes.xaxis.get_major_locator().set_params(integer=True)
    loss_axes.set_title(title, fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--work", required=True)
    parser.add_argument("--train-cases", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--picture", help="write the loss / metric curves as a PNG")
    args = parser.parse_args(argv)
    work = Path(args.work)
    os.environ["SPINEBRAIN_MODELS_DIR"] = str(work / "models")  # the trainer process registers nothing elsewhere
    import slicer

    from spinebrain_slicer.bridge import labels_from_segmentation_node
    from spinebrain_slicer.training_logic import TrainingLogic, TrainingSettings

    data = Path(args.data) / "A10_vb3_lumbar_mr"
    split = json.loads((Path(args.data) / "splits.json").read_text())["A10_vb3_lumbar_mr"]
    scene = slicer.vtkMRMLScene()
    names = split["train"][: args.train_cases]
    for name in names:
        load_case(scene, data / name, name)
    logic = TrainingLogic(scene)
    print("| case | reference | status |\n|---|---|---|")
    for case in logic.cases("spine-segment"):
        print(f"| {case.name} | {case.row()['reference']} | {case.row()['status']} |")
    settings = TrainingSettings("spine-segment", "a10-bodies-demo", work_folder=str(work / "run"), epochs=args.epochs,
                                device="cpu", threads=args.threads, validation_cases=names[-2:])
    started = time.time()
    run = logic.start(settings, on_epoch=lambda e: print(f"epoch {e['epoch']}/{e['epochs']} loss {e['loss']:.4f} "
                                                         f"val_mean_dice {e.get('val_mean_dice')} "
                                                         f"({e['seconds']:.0f} s)", flush=True))
    entry = run.wait()
    print(f"registered {entry.card.id} at {entry.path} after {time.time() - started:.0f} s; "
          f"best validation Dice {entry.card.metrics['val_mean_dice']:.3f} at epoch {entry.card.metrics['best_epoch']}")
    if args.picture:
        save_curves(run.epochs, Path(args.picture), f"Training in a scene: {len(names) - 2} A10 lumbar MR cases, "
                    f"3D UNet 64^3, CPU 1 thread")
    print("\n| held-out A10 scan (splits.json validation) | body Dice |\n|---|---|")
    scores = []
    for name in split["validation"]:
        volume, truth = load_case(scene, data / name, f"held-out {name}")
        segmentation = logic.apply_model(entry.card.id, volume)
        predicted, _ = labels_from_segmentation_node(segmentation, volume)
        score = dice(sitk.GetArrayFromImage(predicted) > 0, sitk.GetArrayFromImage(truth) > 0)
        scores.append(score)
        print(f"| {name} | {score:.3f} |", flush=True)
    print(f"| mean of {len(scores)} | {np.mean(scores):.3f} |")
    logic.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
