"""The 3D instance model trained on a GPU for a fixed number of seconds, its CT generated on the fly.

Run from the repository root (``--device cpu --workers 1 --seconds 60`` is the dry run):
``python -m spinebrain.spinesegment.device3d --data .gpu/dataA/seg3d --out /tmp/gpu/seg3d --device cuda``

Why a separate recipe from :mod:`.training3d`: a GPU eats patches far faster than one process can
generate CT, so the DataLoader workers (each its own process, one thread) *generate* the cases
themselves (:class:`GeneratedPatches`: a pool of generated spines and CT synthesised from the A8 label
map, one case replaced every ``patches_per_case`` patches) instead of reading a prepared cache; the
GPU, which would wait for them, trains on every batch twice, the second time mirrored left-right
(:class:`MirroredReplay`). The run is bounded by seconds, not epochs: the learning rate follows the
clock (warm-up, then cosine), an epoch (validation, best weights, resume checkpoint) ends by its
length or after ``epoch_seconds``, and the run stops itself ``reserve_seconds`` before ``seconds``
and saves. Everything else is the shared
engine (:func:`spinebrain.training.run_training`) with the 3D loss, sampler and validation score.

Seeds: generated training CT takes seeds 0, 1, 2, ... (skipping 5000-9999, the threshold and test
seeds); validation patches come from seeds 90000+ (as in :mod:`.training3d`).
"""

from __future__ import annotations

import time

RUN_STARTED = time.time()  # the clock stop counts from here: imports and data generation included

import argparse  # noqa: E402
import json  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from ..training.clock import clock_cosine  # noqa: E402

RESERVED_SEEDS = range(5000, 10000)  # threshold choice (5000+) and the held-out test scans (9000+)
VALIDATION_SEED = 90000
LABEL_MAP_NAME = "sub-verse004_seg-vert_msk.nii.gz"


@dataclass
class DeviceOptions:
    data: str
    out: str
    device: str = "cuda"
    seconds: float = 540.0
    reserve_seconds: float = 20.0  # left for the last validation and the saves
    epoch_seconds: float = 55.0  # an epoch (validation + resume checkpoint) at least this often
    workers: int = 4
    batch_size: int = 12  # the workers, not the GPU, set the pace: more, smaller steps
    # 120 mm field (the paper's is 128 mm). Dice ceiling of the grid alone (reference masks down and back
    # up, no CT refinement), generated CT: 4 mm 0.89, 3 mm 0.945, 2.5 mm 0.956, 2 mm 0.974; a 64^3 patch
    # at 2 mm costs 3.5x the samples' CPU time and 2.5x the CPU inference per step of 48^3 at 2.5 mm
    spacing_mm: float = 2.5
    patch: int = 48
    filters: int = 16
    levels: int = 4
    dropout: float = 0.2
    min_voxels: int = 64  # the paper's n_min, 1000 mm^3, at 2.5 mm
    mirrored_replay: bool = True  # each batch trained again mirrored left-right (GPU time is spare)
    learning_rate: float = 2e-3
    beta1: float = 0.9
    warmup_fraction: float = 0.05
    final_lr_fraction: float = 0.05
    pool: int = 8  # cases each worker keeps
    patches_per_case: int = 64  # patches drawn before a worker replaces one case
    label_map_share: float = 0.3  # share of cases synthesised from the real label map
    # ~40 s at the expected ~40 samples/s; ending an epoch early (epoch_seconds) discards the batches the
    # workers have queued, ending it by its length does not
    samples_per_epoch: int = 1560
    validation_cases: int = 3
    validation_patches: int = 32
    seed: int = 0


def training_seed(worker: int, workers: int, index: int) -> int:
    """The ``index``-th generated seed of a worker: disjoint between workers, never a reserved seed."""
    seed = worker + index * workers
    return seed + len(RESERVED_SEEDS) if seed >= RESERVED_SEEDS.start else seed


class GeneratedPatches(torch.utils.data.Dataset):
    """``length`` training patches per epoch from CT generated inside each DataLoader worker.

    Map-style (the engine needs an epoch length) but the index is ignored: each worker keeps its own
    pool of prepared cases (persistent workers keep it between epochs) and draws a random one per patch.
    """

    def __init__(self, options: DeviceOptions, length: int, label_map: Path | None):
        self.options, self.length, self.label_map = options, int(length), label_map
        self.pool, self.generated, self.drawn, self.sampler, self.worker = [], 0, 0, None, (0, 1)

    def __len__(self) -> int:
        return self.length

    def _start(self) -> None:
        from .sampler3d import PatchSampler, SamplerSettings

        info = torch.utils.data.get_worker_info()
        self.worker = (info.id, info.num_workers) if info is not None else (0, 1)
        torch.set_num_threads(1)
        rng = np.random.default_rng([self.options.seed, self.worker[0]])
        settings = SamplerSettings(patch=self.options.patch, min_voxels=self.options.min_voxels,
                                   elastic_probability=0.1)
        self.sampler = PatchSampler(settings, rng)

    def _new_case(self):
        from .data3d import from_spine_case, label_map_case, synthetic_case

        seed = training_seed(self.worker[0], self.worker[1], self.generated)
        self.generated += 1
        spacing = self.options.spacing_mm
        if self.label_map is not None and self.sampler.rng.random() < self.options.label_map_share:
            case = label_map_case(self.label_map, seed)
            return from_spine_case(f"map_{seed}", case, spacing)
        return from_spine_case(f"syn_{seed}", synthetic_case(seed, spacing), spacing)

    def _refresh(self) -> None:
        """Fill the pool at the start (two cases, then one more per draw interval) and replace the oldest later."""
        if len(self.pool) < 2:
            while len(self.pool) < 2:
                self.pool.append(self._new_case())
        elif self.drawn % self.options.patches_per_case == 0:
            if len(self.pool) >= self.options.pool:
                self.pool.pop(0)
            self.pool.append(self._new_case())

    def __getitem__(self, _index: int) -> dict:
        if self.sampler is None:
            self._start()
        self._refresh()
        self.drawn += 1
        case = self.pool[int(self.sampler.rng.integers(len(self.pool)))]
        return self.sampler.sample(case)


class MirroredReplay:
    """The loader's batches, each followed by its left-right mirror (array axis x of the LPS grid).

    A mirrored spine is still a spine: target, memory, surface weights and completeness stay valid, so
    the GPU, which would otherwise wait for the CPU workers, trains on twice the views per generated patch.
    """

    def __init__(self, loader, mirrored: bool):
        self.loader, self.mirrored = loader, mirrored

    def __len__(self) -> int:
        return len(self.loader) * (2 if self.mirrored else 1)

    def __iter__(self):
        for batch in self.loader:
            yield batch
            if self.mirrored:
                yield {key: torch.flip(value, dims=[-1]) for key, value in batch.items()}


def lr_by_clock(options: DeviceOptions, started: float, run_started: float = RUN_STARTED):
    """LambdaLR factor from the fraction of the training seconds gone: linear warm-up, cosine down.

    A plain function (not an object) so the scheduler's state does not carry the clock: a resumed
    run starts its own schedule again.
    """
    span = max(options.seconds - options.reserve_seconds - (started - run_started), 1.0)

    def factor(_step: int) -> float:
        return max(clock_cosine((time.time() - started) / span, options.warmup_fraction,
                                floor=options.final_lr_fraction), 0.01)

    return factor


class ClockAndReport:
    """Per iteration: progress lines (samples/s), the end of an epoch after ``epoch_seconds``, the clock stop."""

    def __init__(self, options: DeviceOptions, out: Path, optimizer, device: torch.device,
                 run_started: float = RUN_STARTED):
        self.options, self.out, self.optimizer, self.device = options, out, optimizer, device
        self.run_started = run_started
        self.samples, self.first_batch_at, self.epoch_started, self.last_print = 0, None, time.time(), 0.0
        self.stopping, self.rated = False, 0

    def epoch_start(self, trainer) -> None:
        self.epoch_started = None  # set by the epoch's first batch: waiting for data is not training

    def iteration(self, trainer) -> None:
        now = time.time()
        batch = int(trainer.state.batch["image"].shape[0])
        self.samples += batch
        if self.first_batch_at is None:
            self.first_batch_at = now
            print(f"first batch after {now - self.run_started:.1f} s", flush=True)
        else:
            self.rated += batch  # the rate counts from the first batch on
        self.epoch_started = self.epoch_started or now
        if now - self.last_print >= 10.0:
            self.last_print = now
            print(f"{now - self.run_started:6.0f} s epoch {trainer.state.epoch} step {trainer.state.iteration} "
                  f"loss {trainer.state.output['loss'].item():.4f} lr {self.optimizer.param_groups[0]['lr']:.2e} "
                  f"samples {self.samples} {self.rate():.1f} samples/s{self._memory()}", flush=True)
        if now - self.run_started >= self.options.seconds - self.options.reserve_seconds:
            self.stopping = True  # a last validation and checkpoint, then the stop (epoch_end)
            trainer.terminate_epoch()
        elif now - self.epoch_started >= self.options.epoch_seconds:
            trainer.terminate_epoch()  # validation, best weights and resume checkpoint now

    def epoch_end(self, trainer) -> None:
        if self.stopping:  # the engine's StopRequest ends the run after the next iteration
            (self.out / "STOP").touch()

    def rate(self) -> float:
        if self.first_batch_at is None:
            return 0.0
        return self.rated / max(time.time() - self.first_batch_at, 1e-6)

    def _memory(self) -> str:
        return f" peak {torch.cuda.max_memory_allocated() / 2**30:.2f} GB" if self.device.type == "cuda" else ""

    def summary(self) -> dict:
        peak = torch.cuda.max_memory_allocated() if self.device.type == "cuda" else 0
        views = 2 if self.options.mirrored_replay else 1
        return {"total_samples": self.samples, "samples_per_second": round(self.rate(), 2),
                "generated_patches": self.samples // views, "patches_per_second": round(self.rate() / views, 2),
                "seconds_total": round(time.time() - self.run_started, 1),
                "seconds_to_first_batch": None if self.first_batch_at is None
                else round(self.first_batch_at - self.run_started, 1),
                "cuda_max_memory_allocated_bytes": int(peak), "cuda_max_memory_allocated_gb": round(peak / 2**30, 3)}


def validation_patches(options: DeviceOptions) -> list[dict]:
    from .data3d import from_spine_case, synthetic_case
    from .sampler3d import SamplerSettings, fixed_samples

    cases = [from_spine_case(f"val_{s}", synthetic_case(s, options.spacing_mm), options.spacing_mm)
             for s in range(VALIDATION_SEED, VALIDATION_SEED + options.validation_cases)]
    settings = SamplerSettings(patch=options.patch, min_voxels=options.min_voxels)
    return fixed_samples(cases, options.validation_patches, settings)


def train_on_device(options: DeviceOptions, run_started: float = RUN_STARTED) -> dict:
    """Train until ``options.seconds`` after ``run_started`` (unix time); the run's summary."""
    from ignite.engine import Events
    from monai.handlers.utils import from_engine
    from monai.utils import set_determinism
    from safetensors.torch import save_file

    from ..training import EngineSettings, run_training
    from ..training.distributed import DistributedContext
    from .loss3d import IterativeInstanceLoss
    from .network3d import IterativeInstanceNet
    from .training3d import PatchScore

    torch.set_num_threads(1)
    set_determinism(options.seed)
    device = torch.device(options.device)
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "STOP").unlink(missing_ok=True)
    label_map = Path(options.data) / LABEL_MAP_NAME
    label_map = label_map if label_map.is_file() else None
    print(f"device {device}, label map {'used' if label_map else 'missing: generated CT only'}", flush=True)
    (out / "options.json").write_text(json.dumps(asdict(options), indent=1), encoding="utf-8")
    dataset = GeneratedPatches(options, options.samples_per_epoch, label_map)  # or fewer: ClockAndReport
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=options.batch_size, num_workers=options.workers, persistent_workers=options.workers > 0,
        pin_memory=device.type == "cuda", prefetch_factor=2 if options.workers > 0 else None)
    if options.workers > 0:
        # start the workers now: they generate their first cases while this process makes the validation
        # patches (the engine's own iterator later reuses the persistent workers and their case pools)
        iter(loader)
    val_loader = torch.utils.data.DataLoader(validation_patches(options), batch_size=8, num_workers=0)
    network = IterativeInstanceNet(2, options.filters, options.levels, options.dropout).to(device)
    optimizer = torch.optim.Adam(network.parameters(), lr=options.learning_rate, betas=(options.beta1, 0.999))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_by_clock(options, time.time(), run_started))
    clock = ClockAndReport(options, out, optimizer, device, run_started)
    metric = PatchScore(output_transform=from_engine(["pred", "label"]))

    def epoch_report(trainer):
        clock.epoch_end(trainer)
        print(f"{time.time() - run_started:6.0f} s epoch {trainer.state.epoch} done: "
              f"{json.dumps(getattr(metric, 'last', {}))} samples {clock.samples}", flush=True)

    outcome = run_training(
        network, optimizer, IterativeInstanceLoss(), MirroredReplay(loader, options.mirrored_replay), val_loader,
        metric,
        EngineSettings(out, max_epochs=10 ** 6, metric_name="val_dice_completeness", schedule_per_epoch=False),
        DistributedContext(device=device), lr_scheduler=scheduler,
        extra_handlers=[(Events.EPOCH_STARTED, clock.epoch_start), (Events.ITERATION_COMPLETED, clock.iteration),
                        (Events.EPOCH_COMPLETED, epoch_report)])
    save_file({k: v.detach().cpu().contiguous().clone() for k, v in network.state_dict().items()},
              str(out / "final.safetensors"))
    (out / "STOP").unlink(missing_ok=True)
    summary = {**clock.summary(), "stopped": outcome.stopped, "epochs": outcome.epochs_run,
               "best_val_dice_completeness": outcome.best_metric, "best_epoch": outcome.best_epoch,
               "last_validation": getattr(metric, "last", {})}
    (out / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    print("summary", json.dumps(summary), flush=True)
    return summary


def main(argv=None) -> None:
    defaults = DeviceOptions(data="", out="")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="folder with the A8 label map (the prep command's output)")
    parser.add_argument("--out", required=True)
    for name in ("device", "seconds", "workers", "batch_size", "spacing_mm", "patch", "filters", "levels",
                 "learning_rate", "epoch_seconds", "samples_per_epoch", "reserve_seconds", "min_voxels", "seed"):
        value = getattr(defaults, name)
        parser.add_argument("--" + name.replace("_", "-"), type=type(value), default=value)
    parser.add_argument("--no-mirrored-replay", dest="mirrored_replay", action="store_false")
    args = parser.parse_args(argv)
    train_on_device(DeviceOptions(**vars(args)))


if __name__ == "__main__":
    main()
