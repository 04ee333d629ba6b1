"""Training throughput per task: samples per second of one training step (forward, loss, backward, AdamW step).

Usage: python benchmarks/bench_training_throughput.py [--threads 1] [--device cpu] [--steps 5] [--out FILE.csv]

For every network a task trains -- the shipped models' networks, rebuilt from their cards in
``Resources/Models``, and the 3D network ``spinebrain train datalist`` gives a new segmentation model
(what the Training module runs) -- one training step on random input of the training batch shape is
timed after one warm-up step, ``--steps`` times. samples/s = batch size x steps / seconds. A sample
is one network input: a 2D patch (SpineLabel paper detector), a 3-slice 2D crop (heatmap detector,
SpineSegment 2D) or a 3D patch. Data loading and augmentation are not included (they run on the
same cores and depend on the data); see docs/training.md for the figures measured here.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _card(model_id: str):
    from spinebrain.models import ModelCard

    return ModelCard.read(REPO / "Resources" / "Models" / model_id)


def cases() -> list[dict]:
    """(name, task, network factory, input shape, loss) of every training network."""
    from monai.losses import DiceCELoss

    from spinebrain.models import ModelCard, build_network
    from spinebrain.training.from_datalist import DEFAULT_NETWORK, TASK_DEFAULTS

    def datalist_network(patch: list[int]):
        card = ModelCard(id="bench", task="spine-segment", version="1", labels={"0": "background", "1": "x"},
                         modalities=["CT"], spacing=[1.0] * 3, patch_size=patch, normalisation={"method": "zscore"},
                         network={"architecture": DEFAULT_NETWORK["architecture"],
                                  "kwargs": {"spatial_dims": 3, "in_channels": 1, "out_channels": 2,
                                             **DEFAULT_NETWORK["kwargs"]}})
        return build_network(card)

    ce = torch.nn.CrossEntropyLoss()
    dice_ce = DiceCELoss(to_onehot_y=True, softmax=True)
    lumbar = _card("spine-label-lumbar")
    heatmap = _card("spine-label-lumbar-heatmap")
    body = _card("spine-segment-mr-2d")
    tissue = _card("brain-tissue-synth")
    patch = lumbar.network["kwargs"]["vertebra"]["patch"]
    rows = [
        {"name": "spine-label paper vertebra detector (patch CNN)", "task": "spine-label",
         "network": lambda: build_network(lumbar).vertebra, "batch": 256, "shape": (1, patch, patch), "loss": "ce"},
        {"name": "spine-label heatmap detector (2D BasicUNet)", "task": "spine-label",
         "network": lambda: build_network(heatmap), "batch": 8, "shape": (3, 128, 128), "loss": "mse"},
        {"name": "spine-segment 2D MR bodies (2D BasicUNet)", "task": "spine-segment",
         "network": lambda: build_network(body), "batch": 8,
         "shape": (body.network["kwargs"]["in_channels"], 128, 128), "loss": "dice_bce"},
        {"name": "brain-tissue synth (3D UNet)", "task": "brain-seg",
         "network": lambda: build_network(tissue), "batch": 2, "shape": (1, 48, 48, 48), "loss": "dice_ce"},
    ]
    for card_task, defaults in TASK_DEFAULTS.items():
        size = defaults["patch_size"]
        rows.append({"name": f"train datalist {card_task} (3D UNet, {size[0]}^3)", "task": card_task,
                     "network": lambda size=size: datalist_network(size), "batch": 2, "shape": (1, *size),
                     "loss": "dice_ce"})
    losses = {"ce": ce, "dice_ce": dice_ce, "mse": torch.nn.MSELoss(),
              "dice_bce": DiceCELoss(sigmoid=True)}  # one-channel body mask: sigmoid output
    for row in rows:
        row["loss"] = (row["loss"], losses[row["loss"]])
    return rows


def target_for(kind: str, output: torch.Tensor) -> torch.Tensor:
    if kind == "ce":
        return torch.randint(0, output.shape[1], (output.shape[0], *output.shape[2:]))
    if kind == "mse":
        return torch.rand_like(output)
    if kind == "dice_bce":
        return (torch.rand_like(output) > 0.5).float()
    return torch.randint(0, output.shape[1], (output.shape[0], 1, *output.shape[2:]))


def measure(row: dict, steps: int, device: str) -> float:
    torch.manual_seed(0)
    network = row["network"]().to(device).train()
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-3)
    kind, loss_function = row["loss"]
    batch = torch.randn(row["batch"], *row["shape"], device=device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        output = network(batch)
        loss = loss_function(output, target_for(kind, output).to(device))
        loss.backward()
        optimizer.step()

    step()  # warm-up: allocations, first-call overheads
    started = time.perf_counter()
    for _ in range(steps):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return row["batch"] * steps / (time.perf_counter() - started)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", help="also write the table as CSV")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = []
    print(f"| network | task | batch x input | samples/s ({args.device}, {args.threads} thread(s)) |")
    print("|---|---|---|---|")
    for row in cases():
        rate = measure(row, args.steps, args.device)
        shape = "x".join(str(v) for v in row["shape"])
        results.append({"network": row["name"], "task": row["task"], "batch": row["batch"], "input": shape,
                        "samples_per_s": round(rate, 2)})
        print(f"| {row['name']} | {row['task']} | {row['batch']} x {shape} | {rate:.2f} |", flush=True)
    if args.out:
        with open(args.out, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(results[0]))
            writer.writeheader()
            writer.writerows(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
