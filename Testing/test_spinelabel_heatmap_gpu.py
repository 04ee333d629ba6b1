"""The GPU form of the heatmap recipe: the compact case cache and a clock-stopped run from it (on CPU here)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from spinebrain.spinelabel.heatmap_gpu import decode_case, encode_case, load_cache, prepare_cache, train_from_cache
from spinebrain.spinelabel.heatmap_training import PreparedCase


def _case(name: str, ct: bool = False, slices: int = 40, seed: int = 0) -> PreparedCase:
    """A noisy slab with four bodies on slice 20; centres on a straight line down the rows."""
    rng = np.random.default_rng(seed)
    arrays = (rng.uniform(-1000, 1500, (slices, 96, 64)) if ct else rng.gamma(2.0, 100.0, (slices, 96, 64)))
    bodies = np.zeros(arrays.shape, np.uint8)
    names = ["L3", "L4", "L5", "S1"]
    centres = np.array([[20.0, 20.0 + 16 * k, 30.0] for k in range(4)])
    for _, row, col in centres:
        bodies[16:25, int(row) - 4:int(row) + 4, int(col) - 6:int(col) + 6] = 1
        arrays[16:25, int(row) - 4:int(row) + 4, int(col) - 6:int(col) + 6] += 400.0
    points = {n: np.array([float(k), 2.0 * k, -3.0]) for k, n in enumerate(names)}
    return PreparedCase(arrays.astype(np.float32), bodies, centres, names, ct, top_row=5.0, name=name,
                        info={"points": points, "view": "lumbar"}, bottom_row=80.0)


@pytest.mark.parametrize("ct", [False, True])
def test_cache_round_trip_keeps_geometry_names_masks_and_the_image_within_quantisation(ct):
    case = _case("A10_vb3_01", ct=ct)
    back = decode_case(encode_case(case, half_slices=10))
    assert back.arrays.shape == (21, 96, 64) and back.bodies.shape == back.arrays.shape
    np.testing.assert_array_equal(back.bodies, case.bodies[10:31])
    np.testing.assert_allclose(back.centres[:, 0], case.centres[:, 0] - 10)  # slice index follows the crop
    np.testing.assert_allclose(back.centres[:, 1:], case.centres[:, 1:])
    assert back.names == case.names and back.ct == ct and back.name == case.name
    assert back.top_row == 5.0 and back.bottom_row == 80.0 and back.info["view"] == "lumbar"
    np.testing.assert_allclose(back.info["points"]["L5"], case.info["points"]["L5"])
    span = 2560.0 if ct else float(np.percentile(case.arrays[10:31], 99.95) - case.arrays[10:31].min())
    inside = case.arrays[10:31] <= (1536.0 if ct else np.percentile(case.arrays[10:31], 99.95))
    error = np.abs(back.arrays - case.arrays[10:31])[inside]
    assert error.max() <= span / 127 / 2 + 1e-3  # half a 7-bit step


def test_cache_refuses_an_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="prep"):
        load_cache(str(tmp_path))


def test_the_cache_holds_the_recipe_cases_tilted_ones_too(tmp_path, monkeypatch):
    from spinebrain.spinelabel import heatmap_recipe
    from spinebrain.spinelabel.heatmap_training import generated_case

    tilts = []

    def small(seed, view, modality, tilt_deg=0.0):
        tilts.append(tilt_deg)
        return generated_case(seed, "lumbar", "t2", max_voxels=150_000, tilt_deg=tilt_deg)

    monkeypatch.setattr(heatmap_recipe, "generated_case", small)
    data = tmp_path / "data"
    data.mkdir()
    (data / "splits.json").write_text(json.dumps({"A10_vb3_lumbar_mr": {"train": [], "validation": []}}))
    manifest = prepare_cache(str(data), str(tmp_path / "cache"), (), 4, budget_mb=100.0, seed=3, coronal_tilt=12.0)
    assert manifest["generated"] == 4 and manifest["coronal_tilt"] == 12.0
    assert any(tilts) and not all(tilts) and max(abs(t) for t in tilts) <= 12.0  # half of them, on average
    files = sorted((tmp_path / "cache" / "train").glob("*.npz.xz"))
    assert len(files) == 4 and all(decode_case(f.read_bytes()).names for f in files)
    whole = prepare_cache(str(data), str(tmp_path / "whole"), (), 2, budget_mb=100.0, seed=3, whole=True)
    assert whole["views"] == heatmap_recipe.WHOLE_VIEWS and manifest["views"] == "recipe default"


@pytest.mark.slow
def test_run_from_cache_stops_saves_best_and_checkpoint_and_exports(tmp_path):
    from spinebrain.spinelabel.heatmap_recipe import export_run
    from spinebrain.spinelabel.pipeline import load_spine_label_model

    cache = tmp_path / "cache"
    for part, names in (("train", ["A10_a", "A10_b"]), ("select", ["A10_c"])):
        (cache / part).mkdir(parents=True)
        for k, name in enumerate(names):
            (cache / part / f"{name}.npz.xz").write_bytes(encode_case(_case(name, seed=k), 15))
    out = tmp_path / "run"
    summary = train_from_cache(str(cache), str(out), seconds=600, device="cpu", workers=1, batch=2,
                               samples_per_epoch=4, checkpoint_seconds=0, max_epochs=2, size=64)
    assert summary["samples"] == 8 and summary["epochs"] == 2 and len(summary["history"]) == 2
    assert json.loads((out / "summary.json").read_text())["samples"] == 8
    saved = torch.load(str(out / "checkpoint.pt"), map_location="cpu", weights_only=True)
    assert {"network", "optimizer", "trainer", "scheduler"} <= set(saved) and saved["trainer"]["iteration"] == 4
    again = train_from_cache(str(cache), str(out), seconds=600, device="cpu", workers=0, batch=2,
                             samples_per_epoch=4, checkpoint_seconds=0, max_epochs=3, size=64)
    assert again["epochs"] == 3 and again["samples"] == 4  # resumed after epoch 2: one more epoch only
    package = export_run(str(out), str(tmp_path / "models"), None, {"threshold": 0.45}, "test",
                         checkpoint=str(out / "best_network.pt"), model_id="tiny-gpu-heatmap", anchor_strong_share=1.0)
    model = load_spine_label_model("lumbar", str(package), device="cpu")
    assert model.card.extra["heatmap"]["threshold"] == 0.45
    assert model.setup.anchor_strong_share == 1.0  # the card's anchor rule reaches the labelling
