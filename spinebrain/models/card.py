"""The model card: everything needed to use a set of weights correctly, as plain JSON.

A card says what the model does (task, region, labels), what it expects (input sequences, voxel
spacing, patch size, intensity normalisation), how to rebuild the network without unpickling code
(architecture name + constructor keyword arguments), where it comes from (training data, command,
software version, date), how well it did (metrics and what they were measured on) and the sha256 of
its weights file. Keys this version does not know are kept and written back unchanged.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import RESEARCH_NOTICE, __version__
from ..errors import ModelError
from ..tasks import card_tasks

CARD_FILE = "model_card.json"

#: Card tasks of the task registry (:mod:`spinebrain.tasks`) when this module was imported (messages read the
#: registry itself). Other well-formed names are accepted (a card may serve a newer version's task);
#: :func:`spinebrain.tasks.task_for_card` says which serve none.
KNOWN_TASKS = card_tasks()

#: Keys a card file must have; the others have defaults.
REQUIRED_KEYS = (
    "id", "task", "version", "labels", "modalities", "spacing", "patch_size",
    "normalisation", "network", "sha256",
)

_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_TASK_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")


def _today() -> str:
    return datetime.date.today().isoformat()


@dataclass
class ModelCard:
    """Description of one model package (the contents of ``model_card.json``).

    ``spacing`` is in millimetres and ``patch_size`` in voxels, both in (i, j, k) order -- the
    order of ``SimpleITK.Image.GetSpacing()`` (see :mod:`spinebrain.geometry`). ``labels`` maps
    each output value (as a string, JSON keys are strings) to its name. ``modalities`` are the
    input channels in order (e.g. ``["CT"]`` or ``["T1", "FLAIR"]``); ``validated_modalities``
    the image types the model was checked on. ``network`` is
    ``{"architecture": "BasicUNet", "kwargs": {...}}`` -- a class of ``monai.networks.nets``, or
    a dotted ``spinebrain.``/``monai.`` class path. ``metrics`` is free-form JSON; by convention
    ``metrics["measured_on"]`` names the data set the numbers come from.
    """

    id: str
    task: str
    version: str
    labels: dict[str, str]
    modalities: list[str]
    spacing: list[float]
    patch_size: list[int]
    normalisation: dict[str, Any]
    network: dict[str, Any]
    sha256: str = ""  # filled in by save_model_package
    region: str | None = None
    validated_modalities: list[str] = field(default_factory=list)
    weights_file: str = ""  # filled in by save_model_package
    training_data: str = ""
    training_command: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    software_version: str = __version__
    created: str = field(default_factory=_today)
    research_notice: str = RESEARCH_NOTICE
    extra: dict[str, Any] = field(default_factory=dict)  # unknown keys, preserved

    # -- (de)serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        data = json.loads(json.dumps(data))  # deep copy with tuples turned into lists
        data.update(self.extra)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "model card") -> ModelCard:
        if not isinstance(data, dict):
            raise ModelError(f"The {source} is not a JSON object; re-create the model package.")
        missing = [key for key in REQUIRED_KEYS if key not in data]
        if missing:
            raise ModelError(
                f"The {source} lacks the required key(s) {', '.join(missing)}; "
                "re-create the model package with 'save_model_package' or re-train the model."
            )
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        card = cls(
            **{key: value for key, value in data.items() if key in known},
            extra={key: value for key, value in data.items() if key not in known},
        )
        card.validate(source, require_sha256=True)
        return card

    @classmethod
    def from_json(cls, text: str, source: str = "model card") -> ModelCard:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ModelError(
                f"The {source} is not valid JSON ({error.msg} at line {error.lineno}); "
                "the package is corrupted: re-download or re-train the model."
            ) from None
        return cls.from_dict(data, source)

    @classmethod
    def read(cls, folder: str | Path) -> ModelCard:
        """Read and validate ``<folder>/model_card.json``."""
        path = Path(folder) / CARD_FILE
        if not path.is_file():
            raise ModelError(
                f"{folder} is not a model package: it has no {CARD_FILE}{_holding(Path(folder))}. A package is a "
                f"folder with {CARD_FILE} beside its weights (model.safetensors or model.pt); give such a folder "
                "or an installed model's id ('spinebrain info' lists them)."
            )
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ModelError(
                f"Cannot read {path} ({error}); the package is corrupted: re-download or re-train it."
            ) from None
        return cls.from_json(text, source=f"model card {path}")

    # -- checks --------------------------------------------------------------------------------
    def validate(self, source: str = "model card", require_sha256: bool = False) -> None:
        """Raise ModelError naming the first field that cannot be used."""

        def fail(problem: str) -> None:
            raise ModelError(f"The {source} has {problem}; fix the card or re-create the model package.")

        if not isinstance(self.id, str) or not _ID_PATTERN.match(self.id):
            fail(f"an invalid id {self.id!r} (letters, digits, '.', '_', '-' only: it names the folder)")
        if not isinstance(self.task, str) or not _TASK_PATTERN.match(self.task):
            fail(f"an invalid task {self.task!r} (e.g. {', '.join(card_tasks())})")
        if not isinstance(self.version, str) or not self.version:
            fail("an empty or non-text version")
        if self.region is not None and not isinstance(self.region, str):
            fail(f"a non-text region {self.region!r}")
        if not isinstance(self.labels, dict) or not all(isinstance(v, str) for v in self.labels.values()):
            fail("labels that are not a mapping of output value to name")
        for name in ("modalities", "validated_modalities"):
            value = getattr(self, name)
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                fail(f"{name} that is not a list of names")
        if not self.modalities:
            fail("no input modalities")
        if not _numbers(self.spacing, float) or any(v <= 0 for v in self.spacing):
            fail(f"an invalid spacing {self.spacing!r} (positive millimetres per axis)")
        if not _numbers(self.patch_size, int) or any(v <= 0 for v in self.patch_size):
            fail(f"an invalid patch_size {self.patch_size!r} (positive voxel counts per axis)")
        for name in ("normalisation", "metrics"):
            if not isinstance(getattr(self, name), dict):
                fail(f"a {name} that is not a JSON object")
        if not isinstance(self.network, dict) or not isinstance(self.network.get("architecture"), str):
            fail("no network architecture (network = {'architecture': name, 'kwargs': {...}})")
        if not isinstance(self.network.get("kwargs", {}), dict):
            fail("network kwargs that are not a JSON object")
        if require_sha256 and not (isinstance(self.sha256, str) and _SHA256_PATTERN.match(self.sha256)):
            fail(f"an invalid sha256 {self.sha256!r} (64 lower-case hex digits of the weights file)")

    def metrics_summary(self) -> str:
        """One line such as 'dice 0.91, hd95 2.3 on VerSe test' (numbers only)."""
        values = [f"{key} {value:.4g}" for key, value in self.metrics.items()
                  if isinstance(value, (int, float)) and not isinstance(value, bool)]
        text = ", ".join(values) if values else "not measured"
        measured_on = self.metrics.get("measured_on")
        return f"{text} on {measured_on}" if values and measured_on else text


def _holding(folder: Path) -> str:
    """' (it holds a.pkl, b.txt)': what a folder that is not a package contains, for the error message."""
    names = sorted(p.name for p in folder.iterdir())[:4] if folder.is_dir() else []
    return f" (it holds {', '.join(names)})" if names else " (it is empty)" if folder.is_dir() else ""


def _numbers(value, kind) -> bool:
    if not isinstance(value, (list, tuple)) or not value:
        return False
    if kind is int:
        return all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
