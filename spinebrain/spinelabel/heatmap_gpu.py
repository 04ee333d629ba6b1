"""The heatmap recipe (:mod:`.heatmap_recipe`) on one GPU for a few minutes, from a compact case cache.

    # here, on CPU: prepare the cases once (train-split real MR, selection patients, generated scans)
    python -m spinebrain.spinelabel.heatmap_gpu prep --data ../shared/data --out .gpu/dataB/label
    # on the GPU machine: train from the cache, stop by the clock, checkpoint every minute
    python -m spinebrain.spinelabel.heatmap_gpu train --cache .gpu/dataB/label --out /tmp/gpu/label --device cuda

The cache holds each :class:`~.heatmap_training.PreparedCase` (already on the 2 mm detector grid)
as an lzma-compressed npz: the image quantised to 7 bits (MR between its own 0 and 99.95
percentiles, CT over -1024..1536 HU), the body mask bit-packed, cut to a band of slices across R
around the spine (the samples are drawn near the spine's R). Reading NIfTI, resampling and the
generator, all slow on a shared CPU, stay here. The engines are the recipe's own (MONAI
``SupervisedTrainer``, selection loss on the held-out train patients each epoch, clock-annealed
learning rate); this module adds DataLoader workers, a checkpoint every ``--checkpoint-seconds``,
the best network kept outside ``scratch/``, and throughput / memory lines.
"""

from __future__ import annotations

import argparse
import io
import json
import lzma
import os
import time

#: The clock of ``--seconds`` starts here, before torch / MONAI are imported (the budget is wall clock).
PROCESS_START = time.time()

from pathlib import Path  # noqa: E402

import logging  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from ignite.engine import Events  # noqa: E402

from .heatmap import HeatmapDetector  # noqa: E402
from .heatmap_training import PreparedCase, HeatmapSamples  # noqa: E402

#: Real cases keep this many slices (2 mm) each side of the spine's median R; generated ones fewer (budget).
REAL_HALF_SLICES, GENERATED_HALF_SLICES = 15, 10
BITS = 7
CT_RANGE_HU = (-1024.0, 1536.0)


# ------------------------------------------------------------------------------------------ cache


def encode_case(case: PreparedCase, half_slices: int) -> bytes:
    """One case as lzma-compressed npz bytes (7-bit image, packed mask, metadata as JSON)."""
    middle = int(round(float(np.median(case.centres[:, 0]))))
    first, last = max(middle - half_slices, 0), min(middle + half_slices + 1, len(case.arrays))
    arrays = case.arrays[first:last]
    low, high = CT_RANGE_HU if case.ct else (float(np.percentile(arrays, 0)), float(np.percentile(arrays, 99.95)))
    scaled = np.clip((arrays - low) / max(high - low, 1e-6), 0.0, 1.0)
    image = np.round(scaled * (2 ** BITS - 1)).astype(np.uint8)
    centres = case.centres.copy()
    centres[:, 0] -= first
    meta = {"names": case.names, "ct": bool(case.ct), "top_row": float(case.top_row), "name": case.name,
            "anchor_known": bool(case.anchor_known), "bottom_row": float(case.bottom_row), "low": low, "high": high,
            "points": {k: list(map(float, v)) for k, v in case.info["points"].items()},
            "info": {k: v for k, v in case.info.items() if k != "points"}}
    buffer = io.BytesIO()
    np.savez(buffer, image=image, bodies=np.packbits(case.bodies[first:last].astype(bool)), centres=centres,
             shape=np.array(image.shape), meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    return lzma.compress(buffer.getvalue(), preset=9)


def decode_case(data: bytes) -> PreparedCase:
    """The :class:`PreparedCase` of :func:`encode_case` bytes (image back in its own units, float32)."""
    saved = np.load(io.BytesIO(lzma.decompress(data)), allow_pickle=False)
    meta = json.loads(saved["meta"].tobytes().decode())
    shape = tuple(int(v) for v in saved["shape"])
    image = saved["image"].astype(np.float32) / (2 ** BITS - 1) * (meta["high"] - meta["low"]) + meta["low"]
    bodies = np.unpackbits(saved["bodies"])[:int(np.prod(shape))].reshape(shape)
    info = {**meta["info"], "points": {k: np.asarray(v, float) for k, v in meta["points"].items()}}
    return PreparedCase(image.astype(np.float32), bodies, saved["centres"].astype(float), list(meta["names"]),
                        meta["ct"], meta["top_row"], meta["name"], meta["anchor_known"], info, meta["bottom_row"])


def prepare_cache(data_dir: str, out_dir: str, select: tuple[str, ...], generated: int, budget_mb: float,
                  seed: int = 0, coronal_tilt: float = 0.0, whole: bool = False) -> dict:
    """Write the recipe's cases (:func:`.heatmap_recipe.training_cases`) until the budget is used up by generated ones.

    ``whole``: the whole-spine model's view mix (:data:`.heatmap_recipe.WHOLE_VIEWS`), for ``train --third-channel C2``.
    """
    from .heatmap_recipe import WHOLE_VIEWS, training_cases

    out = Path(out_dir)
    for part in ("train", "select"):
        (out / part).mkdir(parents=True, exist_ok=True)
        for old in (out / part).glob("*.npz.xz"):
            old.unlink()
    written, budget = 0, budget_mb * 1e6
    counts = {"real": 0, "select": 0, "generated": 0}
    views = WHOLE_VIEWS if whole else None
    for part, stem, case in training_cases(Path(data_dir), select, generated, seed, coronal_tilt, views):  # no 'validation'
        real = not case.name.startswith("synthetic")
        data = encode_case(case, REAL_HALF_SLICES if real else GENERATED_HALF_SLICES)
        if not real and written + len(data) > budget:
            break
        (out / part / f"{stem}.npz.xz").write_bytes(data)
        written += len(data)
        counts["select" if part == "select" else "real" if real else "generated"] += 1
        if not real:
            print(f"generated {counts['generated']} ({case.info['view']}, {case.info['modality']}): "
                  f"{written / 1e6:.1f} MB", flush=True)
    manifest = {**counts, "bytes": written, "select_patients": list(select), "seed": seed, "coronal_tilt": coronal_tilt,
                "views": views or "recipe default",
                "real_half_slices": REAL_HALF_SLICES, "generated_half_slices": GENERATED_HALF_SLICES, "bits": BITS}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def load_cache(cache_dir: str) -> tuple[list[PreparedCase], list[PreparedCase]]:
    """(training cases, selection cases) of a cache folder."""
    cache = Path(cache_dir)
    parts = [[decode_case(path.read_bytes()) for path in sorted((cache / part).glob("*.npz.xz"))]
             for part in ("train", "select")]
    if not parts[0] or not parts[1]:
        raise FileNotFoundError(f"No cached cases in {cache}; run 'heatmap_gpu prep' first.")
    return parts[0], parts[1]


# ------------------------------------------------------------------------------------------ train


def _atomic_save(objects, path: Path) -> None:
    """torch.save through a temporary file: a kill mid-write never leaves a broken checkpoint."""
    temporary = path.with_suffix(".tmp")
    torch.save(objects, str(temporary))
    os.replace(temporary, path)


def _worker_init(_worker_id: int) -> None:
    """One thread per worker; the worker's MONAI transforms seeded once from its fresh seed, not per sample."""
    torch.set_num_threads(1)
    info = torch.utils.data.get_worker_info()
    dataset = info.dataset
    if isinstance(dataset, HeatmapSamples) and dataset.augment:
        dataset.seed_transforms_per_sample = False
        dataset.spatial.set_random_state(int(info.seed % 2**31))
        dataset.intensity.set_random_state(int((info.seed + 1) % 2**31))


def attach_gpu_handlers(trainer, evaluator, network, scheduler, out: Path, every_s: float, batch: int, start: float,
                        log_every: int = 50) -> dict:
    """Checkpoint by the clock, keep the best network by selection loss, print samples/s; returns live stats."""
    stats = {"samples": 0, "last_save": time.time(), "best": np.inf, "history": []}

    def resumable():
        return {"network": network.state_dict(), "optimizer": trainer.optimizer.state_dict(),
                "trainer": trainer.state_dict(), "scheduler": scheduler.state_dict()}

    @trainer.on(Events.ITERATION_COMPLETED)
    def _tick(engine):
        stats["samples"] += batch
        now = time.time()
        if engine.state.iteration % log_every == 0:
            print(f"epoch {engine.state.epoch} step {engine.state.iteration} loss {float(engine.state.output['loss']):.4f}"
                  f" samples {stats['samples']} samples/s {stats['samples'] / (now - start):.0f}", flush=True)
        if now - stats["last_save"] >= every_s:
            _atomic_save(resumable(), out / "checkpoint.pt")
            stats["last_save"] = now

    @evaluator.on(Events.COMPLETED)
    def _keep_best(engine):
        loss = float(engine.state.metrics["select_loss"])
        stats["history"].append({"epoch": trainer.state.epoch, "select_loss": loss, "samples": stats["samples"],
                                 "seconds": round(time.time() - start, 1)})
        if loss < stats["best"]:
            stats["best"] = loss
            _atomic_save(network.state_dict(), out / "best_network.pt")
        (out / "history.json").write_text(json.dumps(stats["history"], indent=1))

    stats["resumable"] = resumable
    return stats


def train_from_cache(cache_dir: str, out_dir: str, seconds: float, device: str = "cuda", workers: int = 4,
                     batch: int = 48, samples_per_epoch: int = 12_000, learning_rate: float = 2e-3,
                     init: str | None = None, outputs: int = 2, real_share: float = 0.6, seed: int = 0,
                     checkpoint_seconds: float = 50.0, reserve_s: float = 25.0, patience: int = 12,
                     max_epochs: int = 10_000, size: int = 128, start: float | None = None,
                     anchor_neighbour_weight: float = 1.0, third: str = "S1") -> dict:
    """Train for at most ``seconds`` from ``start`` (default now; loading included, ``reserve_s`` kept for the
    last saves). Progress: this module's lines every 50 steps and the selection loss per epoch. ``third``: the third
    output's target with ``outputs`` 3 (S1, or C2: the whole-spine model; see :func:`.heatmap_training.sample_targets`)."""
    from .heatmap_recipe import build_engines, warm_start, write_shape_points

    start = time.time() if start is None else start
    logging.getLogger("train").setLevel(logging.WARNING)  # the recipe's per-step lines: too many at GPU speed
    out = Path(out_dir)
    scratch = out / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    cases, chosen = load_cache(cache_dir)
    write_shape_points(cases, out)
    print(f"{len(cases)} training cases ({sum(not c.name.startswith('synthetic') for c in cases)} real), "
          f"{len(chosen)} selection cases, loaded in {time.time() - start:.1f} s", flush=True)
    train_set = HeatmapSamples(cases, samples_per_epoch, size=size, seed=seed, real_share=real_share, channels=outputs,
                               anchor_neighbour_weight=anchor_neighbour_weight, third=third)
    on_gpu = str(device).startswith("cuda")
    select_set = HeatmapSamples(chosen, 256 if on_gpu else 16, size=size, seed=seed + 1, augment=False,
                                real_share=1.0, channels=outputs, third=third)  # fixed samples of the held-out train patients
    train_set.precompute()
    select_set.precompute()
    loader = torch.utils.data.DataLoader(train_set, batch_size=batch, num_workers=workers, pin_memory=on_gpu,
                                         worker_init_fn=_worker_init, prefetch_factor=4 if workers else None)
    select_loader = torch.utils.data.DataLoader(select_set, batch_size=batch, num_workers=min(workers, 2),
                                                worker_init_fn=_worker_init)
    network = HeatmapDetector(outputs=outputs)
    if init:
        warm_start(network, init, heatmaps=outputs)
    network = network.to(device)
    deadline = start + seconds - reserve_s
    trainer, evaluator, scheduler = build_engines(network, loader, select_loader, scratch, max_epochs, learning_rate,
                                                  deadline, device=device, patience=patience, heatmaps=outputs)
    stats = attach_gpu_handlers(trainer, evaluator, network, scheduler, out, checkpoint_seconds, batch, start)
    if (out / "checkpoint.pt").exists():  # a killed run restarted into the same folder carries on from its last save
        from monai.handlers import CheckpointLoader

        objects = {"network": network, "optimizer": trainer.optimizer, "trainer": trainer, "scheduler": scheduler}
        CheckpointLoader(str(out / "checkpoint.pt"), objects, map_location=device, strict=False).attach(trainer)
        print(f"resuming from {out / 'checkpoint.pt'}", flush=True)
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    trainer.run()
    _atomic_save(stats["resumable"](), out / "checkpoint.pt")
    _atomic_save(network.state_dict(), out / "last_network.pt")
    elapsed = time.time() - start
    summary = {"samples": stats["samples"], "seconds": round(elapsed, 1),
               "samples_per_s": round(stats["samples"] / elapsed, 1), "epochs": trainer.state.epoch,
               "best_select_loss": stats["best"], "history": stats["history"], "device": str(device),
               "batch": batch, "workers": workers, "lr": learning_rate, "init": init,
               "max_memory_allocated_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if on_gpu else None}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"done: {summary['samples']} samples in {elapsed:.0f} s, {summary['samples_per_s']} samples/s, "
          f"best selection loss {stats['best']:.4f}, torch.cuda.max_memory_allocated "
          f"{summary['max_memory_allocated_gb']} GB", flush=True)
    return summary


# ------------------------------------------------------------------------------------------- post

#: The shipped package's settings, chosen on the selection patients (its card).
SETTINGS = {"threshold": 0.45, "anchor_threshold": 0.65}


def _benchmark():
    """benchmarks/eval_spine_label_real_mr.py (a script, not a package): the same scoring as the shipped card."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "eval_spine_label_real_mr.py"
    spec = importlib.util.spec_from_file_location("eval_spine_label_real_mr", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def post_run(run_dir: str, models_dir: str, data: str, report: str | None = None, command: str = "") -> dict:
    """Package the best-by-loss and the last network, keep the one that names better on the selection
    patients (train split, held out), then score it on the 'validation' scans like the shipped card."""
    from .heatmap_recipe import export_run

    benchmark, run = _benchmark(), Path(run_dir)
    candidates = {}
    for kind in ("best", "last"):
        if (run / f"{kind}_network.pt").exists():
            package = export_run(str(run), models_dir, None, SETTINGS, command, str(run / f"{kind}_network.pt"),
                                 model_id=f"spine-label-lumbar-heatmap-gpu-{kind}")
            select = benchmark.evaluate_model(str(package), Path(data), with_ct=False, split="select")["summary"]
            candidates[kind] = (package, select)
            print(f"{kind}: selection patients {json.dumps(select)}", flush=True)
    if not candidates:
        raise FileNotFoundError(f"No best_network.pt or last_network.pt in {run}; was the run started?")
    kind = max(candidates, key=lambda k: (candidates[k][1]["labeling_accuracy"], k == "best"))
    package = candidates[kind][0]
    result = benchmark.evaluate_model(str(package), Path(data), with_ct=True, split="validation")
    result.update(chosen=kind, package=str(package), selection={k: v[1] for k, v in candidates.items()})
    print(f"chosen {kind} ({package}); validation: {json.dumps(result['summary'])}", flush=True)
    for row in result["cases"]:
        print(f"  {row['case']:<12} tp {row['tp']} fp {row['fp']} fn {row['fn']} named {row['correct_labels']}"
              f" anchored {row.get('anchored')} | {' '.join(row['points'])}", flush=True)
    if report:
        Path(report).write_text(json.dumps(result, indent=1, default=float))
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    prep = commands.add_parser("prep", help="write the case cache (CPU)")
    prep.add_argument("--data", default="../shared/data")
    prep.add_argument("--out", default=".gpu/dataB/label")
    prep.add_argument("--generated", type=int, default=120, help="at most this many generated scans")
    prep.add_argument("--budget-mb", type=float, default=13.5, help="stop adding generated scans at this size")
    prep.add_argument("--seed", type=int, default=0)
    prep.add_argument("--coronal-tilt", type=float, default=0.0, metavar="DEGREES",
                      help="add real scans and half the generated ones turned about A-P by up to this much")
    prep.add_argument("--whole", action="store_true", help="the whole-spine model's view mix (more necks)")
    train = commands.add_parser("train", help="train from the cache")
    train.add_argument("--cache", default=".gpu/dataB/label")
    train.add_argument("--out", default="/tmp/gpu/label")
    train.add_argument("--device", default="cuda")
    train.add_argument("--seconds", type=float, default=450.0, help="wall clock from start, loading included")
    train.add_argument("--workers", type=int, default=4)
    train.add_argument("--batch", type=int, default=48)
    train.add_argument("--samples-per-epoch", type=int, default=12_000)
    train.add_argument("--lr", type=float, default=2e-3)
    train.add_argument("--init", help="a heatmap model package to start from (fine-tuning)")
    train.add_argument("--outputs", type=int, default=2, help="2: vertebra + L5 anchor; 3: also --third-channel")
    train.add_argument("--third-channel", choices=("S1", "C2"), default="S1",
                       help="the third output: the S1 body, or C2, the anchor of a whole-spine model")
    train.add_argument("--anchor-neighbour-weight", type=float, default=1.0,
                       help="weight of a false anchor answer on L4 / S1 (hard negatives; 1 = plain)")
    train.add_argument("--checkpoint-seconds", type=float, default=50.0)
    train.add_argument("--reserve-seconds", type=float, default=20.0, help="kept at the end for the last saves")
    train.add_argument("--threads", type=int, default=1)
    post = commands.add_parser("post", help="package a returned run, select on train patients, score on validation")
    post.add_argument("--run", default="/work/runs/gpu/label")
    post.add_argument("--models", required=True, help="a scratch models folder for the packages")
    post.add_argument("--data", default="../shared/data")
    post.add_argument("--json", help="write the full report here")
    post.add_argument("--command-line", default="", help="the training command to record in the card")
    args = parser.parse_args(argv)
    if args.command == "post":
        torch.set_num_threads(1)
        post_run(args.run, args.models, args.data, args.json, args.command_line)
        return
    torch.set_num_threads(getattr(args, "threads", 1))
    if args.command == "prep":
        from .heatmap_recipe import DEFAULT_SELECT
        print(json.dumps(prepare_cache(args.data, args.out, DEFAULT_SELECT, args.generated, args.budget_mb, args.seed,
                                       args.coronal_tilt, args.whole)))
        return
    train_from_cache(args.cache, args.out, args.seconds, args.device, args.workers, args.batch,
                     args.samples_per_epoch, args.lr, args.init, args.outputs,
                     checkpoint_seconds=args.checkpoint_seconds, reserve_s=args.reserve_seconds, start=PROCESS_START,
                     anchor_neighbour_weight=args.anchor_neighbour_weight, third=args.third_channel)


if __name__ == "__main__":
    main()
