"""The one task registry: what each capability is, which models serve it and how it is run.

Everything that needs the list of tasks reads it from here: the command line (``spinebrain <task>``,
``spinebrain train <task>``, ``spinebrain evaluate <task>`` and their batch runs), model-card
checks (:data:`spinebrain.models.card.KNOWN_TASKS`), ``spinebrain info`` and the Slicer modules.
A new task is one package (``spinebrain/<task>/``) plus one :class:`Task` in :data:`TASKS`, and its Slicer
module folder; ``Testing/test_task_registration.py`` shows a toy task picked up from that alone.

Entry points are ``"module:attribute"`` strings resolved on first use (:meth:`Task.entry`), so this
module imports nothing heavy and nothing imports back into it (no import cycle): the CLI's
``--help`` does not load torch, and a planned task can be declared before its package exists.

Output convention, the same for every command (:data:`OUT_HELP`): ``--out`` naming a file (it
ends in the task's output suffix, e.g. ``.mrk.json``) writes exactly that file for one case;
otherwise ``--out`` is a folder that receives ``<case>/<case><suffix>`` per case and ``summary.csv``
(the batch columns of :mod:`spinebrain.batch` plus the task's :attr:`Task.summary_columns`).
Existing files are never replaced silently (see :mod:`spinebrain.io`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from .errors import InputError
from .tables import Column

#: The ``--out`` rule of every pipeline command, shown in its help.
OUT_HELP = ("a file for one case (its name ends in {suffix}) or a folder for a batch: one sub-folder per case "
            "and summary.csv")


@dataclass(frozen=True)
class Task:
    """One capability as the CLI, the model cards and the Slicer modules see it.

    ``name`` is the command (``spinebrain spine-label``) and the Slicer module's task; ``card_tasks``
    the model-card ``task`` values it accepts (cards may be finer: ``spine-segment-2d`` serves
    ``spine-segment``). ``regions`` are the body regions its models are trained for (``auto`` lets
    the evidence choose among them, see :mod:`spinebrain.spinelabel.choice`). Entry points:

    * ``command`` -- ``add_arguments(parser)`` that fills ``spinebrain <name>``'s parser and sets
      ``run(args, progress)`` as its default;
    * ``load_models`` -- ``(region, model, device) -> models`` for one run (CLI and Slicer Logic);
    * ``runs_without_torch`` -- ``(region, model, registry, device) -> bool``: whether those models run without
      torch (their ONNX export; the command line then skips importing MONAI). None: they need torch;
    * ``run_case`` -- ``(image, models, fixed_points=(), device=None, progress=None, ...) -> result``:
      one case, in memory, no files (what the Slicer Logic calls);
    * ``train`` / ``evaluate`` -- ``add_arguments(parser)`` for ``spinebrain train|evaluate <name>``.

    ``available`` is False for a declared task whose package does not exist yet: its card tasks are
    known (a model for it is recognised), but no command is offered.
    """

    name: str
    title: str  # the Slicer module's name
    help: str  # one line for ``spinebrain --help``
    card_tasks: tuple[str, ...]
    modalities: tuple[str, ...]
    output_suffix: str  # the main output of one case (``--out`` naming a file ends in it)
    regions: tuple[str, ...] = ()
    summary_columns: tuple[Column, ...] = ()
    command: str | None = None
    load_models: str | None = None
    runs_without_torch: str | None = None
    run_case: str | None = None
    train: str | None = None
    evaluate: str | None = None
    available: bool = True
    #: the card tasks its ``train`` entry makes (None: all of ``card_tasks``)
    trained_card_tasks: tuple[str, ...] | None = None
    #: the ``--mode`` values its command runs in this version, the default first (() : no modes)
    modes: tuple[str, ...] = ()
    #: card tasks ``spinebrain train datalist`` makes from image + label-map cases (the Training module's route)
    datalist_card_tasks: tuple[str, ...] = ()

    def entry(self, name: str):
        """The callable behind entry point ``name`` (``"command"``, ``"run_case"``, ``"train"`` ...)."""
        reference = getattr(self, name)
        if not self.available or reference is None:
            raise InputError(f"The {self.name} task has no {name.replace('_', ' ')} in this version; "
                             f"'spinebrain --help' lists what is available.")
        module_name, _, attribute = reference.partition(":")
        return getattr(importlib.import_module(module_name), attribute)

    def trains(self, card_task: str) -> bool:
        """Whether ``spinebrain train <name>`` makes models of ``card_task`` in this version."""
        made = self.card_tasks if self.trained_card_tasks is None else self.trained_card_tasks
        return self.available and self.train is not None and card_task in made

    @property
    def out_help(self) -> str:
        return OUT_HELP.format(suffix=self.output_suffix)


SPINE_LABEL = Task(
    name="spine-label", title="SpineLabel",
    help="detect and label vertebrae (C1...S1) on CT or MR; writes .mrk.json points",
    card_tasks=("spine-label",), modalities=("CT", "T1", "T2"), output_suffix=".mrk.json",
    regions=("cervical", "lumbar", "whole"),
    summary_columns=(Column("region", "text"), Column("model", "text"), Column("vertebrae", "int"),
                     Column("labels", "text"), Column("anchored", "bool"), Column("certainty", "float"),
                     Column("warnings", "text")),
    command="spinebrain.commands.spine_label:add_arguments",
    load_models="spinebrain.spinelabel.pipeline:load_spine_label_models",
    runs_without_torch="spinebrain.spinelabel.pipeline:runs_without_torch",
    run_case="spinebrain.spinelabel.pipeline:label_spine_best",
    train="spinebrain.commands.train:add_spine_label_arguments",
    evaluate="spinebrain.commands.evaluate:add_spine_label_arguments",
)

#: SpineSegment offers its 2D MR mode and its 3D CT mode (``--mode 3d``: run_case of
#: spinebrain.spinesegment.pipeline3d); BrainSeg its tissue model; lesions come next.
SPINE_SEGMENT = Task(
    name="spine-segment", title="SpineSegment",
    help="segment vertebrae as instances: MR vertebral bodies (2D mode) or whole CT vertebrae with completeness "
         "(3D mode); writes .seg.nrrd + .csv",
    card_tasks=("spine-segment", "spine-segment-2d", "spine-segment-3d"), modalities=("CT", "T1", "T2"),
    output_suffix=".seg.nrrd",
    regions=("cervical", "lumbar", "whole"),
    summary_columns=(Column("vertebrae", "int"), Column("names", "text"), Column("complete", "int")),
    command="spinebrain.commands.spine_segment:add_arguments",
    load_models="spinebrain.spinesegment.modes:load_models",
    run_case="spinebrain.spinesegment.modes:run_case",
    train="spinebrain.commands.spine_segment:add_train_arguments",
    evaluate="spinebrain.commands.spine_segment:add_evaluate_arguments",
    modes=("2d", "3d"),  # the --mode values the command runs, the default first
    # 3D models from label maps (spinebrain.training.from_datalist); the 2D MR body model from volumes + body masks
    datalist_card_tasks=("spine-segment", "spine-segment-2d"),
)
BRAIN_SEG = Task(
    name="brain-seg", title="BrainSeg",
    help="segment brain tissue (GM, WM, CSF) and MS lesions of MR scans, with volumes; writes .seg.nrrd + .csv tables",
    card_tasks=("brain-tissue", "brain-lesion"), modalities=("T1", "T2", "FLAIR"), output_suffix=".seg.nrrd",
    command="spinebrain.commands.brain_seg:add_arguments",
    load_models="spinebrain.brainseg.case:load_models",
    run_case="spinebrain.brainseg.case:segment_case",
    train="spinebrain.brainseg.train_entry:add_arguments",
    evaluate="spinebrain.brainseg.evaluate:add_arguments",
    trained_card_tasks=("brain-tissue", "brain-lesion"),  # --target tissue | lesion
    datalist_card_tasks=("brain-tissue", "brain-lesion"),
)

#: Every task, in the order ``--help`` and the Slicer module list show them.
TASKS: tuple[Task, ...] = (SPINE_LABEL, SPINE_SEGMENT, BRAIN_SEG)


def available_tasks() -> list[Task]:
    """The tasks this version can run."""
    return [task for task in TASKS if task.available]


def get_task(name: str) -> Task:
    """The task called ``name`` (a command name); InputError naming the known ones otherwise."""
    for task in TASKS:
        if task.name == name:
            return task
    raise InputError(f"Unknown task {name!r}; the tasks are {', '.join(t.name for t in TASKS)}.")


def card_tasks() -> tuple[str, ...]:
    """Every model-card task name a task accepts (the cards' ``KNOWN_TASKS``)."""
    return tuple(card_task for task in TASKS for card_task in task.card_tasks)


def card_tasks_for(name: str | None) -> tuple[str, ...]:
    """The card tasks a name stands for: a task's accepted card tasks (``brain-seg``), else the name itself."""
    owner = next((task for task in TASKS if task.name == name), None)
    return owner.card_tasks if owner is not None else (name,)


def task_for_card(card_task: str) -> Task | None:
    """The task a model card's ``task`` serves, or None for a name no task knows (a newer version's)."""
    return next((task for task in TASKS if card_task in task.card_tasks), None)
