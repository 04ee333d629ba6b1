"""The task registry (spinebrain.tasks) is the one list the CLI, the model cards and the model lookup read."""

from __future__ import annotations

import argparse
import dataclasses

import pytest
import torch

from spinebrain.cli import build_parser
from spinebrain.commands.spine_label import _label_one
from spinebrain.errors import InputError, ModelError
from spinebrain.models import KNOWN_TASKS, ModelCard, ModelRegistry, load_model_package, save_model_package
from spinebrain.spinelabel.pipeline import load_spine_label_models
from spinebrain.synth.spine import generate_spine
from spinebrain.tasks import (
    SPINE_LABEL, TASKS, available_tasks, card_tasks, card_tasks_for, get_task, task_for_card,
)


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_command_names_and_card_tasks_are_reconciled_once():
    assert [t.name for t in TASKS] == ["spine-label", "spine-segment", "brain-seg"]
    assert task_for_card("spine-label").name == "spine-label"
    assert task_for_card("spine-segment-2d").name == task_for_card("spine-segment-3d").name == "spine-segment"
    assert task_for_card("brain-lesion").name == task_for_card("brain-tissue").name == "brain-seg"
    assert task_for_card("something-newer") is None
    assert KNOWN_TASKS == card_tasks() == ("spine-label", "spine-segment", "spine-segment-2d", "spine-segment-3d",
                                           "brain-tissue", "brain-lesion")
    assert card_tasks_for("brain-seg") == ("brain-tissue", "brain-lesion")
    assert card_tasks_for("brain-tissue") == ("brain-tissue",)


def test_every_entry_point_of_an_available_task_resolves():
    for task in available_tasks():
        for name in ("command", "load_models", "run_case", "train", "evaluate"):
            assert callable(task.entry(name)), (task.name, name)


def test_planned_tasks_are_declared_but_offer_no_command():
    planned = [t for t in TASKS if not t.available]
    assert not planned  # spine-segment (2D MR mode) and brain-seg (tissue) became available
    declared_only = dataclasses.replace(get_task("brain-seg"), available=False)
    with pytest.raises(InputError, match="brain-seg task has no command in this version"):
        declared_only.entry("command")
    with pytest.raises(InputError, match="Unknown task 'spine-labels'.*spine-label, spine-segment, brain-seg"):
        get_task("spine-labels")


def test_the_cli_offers_exactly_the_available_tasks():
    commands = subcommands(build_parser())
    names = {t.name for t in available_tasks()}
    assert names <= set(commands) and not {t.name for t in TASKS if not t.available} & set(commands)
    # plus 'train datalist': segmentation models from a datalist (the Training module's route), for the card
    # tasks the registry lists in Task.datalist_card_tasks
    datalist = {"datalist"} if any(t.datalist_card_tasks for t in available_tasks()) else set()
    assert set(subcommands(commands["train"])) == {t.name for t in available_tasks() if t.train} | datalist
    assert set(subcommands(commands["evaluate"])) == {t.name for t in available_tasks() if t.evaluate}


def test_out_follows_the_one_convention():
    parser = subcommands(build_parser())["spine-label"]
    out = next(a for a in parser._actions if a.dest == "out")
    assert out.help == SPINE_LABEL.out_help and "a file for one case" in out.help and ".mrk.json" in out.help
    assert "a folder for a batch" in out.help and "summary.csv" in out.help


def test_models_are_found_by_task_name_through_the_registry(tmp_path):
    registry = ModelRegistry(bundled_dir=tmp_path / "bundled", user_dir=tmp_path / "user")
    card = ModelCard(id="tissue", task="brain-tissue", version="1", labels={"0": "background"}, modalities=["T1"],
                     spacing=[1.0, 1.0, 1.0], patch_size=[8, 8, 8], normalisation={}, network={"architecture": "X"})
    save_model_package(registry.user_dir, torch.nn.Linear(2, 2).state_dict(), card)
    assert [e.card.id for e in registry.list_models(task="brain-seg")] == ["tissue"]
    assert registry.list_models(task="spine-label") == []
    assert load_model_package("tissue", task="brain-seg", registry=registry)[0].task == "brain-tissue"
    with pytest.raises(ModelError, match="is for brain-tissue but spine-label was asked"):
        load_model_package("tissue", task="spine-label", registry=registry)


def test_a_case_summary_has_the_registry_columns(tmp_path):
    case = generate_spine(1002, modality="ct", view="lumbar")
    models = load_spine_label_models("lumbar", device="cpu")
    args = argparse.Namespace(detection_only=False, png=False)
    from spinebrain.io import write_image
    from spinebrain.protocol import NullProgress

    path = write_image(case.image, tmp_path / "case.nii.gz")
    (tmp_path / "out").mkdir()
    fields = _label_one(case.image, path, tmp_path / "out" / "case.mrk.json", models, [], args, NullProgress())
    assert set(fields) - {"outputs"} == {c.name for c in SPINE_LABEL.summary_columns}
