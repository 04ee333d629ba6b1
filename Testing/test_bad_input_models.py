"""Model packages a user gets wrong: each gets an exact message, exit code 2, and nothing written.

Every case is built on the fly in a private user model folder ($SPINEBRAIN_MODELS_DIR) and run
through the real command line in-process (``spinebrain.cli.main``); the bundled models stay the
real ones.
"""

from __future__ import annotations

import json
import shutil

import pytest
import SimpleITK as sitk
import torch

from spinebrain.cli import main
from spinebrain.errors import EXIT_BAD_INPUT, EXIT_OK
from spinebrain.models import BUNDLED_DIR_ENV, USER_DIR_ENV, ModelCard, default_bundled_dir, save_model_package
from spinebrain.outputs import read_markups, write_markups
from spinebrain.points import LabelledPoint
from spinebrain.synth.spine import generate_spine


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    folder = tmp_path / "user-models"
    folder.mkdir()
    monkeypatch.setenv(USER_DIR_ENV, str(folder))
    return folder


@pytest.fixture(scope="module")
def lumbar_scan(tmp_path_factory):
    """A generated lumbar CT on disk, and its true points."""
    case = generate_spine(1001, modality="ct", view="lumbar")
    path = tmp_path_factory.mktemp("scan") / "lumbar.nii.gz"
    sitk.WriteImage(case.image, str(path))
    return path, case


@pytest.fixture
def out_dir(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "keep.txt").write_text("the user's file")
    return folder


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def run_cli(capsys, *argv, quiet: bool = True) -> tuple[int, str]:
    """Exit code and stderr of ``spinebrain [--quiet] ARGV`` (quiet: only the error message is printed)."""
    code = main((["--quiet"] if quiet else []) + list(argv))
    return code, capsys.readouterr().err


def assert_refused(code: int, err: str, out_dir, before, *words: str) -> None:
    """Exit 2, a one- or two-line message naming the problem, and the output folder untouched."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == EXIT_BAD_INPUT, err
    assert 1 <= len(lines) <= 2, err
    assert "Traceback" not in err
    for word in words:
        assert word in err, (word, err)
    assert snapshot(out_dir) == before


def tiny_card(model_id: str, task: str, region: str | None = None) -> ModelCard:
    return ModelCard(id=model_id, task=task, version="1.0", labels={"0": "background", "1": "x"}, modalities=["T1"],
                     spacing=[1.0, 1.0, 1.0], patch_size=[8, 8, 8], normalisation={"method": "zscore"},
                     network={"architecture": "BasicUNet", "kwargs": {"spatial_dims": 3, "features": [2] * 6}},
                     region=region)


# ------------------------------------------------------------------------------------------------ cases


def test_unknown_model_id_says_where_it_looked(capsys, user_dir, lumbar_scan, out_dir):
    before = snapshot(out_dir)
    code, err = run_cli(capsys, "spine-label", str(lumbar_scan[0]), "--model", "nosuchmodel",
                        "--out", str(out_dir / "labels.mrk.json"))
    assert_refused(code, err, out_dir, before, "No model 'nosuchmodel'", str(user_dir), str(default_bundled_dir()),
                   "spinebrain info")


def test_folder_with_a_pickle_is_not_a_model_package(capsys, user_dir, lumbar_scan, out_dir, tmp_path):
    folder = tmp_path / "my-model"
    folder.mkdir()
    torch.save({"weight": torch.zeros(2)}, folder / "model.pkl")
    before = snapshot(out_dir)
    code, err = run_cli(capsys, "spine-label", str(lumbar_scan[0]), "--model", str(folder),
                        "--out", str(out_dir / "labels.mrk.json"))
    assert_refused(code, err, out_dir, before, "is not a model package", "no model_card.json", "model.pkl")
    assert "No SpineLabel model is installed" not in err


@pytest.mark.parametrize("region", ["lumbar", "auto"])
def test_user_package_of_another_task_hiding_the_bundled_model_is_named(capsys, user_dir, lumbar_scan, out_dir,
                                                                         region):
    tiny = torch.nn.Linear(2, 2).state_dict()
    save_model_package(user_dir, tiny, tiny_card("spine-label-lumbar", "brain-tissue"))
    if region == "lumbar":  # the other bundled lumbar model (the heatmap default) would serve the run: hide it too
        save_model_package(user_dir, tiny, tiny_card("spine-label-lumbar-heatmap", "brain-tissue"))
    before = snapshot(out_dir)
    args = ["spine-label", str(lumbar_scan[0]), "--region", region, "--out", str(out_dir / "labels.mrk.json")]
    if region == "auto":  # the other models still run: the scan is labelled, the hidden model is reported
        code, err = run_cli(capsys, *args, quiet=False)
        assert code == EXIT_OK, err
        assert "hides it" in err and "spine-label-lumbar" in err
        return
    code, err = run_cli(capsys, *args)
    assert_refused(code, err, out_dir, before, "No spine-label model for region lumbar is usable: the user package",
                   "(task brain-tissue) has the id of the bundled spine-label model 'spine-label-lumbar' and hides it")


def test_malformed_user_card_is_reported_not_skipped(capsys, user_dir, lumbar_scan, out_dir):
    broken = user_dir / "my-lumbar"
    broken.mkdir()
    (broken / "model_card.json").write_text("{ not json")
    code, err = run_cli(capsys, "spine-label", str(lumbar_scan[0]), "--region", "lumbar",
                        "--out", str(out_dir / "labels.mrk.json"), quiet=False)
    assert code == EXIT_OK, err  # the bundled model serves the run...
    assert f"Model package {broken} is not used" in err and "not valid JSON" in err  # ...and the user hears why
    before = snapshot(out_dir)
    code, err = run_cli(capsys, "spine-label", str(lumbar_scan[0]), "--model", "my-lumbar",
                        "--out", str(out_dir / "again.mrk.json"))
    assert_refused(code, err, out_dir, before, "Model 'my-lumbar' cannot be used: The model card", "not valid JSON")


def test_info_marks_weights_failing_their_sha256_unusable(capsys, user_dir, lumbar_scan, out_dir):
    package = user_dir / "spine-label-lumbar"
    shutil.copytree(default_bundled_dir() / "spine-label-lumbar", package)
    weights = package / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert main(["info", "--json"]) == EXIT_OK
    info = json.loads(capsys.readouterr().out)
    entry = next(m for m in info["models"] if m["id"] == "spine-label-lumbar")
    assert entry["usable"] is False and "do not match the sha256" in entry["problem"]
    spine = next(t for t in info["tasks"] if t["name"] == "spine-label")
    assert "spine-label-lumbar" not in spine["models"] and "spine-label-cervical" in spine["models"]
    assert main(["info"]) == EXIT_OK
    text = capsys.readouterr().out
    assert "spine-label-lumbar v1.0 [user (replaces the bundled one)]: spine-label, region lumbar  UNUSABLE" in text
    before = snapshot(out_dir)
    code, err = run_cli(capsys, "spine-label", str(lumbar_scan[0]), "--region", "lumbar",
                        "--out", str(out_dir / "labels.mrk.json"))
    assert_refused(code, err, out_dir, before, "do not match the sha256", "do not use")


def test_auto_region_accepts_a_fixed_level_only_the_lumbar_model_names(capsys, user_dir, lumbar_scan, tmp_path,
                                                                      out_dir):
    path, case = lumbar_scan
    l3 = next(p for p in case.points if p.label == "L3")
    fixed = write_markups([LabelledPoint("L3", l3.ras, None, True)], tmp_path / "fixed.mrk.json")
    out = out_dir / "labels.mrk.json"
    code, err = run_cli(capsys, "spine-label", str(path), "--fixed", str(fixed), "--out", str(out))
    assert code == EXIT_OK, err
    labels = [p.label for p in read_markups(out)]
    assert "L3" in labels and not any(label.startswith("C") for label in labels)


def test_fixed_level_no_model_names_lists_every_model(capsys, user_dir, lumbar_scan, tmp_path, out_dir, monkeypatch):
    # the region models only: the bundled whole-spine model names every level from C1 to S1
    bundled = tmp_path / "bundled"
    for model_id in ("spine-label-cervical", "spine-label-lumbar-heatmap"):
        shutil.copytree(default_bundled_dir() / model_id, bundled / model_id)
    monkeypatch.setenv(BUNDLED_DIR_ENV, str(bundled))
    centre = lumbar_scan[1].points[0].ras  # on the scan, so only the level itself is refused
    fixed = write_markups([LabelledPoint("T5", tuple(centre), None, True)], tmp_path / "fixed.mrk.json")
    before = snapshot(out_dir)
    code, err = run_cli(capsys, "spine-label", str(lumbar_scan[0]), "--fixed", str(fixed),
                        "--out", str(out_dir / "labels.mrk.json"))
    assert_refused(code, err, out_dir, before, "(T5)", "cervical model names C1-T3", "lumbar model names T8-S1")
