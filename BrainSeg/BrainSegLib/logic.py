"""BrainSeg's MRML-side logic: tissue (GM, WM, CSF) and MS lesions of MR volumes, with volume tables.

No Qt: everything here runs on the slicer-core wheel (the tests) as in Slicer. It stands on the
shared task Logic (:mod:`spinebrain_slicer.task_logic`): a run exports the sequences (and the
mask), segments them with the core -- in this process (:meth:`BrainSegLogic.run`, for the console)
or as the command ``spinebrain brain-seg`` in the background (:meth:`BrainSegLogic.start_segmentation`,
for the widget: cancellable, Slicer stays responsive) -- and fills three nodes only on success: a
segmentation (segments Grey matter, White matter, Cerebrospinal fluid, Lesion with the project's
terminology and colours), the volumes table and the lesions table. A cancelled, failed or refused
run leaves the scene as it was.

Other user actions, one method each: :meth:`input_requirements` (which sequences the chosen models
need, from their cards), :meth:`check_inputs` (the same check Apply does, for the widget to show
early) and :meth:`lesion_centroid` (the RAS point of a lesions-table row, for centring the views).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from spinebrain.brainseg.case import TASK_CHOICES, BrainSegOptions
from spinebrain.errors import InputError
from spinebrain.tasks import BRAIN_SEG
from spinebrain_slicer import bridge
from spinebrain_slicer.task_logic import TaskJob, TaskLogic

SEQUENCE_NAMES = ("T1", "FLAIR", "T2", "T1C")  # the reference is the first one given
LESION_VALUE = 4


@dataclass
class BrainSegOutput:
    """The nodes a run filled; ``lesions`` is None for the tissue task."""

    segmentation: object
    volumes: object
    lesions: object | None = None


class BrainSegLogic(TaskLogic):
    """Run BrainSeg on volume nodes. ``runner_factory``: see TaskLogic (tests pass one)."""

    # ------------------------------------------------------------------ requirements

    def input_requirements(self, task: str = "tissue", lesion_model=None) -> dict[str, list[str]]:
        """``{"required": [...], "optional": [...]}`` sequence names for ``task`` (from the lesion model's card)."""
        _check_task(task)
        if task == "tissue":
            return {"required": ["any one MR scan"], "optional": []}
        card = _lesion_card(lesion_model)
        required = [str(c).upper() for c in card.extra.get("required_inputs", card.modalities[:1])]
        optional = [str(c).upper() for c in card.modalities if str(c).upper() not in required]
        return {"required": required, "optional": optional}

    def check_inputs(self, sequences: dict, task: str = "tissue", lesion_model=None) -> None:
        """InputError naming the first missing required sequence (what Apply would say), else nothing."""
        given = {name.upper() for name, node in sequences.items() if node is not None}
        if not given:
            raise InputError("Choose at least one input volume (T1, FLAIR, T2 or T1c).")
        if task == "tissue":
            return
        for name in self.input_requirements(task, lesion_model)["required"]:
            if name not in given:
                raise InputError(f"The lesion model needs a {name} volume; choose it in the {name} input.")

    # ------------------------------------------------------------------ run

    def run(self, sequences: dict, mask=None, task: str = "tissue", options: dict | None = None, model=None,
            lesion_model=None, device=None, segmentation=None, volumes_table=None, lesions_table=None,
            progress=None) -> BrainSegOutput:
        """Segment in this process and wait; returns the filled nodes (given ones are replaced, else new)."""
        request = _request(sequences, mask, task, options, model, lesion_model, device,
                           (segmentation, volumes_table, lesions_table), in_process=True)
        return self.run_blocking(request, on_progress=progress)

    def start_segmentation(self, sequences: dict, mask=None, task: str = "tissue", options: dict | None = None,
                           model=None, lesion_model=None, device=None, segmentation=None, volumes_table=None,
                           lesions_table=None, in_process: bool = False, on_progress=None, on_log=None):
        """Start a run (by default ``spinebrain brain-seg`` in the background); returns the TaskRun.

        Poll it (a Qt timer) or wait on it; ``cancel()`` stops it and leaves the scene as it was.
        """
        request = _request(sequences, mask, task, options, model, lesion_model, device,
                           (segmentation, volumes_table, lesions_table), in_process)
        return self.start(request, on_progress=on_progress, on_log=on_log)

    def prepare(self, request: dict, workdir: Path) -> TaskJob:
        """Check the request (before any work) and export the sequences (and the mask)."""
        options = BrainSegOptions(task=request["task"], **request["options"])
        self.check_inputs(request["sequences"], options.task, request["lesion_model"])
        nodes = {name: node for name, node in request["sequences"].items() if node is not None}
        for name, node in list(nodes.items()) + ([("mask", request["mask"])] if request["mask"] is not None else []):
            bridge.check_volume_node(node)
        reference_node = nodes[next(n for n in SEQUENCE_NAMES if n in nodes)]
        outputs = request["outputs"]
        context = {"reference": reference_node, "outputs": outputs, "task": options.task,
                   "title": reference_node.GetName()}
        replaces = [n for n in outputs if n is not None]
        if request["in_process"]:
            images = {name: bridge.image_from_volume_node(node) for name, node in nodes.items()}
            mask = bridge.image_from_volume_node(request["mask"]) if request["mask"] is not None else None
            work = _segmentation_work(images, mask, options, request["model"], request["lesion_model"],
                                      request["device"])
            return TaskJob(work=work, context=context, replaces=replaces)
        args, out = _command(nodes, request["mask"], options, request, workdir)
        context.update(out=out, name=_file_stem(reference_node.GetName()))
        return TaskJob(args=args, context=context, replaces=replaces)

    def import_results(self, job: TaskJob, result, value=None) -> BrainSegOutput:
        """Fill the segmentation and table nodes from the in-process result or the command's files."""
        from spinebrain.brainseg.lesions import LESION_COLUMNS
        from spinebrain.brainseg.quantify import VOLUME_COLUMNS

        context = job.context
        if value is not None:
            labels, names, volumes, lesions = value.labels, value.names, value.volumes, value.lesions
        else:
            labels, names, volumes, lesions = _read_command_outputs(context["out"], context["name"])
        segmentation_node, volumes_node, lesions_node = context["outputs"]
        title = context["title"]
        segmentation_node = bridge.segmentation_node_from_labels(
            self.scene, labels, names, reference_volume_node=context["reference"], node=segmentation_node,
            name=f"{title} BrainSeg")
        volumes_node = bridge.table_node_from_records(self.scene, volumes, list(VOLUME_COLUMNS),
                                                      f"{title} BrainSeg volumes", volumes_node)
        if LESION_VALUE in names:
            lesions_node = bridge.table_node_from_records(self.scene, lesions, list(LESION_COLUMNS),
                                                          f"{title} BrainSeg lesions", lesions_node)
        else:
            lesions_node = None
        return BrainSegOutput(segmentation_node, volumes_node, lesions_node)

    # ------------------------------------------------------------------ lesions table

    def lesion_centroid(self, lesions_table, row: int) -> tuple[float, float, float]:
        """The RAS centroid (mm) of the lesion in ``row`` of a BrainSeg lesions table (for centring the views)."""
        from spinebrain.brainseg.lesions import LESION_COLUMNS

        if lesions_table is None or not lesions_table.IsA("vtkMRMLTableNode"):
            raise InputError("Select the BrainSeg lesions table.")
        records = bridge.records_from_table_node(lesions_table, list(LESION_COLUMNS))
        if not 0 <= row < len(records):
            raise InputError(f"The lesions table has no row {row}; it lists {len(records)} lesion(s).")
        record = records[row]
        return float(record["centroid R"]), float(record["centroid A"]), float(record["centroid S"])


# ---------------------------------------------------------------------- helpers (no state)


def _check_task(task: str) -> None:
    if task not in TASK_CHOICES:
        raise InputError(f"Unknown BrainSeg task {task!r}; choose {', '.join(TASK_CHOICES)}.")


def _lesion_card(lesion_model):
    """The card of the lesion model (id or folder; None: the installed default)."""
    from spinebrain.models import ModelCard, resolve_package

    return ModelCard.read(resolve_package(lesion_model, task="brain-lesion"))


def _request(sequences, mask, task, options, model, lesion_model, device, outputs, in_process) -> dict:
    _check_task(task)
    unknown = set(sequences) - set(SEQUENCE_NAMES)
    if unknown:
        raise InputError(f"Unknown sequence {sorted(unknown)[0]!r}; use {', '.join(SEQUENCE_NAMES)}.")
    return {"sequences": dict(sequences), "mask": mask, "task": task, "options": dict(options or {}),
            "model": model, "lesion_model": lesion_model, "device": device, "outputs": tuple(outputs),
            "in_process": in_process}


def _segmentation_work(images, mask, options, model, lesion_model, device):
    """The in-process run: the core's model loading and case run, as the command line does it."""

    def work(progress):
        from spinebrain.brainseg.pipeline import looks_skull_stripped
        from spinebrain.device import select_device

        reference = images[next(n for n in SEQUENCE_NAMES if n in images)]
        need_tissue = mask is None and not looks_skull_stripped(reference)
        chosen = select_device(device or "auto")
        models = BRAIN_SEG.entry("load_models")(options.task, model, lesion_model, device="cpu",
                                                need_tissue=need_tissue)
        return BRAIN_SEG.entry("run_case")(images, models, options, mask=mask, device=chosen, progress=progress)

    return work


def _command(nodes: dict, mask_node, options, request, workdir: Path) -> tuple[list[str], Path]:
    """Arguments of ``spinebrain brain-seg`` on the exported volumes; the output folder."""
    from spinebrain.io import write_image

    for key in ("model", "lesion_model"):
        if request[key] is not None and not isinstance(request[key], (str, Path)):
            raise InputError("A background run takes a model package id or folder, not a loaded model.")
    args = ["brain-seg"]
    for name, node in nodes.items():
        path = workdir / f"{_file_stem(node.GetName())}_{name}.nrrd" if name != _first(nodes) else \
            workdir / f"{_file_stem(node.GetName())}.nrrd"
        write_image(bridge.image_from_volume_node(node), path, compress=False)  # the scene is not touched
        args += [f"--{name.lower()}", str(path)]
    if mask_node is not None:
        mask_path = workdir / "mask.nrrd"
        write_image(bridge.image_from_volume_node(mask_node), mask_path, compress=False)
        args += ["--mask", str(mask_path)]
    out = workdir / "out"
    args += ["--out", str(out), "--task", options.task, "--normalise", options.normalisation]
    args += ["--n4"] if options.n4 else []
    args += [] if options.register else ["--no-register"]
    args += [] if options.refine else ["--no-refine"]
    if options.minimum_lesion_mm3 is not None:
        args += ["--min-lesion-size", str(options.minimum_lesion_mm3)]
    for option, key in (("--model", "model"), ("--lesion-model", "lesion_model"), ("--device", "device")):
        if request[key] is not None:
            args += [option, str(request[key])]
    return args, out


def _first(nodes: dict) -> str:
    return next(n for n in SEQUENCE_NAMES if n in nodes)


def _read_command_outputs(out: Path, name: str):
    from spinebrain.brainseg.lesions import LESION_COLUMNS
    from spinebrain.brainseg.quantify import VOLUME_COLUMNS
    from spinebrain.outputs import read_segmentation, read_table

    segmentation = out / f"{name}.seg.nrrd"
    if not segmentation.is_file():
        raise InputError("spinebrain brain-seg reported no segmentation; see the log.")
    labels, names = read_segmentation(segmentation)
    volumes = read_table(out / f"{name}_volumes.csv", list(VOLUME_COLUMNS))
    lesions_file = out / f"{name}_lesions.csv"
    lesions = read_table(lesions_file, list(LESION_COLUMNS)) if lesions_file.is_file() else []
    return labels, names, volumes, lesions


def _file_stem(name: str) -> str:
    return "".join(c if c.isalnum() or c in " ._-" else "_" for c in name).strip(" .") or "volume"
