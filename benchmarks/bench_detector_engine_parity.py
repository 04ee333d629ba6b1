"""Do the SpineLabel detectors train to the same weights on the training engine as on the loop it replaced?

Usage: python benchmarks/bench_detector_engine_parity.py [--cases 3] [--epochs 2] [--seed 7]
       [--old-commit 6873769] [--work /tmp/detector-parity]

Patches come once from the current tree (synthetic lumbar cases, ``case_patches``), then each tree
trains both detectors on them with ``spinelabel.training._train`` (the 10 % hold-out, the per-epoch
held-out scores, ``train_detector``): the current tree on MONAI's SupervisedTrainer
(:func:`spinebrain.training.run_training`), the old commit (checked out with ``git archive`` into
the work folder) on its hand-written loop. Each runs in its own process with one thread. The
script prints the largest weight difference per detector and whether all weights are bit-identical,
and exits 1 when they are not.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DETECTORS = ("vertebra", "anchor")


def make_patches(cases: int, seed: int, path: Path) -> None:
    import numpy as np

    from spinebrain.spinelabel.training import TrainingOptions, case_patches, generate_cases

    options = TrainingOptions(region="lumbar", cases=max(cases, 2), seed=seed)
    rng = np.random.default_rng(seed)
    parts = [case_patches(case, "lumbar", rng, options) for case in generate_cases("lumbar", cases, seed * 100_000 + 1)]
    vertebra, vertebra_labels, anchor, anchor_labels = (np.concatenate([p[k] for p in parts]) for k in range(4))
    np.savez(path, vertebra=vertebra, vertebra_labels=vertebra_labels, anchor=anchor, anchor_labels=anchor_labels)


def train_worker(patches: Path, out: Path, epochs: int, seed: int) -> None:
    """Run inside one tree (PYTHONPATH): train both detectors as ``train_spine_label`` does, save their weights."""
    import numpy as np
    import torch
    from safetensors.torch import save_file

    from spinebrain.protocol import Progress
    from spinebrain.spinelabel.training import TrainingOptions, _train

    torch.set_num_threads(1)
    data = np.load(patches)
    options = TrainingOptions(region="lumbar", epochs=epochs, seed=seed, batch_size=64, learning_rate=0.015)
    tensors, losses = {}, {}
    for name in DETECTORS:
        events = []

        class Recorder(Progress):  # keeps the held-out scores reported after every epoch (both trees emit them)
            def emit(self, event, **fields):
                events.append(fields)

            def update(self, *args, **kwargs):
                pass

        model = _train(data[name], data[f"{name}_labels"], name, options, Recorder(quiet=True), epochs=epochs)
        tensors.update({f"{name}.{k}": v.contiguous() for k, v in model.state_dict().items()})
        losses[name] = [e["loss"] for e in events]
    save_file(tensors, str(out))
    out.with_suffix(".json").write_text(json.dumps(losses))


def run_tree(tree: Path, patches: Path, out: Path, epochs: int, seed: int) -> None:
    environment = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, __file__, "--worker", str(patches), str(out), "--epochs", str(epochs),
                    "--seed", str(seed)], check=True, env=environment, cwd=tree)


def compare(new: Path, old: Path) -> bool:
    from safetensors.torch import load_file

    a, b = load_file(str(new)), load_file(str(old))
    identical = a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    for name in DETECTORS:
        keys = [k for k in a if k.startswith(name + ".")]
        largest = max(float((a[k] - b[k]).abs().max()) for k in keys)
        scale = max(float(b[k].abs().max()) for k in keys)
        print(f"{name:9s} {len(keys)} tensors, largest |engine - old| = {largest:.3g} (largest |weight| {scale:.3g})")
    print("epoch losses engine:", json.loads(new.with_suffix(".json").read_text()))
    print("epoch losses old   :", json.loads(old.with_suffix(".json").read_text()))
    return identical


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--old-commit", default="6873769")
    parser.add_argument("--work", type=Path, default=Path("/tmp/detector-parity"))
    parser.add_argument("--worker", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        train_worker(*args.worker, args.epochs, args.seed)
        return 0
    old_tree = args.work / f"tree-{args.old_commit}"
    if not old_tree.is_dir():
        old_tree.mkdir(parents=True)
        archive = subprocess.run(["git", "archive", args.old_commit, "spinebrain"], cwd=REPO, check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(old_tree)], input=archive, check=True)
    patches = args.work / f"patches-{args.cases}-{args.seed}.npz"
    if not patches.is_file():
        sys.path.insert(0, str(REPO))
        make_patches(args.cases, args.seed, patches)
    run_tree(REPO, patches, args.work / "engine.safetensors", args.epochs, args.seed)
    run_tree(old_tree, patches, args.work / "old.safetensors", args.epochs, args.seed)
    identical = compare(args.work / "engine.safetensors", args.work / "old.safetensors")
    print("weights bit-identical:", identical)
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
