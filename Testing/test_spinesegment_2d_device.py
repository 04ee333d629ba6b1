"""The 2D MR recipe's device pieces: the compact training cache, per-worker draws, the wall-clock
schedule and epochs, the exported results and the post-run package (see GPU runs in the card)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

CASE = "A10_vb3_lumbar_mr/vb3_29"


def test_slice_differences_round_trip_and_crop_follows_the_span():
    from spinebrain.spinesegment.cache2d import crop_case, decode_slices, encode_slices
    from spinebrain.spinesegment.training2d import CachedCase

    codes = np.random.default_rng(0).integers(0, 128, (6, 9, 11)).astype(np.uint8)
    assert np.array_equal(decode_slices(encode_slices(codes)), codes)
    mask = np.zeros((30, 40, 50), np.uint8)
    mask[10:14, 15:20, 20:31] = 1
    case = CachedCase("A10_vb3_lumbar_mr/x", mask.astype(np.float16), mask, np.arange(10, 14), (20, 30))
    cropped = crop_case(case, in_plane_margin=5, slice_margin=2)
    assert cropped.image.shape == (8, 15, 21)
    assert crop_case(case, in_plane_margin=5, slice_margin=2, row_margin=8).image.shape == (8, 21, 21)
    assert list(cropped.body_slices) == [2, 3, 4, 5]
    assert cropped.span == (5, 15) and cropped.mask[:, :, 5].any() and cropped.mask[:, :, 15].any()


def test_the_cache_holds_what_training_reads_from_the_nifti(data_dir, tmp_path):
    from spinebrain.errors import InputError
    from spinebrain.spinesegment.cache2d import read_cache, write_cache
    from spinebrain.spinesegment.training2d import TrainOptions, load_case

    options = TrainOptions(str(data_dir), str(tmp_path))
    write_cache(options, tmp_path / "cache", in_plane_margin=32, slice_margin=4, only=[CASE], row_margin=48)
    (cached,) = read_cache(tmp_path / "cache", options)
    full = load_case(CASE, data_dir / CASE, options)
    assert cached.name == CASE and cached.mask.sum() == full.mask.sum()  # every body voxel kept
    first = int(full.body_slices[0]) - 4
    rows = max(0, np.flatnonzero(full.mask.any(axis=(0, 2)))[0] - 48)
    cols = max(0, np.flatnonzero(full.mask.any(axis=(0, 1)))[0] - 32)
    window = full.image[first:first + cached.image.shape[0], rows:rows + cached.image.shape[1],
                        cols:cols + cached.image.shape[2]].astype(np.float32)
    # 64 levels, rounding (half a step) + dither (half a step) + float16
    assert np.abs(window - cached.image.astype(np.float32)).max() < 1.05 / 63
    assert cached.span == (full.span[0] - cols, full.span[1] - cols)
    options.spacing_mm = 2.0
    with pytest.raises(InputError, match="spacing_mm"):
        read_cache(tmp_path / "cache", options)


def test_each_worker_draws_its_own_slices():
    from spinebrain.spinesegment.training2d import CachedCase, RandomSliceDataset, TrainOptions

    mask = np.zeros((200, 8, 8), np.uint8)
    mask[:, 2:5, 2:5] = 1
    case = CachedCase("A10_vb3_lumbar_mr/x", np.arange(200, dtype=np.float16)[:, None, None] * np.ones((1, 8, 8),
                      np.float16) / 200, mask, np.arange(200), (0, 7))
    options = TrainOptions("data", "out", samples_per_epoch=8, context=0)
    dataset = RandomSliceDataset([case], options, lambda sample: float(sample["image"][0, 0, 0]))
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2)
    first, second = (batch.tolist() for batch in loader)  # one batch from each worker
    assert first != second


def test_the_time_schedule_warms_up_then_decays_to_the_floor():
    from spinebrain.spinesegment.runtime2d import TimeCosineLR

    schedule = TimeCosineLR(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0), 1e-3, 0.0, 100.0)
    assert schedule.rate(0.0) == pytest.approx(1e-4)
    assert schedule.rate(5.0) == pytest.approx(1e-3)
    assert schedule.rate(50.0) < schedule.rate(20.0) < 1e-3
    assert schedule.rate(100.0) == pytest.approx(3e-5) and schedule.rate(500.0) == pytest.approx(3e-5)


@pytest.mark.slow
def test_a_clocked_run_from_the_cache_exports_its_results_and_packages(data_dir, tmp_path):
    from spinebrain.spinesegment.cache2d import write_cache
    from spinebrain.spinesegment.engine2d import train
    from spinebrain.spinesegment.package2d import export_package
    from spinebrain.spinesegment.pipeline2d import load_model_2d
    from spinebrain.spinesegment.training2d import TrainOptions

    cache = tmp_path / "cache"
    write_cache(TrainOptions(str(data_dir), str(tmp_path)), cache, 32, 4, only=["A10_vb3_lumbar_mr/vb3_01", CASE])
    options = TrainOptions("", str(tmp_path / "scratch" / "run"), cache_dir=str(cache), export_dir=str(tmp_path / "out"),
                           architecture="fpn", crop=64, batch_size=2, samples_per_epoch=10_000, max_epochs=100,
                           workers=1, epoch_seconds=1.0, lr_schedule="time", stop_at=time.time() + 6,
                           validation_step=16, validation_cases=[CASE])
    train(options)
    history = json.loads((tmp_path / "out" / "history.json").read_text())
    assert history["stopped"] == "stopped by the wall-clock limit" and len(history["epochs"]) >= 2  # epochs ended by the clock
    assert history["throughput"]["samples"] > 0 and history["best_epoch"] >= 1
    assert not (tmp_path / "out" / "resume.pt").exists() and (tmp_path / "scratch" / "run" / "resume.pt").exists()
    package = export_package(tmp_path / "out", tmp_path / "models", {"measured_on": "nothing (test)"})
    assert load_model_2d(str(package), device="cpu").card.extra["context"] == 1
