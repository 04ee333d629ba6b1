"""What SlicerSpineBrain needs to install into Slicer's Python, and how, without breaking Slicer.

Pure logic, no Qt and no MRML, so it is tested outside Slicer: :func:`plan_install` turns the
versions installed in this Python (:class:`EnvironmentInfo`) into an :class:`InstallPlan`;
:func:`execute_plan` runs it with injected installers (``slicer.util.pip_install`` and the PyTorch
extension inside Slicer, recorders in tests). ``qt_helpers.py`` adds the confirmation dialog.

Rules (target: Slicer 5.10 or newer):

* Slicer's own numpy, SimpleITK and vtk are never installed, upgraded or replaced: every pip call
  gets a constraints file pinning the versions Slicer already has. If Slicer's copy is too old for
  us, the plan says to update Slicer instead of installing anything.
* torch goes through Slicer's PyTorch extension (it picks the build matching the GPU driver) when
  that extension is installed, else through pip with the default build, and always in its own
  step, before MONAI, so that pip never pulls torch in as a MONAI dependency.
* A large download (torch) asks for confirmation first.
* Replacing a package that is already imported in this process needs a Slicer restart.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from spinebrain.errors import CancelledError, SpineBrainError

MINIMUM_SLICER_VERSION = "5.10"

#: What the core library needs at run time (pyproject.toml's dependencies; a test keeps them equal).
REQUIREMENTS: tuple[str, ...] = (
    "numpy>=1.24",
    "SimpleITK>=2.3",
    "torch>=2.2",
    "monai>=1.3",
    "pytorch-ignite>=0.4.11",  # MONAI's training engines and handlers
    "scipy>=1.10",
    "slicerio>=1.1",
    "matplotlib>=3.7",
    "tqdm>=4.65",
    "safetensors>=0.4",
    "onnxruntime>=1.17",  # runs a model's ONNX export on the CPU (faster than torch there)
)

#: Packages Slicer builds and ships itself: pinned, never installed or replaced by pip.
SLICER_PROVIDED: tuple[str, ...] = ("numpy", "SimpleITK", "vtk")

#: Downloads worth a confirmation, with the size shown to the user.
LARGE_DOWNLOADS: Mapping[str, str] = {
    "torch": "about 200 MB for the CPU build, 2 GB or more for a CUDA build",
}

#: Import name of a distribution, where it differs from the canonical distribution name.
_IMPORT_NAMES: Mapping[str, str] = {"simpleitk": "SimpleITK", "pytorch-ignite": "ignite"}

_PYTORCH_EXTENSION_MODULE = "PyTorchUtils"


class InstallError(SpineBrainError):
    """The packages cannot be installed into this Slicer; the message says what to do instead."""


def _parse_version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


@dataclass(frozen=True)
class EnvironmentInfo:
    """The state of one Python environment, as far as the install plan cares.

    ``installed`` maps distribution names to version strings; ``imported`` names the distributions
    whose modules this process has already imported; ``bundled`` names those importable without pip
    metadata (Slicer's own vtk build), which pip cannot see and would happily install over.
    """

    installed: Mapping[str, str] = field(default_factory=dict)
    imported: frozenset[str] = frozenset()
    bundled: frozenset[str] = frozenset()
    slicer_version: str | None = None

    def __post_init__(self) -> None:
        # Look-ups use canonical names, so "SimpleITK" and "simpleitk" are the same package.
        object.__setattr__(self, "installed", {canonicalize_name(k): str(v) for k, v in self.installed.items()})
        object.__setattr__(self, "imported", frozenset(canonicalize_name(n) for n in self.imported))
        object.__setattr__(self, "bundled", frozenset(canonicalize_name(n) for n in self.bundled))

    def version(self, name: str) -> str | None:
        """Installed version of a distribution, or None when it is absent."""
        return self.installed.get(canonicalize_name(name))

    @classmethod
    def current(cls, names: Iterable[str] | None = None, slicer_version: str | None = None) -> EnvironmentInfo:
        """Read this process's environment for ``names`` (default: our requirements + Slicer's packages)."""
        if names is None:
            names = [Requirement(r).name for r in REQUIREMENTS] + list(SLICER_PROVIDED)
        importlib.invalidate_caches()  # see packages installed earlier in this session
        installed: dict[str, str] = {}
        bundled: set[str] = set()
        imported: set[str] = set()
        provided = {canonicalize_name(n) for n in SLICER_PROVIDED}
        for name in {canonicalize_name(n) for n in names}:
            module_name = _IMPORT_NAMES.get(name, name.replace("-", "_"))
            if module_name in sys.modules:
                imported.add(name)
            try:
                installed[name] = importlib.metadata.version(name)
                continue
            except importlib.metadata.PackageNotFoundError:
                pass
            module = sys.modules.get(module_name)
            if module is None and name in provided and importlib.util.find_spec(module_name) is not None:
                module = importlib.import_module(module_name)  # Slicer's own build: safe to load for its version
            if module is not None:
                installed[name] = str(getattr(module, "__version__", "unknown"))
                bundled.add(name)
        return cls(installed, frozenset(imported), frozenset(bundled), slicer_version)


def pytorch_extension_installed() -> bool:
    """True when Slicer's PyTorch extension (module PyTorchUtils) can be imported here."""
    return importlib.util.find_spec(_PYTORCH_EXTENSION_MODULE) is not None


def is_satisfied(requirement: Requirement, environment: EnvironmentInfo) -> bool:
    """True when the environment meets the requirement (or its marker excludes this platform)."""
    if requirement.marker is not None and not requirement.marker.evaluate():
        return True
    installed = environment.version(requirement.name)
    if installed is None:
        return False
    if _parse_version(installed) is None:
        return True  # unknown or unparsable (a custom Slicer build): trust it rather than reinstall
    return requirement.specifier.contains(installed, prereleases=True)


def missing_packages(
    requirements: Iterable[str | Requirement] = REQUIREMENTS, environment: EnvironmentInfo | None = None
) -> list[Requirement]:
    """The requirements this environment does not meet, in the order given."""
    environment = environment or EnvironmentInfo.current()
    parsed = [r if isinstance(r, Requirement) else Requirement(r) for r in requirements]
    return [r for r in parsed if not is_satisfied(r, environment)]


def constraint_lines(environment: EnvironmentInfo) -> list[str]:
    """pip constraints keeping Slicer's own packages exactly as they are."""
    lines = []
    for name in SLICER_PROVIDED:
        version = environment.version(name)
        if version is None:
            continue
        if canonicalize_name(name) in environment.bundled:
            # pip cannot see this copy, so an "==" pin would let it install PyPI's build over Slicer's.
            # Arbitrary equality with a version no index has makes pip stop instead.
            lines.append(f"{name}==={version}+bundled-with-slicer")
        else:
            lines.append(f"{name}=={version}")
    return lines


def write_constraints(
    path: str | os.PathLike, environment: EnvironmentInfo | None = None, lines: Iterable[str] | None = None
) -> Path:
    """Write a pip constraints file (``lines``, default: those of ``environment``) and return its path."""
    if lines is None:
        lines = constraint_lines(environment or EnvironmentInfo.current())
    path = Path(path)
    text = "# Slicer's own packages: pip must not replace them (written by SlicerSpineBrain).\n"
    text += "".join(line + "\n" for line in lines)
    temporary = path.with_name(path.name + ".partial")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)  # never leave a half-written constraints file behind
    return path


@dataclass(frozen=True)
class InstallStep:
    """One installer call: ``kind`` is "pytorch-extension" or "pip"."""

    kind: str
    packages: tuple[str, ...]
    description: str
    large: bool = False
    constraints: tuple[str, ...] = ()


@dataclass(frozen=True)
class InstallPlan:
    """What to install, in order; ``problems`` are what installing cannot fix (the plan is then empty)."""

    steps: tuple[InstallStep, ...] = ()
    restart_required: bool = False
    problems: tuple[str, ...] = ()

    @property
    def needs_confirmation(self) -> bool:
        """True when a step downloads something large: ask before starting."""
        return any(step.large for step in self.steps)

    @property
    def nothing_to_do(self) -> bool:
        return not self.steps and not self.problems

    def user_message(self) -> str:
        """A short text for the confirmation dialog or the log."""
        if self.problems:
            return "\n".join(self.problems)
        if not self.steps:
            return "All Python packages SlicerSpineBrain needs are installed."
        lines = ["SlicerSpineBrain needs to install Python packages into Slicer:"]
        lines += [f"- {step.description}" for step in self.steps]
        large = [f"{name}: {size}" for step in self.steps for name, size in _large_packages(step.packages)]
        if large:
            lines.append("Large download (" + "; ".join(large) + "). This can take several minutes.")
        if self.restart_required:
            lines.append("Slicer must be restarted afterwards, because an older version is already loaded.")
        return "\n".join(lines)


def _large_packages(packages: Iterable[str]) -> list[tuple[str, str]]:
    names = [canonicalize_name(Requirement(p).name) for p in packages]
    return [(name, LARGE_DOWNLOADS[name]) for name in names if name in LARGE_DOWNLOADS]


def _too_old_slicer(slicer_version: str | None) -> str | None:
    version = _parse_version(slicer_version) if slicer_version else None
    if version is not None and version.release[:2] < Version(MINIMUM_SLICER_VERSION).release[:2]:
        return (
            f"SlicerSpineBrain needs Slicer {MINIMUM_SLICER_VERSION} or newer, but this is Slicer "
            f"{slicer_version}: please install a current Slicer release."
        )
    return None


def _slicer_package_problem(requirement: Requirement, environment: EnvironmentInfo) -> str:
    installed = environment.version(requirement.name)
    state = f"has {requirement.name} {installed}" if installed else f"has no {requirement.name}"
    return (
        f"This Slicer {state}, but SlicerSpineBrain needs {requirement}; it is part of Slicer itself, "
        "so please install a newer Slicer release instead of replacing it."
    )


def plan_install(
    requirements: Iterable[str | Requirement] = REQUIREMENTS,
    environment: EnvironmentInfo | None = None,
    pytorch_extension_available: bool | None = None,
) -> InstallPlan:
    """Decide what to install so that ``requirements`` are met in ``environment`` (default: this one)."""
    environment = environment or EnvironmentInfo.current()
    if pytorch_extension_available is None:
        pytorch_extension_available = pytorch_extension_installed()
    missing = missing_packages(requirements, environment)
    provided = {canonicalize_name(n) for n in SLICER_PROVIDED}

    problems = [_slicer_package_problem(r, environment) for r in missing if canonicalize_name(r.name) in provided]
    too_old = _too_old_slicer(environment.slicer_version)
    if too_old:
        problems.insert(0, too_old)
    if problems:
        return InstallPlan(problems=tuple(problems))

    constraints = tuple(constraint_lines(environment))
    steps = []
    torch = [r for r in missing if canonicalize_name(r.name) == "torch"]
    others = [r for r in missing if canonicalize_name(r.name) != "torch"]
    if torch and pytorch_extension_available:
        steps.append(InstallStep(
            "pytorch-extension", (str(torch[0]),), large=True,
            description=f"PyTorch ({torch[0]}) through Slicer's PyTorch extension, which picks the build for your GPU",
        ))
    elif torch:
        steps.append(InstallStep(
            "pip", (str(torch[0]),), constraints=constraints, large=True,
            description=f"PyTorch ({torch[0]}) with pip, default build (install the PyTorch extension from the "
            "Extensions Manager to get the build matching your GPU)",
        ))
    if others:
        packages = tuple(str(r) for r in others)
        steps.append(InstallStep(
            "pip", packages, constraints=constraints, large=bool(_large_packages(packages)),
            description=f"{', '.join(r.name for r in others)} with pip, keeping Slicer's own "
            f"{', '.join(SLICER_PROVIDED)}",
        ))
    # An installed-and-imported package that is missing from the plan's point of view is an old version
    # already loaded in memory: the new one is only used after a restart.
    restart = any(
        canonicalize_name(r.name) in environment.imported and environment.version(r.name) is not None for r in missing
    )
    return InstallPlan(steps=tuple(steps), restart_required=restart)


#: ``pip_install(requirements, constraints_file)``: install requirement strings with pip.
PipInstaller = Callable[[list[str], Path], object]
#: ``install_torch(version_requirement)``, e.g. ">=2.2"; returns None when the user cancelled.
TorchInstaller = Callable[[str], object]


def execute_plan(plan: InstallPlan, pip_install: PipInstaller, install_torch: TorchInstaller) -> list[str]:
    """Run the plan's steps in order with the given installers; return the descriptions of the done steps.

    Each pip step gets its constraints as a file in a temporary folder that lives for the run. An
    installer's exception propagates unchanged (earlier steps stay installed; planning again skips them).
    """
    if plan.problems:
        raise InstallError(plan.problems[0])
    done: list[str] = []
    if not plan.steps:
        return done
    folder = Path(tempfile.mkdtemp(prefix="spinebrain-deps-"))
    try:
        for number, step in enumerate(plan.steps):
            if step.kind == "pytorch-extension":
                if install_torch(str(Requirement(step.packages[0]).specifier)) is None:
                    raise CancelledError("The PyTorch installation was cancelled; nothing else was installed.")
            elif step.kind == "pip":
                constraints = write_constraints(folder / f"constraints-{number}.txt", lines=step.constraints)
                pip_install(list(step.packages), constraints)
            else:
                raise ValueError(f"unknown install step kind {step.kind!r}")
            done.append(step.description)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return done
