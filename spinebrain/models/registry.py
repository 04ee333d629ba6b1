"""Where model packages are found: bundled defaults and the user's own models.

Search order: the user model folder first, then the bundled folder. A user package with the same
id as a bundled one replaces it (that is how a re-trained or updated default is installed).
Nothing is ever downloaded.

* Bundled: ``Resources/Models`` beside the ``spinebrain`` package (the repository root, or the
  folder the Slicer extension installs its modules into); ``$SPINEBRAIN_BUNDLED_MODELS_DIR``
  overrides it.
* User: ``$SPINEBRAIN_MODELS_DIR`` if set, else the platform's data folder:
  ``~/.local/share/SlicerSpineBrain/models`` (Linux, honouring ``$XDG_DATA_HOME``),
  ``%APPDATA%\\SlicerSpineBrain\\models`` (Windows),
  ``~/Library/Application Support/SlicerSpineBrain/models`` (macOS).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING

from ..errors import ModelError
from ..tasks import card_tasks_for, task_for_card
from .card import CARD_FILE, ModelCard
from .package import move_into_place, read_package

if TYPE_CHECKING:
    import torch

USER_DIR_ENV = "SPINEBRAIN_MODELS_DIR"
BUNDLED_DIR_ENV = "SPINEBRAIN_BUNDLED_MODELS_DIR"
APP_FOLDER = "SlicerSpineBrain"


def default_user_dir() -> Path:
    if os.environ.get(USER_DIR_ENV):
        return Path(os.environ[USER_DIR_ENV]).expanduser()
    home = Path.home()
    if sys.platform.startswith("win"):
        base = Path(os.environ.get("APPDATA") or home / "AppData" / "Roaming")
    elif sys.platform == "darwin":
        base = home / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share")
    return base / APP_FOLDER / "models"


def default_bundled_dir() -> Path:
    if os.environ.get(BUNDLED_DIR_ENV):
        return Path(os.environ[BUNDLED_DIR_ENV]).expanduser()
    return Path(__file__).resolve().parents[2] / "Resources" / "Models"


@dataclass
class ModelEntry:
    """One usable package: its card (as read, weights not yet verified) and where it is."""

    card: ModelCard
    path: Path
    source: str  # "user" or "bundled"
    overrides_bundled: bool = False  # a user package hiding a bundled one with the same id


class ModelRegistry:
    """Lists and finds model packages in the user and bundled folders.

    Packages that cannot be used (unreadable card, folder named unlike its id) and user packages
    that hide a bundled model of another task are recorded in :attr:`problems` by each scan, and
    named in the error when no model is found, so nothing is skipped silently.
    """

    def __init__(self, bundled_dir: str | os.PathLike | None = None, user_dir: str | os.PathLike | None = None):
        self.bundled_dir = Path(bundled_dir) if bundled_dir is not None else default_bundled_dir()
        self.user_dir = Path(user_dir) if user_dir is not None else default_user_dir()
        self.problems: list[tuple[Path, str]] = []  # packages the last scan could not use, and why
        self.hidden: list[tuple[ModelEntry, ModelEntry]] = []  # (user package, bundled one of another task it hides)

    # -- listing -------------------------------------------------------------------------------
    def list_models(self, task: str | None = None, region: str | None = None) -> list[ModelEntry]:
        """Usable packages (user ones first), optionally only those for ``task`` / ``region``.

        ``task`` is a card task (``spine-segment-2d``) or a task of :mod:`spinebrain.tasks`
        (``brain-seg``: every card task it accepts). A package without a region serves every region.
        Unreadable packages are skipped and recorded in :attr:`problems`.
        """
        self.problems, self.hidden = [], []
        user = self._scan(self.user_dir, "user")
        bundled = self._scan(self.bundled_dir, "bundled")
        for entry in user.values():
            hidden = bundled.get(entry.card.id)
            entry.overrides_bundled = hidden is not None
            if hidden is not None and hidden.card.task != entry.card.task:
                self.hidden.append((entry, hidden))
                self.problems.append((entry.path, _hiding(entry, hidden)))
        bundled = {key: entry for key, entry in bundled.items() if key not in user}
        entries = [*user.values(), *bundled.values()]
        card_tasks = card_tasks_for(task)
        return [e for e in entries if (task is None or e.card.task in card_tasks)
                and (region is None or e.card.region in (None, region))]

    def _scan(self, folder: Path, source: str) -> dict[str, ModelEntry]:
        found: dict[str, ModelEntry] = {}
        if not folder.is_dir():
            return found
        for package in sorted(folder.iterdir()):
            if package.name.startswith(".") or not (package / CARD_FILE).is_file():
                continue  # staging folders of an unfinished save, and unrelated files
            try:
                card = ModelCard.read(package)
            except ModelError as error:
                self.problems.append((package, str(error)))
                continue
            if card.id != package.name:
                self.problems.append((package, f"folder name differs from the card id {card.id!r}; rename the folder"))
                continue
            found[card.id] = ModelEntry(card, package, source)
        return found

    def problem_lines(self) -> list[str]:
        """The last scan's problems, one sentence each (for logs and error messages)."""
        return [f"Model package {path} is not used: {message}" for path, message in self.problems]

    # -- choosing ------------------------------------------------------------------------------
    def find(self, model_id: str | None = None, task: str | None = None, region: str | None = None) -> ModelEntry:
        """The package with ``model_id``, or else the best one for ``task`` (and ``region``).

        For a task, the choice is: an exact region match before a region-less model, a user model
        before a bundled one, then the most recently created.
        """
        if model_id is not None:
            for entry in self.list_models():
                if entry.card.id == model_id:
                    return entry
            unreadable = [message for path, message in self.problems if path.name == model_id]
            if unreadable:
                raise ModelError(f"Model {model_id!r} cannot be used: {unreadable[0]}")
            raise ModelError(f"No model {model_id!r} in the user model folder {self.user_dir} or the bundled folder "
                             f"{self.bundled_dir}; 'spinebrain info' lists the installed models (or give the path "
                             f"of a package folder).")
        if task is None:
            raise ModelError("Name a model id or a task to choose a model.")
        candidates = self.list_models(task=task, region=region)
        if not candidates:
            where = f" for region {region}" if region else ""
            hiding = [(user, bundled) for user, bundled in self.hidden if bundled.card.task in card_tasks_for(task)
                      and (region is None or bundled.card.region in (None, region))]
            if hiding:
                raise ModelError(f"No {task} model{where} is usable: {_hiding(*hiding[0])}.")
            unreadable = (f" ({len(self.problems)} model package(s) could not be read; 'spinebrain info' says why.)"
                          if self.problems else "")
            raise ModelError(f"No {task} model{where} is installed. {self.how_to_get_model(task, self.user_dir)}"
                             f"{unreadable}")

        def preference(entry: ModelEntry):
            return (region is not None and entry.card.region == region, entry.source == "user", entry.card.created)

        return max(candidates, key=preference)

    @staticmethod
    def how_to_get_model(task: str | None = None, user_dir: Path | None = None) -> str:
        """What to do when no model is found: train one (the task's command) or import a package."""
        folder = user_dir or default_user_dir()
        owner = task_for_card(task) if task else None
        importing = f"import a model package (folder with model_card.json and weights) into {folder}"
        if owner is not None and not owner.trains(task):
            return f"This version cannot train {task} models yet; {importing}."
        command = owner.name if owner else "TASK"
        return f"Train one with 'spinebrain train {command} ...' (or the Training module in Slicer), or {importing}."

    # -- installing ----------------------------------------------------------------------------
    def install(self, package_folder: str | os.PathLike, overwrite: bool = False) -> ModelEntry:
        """Verify a package (card, sha256, safe weights) and copy it into the user folder."""
        card, _ = read_package(package_folder)
        target = self.user_dir / card.id
        if target.exists() and not overwrite:
            raise ModelError(
                f"A model {card.id!r} is already installed at {target}; pass overwrite=True to replace it."
            )
        self.user_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{card.id}-", dir=self.user_dir))
        try:
            copied = staging / card.id
            shutil.copytree(package_folder, copied)
            read_package(copied)  # the copy is what will be used: verify it too
            move_into_place(copied, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return self.find(card.id)


def _hiding(user: ModelEntry, bundled: ModelEntry) -> str:
    return (f"the user package {user.path} (task {user.card.task}) has the id of the bundled {bundled.card.task} "
            f"model {bundled.card.id!r} and hides it; rename or remove the user package")


def resolve_package(path_or_id, task=None, registry: ModelRegistry | None = None, region=None) -> Path:
    """The folder of the package meant by a path, a model id, or (None) the task's default."""
    if path_or_id is not None:
        path = Path(path_or_id)
        if path.is_dir():
            return path
        if isinstance(path_or_id, os.PathLike) or os.sep in str(path_or_id) or "/" in str(path_or_id):
            raise ModelError(f"No model package folder at {path}. {ModelRegistry.how_to_get_model(task)}")
    registry = registry or ModelRegistry()
    return registry.find(str(path_or_id) if path_or_id is not None else None, task=task, region=region).path


def load_model_package(path_or_id: str | os.PathLike | None = None, task: str | None = None,
                       registry: ModelRegistry | None = None,
                       region: str | None = None) -> tuple[ModelCard, dict[str, torch.Tensor]]:
    """Return ``(card, state_dict)`` of a verified package, on the CPU.

    ``path_or_id`` is a package folder, or a model id looked up in ``registry`` (default: a
    :class:`ModelRegistry` with the standard folders); ``None`` takes the registry's choice for
    ``task`` (and ``region``). ``task``, when given, must match the card.
    """
    return read_package(resolve_package(path_or_id, task, registry, region), task)
