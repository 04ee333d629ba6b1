"""Turn a 2D MR training run (``best.safetensors`` + ``history.json``) into a model package."""

from __future__ import annotations

import json
from pathlib import Path

from .. import RESEARCH_NOTICE, __version__
from ..models import ModelCard, save_model_package
from ..training.handlers import BEST_FILE
from .pipeline2d import DEFAULT_INFERENCE, TASK

MODEL_ID = "spine-segment-mr-2d"
TRAINING_DATA = ("Real MR, 'train' lists of splits.json: A10 MyoSegmenTUM lumbar water-fat MR (L1-L5 bodies), "
                 "A11 lumbar T2 TSE (T11-L5), A12 pathological thoracolumbar T1/T2/TIRM (T10-S1); manual "
                 "vertebral-body masks. Four training scans (one or two per set) held out for early stopping and for "
                 "choosing the inference settings.")


def card_for_run(run_dir: str | Path, metrics: dict, inference: dict | None = None, command: str = "",
                 version: str = "1.0") -> ModelCard:
    history = json.loads((Path(run_dir) / "history.json").read_text(encoding="utf-8"))
    options = history["options"]
    context = int(options["context"])
    crop = int(options["crop"])
    return ModelCard(
        id=MODEL_ID, task=TASK, version=version,
        labels={"0": "background", "1": "vertebral body"},
        modalities=["MR"], validated_modalities=["T1", "T2", "water-fat GRE"],
        spacing=[float(options["spacing_mm"])] * 3, patch_size=[crop, crop, 2 * context + 1],
        normalisation={"method": "zscore-minmax", "clip_percentiles": [0.5, 99.5], "n4": bool(options["n4"])},
        network=history["network"], region="thoracolumbar",
        training_data=TRAINING_DATA, training_command=command, metrics=metrics,
        extra={"plane": options["plane"], "context": context, "inference": {**DEFAULT_INFERENCE, **(inference or {})},
               "best_epoch": history.get("best_epoch"), "early_stop_val_dice": history.get("best_val_dice"),
               "early_stop_metric": "mean Dice of whole slices of the held-out training scans, inside each scan's "
                                    "labelled span" if options.get("span_mask") else "mean Dice of whole slices",
               "notice": RESEARCH_NOTICE, "software": __version__},
    )


def export_package(run_dir: str | Path, folder: str | Path, metrics: dict, inference: dict | None = None,
                   command: str = "", overwrite: bool = True, version: str = "1.0") -> Path:
    from safetensors.torch import load_file

    state = load_file(str(Path(run_dir) / BEST_FILE))
    return save_model_package(folder, state, card_for_run(run_dir, metrics, inference, command, version),
                              overwrite=overwrite)
