"""The dependency installer's decisions, on fabricated and on this real Python environment."""

from __future__ import annotations

import sys
import tomllib
import types
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from spinebrain.errors import CancelledError
from spinebrain_slicer import dependencies as deps
from spinebrain_slicer.dependencies import EnvironmentInfo, InstallError

REPO = Path(__file__).resolve().parents[1]
SLICER_OWN = {canonicalize_name(n) for n in deps.SLICER_PROVIDED}

# A fresh Slicer 5.10-like Python: Slicer's own packages and scipy, nothing of ours.
FRESH_SLICER = {"numpy": "2.1.3", "SimpleITK": "2.4.1", "vtk": "9.4.2", "scipy": "1.14.1"}
EVERYTHING = {
    **FRESH_SLICER, "torch": "2.5.1+cu121", "monai": "1.4.0", "slicerio": "1.1.2",
    "matplotlib": "3.9.2", "tqdm": "4.66.5", "safetensors": "0.4.5", "pytorch-ignite": "0.5.5", "onnxruntime": "1.20.1",
}


def names_in(step) -> set[str]:
    return {canonicalize_name(Requirement(p).name) for p in step.packages}


class Recorder:
    """Stands in for slicer.util.pip_install and the PyTorch extension; keeps what each call got."""

    def __init__(self, torch_result=True, fail_on: str | None = None):
        self.calls: list[tuple] = []
        self.torch_result = torch_result
        self.fail_on = fail_on

    def pip_install(self, requirements, constraints):
        # The constraints file only lives during the run: read it now.
        self.calls.append(("pip", list(requirements), Path(constraints).read_text(), Path(constraints)))
        if self.fail_on == "pip":
            raise RuntimeError("pip failed")

    def install_torch(self, version_requirement):
        self.calls.append(("torch", version_requirement))
        return self.torch_result


def test_requirements_match_pyproject():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    declared = {canonicalize_name(Requirement(r).name): Requirement(r).specifier for r in pyproject["project"]["dependencies"]}
    ours = {canonicalize_name(Requirement(r).name): Requirement(r).specifier for r in deps.REQUIREMENTS}
    assert ours == declared, "keep spinebrain_slicer/dependencies.py REQUIREMENTS equal to pyproject's dependencies"


def test_fresh_slicer_with_pytorch_extension():
    plan = deps.plan_install(environment=EnvironmentInfo(FRESH_SLICER), pytorch_extension_available=True)

    torch_step, pip_step = plan.steps
    assert torch_step.kind == "pytorch-extension" and names_in(torch_step) == {"torch"} and torch_step.large
    assert pip_step.kind == "pip" and names_in(pip_step) == {"monai", "slicerio", "matplotlib", "tqdm", "safetensors",
                                                            "pytorch-ignite", "onnxruntime"}
    assert not pip_step.large
    assert pip_step.constraints == ("numpy==2.1.3", "SimpleITK==2.4.1", "vtk==9.4.2")
    assert plan.needs_confirmation and not plan.restart_required and not plan.problems
    message = plan.user_message()
    assert "PyTorch extension" in message and "Large download" in message and "restart" not in message


def test_without_pytorch_extension_torch_gets_its_own_large_pip_step_first():
    plan = deps.plan_install(environment=EnvironmentInfo(FRESH_SLICER), pytorch_extension_available=False)

    assert [step.kind for step in plan.steps] == ["pip", "pip"]
    assert names_in(plan.steps[0]) == {"torch"} and plan.steps[0].large
    assert "torch" not in names_in(plan.steps[1])
    assert "Extensions Manager" in plan.steps[0].description
    assert all(step.constraints for step in plan.steps)


@pytest.mark.parametrize("extension", [True, False])
@pytest.mark.parametrize("installed", [{}, FRESH_SLICER, {**FRESH_SLICER, "numpy": "1.26.4"}])
def test_slicer_packages_are_never_installed(installed, extension):
    environment = EnvironmentInfo(installed)
    plan = deps.plan_install(environment=environment, pytorch_extension_available=extension)
    for step in plan.steps:
        assert not names_in(step) & SLICER_OWN
    for step in (s for s in plan.steps if s.kind == "pip"):
        assert {canonicalize_name(Requirement(c).name) for c in step.constraints} == {
            canonicalize_name(n) for n in installed if canonicalize_name(n) in SLICER_OWN
        }


def test_nothing_to_install_when_all_present():
    plan = deps.plan_install(environment=EnvironmentInfo(EVERYTHING), pytorch_extension_available=True)
    recorder = Recorder()

    assert plan.nothing_to_do and not plan.needs_confirmation and not plan.restart_required
    assert "installed" in plan.user_message()
    assert deps.execute_plan(plan, recorder.pip_install, recorder.install_torch) == []
    assert recorder.calls == []


def test_this_environment_needs_nothing():
    # The project's own virtual environment has every requirement: the real look-ups must agree.
    environment = EnvironmentInfo.current()
    assert deps.missing_packages(environment=environment) == []
    assert deps.plan_install(environment=environment, pytorch_extension_available=False).nothing_to_do


def test_restart_needed_only_when_an_old_version_is_already_imported():
    old_torch = {**EVERYTHING, "torch": "2.0.1"}
    loaded = deps.plan_install(environment=EnvironmentInfo(old_torch, imported={"torch"}), pytorch_extension_available=True)
    not_loaded = deps.plan_install(environment=EnvironmentInfo(old_torch), pytorch_extension_available=True)
    absent_but_other_imported = deps.plan_install(
        environment=EnvironmentInfo(FRESH_SLICER, imported={"numpy", "vtk"}), pytorch_extension_available=True
    )

    assert [names_in(s) for s in loaded.steps] == [{"torch"}]
    assert loaded.restart_required and "restarted" in loaded.user_message()
    assert not not_loaded.restart_required
    assert not absent_but_other_imported.restart_required


def test_too_old_slicer_package_is_a_problem_not_an_install():
    plan = deps.plan_install(
        environment=EnvironmentInfo({**FRESH_SLICER, "numpy": "1.21.6"}), pytorch_extension_available=True
    )
    assert plan.steps == () and not plan.nothing_to_do
    assert "numpy 1.21.6" in plan.user_message() and "newer Slicer" in plan.user_message()
    with pytest.raises(InstallError, match="numpy"):
        deps.execute_plan(plan, Recorder().pip_install, Recorder().install_torch)


@pytest.mark.parametrize("version, too_old", [("5.8", True), ("5.10", False), ("5.11", False), (None, False)])
def test_minimum_slicer_version(version, too_old):
    plan = deps.plan_install(environment=EnvironmentInfo(EVERYTHING, slicer_version=version), pytorch_extension_available=True)
    assert bool(plan.problems) == too_old
    if too_old:
        assert "Slicer 5.10 or newer" in plan.user_message()


def test_local_version_labels_and_markers():
    environment = EnvironmentInfo({"torch": "2.13.0+cpu"})
    assert deps.is_satisfied(Requirement("torch>=2.2"), environment)
    assert not deps.is_satisfied(Requirement("torch>=3"), environment)
    # A marker that excludes this interpreter means "not needed here".
    assert deps.missing_packages(['absentpkg>=1; python_version < "3"', "otherpkg"], environment) == [
        Requirement("otherpkg")
    ]


def test_bundled_package_without_pip_metadata_cannot_be_replaced():
    environment = EnvironmentInfo(FRESH_SLICER, bundled={"vtk"})
    vtk_line = next(line for line in deps.constraint_lines(environment) if line.startswith("vtk"))
    specifier = Requirement(vtk_line).specifier
    # No build of vtk on an index (9.4.2 or any other) satisfies it, so pip stops rather than replacing it.
    assert not specifier.contains("9.4.2") and not specifier.contains("9.5.0")
    assert "numpy==2.1.3" in deps.constraint_lines(environment)


def test_current_environment_reads_metadata_imports_and_bundled_modules(monkeypatch):
    import numpy
    import SimpleITK

    monkeypatch.setitem(sys.modules, "spinebrain_fake_bundled", types.SimpleNamespace(__version__="7.1.0"))
    environment = EnvironmentInfo.current(names=["numpy", "simpleitk", "spinebrain_fake_bundled", "spinebrain-absent"])

    assert environment.version("numpy") == numpy.__version__
    assert environment.version("SimpleITK") == SimpleITK.Version_VersionString()
    assert {"numpy", "simpleitk", "spinebrain-fake-bundled"} <= environment.imported
    assert environment.version("spinebrain_fake_bundled") == "7.1.0"
    assert environment.bundled == {"spinebrain-fake-bundled"}
    assert environment.version("spinebrain-absent") is None


def test_current_environment_loads_a_slicer_package_without_metadata(tmp_path, monkeypatch):
    # Like Slicer's own vtk build: importable, no pip metadata, not imported yet.
    (tmp_path / "spinebrain_fake_provided.py").write_text('__version__ = "3.2.1"\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(deps, "SLICER_PROVIDED", (*deps.SLICER_PROVIDED, "spinebrain_fake_provided"))
    try:
        environment = EnvironmentInfo.current(names=["spinebrain_fake_provided"])
    finally:
        sys.modules.pop("spinebrain_fake_provided", None)
    assert environment.version("spinebrain_fake_provided") == "3.2.1"
    assert environment.bundled == {"spinebrain-fake-provided"} and not environment.imported
    assert deps.constraint_lines(environment)[-1] == "spinebrain_fake_provided===3.2.1+bundled-with-slicer"


def test_pytorch_extension_detection(tmp_path, monkeypatch):
    assert not deps.pytorch_extension_installed()
    (tmp_path / "PyTorchUtils.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert deps.pytorch_extension_installed()


def test_write_constraints(tmp_path):
    path = deps.write_constraints(tmp_path / "constraints.txt", EnvironmentInfo(FRESH_SLICER))
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    assert lines == ["numpy==2.1.3", "SimpleITK==2.4.1", "vtk==9.4.2"]
    assert [p.name for p in tmp_path.iterdir()] == ["constraints.txt"]  # no leftover partial file


def test_execute_plan_runs_steps_in_order_with_constraints_then_cleans_up():
    plan = deps.plan_install(environment=EnvironmentInfo(FRESH_SLICER), pytorch_extension_available=True)
    recorder = Recorder()

    done = deps.execute_plan(plan, recorder.pip_install, recorder.install_torch)

    assert done == [step.description for step in plan.steps]
    (torch_call, pip_call) = recorder.calls
    assert torch_call == ("torch", ">=2.2")
    kind, packages, constraints_text, constraints_path = pip_call
    assert kind == "pip" and {canonicalize_name(Requirement(p).name) for p in packages} == names_in(plan.steps[1])
    assert "SimpleITK==2.4.1" in constraints_text and "numpy==2.1.3" in constraints_text
    assert not constraints_path.parent.exists()


def test_cancelled_torch_install_stops_the_plan():
    plan = deps.plan_install(environment=EnvironmentInfo(FRESH_SLICER), pytorch_extension_available=True)
    recorder = Recorder(torch_result=None)  # PyTorchUtils returns None when the user aborts
    with pytest.raises(CancelledError):
        deps.execute_plan(plan, recorder.pip_install, recorder.install_torch)
    assert [call[0] for call in recorder.calls] == ["torch"]


def test_installer_failure_propagates_and_cleans_up():
    plan = deps.plan_install(environment=EnvironmentInfo(FRESH_SLICER), pytorch_extension_available=False)
    recorder = Recorder(fail_on="pip")
    with pytest.raises(RuntimeError, match="pip failed"):
        deps.execute_plan(plan, recorder.pip_install, recorder.install_torch)
    assert len(recorder.calls) == 1 and not recorder.calls[0][3].parent.exists()
