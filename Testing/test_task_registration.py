"""A new task is its own package, its module folder and its one :class:`~spinebrain.tasks.Task` in the registry.

A toy task ("toy-task": the mean intensity of a scan times a trained gain) is written into a fresh
package outside the repository and registered, and nothing else is edited. Then: ``spinebrain
--help`` offers it, ``spinebrain train toy-task`` writes a model package that validates and that
the model registry, ``spinebrain info`` and ``check_task`` assign to the task, ``spinebrain toy-task``
runs a batch with the shared ``--out`` folder convention and summary, ``spinebrain evaluate toy-task``
dispatches, and a Slicer Logic written only against :class:`~spinebrain_slicer.task_logic.TaskLogic`
runs the command as a real background process (the runner's events and the import into MRML).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from spinebrain import tasks
from spinebrain.cli import main
from spinebrain.errors import ModelError
from spinebrain.models.card import ModelCard
from spinebrain.models.package import check_task
from spinebrain.models.registry import USER_DIR_ENV, ModelRegistry
from spinebrain.tables import Column

PACKAGE = "spinebrain_toy_task"
TOY_SOURCE = '''
"""A toy task: the mean intensity of a scan times a gain that 'training' stores in a model package."""
import SimpleITK as sitk
import torch

from spinebrain.batch import add_batch_arguments, run_cases
from spinebrain.models import ModelCard, save_model_package
from spinebrain.models.registry import load_model_package
from spinebrain.outputs.tables import write_table
from spinebrain.tables import Column

COLUMNS = [Column("mean", "float")]


def add_arguments(parser):
    add_batch_arguments(parser)
    parser.add_argument("--model", help="model package id (default: the installed toy model)")
    parser.set_defaults(run=run)


def load_models(region, model, device=None):
    card, weights = load_model_package(model, task="toy-task")
    return {"id": card.id, "gain": float(weights["gain"])}


def run_case(image, models, fixed_points=(), device=None, progress=None):
    return {"mean": float(sitk.GetArrayViewFromImage(image).mean()) * models["gain"]}


def run(args, progress):
    models = load_models(None, args.model)

    def one(case, folder):
        folder.mkdir(parents=True, exist_ok=True)
        result = run_case(sitk.ReadImage(str(case.path)), models)
        return {**result, "outputs": [write_table([result], COLUMNS, folder / f"{case.name}.csv")]}

    run_cases(args, progress, one)


def add_train_arguments(parser):
    parser.add_argument("--out", required=True)
    parser.add_argument("--gain", type=float, default=2.0)
    parser.set_defaults(run=train)


def train(args, progress):
    card = ModelCard(id="toy-gain", task="toy-gain", version="1", labels={"0": "none"}, modalities=["CT"],
                     spacing=[1.0, 1.0, 1.0], patch_size=[1, 1, 1], normalisation={}, network={"architecture": "none"},
                     metrics={"gain_error": 0.0, "measured_on": "nothing"})
    progress.result(save_model_package(args.out, {"gain": torch.tensor(args.gain)}, card) / "model_card.json", "model")


def add_evaluate_arguments(parser):
    parser.add_argument("--expected", type=float, required=True)
    parser.set_defaults(run=evaluate)


def evaluate(args, progress):
    progress.log(f"toy evaluation: expected {args.expected}")
'''

TOY = tasks.Task(
    name="toy-task", title="ToyTask", help="a toy task: mean intensity times a trained gain; writes .csv",
    card_tasks=("toy-gain",), modalities=("CT",), output_suffix=".csv", summary_columns=(Column("mean", "float"),),
    command=f"{PACKAGE}:add_arguments", load_models=f"{PACKAGE}:load_models", run_case=f"{PACKAGE}:run_case",
    train=f"{PACKAGE}:add_train_arguments", evaluate=f"{PACKAGE}:add_evaluate_arguments",
)
#: Runs ``spinebrain`` with the toy's one registration, as the registry would hold it in a fresh process.
LAUNCHER = f"""
import sys
sys.path.insert(0, {{folder!r}})
from spinebrain import tasks
from test_task_registration import TOY
tasks.TASKS = tasks.TASKS + (TOY,)
from spinebrain.cli import main
from spinebrain.errors import ModelError
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture
def toy_registered(tmp_path, monkeypatch):
    """The toy's package on the path, its Task in the registry, its models in their own user folder."""
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / f"{PACKAGE}.py").write_text(textwrap.dedent(TOY_SOURCE))
    monkeypatch.syspath_prepend(str(tmp_path / "code"))
    monkeypatch.setattr(tasks, "TASKS", tasks.TASKS + (TOY,))
    monkeypatch.setenv(USER_DIR_ENV, str(tmp_path / "models"))
    yield tmp_path
    sys.modules.pop(PACKAGE, None)


def scans(folder: Path, values=(10.0, 20.0)) -> list[Path]:
    folder.mkdir(parents=True)
    paths = []
    for index, value in enumerate(values):
        image = sitk.GetImageFromArray(np.full((4, 5, 6), value, np.float32))
        paths.append(folder / f"scan{index}.nrrd")
        sitk.WriteImage(image, str(paths[-1]))
    return paths


def test_the_cli_offers_the_registered_task_and_train_and_evaluate_dispatch_to_it(toy_registered, capsys):
    for help_args, expected in ((["--help"], "toy-task"), (["train", "--help"], "train a ToyTask model"),
                                (["evaluate", "--help"], "toy-task")):
        with pytest.raises(SystemExit) as stop:  # argparse's help ends the program
            main(help_args)
        assert stop.value.code == 0 and expected in capsys.readouterr().out
    assert main(["--quiet", "train", "toy-task", "--out", str(toy_registered / "models"), "--gain", "3"]) == 0
    assert main(["evaluate", "toy-task", "--expected", "1"]) == 0
    assert "toy evaluation: expected 1.0" in capsys.readouterr().err


def test_a_trained_package_validates_and_the_registry_assigns_it_to_the_task(toy_registered, capsys):
    assert main(["--quiet", "train", "toy-task", "--out", str(toy_registered / "models"), "--gain", "3"]) == 0
    card = ModelCard.read(toy_registered / "models" / "toy-gain")
    card.validate(require_sha256=True)
    check_task(card, "toy-task")  # the registry maps the command to its card tasks
    assert [e.card.id for e in ModelRegistry().list_models(task="toy-task")] == ["toy-gain"]
    assert tasks.task_for_card("toy-gain") is TOY and "toy-gain" in tasks.card_tasks()
    assert main(["info", "--json"]) == 0
    info = {t["name"]: t for t in json.loads(capsys.readouterr().out)["tasks"]}
    assert info["toy-task"]["models"] == ["toy-gain"] and info["toy-task"]["available"]
    with pytest.raises(ModelError, match="toy-gain"):  # the card's message lists the registry's tasks
        ModelCard.from_dict({**card.to_dict(), "task": "not a task!"}).validate()


def test_the_task_command_runs_a_batch_with_the_shared_out_convention(toy_registered):
    assert main(["--quiet", "train", "toy-task", "--out", str(toy_registered / "models"), "--gain", "3"]) == 0
    inputs = scans(toy_registered / "in")
    out = toy_registered / "out"
    assert main(["--quiet", "toy-task", *map(str, inputs), "--out", str(out)]) == 0
    summary = (out / "summary.csv").read_text()
    assert "mean" in summary and (out / "scan0" / "scan0.csv").is_file() and (out / "scan1" / "scan1.csv").is_file()
    models = TOY.entry("load_models")(None, None)
    assert TOY.entry("run_case")(sitk.ReadImage(str(inputs[1])), models) == {"mean": 60.0}


def test_a_slicer_logic_on_the_task_logic_base_runs_the_task_in_a_real_process(toy_registered):
    slicer = pytest.importorskip("slicer", reason="slicer-core wheel not installed (Linux x86_64 only)")
    from spinebrain.outputs.tables import read_table
    from spinebrain_slicer import bridge
    from spinebrain_slicer.runner import ProcessRunner, core_environment
    from spinebrain_slicer.task_logic import TaskJob, TaskLogic

    assert main(["--quiet", "train", "toy-task", "--out", str(toy_registered / "models"), "--gain", "3"]) == 0
    launcher = toy_registered / "launch.py"
    launcher.write_text(LAUNCHER.format(folder=str(toy_registered / "code")))
    environment = core_environment()
    environment["PYTHONPATH"] = f"{Path(__file__).parent}:{environment.get('PYTHONPATH', '')}"

    class ToyLogic(TaskLogic):  # what the module folder's Logic would hold: its two hooks, nothing else
        def prepare(self, request, workdir):
            image = bridge.image_from_volume_node(request["volume"])
            sitk.WriteImage(image, str(workdir / "scan.nrrd"))
            return TaskJob(args=["toy-task", str(workdir / "scan.nrrd"), "--out", str(workdir / "out")])

        def import_results(self, job, result, value=None):
            table = next(o.path for o in result.outputs if o.path.name == "scan.csv")
            return bridge.table_node_from_records(self.scene, read_table(table, [Column("mean", "float")]),
                                                  [Column("mean", "float")], "Toy result")

    scene = slicer.vtkMRMLScene()
    volume = bridge.volume_node_from_image(scene, sitk.GetImageFromArray(np.full((4, 5, 6), 7.0, np.float32)), "in")
    logic = ToyLogic(scene, runner_factory=lambda args: ProcessRunner(
        [sys.executable, str(launcher), "--progress-json", *args], env=environment))
    stages = []
    node = logic.run_blocking({"volume": volume}, on_progress=lambda stage, *_: stages.append(stage), timeout=300)
    assert "batch" in stages
    assert bridge.records_from_table_node(node, [Column("mean", "float")]) == [{"mean": 21.0}]
