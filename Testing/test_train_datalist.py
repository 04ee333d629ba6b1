"""``spinebrain train datalist``: the recipe from a datalist, fine-tuning checks, synthetic cases, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from spinebrain.cli import build_parser
from spinebrain.errors import InputError
from spinebrain.models import ModelCard, build_network, save_model_package
from spinebrain.training.from_datalist import build_recipe
from spinebrain.training.synthetic_mix import _value_map, synthetic_cases

TINY = {"channels": [4, 8], "strides": [2], "num_res_units": 0}


@pytest.fixture
def datalist(tmp_path) -> Path:
    cases = []
    for number in range(2):
        image = sitk.Image(16, 16, 16, sitk.sitkFloat32)
        label = sitk.Image(16, 16, 16, sitk.sitkUInt8)
        label[8, 8, 8] = 1
        sitk.WriteImage(image, str(tmp_path / f"i{number}.nii.gz"))
        sitk.WriteImage(label, str(tmp_path / f"l{number}.nii.gz"))
        cases.append({"image": f"i{number}.nii.gz", "label": f"l{number}.nii.gz"})
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps({"training": cases, "labels": {"0": "background", "1": "Grey matter"},
                                "modality": {"0": "T1"}}))
    return path


def parse(*argv):
    return build_parser().parse_args(["train", "datalist", *map(str, argv)])


def start_model(tmp_path, task="brain-tissue", labels=None, spacing=(1.5, 1.5, 1.5)) -> Path:
    card = ModelCard(id="start", task=task, version="1", labels=labels or {"0": "background", "1": "Grey matter"},
                     modalities=["T1"], spacing=list(spacing), patch_size=[16, 16, 16],
                     normalisation={"method": "zscore"},
                     network={"architecture": "UNet", "kwargs": {"spatial_dims": 3, "in_channels": 1, "out_channels": 2,
                                                                 **TINY}})
    torch.manual_seed(0)
    return save_model_package(tmp_path / "models", build_network(card).state_dict(), card)


def test_the_recipe_takes_labels_and_channels_from_the_datalist(datalist, tmp_path):
    recipe = build_recipe(parse("--task", "brain-tissue", "--datalist", datalist, "--out", tmp_path, "--id", "m"))
    assert recipe.labels == {"0": "background", "1": "Grey matter"} and recipe.modalities == ["T1"]
    assert recipe.spacing == [1.5, 1.5, 1.5] and recipe.patch_size == [48, 48, 48]  # the task's defaults
    with pytest.raises(InputError, match="cannot be trained from a datalist"):
        build_recipe(parse("--task", "spine-label", "--datalist", datalist, "--out", tmp_path, "--id", "m"))


def test_fine_tuning_keeps_the_models_settings_and_refuses_others(datalist, tmp_path):
    package = start_model(tmp_path)
    recipe = build_recipe(parse("--task", "brain-tissue", "--datalist", datalist, "--out", tmp_path, "--id", "m",
                                "--init-from", package))
    assert recipe.patch_size == [16, 16, 16] and recipe.network["kwargs"]["channels"] == [4, 8]
    with pytest.raises(InputError, match="keeps the spacing"):
        build_recipe(parse("--task", "brain-tissue", "--datalist", datalist, "--out", tmp_path, "--id", "m",
                           "--init-from", package, "--spacing", 1, 1, 1))
    with pytest.raises(InputError, match="differ from those of model 'start'"):
        build_recipe(parse("--task", "brain-tissue", "--datalist", datalist, "--out", tmp_path, "--id", "m",
                           "--init-from", package, "--labels", '{"0": "background", "1": "lesion"}'))
    with pytest.raises(InputError, match="cannot be fine-tuned into a brain-lesion model"):
        build_recipe(parse("--task", "brain-lesion", "--datalist", datalist, "--out", tmp_path, "--id", "m",
                           "--init-from", package))
    with pytest.raises(InputError, match="cannot be used"):
        build_recipe(parse("--task", "brain-tissue", "--datalist", datalist, "--out", tmp_path, "--id", "m",
                           "--init-from", "no-such-model"))


def test_synthetic_cases_need_labels_the_generator_draws(tmp_path):
    assert _value_map("brain-tissue", {"0": "background", "1": "WM", "2": "grey matter"}) == {3: 1, 2: 2}
    assert set(_value_map("spine-segment", {"0": "background", "1": "vertebrae"}).values()) == {1}
    assert _value_map("spine-segment", {"0": "background", "5": "L1"}) == {20: 5}
    with pytest.raises(InputError, match="no structure named 'liver'"):
        synthetic_cases("brain-tissue", {"0": "background", "1": "liver"}, ["T1"], 1, tmp_path)
    assert not list(tmp_path.iterdir())  # refused before anything was written


@pytest.mark.slow
def test_a_generated_spine_case_has_the_users_label_values(tmp_path):
    (entry,) = synthetic_cases("spine-segment", {"0": "background", "2": "vertebrae"}, ["CT"], 1, tmp_path)
    label = sitk.GetArrayFromImage(sitk.ReadImage(entry["label"]))
    image = sitk.ReadImage(entry["image"][0])
    assert set(np.unique(label)) == {0, 2} and image.GetSize() == label.shape[::-1]


def test_a_model_with_its_own_mask_normalisation_is_not_fine_tuned_from_a_datalist(datalist, tmp_path):
    from spinebrain.models.registry import default_bundled_dir

    if not (default_bundled_dir() / "brain-tissue-synth").is_dir():
        pytest.skip("the bundled brain-tissue-synth model is not here")
    with pytest.raises(InputError, match="within a brain mask"):
        build_recipe(parse("--task", "brain-tissue", "--datalist", datalist, "--out", tmp_path, "--id", "m",
                           "--init-from", default_bundled_dir() / "brain-tissue-synth"))
