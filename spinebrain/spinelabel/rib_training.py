"""Train the rib classifier (:mod:`.ribs`) on samples from generated spines (:mod:`.rib_data`) and add it to a
SpineLabel heatmap package (card ``extra["ribs"]``, weights ``ribs.safetensors``, ONNX ``ribs.onnx``).

Contrast must not be a cue: besides the generator's CT / T1 / T2 / random contrasts, every sample gets a random
intensity curve (gamma), sometimes inverted, with noise. The selection scans (the last tenth of each sample file's
scans) are never trained on; the epoch with the lowest selection loss on the thoracolumbar junction
(T11-L2, where the answer matters) is kept. With ``--outputs 2`` (samples of the rib_data recipes "whole_sacrum" and
"label_maps") the network also answers "is the sacrum" (:mod:`.sacrum_evidence`); its loss at the lumbosacral
junction (L4-S1, and S1's place in maps without it) is added to the selection loss.

Usage: python -m spinebrain.spinelabel.rib_training --generate 600 --workers 2 --run RUN --package PACKAGE_DIR
       [--minutes M] [SAMPLES.npz ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .rib_data import NO_SACRUM, carries_rib, is_sacrum
from .rib_network import RibClassifier
from .ribs import CHANNELS, PLANE_PIXEL_MM, PLANE_PX

#: Levels whose answer decides a name (weighted up in the loss; the selection loss is taken on them): the last rib
#: (T11-L2) and, in samples of the recipe "whole" (rib_data), the first (C6-T2).
JUNCTION = ("T11", "T12", "T13", "L1", "L2", "C6", "C7", "T1", "T2")
JUNCTION_WEIGHT = 3.0
#: Where the sacrum answer decides a name: the lowest lumbar vertebrae, S1, and S1's place in a map without it
#: (rib_data recipe "label_maps"); its selection loss is taken there.
SACRAL_JUNCTION = ("L4", "L5", "L6", "S1", NO_SACRUM)
#: --narrow-share: the share of samples whose field of view is cut to a random reach left and right (mm), as in a
#: scan cropped close to the spine, so the classifier learns what it can tell there (the card's min_lateral_mm).
NARROW_REACH_MM = (40.0, 75.0)


def load_samples(paths) -> dict:
    """The sample files' arrays joined; ``parts`` says which file each sample came from."""
    parts = [np.load(p) for p in paths]
    samples = {key: np.concatenate([part[key] for part in parts]) for key in ("planes", "answers", "names", "seeds")}
    samples["parts"] = np.concatenate([np.full(len(part["names"]), k) for k, part in enumerate(parts)])
    return samples


def selection_seeds(samples: dict, share: float) -> set:
    """The last ``share`` of each sample file's scans, so that every recipe trained on is also selected on; where
    that takes no scan or every scan (files of a scan or two), the last ``share`` of all scans (at least one)."""
    parts = samples.get("parts", np.zeros(len(samples["seeds"]), int))
    chosen = set()
    for part in np.unique(parts):
        seeds = np.unique(samples["seeds"][parts == part])
        chosen |= set(seeds[len(seeds) - int(round(share * len(seeds))):].tolist())
    everything = np.unique(samples["seeds"])
    if not chosen or len(chosen) == len(everything):
        chosen = set(everything[-max(1, int(round(share * len(everything)))):].tolist())
    return chosen


def augment(batch: np.ndarray, rng: np.random.Generator, narrow_share: float = 0.0) -> np.ndarray:
    """Random left-right flip, narrower field of view (``narrow_share``), intensity curve (gamma 0.5-2), inversion
    (a quarter), noise; outside stays 0."""
    batch = batch.copy()
    middle = (PLANE_PX - 1) / 2.0
    for sample in batch:
        if rng.random() < 0.5:
            sample[:] = sample[:, :, ::-1]
        if rng.random() < narrow_share:
            reach_px = rng.uniform(*NARROW_REACH_MM) / PLANE_PIXEL_MM
            sample[-1][:, np.abs(np.arange(PLANE_PX) - middle) > reach_px] = 0.0
        inside, planes = sample[-1] > 0.5, sample[:-1]
        planes = np.clip(planes, 0, 1) ** np.exp(rng.uniform(np.log(0.5), np.log(2.0)))
        if rng.random() < 0.25:
            planes = 1.0 - planes
        planes = planes * rng.uniform(0.8, 1.2) + rng.uniform(-0.1, 0.1)
        planes = planes + rng.normal(0, rng.uniform(0, 0.05), planes.shape)
        sample[:-1] = np.where(inside[None], planes, 0.0)
    return batch.astype(np.float32)


def weights_of(names, outputs: int = 1) -> np.ndarray:
    decisive = JUNCTION + (SACRAL_JUNCTION if outputs > 1 else ())
    return np.where(np.isin(names, decisive), JUNCTION_WEIGHT, 1.0).astype(np.float32)


def targets_of(names, outputs: int) -> np.ndarray:
    """(N, outputs) answers: carries a rib; with two outputs also "is the sacrum" (rib_data recipes "whole_sacrum",
    "label_maps")."""
    answers = [[carries_rib(str(n))] + ([is_sacrum(str(n))] if outputs > 1 else []) for n in names]
    return np.asarray(answers, np.float32).reshape(len(names), outputs)


def _cross_entropy(probability: np.ndarray, answers: np.ndarray) -> np.ndarray:
    return -(answers * np.log(np.clip(probability, 1e-6, 1))
             + (1 - answers) * np.log(np.clip(1 - probability, 1e-6, 1)))


def selection_figures(network, planes, answers, names, batch: int = 128) -> dict:
    """Loss and accuracy of the rib answer (all bodies, the junctions); with a sacrum answer also its loss and accuracy
    at the lumbosacral junction (:data:`SACRAL_JUNCTION`), added to the junction loss the epoch is chosen by."""
    network.eval()
    with torch.inference_mode():
        logits = np.concatenate([network(torch.from_numpy(planes[k:k + batch].astype(np.float32))).numpy()
                                 for k in range(0, len(planes), batch)])
    probability = 1 / (1 + np.exp(-logits))
    answers = answers.reshape(len(answers), -1)
    junction = np.isin(names, JUNCTION)
    loss = _cross_entropy(probability[:, 0], answers[:, 0])
    right = (probability[:, 0] > 0.5) == (answers[:, 0] > 0.5)
    figures = {"loss": float(loss.mean()), "junction_loss": float(loss[junction].mean()),
               "accuracy": float(right.mean()), "junction_accuracy": float(right[junction].mean()),
               "samples": int(len(answers)), "junction_samples": int(junction.sum())}
    if answers.shape[1] > 1:
        sacral = np.isin(names, SACRAL_JUNCTION)
        sacrum_loss = _cross_entropy(probability[sacral, 1], answers[sacral, 1])
        sacrum_right = (probability[sacral, 1] > 0.5) == (answers[sacral, 1] > 0.5)
        figures.update({"sacrum_loss": float(sacrum_loss.mean()), "sacrum_samples": int(sacral.sum()),
                        "sacrum_accuracy": float(sacrum_right.mean())})
        figures["junction_loss"] += figures["sacrum_loss"]
    return figures


def train(samples: dict, minutes: float, selection_share: float = 0.1, batch: int = 64, lr: float = 1e-3,
          seed: int = 0, log=print, narrow_share: float = 0.0, outputs: int = 1) -> tuple[RibClassifier, dict, int]:
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    held = np.isin(samples["seeds"], list(selection_seeds(samples, selection_share)))
    train_idx, held_idx = np.flatnonzero(~held), np.flatnonzero(held)
    planes, names = samples["planes"], samples["names"]
    answers = targets_of(names, outputs)
    weights = weights_of(names, outputs)
    network = RibClassifier(CHANNELS, outputs=outputs)
    optimiser = torch.optim.AdamW(network.parameters(), lr=lr, weight_decay=1e-4)
    best, best_state, best_epoch, epoch = None, None, -1, 0
    stop = time.monotonic() + 60 * minutes
    while time.monotonic() < stop:
        network.train()
        order = rng.permutation(train_idx)
        total = 0.0
        for start in range(0, len(order), batch):
            picked = order[start:start + batch]
            x = torch.from_numpy(augment(planes[picked].astype(np.float32), rng, narrow_share))
            y = torch.from_numpy(answers[picked])
            w = torch.from_numpy(weights[picked])[:, None]
            loss = (torch.nn.functional.binary_cross_entropy_with_logits(network(x), y, reduction="none") * w).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(picked)
            if time.monotonic() > stop:
                break
        figures = selection_figures(network, planes[held_idx], answers[held_idx], names[held_idx])
        log(json.dumps({"epoch": epoch, "train_loss": round(total / len(order), 4), **{k: round(v, 4) if isinstance(
            v, float) else v for k, v in figures.items()}}))
        if best is None or figures["junction_loss"] < best["junction_loss"]:
            best, best_epoch = figures, epoch
            best_state = {k: v.detach().clone() for k, v in network.state_dict().items()}
        epoch += 1
    network.load_state_dict(best_state)
    return network.eval(), best, best_epoch


def build_samples(first_seed: int, count: int, workers: int, folder: Path, recipe: str = "thoracolumbar") -> list[Path]:
    """Sample files for ``count`` generated scans from ``first_seed``, one per worker process (kept files are reused)."""
    import subprocess

    folder.mkdir(parents=True, exist_ok=True)
    share = -(-count // workers)
    jobs, paths = [], []
    for worker in range(workers):
        start, number = first_seed + worker * share, min(share, count - worker * share)
        path = folder / f"ribs_{start}_{number}.npz"
        paths.append(path)
        if number > 0 and not path.is_file():
            command = [sys.executable, "-m", "spinebrain.spinelabel.rib_data", str(start), str(number), str(path),
                       recipe]
            jobs.append(subprocess.Popen(command, stdout=subprocess.DEVNULL))
    if any(job.wait() for job in jobs):
        raise RuntimeError("A sample-building process failed; run it again (finished files are kept).")
    return [p for p in paths if p.is_file()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("samples", nargs="*", type=Path, help="sample files (rib_data); or --generate")
    parser.add_argument("--generate", type=int, default=0, help="build samples of this many generated scans first")
    parser.add_argument("--first-seed", type=int, default=3_000_001)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--run", type=Path, default=Path("rib-run"), help="where samples and weights go")
    parser.add_argument("--package", type=Path, help="the SpineLabel heatmap package to add the classifier to")
    parser.add_argument("--minutes", type=float, default=16.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--recipe", default="thoracolumbar",
                        help="rib_data.RECIPES (the views and levels sampled) or label_maps")
    parser.add_argument("--narrow-share", type=float, default=0.0, help="samples seen with a narrower field of view")
    parser.add_argument("--outputs", type=int, default=1,
                        help="2: also answer \"is the sacrum\" (recipes whole_sacrum, label_maps)")
    parser.add_argument("--as-sacrum", action="store_true",
                        help="install into --package as its sacrum classifier, beside the rib classifier it keeps")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    paths = list(args.samples)
    if args.generate:
        paths += build_samples(args.first_seed, args.generate, args.workers, args.run, args.recipe)
    samples = load_samples(paths)
    print(json.dumps({"samples": int(len(samples["answers"])), "scans": int(len(np.unique(samples["seeds"]))),
                      "with_rib": int(samples["answers"].sum())}), flush=True)
    network, best, epoch = train(samples, args.minutes, lr=args.lr, log=lambda line: print(line, flush=True),
                                 narrow_share=args.narrow_share, outputs=args.outputs)
    from safetensors.torch import save_file

    args.run.mkdir(parents=True, exist_ok=True)
    weights = args.run / "ribs.safetensors"
    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, str(weights))
    seeds, parts = samples["seeds"], samples["parts"]
    ranges = ", ".join(f"{seeds[parts == k].min()}-{seeds[parts == k].max()}" for k in np.unique(parts))
    description = {"training_data": f"{len(np.unique(seeds))} generated scans (seeds {ranges}, "
                                    f"rib_data.TRAINING_RATES), {len(seeds)} samples",
                   "training_command": "python -m spinebrain.spinelabel.rib_training " + " ".join(sys.argv[1:]),
                   "selection": {"epoch": epoch, **best}}
    weights.with_suffix(".json").write_text(json.dumps({"kwargs": network.kwargs, **description}, indent=1))
    print(json.dumps({"kept_epoch": epoch, **best}), flush=True)
    if args.package:
        entry = install_into_package(args.package, weights, description, sacrum=args.as_sacrum)
        print(json.dumps({k: v for k, v in entry.items() if k != "network"}), flush=True)


#: Card ``ribs`` keys a reinstall of the rib classifier keeps: the options that say how its answers are used, not what
#: the classifier is, and the sacrum classifier installed beside it.
KEPT_ON_REINSTALL = ("share", "floor", "transitional", "first_rib", "min_lateral_mm", "sacrum")


def install_into_package(package: Path, weights: Path, description: dict, share: float = 0.9,
                         floor: float = 0.02, sacrum: bool = False) -> dict:
    """Copy the trained weights into a SpineLabel heatmap package as ``ribs.safetensors``, export them to
    ``ribs.onnx`` (checked against torch; skipped without ``onnx`` / ``onnxscript``) and record both in the card's
    ``extra["ribs"]`` with the decision options and ``description`` (how it was trained, what it measured).

    A package that already holds a rib classifier keeps its decision options and its sacrum classifier
    (:data:`KEPT_ON_REINSTALL`: e.g. the whole-spine package's first_rib, transitional and min_lateral_mm): a
    retrained classifier must not silently change how its answers are used. ``sacrum``: install the weights as the
    package's sacrum classifier instead (``sacrum.safetensors`` / ``.onnx``, card ``ribs.sacrum``; its last answer is
    read), beside the rib classifier the package holds, which stays as it is."""
    from ..errors import InputError
    from ..models.card import ModelCard
    from ..models.onnx_network import write_card_entry
    from .ribs import CARD_KEY, SACRUM_KEY

    previous = ModelCard.read(package).extra.get(CARD_KEY) or {}
    if sacrum and not previous:
        raise InputError(f"The package {package} holds no rib classifier: install one before a sacrum classifier.")
    part = _installed_part(Path(package), Path(weights), SACRUM_KEY if sacrum else "ribs")
    if sacrum:
        entry = {**previous, SACRUM_KEY: {**part, **description}}
    else:
        kept = {key: value for key, value in previous.items() if key in KEPT_ON_REINSTALL}
        entry = {**part, "share": share, "floor": floor, **kept, **description}
    write_card_entry(package, CARD_KEY, entry)
    return entry


def _installed_part(package: Path, weights: Path, stem: str) -> dict:
    """``weights`` copied into ``package`` as ``<stem>.safetensors`` and exported to ``<stem>.onnx`` (checked against
    torch; skipped without ``onnx`` / ``onnxscript``): the card keys of both."""
    import importlib.util
    import shutil

    from safetensors.torch import load_file

    from ..models.onnx_network import MAX_ABS_DIFFERENCE, _export_part
    from ..models.package import sha256_file

    target = package / f"{stem}.safetensors"
    shutil.copyfile(weights, target)
    kwargs = json.loads(weights.with_suffix(".json").read_text())["kwargs"]
    network = RibClassifier(**kwargs)
    network.load_state_dict(load_file(str(target)))
    part = {"weights_file": target.name, "sha256": sha256_file(target), "network": network.config}
    if all(importlib.util.find_spec(name) for name in ("onnx", "onnxscript")):
        exported = package / f"{stem}.onnx"
        difference = _export_part(network.eval(), exported, 1, kwargs["channels"], 18)
        if difference > MAX_ABS_DIFFERENCE:
            exported.unlink()
        else:
            part["onnx"] = {"file": exported.name, "sha256": sha256_file(exported), "weights_sha256": part["sha256"],
                            "opset": 18, "max_abs_difference": float(f"{difference:.3g}")}
    return part


if __name__ == "__main__":
    main()
