"""Write the cases of the scene into a work folder: images, references and a MONAI-style datalist.

Layout of ``<work>/data/`` (written in a staged folder and moved in only when every case was
written, so a failure or a full disk leaves nothing half-written)::

    images/<case>.nii.gz          the volume (its own grid and voxel type)
    labels/<case>.nii.gz          segmentation tasks: the label map on the volume's grid
    points/<case>.nii.gz + .mrk.json   labelling: scan and named body centres side by side
                                  (the layout of ``spinebrain train spine-label --real-data``)
    points-validation/...         labelling: the validation cases, same layout (``--real-validation``)
    datalist.json                 {"training": [...], "validation": [...], "labels": {...}, "modality": {...}}

Each case is read from the scene on the main thread -- MRML is not thread-safe -- and its files are
compressed and written by a worker thread (:class:`ExportJob`, stepped by the Training run's timer,
so Slicer stays responsive and shows which case is being written).

Label values are the same for every case: segments are matched by name (case-insensitive) to one
label set -- the model's when fine-tuning (a name it does not know is refused), else the names of all
cases in order of first appearance.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from spinebrain.errors import InputError
from spinebrain.io import write_image
from spinebrain.outputs import StagedOutputs
from spinebrain.outputs.markups import write_markups
from spinebrain.resample import resample_like

from .bridge import image_from_volume_node, labels_from_segmentation_node, points_from_markups_node
from .training_cases import POINTS, SEGMENTATION, TrainingCase

DATALIST = "datalist.json"
POINT_FOLDERS = {"training": "points", "validation": "points-validation"}  # labelling cases, one folder per part


@dataclass
class ExportedCases:
    """What :func:`export_cases` wrote: the datalist, the label set and the case names of each part."""

    folder: Path
    datalist: Path
    labels: dict[str, str] = field(default_factory=dict)
    training: list[str] = field(default_factory=list)
    validation: list[str] = field(default_factory=list)

    @property
    def points_folder(self) -> Path:
        return self.folder / "points"

    @property
    def validation_points_folder(self) -> Path:
        return self.folder / POINT_FOLDERS["validation"]


def split_cases(cases: list[TrainingCase], validation_fraction: float, seed: int = 0,
                validation_names=None) -> tuple[list[TrainingCase], list[TrainingCase]]:
    """(training, validation): the named validation cases, else a seeded share (at least one case each)."""
    if validation_names:
        unknown = set(validation_names) - {case.name for case in cases}
        if unknown:
            raise InputError(f"The validation case(s) {', '.join(sorted(unknown))} are not among the usable cases.")
        validation = [case for case in cases if case.name in set(validation_names)]
    else:
        if not 0.0 <= validation_fraction < 1.0:
            raise InputError("The validation share must be at least 0 and below 1 (e.g. 0.2).")
        count = int(round(validation_fraction * len(cases)))
        if validation_fraction > 0 and count == 0 and len(cases) > 1:
            count = 1
        order = np.random.default_rng(seed).permutation(len(cases))
        validation = [cases[i] for i in sorted(order[:count])]
    training = [case for case in cases if case not in validation]
    if not training:
        raise InputError("Every case is a validation case; keep at least one case for training.")
    return training, validation


def export_cases(training: list[TrainingCase], validation: list[TrainingCase], work_folder, modality: str,
                 label_set: dict[str, str] | None = None, overwrite: bool = False, progress=None) -> ExportedCases:
    """Write the cases under ``<work_folder>/data`` (see the module docstring) and wait; nothing on failure.

    ``progress(stage, fraction, message)``, if given, is called about ten times a second; an exception
    it raises (e.g. the scene was closed) ends the export with nothing written."""
    job = ExportJob(training, validation, work_folder, modality, label_set, overwrite)
    try:
        while job.result is None:
            message = job.step(timeout=0.1)
            if progress:
                progress("export", job.fraction, message)
    except BaseException:
        job.abort()
        raise
    return job.result


class ExportJob:
    """One export in steps, for a timer on Slicer's main thread: each :meth:`step` returns at once.

    A step reads the next case from the scene (main thread: MRML is not thread-safe) once the
    previous case's files are written, and hands the new files to a worker thread, which compresses
    and writes them; the last step writes the datalist and moves the staged folder into place. Only
    one case is held in memory beside the scene. :meth:`abort` removes everything staged.
    """

    def __init__(self, training: list[TrainingCase], validation: list[TrainingCase], work_folder, modality: str,
                 label_set: dict[str, str] | None = None, overwrite: bool = False):
        self.folder = Path(work_folder) / "data"
        if self.folder.exists() and not overwrite:
            raise InputError(f"{self.folder} already holds exported cases; choose another work folder or allow "
                             "replacing it.")
        self.labels = {"0": "background"} if label_set is None else dict(label_set)
        self.fixed, self.modality = label_set is not None, modality
        self.queue = [("training", case) for case in training] + [("validation", case) for case in validation]
        self.total = len(self.queue)
        self.names = {"training": [c.name for c in training], "validation": [c.name for c in validation]}
        self.document: dict = {"training": [], "validation": []}
        self.stage = StagedOutputs(self.folder, overwrite=overwrite)
        self.writer: threading.Thread | None = None
        self.failure: list[BaseException] = []
        self.current = ""
        self.result: ExportedCases | None = None

    @property
    def fraction(self) -> float:
        written = len(self.document["training"]) + len(self.document["validation"]) - (1 if self.writing else 0)
        return 1.0 if self.result is not None else written / max(self.total, 1)

    @property
    def writing(self) -> bool:
        return self.writer is not None and self.writer.is_alive()

    def step(self, timeout: float = 0.0) -> str:
        """Advance the export by at most one case; a message for the progress display."""
        if self.writer is not None:
            self.writer.join(timeout)
            if self.writer.is_alive():
                return self._writing_message()
            self.writer = None
            self._raise_failure()
        if self.queue:
            part, case = self.queue.pop(0)
            self.current = case.name
            entry, writes = _case_files(case, self.stage.path, self.labels, self.fixed, POINT_FOLDERS[part])
            self.document[part].append(entry)
            self.writer = threading.Thread(target=self._write, args=(writes,), name="spinebrain-export", daemon=True)
            self.writer.start()
            return self._writing_message()
        self.document.update(labels=self.labels, modality={"0": self.modality}, numTraining=len(self.names["training"]))
        self.stage.path(DATALIST).write_text(json.dumps(self.document, indent=2), encoding="utf-8")
        self.stage.commit()
        self.stage.cleanup()
        self.result = ExportedCases(self.folder, self.folder / DATALIST, self.labels if len(self.labels) > 1 else {},
                                    self.names["training"], self.names["validation"])
        return f"{self.total} cases exported"

    def _writing_message(self) -> str:
        number = len(self.document["training"]) + len(self.document["validation"])
        return f"writing case {self.current} ({number} of {self.total})"

    def abort(self) -> None:
        """Wait for the file being written, then remove everything staged (nothing reaches the work folder)."""
        if self.writer is not None:
            self.writer.join()
        self.queue.clear()
        if self.result is None:
            self.stage.cleanup()

    def _write(self, writes: list) -> None:
        try:
            for write in writes:
                write()
        except BaseException as error:  # noqa: BLE001 -- raised again on the main thread by the next step
            self.failure.append(error)

    def _raise_failure(self) -> None:
        if not self.failure:
            return
        error = self.failure[0]
        if isinstance(error, OSError):
            raise InputError(f"Cannot write the exported cases ({error.strerror or error}); free some disk space or "
                             "choose another work folder.") from None
        raise error


def _case_files(case: TrainingCase, staged, labels: dict[str, str], fixed: bool, points: str = "points"):
    """(datalist entry, file writers) of one case: the scene is read here, the writers touch no MRML."""
    image = image_from_volume_node(case.volume)
    reference = case.reference
    if reference.IsA(POINTS):
        centres = points_from_markups_node(reference)
        if not centres:
            raise InputError(f"{case.name}: the point list '{reference.GetName()}' is empty; place the points.")
        image_path, points_path = _parent(staged(f"{points}/{case.name}.nii.gz")), staged(f"{points}/{case.name}.mrk.json")
        return ({"name": case.name, "image": f"{points}/{case.name}.nii.gz", "label": f"{points}/{case.name}.mrk.json"},
                [lambda: write_image(image, image_path), lambda: write_markups(centres, points_path, name=case.name)])
    label_image = _label_image(case, image, labels, fixed)
    image_path = _parent(staged(f"images/{case.name}.nii.gz"))
    label_path = _parent(staged(f"labels/{case.name}.nii.gz"))
    return ({"name": case.name, "image": f"images/{case.name}.nii.gz", "label": f"labels/{case.name}.nii.gz"},
            [lambda: write_image(image, image_path), lambda: write_image(label_image, label_path)])


def _label_image(case: TrainingCase, image: sitk.Image, labels: dict[str, str], fixed: bool) -> sitk.Image:
    """The reference as a label map on the volume's grid, with the common label values."""
    reference = case.reference
    if reference.IsA(SEGMENTATION):
        exported, names = labels_from_segmentation_node(reference, case.volume)
    else:
        exported = image_from_volume_node(reference)
        if case.needs_resampling:
            exported = resample_like(exported, image, is_label=True)
        names = {int(v): f"label {int(v)}" for v in np.unique(sitk.GetArrayViewFromImage(exported)) if v}
        names.update(_names_of_labelmap(reference, names))
    array = sitk.GetArrayFromImage(exported)
    out = np.zeros(array.shape, np.uint8)
    for value, name in names.items():
        mask = array == value
        if not mask.any():
            continue
        out[mask] = _value_for(name, labels, fixed, case)
    if not out.any():
        raise InputError(f"{case.name}: the reference '{reference.GetName()}' is empty on this volume; paint the "
                         "structures or leave the case out.")
    result = sitk.GetImageFromArray(out)
    result.CopyInformation(image)
    return result


def _value_for(name: str, labels: dict[str, str], fixed: bool, case: TrainingCase) -> int:
    by_name = {text.strip().lower(): int(value) for value, text in labels.items()}
    key = name.strip().lower()
    if key in by_name:
        return by_name[key]
    if fixed:
        known = ", ".join(text for value, text in sorted(labels.items(), key=lambda i: int(i[0])) if value != "0")
        raise InputError(f"{case.name}: the segment '{name}' is not a label of the model to fine-tune ({known}); "
                         "rename the segment or train from scratch.")
    value = max(int(v) for v in labels) + 1
    if value > 255:
        raise InputError("More than 255 different segment names; a label map holds at most 255 labels.")
    labels[str(value)] = name
    return value


def _names_of_labelmap(node, names: dict[int, str]) -> dict[int, str]:
    """Names of a label map's values from its colour table, where it has one."""
    display = node.GetDisplayNode()
    colours = display.GetColorNode() if display is not None else None
    if colours is None:
        return {}
    found = {}
    for value in names:
        name = colours.GetColorName(value) if value < colours.GetNumberOfColors() else ""
        if name and name.lower() not in ("invalid", "(none)", ""):
            found[value] = name
    return found


def _parent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
