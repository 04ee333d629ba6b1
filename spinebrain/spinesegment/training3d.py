"""Training the 3D iterative instance model on the shared MONAI engine (:func:`run_training`).

Data: prepared cases from a cache folder (:mod:`.data3d`; ``train_*`` for training, ``val_*``
held-out generated cases for the best-checkpoint choice). The list of training cases is re-read
every epoch, so a generator process may keep adding cases while training runs. Loss: seed 002's
(:mod:`.loss3d`); optimiser Adam, lr 1e-3, beta1 0.99 (the paper). Validation score: the mean of
patch Dice (threshold 0.5) and completeness accuracy on a fixed set of validation patches.
With ``traversal_every`` > 0 the whole traversal also runs on the first ``traversal_cases`` validation cases
every that many epochs (:func:`traversal_score`: what the product does, which the patch score did not
foresee) and the best weights by it are kept as ``best_traversal.safetensors``.
A clock stop (``stop_at``, unix time) writes the engine's STOP file at the end of the first epoch
past it; the run resumes from ``resume.pt`` when started again.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Events
from ignite.metrics import Metric
from monai.handlers.utils import from_engine

from ..training.clock import next_utc
from .data3d import CT_WINDOW, cached_cases, load_case
from .evaluation3d import mask_dice
from .loss3d import GAMMA, LAMBDA, SIGMA, IterativeInstanceLoss
from .network3d import IterativeInstanceNet, network_spec, split_outputs
from .sampler3d import PatchDataset, SamplerSettings, fixed_samples
from .traversal import TraversalSettings, run_traversal

TASK = "spine-segment-3d"
MODEL_ID = "spine-segment-ct-3d"


@dataclass
class Train3DOptions:
    cache: str
    out_dir: str
    spacing_mm: float = 4.0
    patch: int = 32
    filters: int = 12
    levels: int = 3
    dropout: float = 0.2
    min_voxels: int = 16  # the paper's n_min, 1000 mm^3, at 4 mm
    batch_size: int = 2
    samples_per_epoch: int = 40
    validation_patches: int = 12
    max_epochs: int = 1000
    learning_rate: float = 1e-3
    beta1: float = 0.99  # the paper's; 0.9 adapts faster in a short CPU run
    init_weights: str | None = None  # start from these weights (safetensors), e.g. an earlier run's
    seed: int = 0
    threads: int = 1
    stop_at: float | None = None  # unix time
    limit_cases: int | None = None  # tiny runs (tests)
    traversal_every: int = 0  # epochs between whole-traversal scores of the validation cases (0: never)
    traversal_cases: int = 4
    traversal_threshold: float = 0.85  # the bundled card's traversal threshold
    fp_weight: float = LAMBDA  # the loss's lambda (false-positive voxels); the paper's 0.1 favours over-segmentation


class PatchScore(Metric):
    """Mean of patch Dice (empty target and empty prediction count 1) and completeness accuracy."""

    def reset(self):
        self.dice, self.correct = [], []

    def update(self, output):
        predictions, labels = output
        for prediction, label in zip(predictions, labels, strict=True):
            segmentation, complete = split_outputs(prediction[None])
            mask = segmentation[0, 0] > 0
            target = label[0] > 0.5
            total = int(mask.sum() + target.sum())
            self.dice.append(1.0 if total == 0 else 2.0 * float((mask & target).sum()) / total)
            if target.any():
                self.correct.append(float((complete[0] > 0) == (label[2, 0, 0, 0] > 0.5)))

    def compute(self):
        dice = float(np.mean(self.dice)) if self.dice else 0.0
        accuracy = float(np.mean(self.correct)) if self.correct else 0.0
        self.last = {"patch_dice": dice, "completeness_accuracy": accuracy}
        return 0.5 * (dice + accuracy)


def traversal_score(predict, cases, settings: TraversalSettings) -> dict:
    """The traversal as the product runs it, on prepared cases (model grid): each reference vertebra of at
    least ``n_min`` voxels scores the Dice of its best-overlapping instance (0 when none overlaps)."""
    dice, false = [], 0
    for case in cases:
        instances = run_traversal(case.image, predict, settings).instances
        used = set()
        for rank in range(1, len(case.names) + 1):
            reference = case.ranks == rank
            if reference.sum() < settings.n_min:
                continue
            overlaps = [mask_dice(i.mask, reference) for i in instances] or [0.0]
            best = int(np.argmax(overlaps))
            dice.append(overlaps[best])
            if overlaps[best] > 0:
                used.add(best)
        false += len(instances) - len(used)
    return {"traversal_dice": float(np.mean(dice)) if dice else 0.0, "false_per_case": false / max(len(cases), 1)}


class CaseList:
    """The training cases, re-read from the cache when new files appear (between epochs)."""

    def __init__(self, folder: Path, limit: int | None, spacing_mm: float):
        self.folder, self.limit, self.cases, self.seen = folder, limit, [], set()
        self.spacing_mm = spacing_mm
        self.refresh()

    def refresh(self) -> None:
        for path in cached_cases(self.folder, "train_")[: self.limit]:
            if path.name not in self.seen:
                self.seen.add(path.name)
                self.cases.append(load_case(path, self.spacing_mm))

    def __call__(self):
        return self.cases


def train(options: Train3DOptions, progress=None) -> Path:
    from monai.utils import set_determinism

    from ..training import EngineSettings, run_training

    torch.set_num_threads(options.threads)
    set_determinism(options.seed)
    out = Path(options.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(options.cache)
    settings = SamplerSettings(patch=options.patch, min_voxels=options.min_voxels, elastic_probability=0.1)
    cases = CaseList(cache, options.limit_cases, options.spacing_mm)
    val_cases = [load_case(p, options.spacing_mm) for p in cached_cases(cache, "val_")] or cases()[:1]
    val_items = fixed_samples(val_cases, options.validation_patches, settings)
    train_loader = torch.utils.data.DataLoader(PatchDataset(cases, options.samples_per_epoch, settings, options.seed),
                                               batch_size=options.batch_size, num_workers=0)
    val_loader = torch.utils.data.DataLoader(val_items, batch_size=2, num_workers=0)
    network = IterativeInstanceNet(2, options.filters, options.levels, options.dropout)
    if options.init_weights:
        from safetensors.torch import load_file

        network.load_state_dict(load_file(options.init_weights))
    optimizer = torch.optim.Adam(network.parameters(), lr=options.learning_rate, betas=(options.beta1, 0.999))
    metric = PatchScore(output_transform=from_engine(["pred", "label"]))
    (out / "options.json").write_text(json.dumps(asdict(options), indent=1), encoding="utf-8")

    traversal = TraversalSettings(patch=options.patch, n_min=options.min_voxels, threshold=options.traversal_threshold)
    best_traversal = {"traversal_dice": -1.0}

    def score_traversal(trainer):
        from safetensors.torch import save_file

        from .pipeline3d import Model3D

        network.eval()
        with torch.no_grad():
            score = traversal_score(Model3D(None, network, torch.device("cpu")).predict,
                                    val_cases[: options.traversal_cases], traversal)
        network.train()
        score["epoch"] = trainer.state.epoch
        if score["traversal_dice"] > best_traversal["traversal_dice"]:
            best_traversal.update(score)
            save_file({k: v.contiguous() for k, v in network.state_dict().items()},
                      str(out / "best_traversal.safetensors"))
        with (out / "traversal.jsonl").open("a", encoding="utf-8") as log:
            log.write(json.dumps(score) + "\n")
        print("traversal", json.dumps(score), "best", best_traversal["traversal_dice"], flush=True)

    def between_epochs(trainer):
        if options.traversal_every and trainer.state.epoch % options.traversal_every == 0:
            score_traversal(trainer)
        cases.refresh()
        scores = getattr(metric, "last", {})
        print(time.strftime("%H:%M:%S"), f"epoch {trainer.state.epoch} loss {trainer.state.output['loss']:.4f} "
              f"cases {len(cases())} {json.dumps(scores)}", flush=True)
        if options.stop_at is not None and time.time() > options.stop_at:
            (out / "STOP").touch()

    loss = IterativeInstanceLoss(options.fp_weight)
    outcome = run_training(network, optimizer, loss, train_loader, val_loader, metric,
                           EngineSettings(out, max_epochs=options.max_epochs, metric_name="val_dice_completeness"),
                           progress=progress, extra_handlers=[(Events.EPOCH_COMPLETED, between_epochs)])
    print("finished:", outcome.stopped, "best", outcome.best_metric, "epoch", outcome.best_epoch, flush=True)
    (out / "STOP").unlink(missing_ok=True)  # a later call resumes instead of stopping at once
    return outcome.best_weights


def card_for(options: dict, metrics: dict, command: str = "", threshold: float = 0.5):
    from .. import RESEARCH_NOTICE, __version__
    from ..models import ModelCard

    patch = int(options["patch"])
    return ModelCard(
        id=MODEL_ID, task=TASK, version="1.0", labels={"0": "background", "1": "next vertebra"},
        modalities=["CT"], validated_modalities=["CT"], spacing=[float(options["spacing_mm"])] * 3,
        patch_size=[patch] * 3, normalisation=dict(CT_WINDOW),
        network=network_spec(options["filters"], options["levels"], options["dropout"]), region="whole",
        training_data=("Generated CT spines (spinebrain.synth.generate_spine, half lumbar views, half random views) "
                       "and CT synthesised from the VerSe sub-verse004 vertebra label map (A8) with random "
                       "deformation and intensity per structure; no real CT image was trained on."),
        training_command=command, metrics=metrics,
        extra={"loss": {"lambda": float(options.get("fp_weight", LAMBDA)), "gamma": GAMMA, "sigma": SIGMA},
               "traversal": {"n_min": int(options["min_voxels"]), "delta_max": 2, "max_iterations": 20,
                             "threshold": float(threshold), "step_fraction": 0.5},
               "notice": RESEARCH_NOTICE, "software": __version__},
    )


def export_package(run_dir: str | Path, folder: str | Path, metrics: dict, command: str = "",
                   threshold: float = 0.5, weights: str = "best.safetensors") -> Path:
    from safetensors.torch import load_file

    from ..models import save_model_package

    run_dir = Path(run_dir)
    options = json.loads((run_dir / "options.json").read_text(encoding="utf-8"))
    state = load_file(str(run_dir / weights))
    return save_model_package(folder, state, card_for(options, metrics, command, threshold), overwrite=True)


def main(argv=None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Train the 3D iterative vertebra instance model (CT).")
    parser.add_argument("--cache", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--until", help="clock stop HH:MM (UTC, the next one)")
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--beta1", type=float, default=0.99)
    parser.add_argument("--init", help="initial weights (safetensors)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (lower to fine-tune from --init)")
    parser.add_argument("--validation-patches", type=int, default=12,
                        help="fixed validation patches in all (over the val_ cases); more make the best-epoch "
                             "choice less noisy")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--traversal-every", type=int, default=0,
                        help="run the whole traversal on validation cases every N epochs and keep the best weights "
                             "by it (best_traversal.safetensors); 0: never")
    parser.add_argument("--fp-weight", type=float, default=LAMBDA,
                        help=f"the loss's lambda: weight of false-positive voxels (default the paper's {LAMBDA})")
    args = parser.parse_args(argv)
    stop = next_utc(args.until) if args.until else None
    train(Train3DOptions(args.cache, args.out, max_epochs=args.epochs, samples_per_epoch=args.samples, stop_at=stop,
                         beta1=args.beta1, init_weights=args.init, learning_rate=args.lr,
                         validation_patches=args.validation_patches, threads=args.threads,
                         traversal_every=args.traversal_every, fp_weight=args.fp_weight))


if __name__ == "__main__":
    main()
