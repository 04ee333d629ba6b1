"""The lesion recipe on a (shared, time-boxed) GPU: compact label maps, DataLoader workers, a seconds budget.

Two commands (``python -m spinebrain.brainseg.lesion_gpu prep|train``):

* ``prep``: the B7 label maps on the 1 mm model grid, cropped to the brain plus a margin, as compact
  uint8 indices with their :func:`.lesion_synthesis.lesion_zones` (so the device does not spend its
  seconds on distance maps), in one ``lesion_maps.npz.xz`` (+ ``labels.json``; 20 maps: about 7.5 MB).
* ``train``: :func:`.lesion_training.train_lesion` on that folder with ``--workers`` DataLoader
  workers (synthesis runs in them), an epoch of ``--steps-per-epoch`` batches (checkpoint and
  validation at every epoch end), a cosine learning rate over the wall-clock budget ``--seconds``
  (counted from the start of the process), a stop once the budget minus a reserve for the last
  validation and the package is spent, and a summary: samples seen, samples/s, peak GPU memory.

Only torch, MONAI, SimpleITK, numpy and scipy are imported (no Slicer), so it runs on a bare GPU box.
"""

from __future__ import annotations

import argparse
import io
import lzma
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from ..training.clock import clock_cosine, process_start_time


def _process_started() -> float:
    """time.monotonic() of this process's start: the budget includes start-up."""
    return time.monotonic() - max(0.0, time.time() - process_start_time())


STARTED = _process_started()  # the budget counts from here: start-up and data loading are part of it
PREPARED_FILE = "lesion_maps.npz.xz"  # an uncompressed npz, xz-compressed: label maps shrink ~1.7x more than in npz


# -- prep ------------------------------------------------------------------------------------------
def prepare(maps: str | Path, out: str | Path, margin_mm: float = 6.0) -> Path:
    """Write ``out/lesion_maps.npz`` (+ ``labels.json``) from a B7-style folder; returns the npz path."""
    from .lesion_synthesis import lesion_zones
    from .synthesis import LabelMapBank

    maps, out = Path(maps), Path(out)
    bank = LabelMapBank.from_folder(maps, 1.0)
    values = np.asarray(bank.values)
    arrays = {"values": values.astype(np.int32)}
    margin = int(math.ceil(margin_mm))
    for source in bank.maps:
        brain = np.argwhere(bank.brain[source.indices])
        lo = np.maximum(brain.min(0) - margin, 0)
        hi = np.minimum(brain.max(0) + margin + 1, source.indices.shape)
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        indices = np.ascontiguousarray(source.indices[box])
        arrays[f"{source.name}_labels"] = indices
        arrays[f"{source.name}_zones"] = lesion_zones(values[indices], 1.0)
    out.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    _atomic_write(out / PREPARED_FILE, lzma.compress(buffer.getvalue(), preset=9 | lzma.PRESET_EXTREME))
    shutil.copyfile(maps / "labels.json", out / "labels.json")
    return out / PREPARED_FILE


def _atomic_write(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    partial.replace(path)


def prepared_banks(folder: str | Path, validation_maps, seed: int = 0):
    """(training, validation) :class:`.lesion_synthesis.LesionBank` from a ``prep`` folder."""
    from .lesion_synthesis import LesionBank
    from .synthesis import LabelMap, LabelMapBank, tissue_rule

    folder = Path(folder)
    data = np.load(io.BytesIO(lzma.decompress((folder / PREPARED_FILE).read_bytes())))
    values = data["values"].tolist()
    rule = tissue_rule(folder / "labels.json")
    brain_values = np.array([rule.get(v, 0) > 0 for v in values])
    held = {f"training_seg_{n:02d}" for n in validation_maps}
    names = sorted(k[: -len("_labels")] for k in data.files if k.endswith("_labels"))
    rng = np.random.default_rng(seed)
    banks = []
    for chosen in ([n for n in names if n not in held], [n for n in names if n in held]):
        maps, zones = [], []
        for name in chosen:
            indices = data[f"{name}_labels"]
            brain = np.argwhere(brain_values[indices])
            maps.append(LabelMap(name, indices, brain[rng.choice(len(brain), min(len(brain), 20000), replace=False)]))
            zones.append(data[f"{name}_zones"])
        banks.append(LesionBank(LabelMapBank(maps, values, rule), 1.0, seed, zones=zones))
    return tuple(banks)


# -- the time budget -------------------------------------------------------------------------------
class TimeBudget:
    """Cosine learning rate over wall-clock seconds, progress lines, and a stop that still saves.

    Once ``seconds - reserve`` have passed (since :data:`STARTED`) the current epoch is ended
    (``terminate_epoch``: validation, best weights and the resume checkpoint still run at its end),
    then the run (``terminate`` at that epoch end).
    """

    def __init__(self, optimizer, seconds: float, reserve: float, lr: float, lr_min: float, batch_size: int,
                 every: int = 20):
        self.optimizer, self.seconds, self.reserve = optimizer, seconds, reserve
        self.lr, self.lr_min, self.batch_size, self.every = lr, lr_min, batch_size, every
        self.samples, self.first_step, self.ending = 0, None, False

    def handlers(self) -> list:
        from ignite.engine import Events

        return [(Events.ITERATION_STARTED, self.set_lr), (Events.ITERATION_COMPLETED, self.after_step),
                (Events.EPOCH_COMPLETED, self.after_epoch)]

    def elapsed(self) -> float:
        return time.monotonic() - STARTED

    def set_lr(self, trainer) -> None:
        lr = self.lr * clock_cosine(self.elapsed() / max(self.seconds - self.reserve, 1.0), floor=self.lr_min / self.lr)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def after_step(self, trainer) -> None:
        if self.first_step is None:
            self.first_step = time.monotonic()
        self.samples += self.batch_size
        if trainer.state.iteration % self.every == 0:
            print(f"[lesion] epoch {trainer.state.epoch} step {trainer.state.iteration} loss {_loss(trainer):.4f} "
                  f"lr {self.optimizer.param_groups[0]['lr']:.2e} {self.rate():.1f} samples/s "
                  f"t={self.elapsed():.0f}s", flush=True)
        if not self.ending and self.elapsed() >= self.seconds - self.reserve:
            self.ending = True
            print(f"[lesion] time budget reached at {self.elapsed():.0f} s: ending this epoch", flush=True)
            trainer.terminate_epoch()

    def after_epoch(self, trainer) -> None:
        if self.ending:
            trainer.terminate()

    def rate(self) -> float:
        if self.first_step is None:
            return 0.0
        return self.samples / max(time.monotonic() - self.first_step, 1e-6)

    def summary(self, device) -> str:
        import torch

        peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
        return (f"[lesion] done: {self.samples} samples seen, {self.rate():.1f} samples/s (after the first step), "
                f"{self.elapsed():.0f} s in all, torch.cuda.max_memory_allocated {peak:.2f} GiB")


def _loss(trainer) -> float:
    output = trainer.state.output
    return float(output["loss"]) if isinstance(output, dict) and "loss" in output else float("nan")


def train(args) -> Path:
    import torch

    from ..protocol import Progress
    from .lesion_training import LesionRecipe, train_lesion

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    recipe = LesionRecipe(
        maps=args.data, out=str(out / "models"), model_id=args.id, patch=args.patch, epochs=10_000,
        validation_maps=tuple(args.validation_maps), steps_per_epoch=args.steps_per_epoch, batch_size=args.batch_size, validation_crops=args.validation_crops,
        learning_rate=args.lr, seed=args.seed, device=args.device, run_dir=str(out / "run"), resume=args.resume,
        init_weights=args.init_weights, workers=args.workers,
        command="python -m spinebrain.brainseg.lesion_gpu " + " ".join(sys.argv[1:]))

    def budget(optimizer, recipe):
        return TimeBudget(optimizer, args.seconds, args.reserve, recipe.learning_rate, args.lr * 0.02, recipe.batch_size)

    print(f"[lesion] loading {args.data} ({time.monotonic() - STARTED:.0f} s)", flush=True)
    banks = prepared_banks(args.data, recipe.validation_maps, recipe.seed)
    print(f"[lesion] {len(banks[0].bank.maps)} training / {len(banks[1].bank.maps)} validation maps loaded "
          f"({time.monotonic() - STARTED:.0f} s)", flush=True)
    path = train_lesion(recipe, Progress(), banks=banks, budget=budget)
    print(f"[lesion] package {path} written at {time.monotonic() - STARTED:.0f} s", flush=True)
    return path


# -- command line ----------------------------------------------------------------------------------
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spinebrain.brainseg.lesion_gpu", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    prep = commands.add_parser("prep", help="write the compact label maps")
    prep.add_argument("--maps", required=True, help="the B7_synthseg_label_maps folder")
    prep.add_argument("--out", required=True, help="folder for lesion_maps.npz and labels.json")
    prep.add_argument("--margin-mm", type=float, default=6.0)
    run = commands.add_parser("train", help="train within a wall-clock budget")
    run.add_argument("--data", required=True, help="a prep folder")
    run.add_argument("--out", required=True, help="run/ (checkpoints, best weights) and models/<id>/ go here")
    run.add_argument("--id", default="brain-lesion-synth")
    run.add_argument("--device", default="cuda")
    run.add_argument("--workers", type=int, default=4)
    run.add_argument("--seconds", type=float, default=540.0, help="wall-clock budget from the process start")
    run.add_argument("--reserve", type=float, default=25.0, help="seconds kept for the last validation and package")
    run.add_argument("--patch", type=int, default=64)
    run.add_argument("--batch-size", type=int, default=8)
    run.add_argument("--steps-per-epoch", type=int, default=60, help="an epoch ends in a checkpoint and a validation")
    run.add_argument("--validation-crops", type=int, default=24)
    run.add_argument("--validation-maps", type=int, nargs="+", default=[17, 18, 19, 20],
                     help="numbers of the maps held out for the choice of the best weights")
    run.add_argument("--lr", type=float, default=2e-3)
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--init-weights", help="start from these weights (.safetensors of the same network)")
    run.add_argument("--no-resume", dest="resume", action="store_false")
    run.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.command == "prep":
        path = prepare(args.maps, args.out, args.margin_mm)
        print(f"{path}: {path.stat().st_size / 1e6:.2f} MB")
        return 0
    train(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
