"""The Training module's Logic: train or fine-tune a model on the cases of the scene and use it at once.

One method per thing a user does, shared by the widget and the Python console::

    logic = TrainingLogic(slicer.mrmlScene)
    cases = logic.cases("brain-tissue")                  # (volume, reference) pairs and what is missing
    run = logic.start(TrainingSettings("brain-tissue", "my-brain", work_folder="/tmp/work", epochs=20))
    run.wait()                                           # or poll() from a timer; run.stop() / run.cancel()
    run.model.card.id                                    # registered: listed by ModelRegistry at once
    logic.apply_model("my-brain", volumeNode)            # a segmentation node from the new model

Start checks the settings and cases at once, then the run exports the cases in steps (one case read
from the scene per poll, its files written on a worker thread: Slicer stays responsive; progress
stage "export"), then runs ``spinebrain train ...`` in a background process (:mod:`.runner`):
``train datalist`` for segmentation tasks, ``train spine-label --real-data ... --real-validation ...``
for vertebra labelling (the scene's validation cases choose the detectors' best epochs). Progress
arrives as JSON lines; each ``epoch`` event (loss, validation metric, seconds left) goes into :attr:`TrainingRun.epochs` and the curves table. **Stop** writes the run's
``STOP`` file: the trainer ends after the current iteration and writes a package from the best weights
so far, which is registered. **Cancel** terminates the process: nothing is registered. Closing the
scene cancels a run. On success the package is installed into the user model folder
(:meth:`spinebrain.models.registry.ModelRegistry.install`), so every model selector lists it at once.
No Qt, no ``slicer.app``: runs on slicer-core (the tests) as in Slicer.
"""

from __future__ import annotations

import atexit
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from spinebrain.errors import InputError
from spinebrain.tasks import available_tasks

from . import training_cases
from .runner import RunState
from .task_logic import core_process_runner, poll_runner, poll_until_finished, raise_unless_succeeded
from .training_curves import fill_curves
from .training_export import ExportedCases, ExportJob, export_cases, split_cases

STOP_FILE = "STOP"  # spinebrain.training.handlers.STOP_FILE, named here to keep torch out of Slicer's process
LABELLING = "spine-label"


@dataclass(frozen=True)
class TrainingTask:
    """What the module offers: a model-card task, what its references are and how it is trained."""

    key: str  # the model-card task (spine-label, spine-segment, brain-tissue, brain-lesion)
    title: str
    reference: str  # "points" or "labels"
    modality: str  # the input channel the exported volumes stand for
    can_stop: bool  # whether the trainer honours the STOP file
    can_fine_tune: bool


def training_tasks() -> list[TrainingTask]:
    """The tasks the Training module can train, from the task registry."""
    tasks = []
    for task in available_tasks():
        if task.name == LABELLING and task.train:
            tasks.append(TrainingTask(LABELLING, "Vertebra labelling (SpineLabel)", "points", "T2", True, True))
        for card_task in task.datalist_card_tasks:
            modality = {"brain-lesion": "FLAIR", "brain-tissue": "T1", "spine-segment-2d": "MR"}.get(card_task, "CT")
            tasks.append(TrainingTask(card_task, f"{card_task.replace('-', ' ')} ({task.title})", "labels", modality,
                                      True, True))
    return tasks


def get_training_task(key: str) -> TrainingTask:
    for task in training_tasks():
        if task.key == key:
            return task
    raise InputError(f"The Training module cannot train {key!r} models; choose one of "
                     f"{', '.join(t.key for t in training_tasks())}.")


@dataclass
class TrainingSettings:
    """Everything one training run needs besides the scene."""

    task: str
    model_id: str
    work_folder: str | None = None  # default: a new folder in the temporary directory
    epochs: int = 20
    learning_rate: float = 1e-3
    batch_size: int = 2
    patch: int | None = None  # cube edge in voxels (default: the task's, or the fine-tuned model's)
    device: str = "auto"
    amp: bool = True
    init_from: str | None = None  # fine-tune this model (id or folder); None: from scratch
    synthetic_ratio: float = 0.0  # generated cases per training case
    validation_fraction: float = 0.2
    validation_cases: list[str] = field(default_factory=list)  # case names; overrides the fraction
    resample: bool = False  # label maps on another grid: resample (nearest neighbour) instead of refusing
    region: str = "lumbar"  # vertebra labelling: the region the model is for
    seed: int = 0
    threads: int | None = None
    modality: str | None = None  # default: the task's


class TrainingLogic:
    """See the module docstring. ``runner_factory(args)`` and ``registry`` are injectable for tests."""

    def __init__(self, scene, runner_factory=None, registry=None):
        self.scene = scene
        self.runner_factory = runner_factory or core_process_runner
        self._registry = registry
        self.runs: list[TrainingRun] = []
        self._closed_while_exporting = False
        self._close_tag = scene.AddObserver(scene.StartCloseEvent, self._on_scene_close)

    @property
    def registry(self):
        from spinebrain.models.registry import ModelRegistry

        return self._registry or ModelRegistry()

    def release(self) -> None:
        """Cancel any run and stop observing the scene (the module is closing)."""
        self.cancel_all()
        if self._close_tag is not None:
            self.scene.RemoveObserver(self._close_tag)
            self._close_tag = None

    # -- cases ---------------------------------------------------------------------------------
    def cases(self, task: str, resample: bool = False) -> list[training_cases.TrainingCase]:
        """The scene's cases for ``task`` with their references and what stops each from being used."""
        return training_cases.find_cases(self.scene, get_training_task(task).reference, resample)

    def set_reference(self, volume, reference) -> None:
        training_cases.set_reference(volume, reference)

    def set_excluded(self, volume, excluded: bool) -> None:
        training_cases.set_excluded(volume, excluded)

    def models_to_fine_tune(self, task: str) -> list[str]:
        """Ids of the installed models ``task`` can start from (empty where fine-tuning is not offered)."""
        if not get_training_task(task).can_fine_tune:
            return []
        entries = [entry for entry in self.registry.list_models(task=task) if entry.card.task == task]
        if task == LABELLING:  # only the paper's detector pair is trained from the scene
            from spinebrain.spinelabel.fine_tune import PAIR_ARCHITECTURE

            entries = [entry for entry in entries if entry.card.network.get("architecture") == PAIR_ARCHITECTURE]
        return [entry.card.id for entry in entries]

    # -- export and start ----------------------------------------------------------------------
    def export(self, settings: TrainingSettings, on_progress=None) -> ExportedCases:
        """Write the usable cases and the datalist into ``<work_folder>/data``; InputError on bad input.

        Blocks (the Python console); :meth:`start` exports in steps instead. ``on_progress(stage,
        fraction, message)`` is called about ten times a second; closing the scene meanwhile ends the
        export (CancelledError) with nothing written."""
        self._closed_while_exporting = False
        return export_cases(*self._export_plan(settings), progress=lambda *update: self._export_progress(on_progress,
                                                                                                          *update))

    def _export_plan(self, settings: TrainingSettings) -> tuple:
        """(training cases, validation cases, work folder, modality, label set) of an export; InputError first."""
        task = get_training_task(settings.task)
        cases = training_cases.usable_cases(self.cases(settings.task, settings.resample))
        training, validation = split_cases(cases, settings.validation_fraction, settings.seed, settings.validation_cases)
        label_set = self._fine_tune_labels(settings) if settings.init_from else None
        return training, validation, self._work_folder(settings), settings.modality or task.modality, label_set

    def _export_progress(self, on_progress, stage: str, fraction: float, message: str) -> None:
        if on_progress:
            on_progress(stage, fraction, message)
        if self._closed_while_exporting:
            from spinebrain.errors import CancelledError

            raise CancelledError("The scene was closed during the export; nothing was written or started.")

    def start(self, settings: TrainingSettings, on_progress=None, on_log=None, on_epoch=None) -> TrainingRun:
        """Check, export the cases and start the trainer in the background; bad input raises at once."""
        self._check(settings)
        plan = self._export_plan(settings)
        job = ExportJob(*plan)
        run = TrainingRun(self, settings, job, Path(plan[2]) / "run" / STOP_FILE, on_progress, on_log, on_epoch)
        self.runs.append(run)
        return run

    def run_blocking(self, settings: TrainingSettings, timeout: float | None = None, **callbacks):
        """Train to the end (Python console): the registered model entry, or TaskError / CancelledError."""
        return self.start(settings, **callbacks).wait(timeout)

    def command(self, settings: TrainingSettings, exported: ExportedCases) -> list[str]:
        """The ``spinebrain`` arguments that train on the exported cases."""
        work = exported.folder.parent
        common = ["--out", str(work / "package"), "--id", settings.model_id, "--epochs", str(settings.epochs),
                  "--device", settings.device, "--seed", str(settings.seed)]
        if settings.threads:
            common += ["--threads", str(settings.threads)]
        if settings.task == LABELLING:
            synthetic = max(2, int(round(settings.synthetic_ratio * len(exported.training))))
            args = ["train", "spine-label", "--region", settings.region, "--real-data", str(exported.points_folder),
                    "--cases", str(synthetic), "--validation-cases", str(max(1, synthetic // 4)),
                    "--run-dir", str(work / "run"), *common]
            if exported.validation:
                args += ["--real-validation", str(exported.validation_points_folder)]
            return args + (["--init-from", settings.init_from] if settings.init_from else [])
        args = ["train", "datalist", "--task", settings.task, "--datalist", str(exported.datalist),
                "--run-dir", str(work / "run"), "--lr", str(settings.learning_rate),
                "--batch-size", str(settings.batch_size), "--synthetic-ratio", str(settings.synthetic_ratio),
                "--no-resume", *common]
        if settings.patch and not settings.init_from:
            args += ["--patch", *[str(settings.patch)] * 3]
        if settings.init_from:
            args += ["--init-from", settings.init_from]
        if not settings.amp:
            args.append("--no-amp")
        return args

    def _check(self, settings: TrainingSettings) -> None:
        from spinebrain.models.card import _ID_PATTERN

        task = get_training_task(settings.task)
        if not _ID_PATTERN.match(settings.model_id or ""):
            raise InputError(f"The model id {settings.model_id!r} is not usable; use letters, digits, '.', '_' and '-'.")
        if settings.epochs < 1:
            raise InputError("Train for at least 1 epoch.")
        if settings.init_from and not task.can_fine_tune:
            raise InputError(f"The {task.key} trainer cannot fine-tune a model yet; train from scratch.")
        if any(entry.card.id == settings.model_id for entry in self.registry.list_models()):
            raise InputError(f"A model {settings.model_id!r} is already installed; choose another id.")
        if any(run.running for run in self.runs):
            raise InputError("A training run is still going on; stop or cancel it first.")

    def _fine_tune_labels(self, settings: TrainingSettings) -> dict[str, str] | None:
        """The label set of the model to fine-tune (the exported cases must use it); the trainer's checks first."""
        if settings.task == LABELLING:  # point lists have no label set; the model must suit the region's trainer
            from spinebrain.spinelabel.fine_tune import check_start_card, read_start_card
            from spinebrain.spinelabel.slices import MODEL_PIXEL_MM

            region = settings.region
            patches = _labelling_patches(region)
            check_start_card(read_start_card(settings.init_from, self.registry), region, MODEL_PIXEL_MM[region],
                             *patches)
            return None
        from spinebrain.training.fine_tune import load_start_model  # imports MONAI: only when fine-tuning

        card, _ = load_start_model(settings.init_from, settings.task, self.registry)
        return None if settings.task == "spine-segment-2d" else dict(card.labels)  # 2D: every segment is a body

    @staticmethod
    def _work_folder(settings: TrainingSettings) -> Path:
        if settings.work_folder is None:
            return Path(tempfile.mkdtemp(prefix=f"spinebrain-training-{settings.model_id}-"))
        folder = Path(settings.work_folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-")
            probe.close()
        except OSError as error:
            raise InputError(f"Cannot write into the work folder {folder} ({error.strerror or error}); choose a "
                             "folder you can write to, with space for the exported cases.") from None
        return folder

    # -- after training ------------------------------------------------------------------------
    def register(self, package_folder):
        """Install a trained package into the user model folder; its registry entry."""
        return self.registry.install(package_folder)

    def apply_model(self, model: str, volume_node, device: str = "cpu"):
        """Segment ``volume_node`` with a segmentation model (id or folder): a new segmentation node."""
        from spinebrain.inference import run_inference
        from spinebrain.models import load_network

        from .bridge import image_from_volume_node, segmentation_node_from_labels

        card, network = load_network(model, registry=self.registry, device=device)
        if card.task == LABELLING:
            raise InputError("A vertebra labelling model runs in the SpineLabel module; choose it there.")
        result = run_inference(image_from_volume_node(volume_node), network, card, device=device)
        names = {int(v): n for v, n in card.labels.items() if int(v) != 0}
        return segmentation_node_from_labels(self.scene, result.labels, names, reference_volume_node=volume_node,
                                             name=f"{volume_node.GetName()} {card.id}")

    def cancel_all(self) -> None:
        for run in self.runs:
            run.cancel(grace_seconds=2.0)

    def _on_scene_close(self, caller, event) -> None:
        self._closed_while_exporting = True
        for run in self.runs:
            if run.running:
                run.cancel(grace_seconds=2.0)
                run.closed_scene = True


class TrainingRun:
    """One background training run: poll (timer) or wait (console); stop keeps the best, cancel keeps nothing.

    It first exports the cases in steps (:class:`~.training_export.ExportJob`: one case read from the
    scene per poll, its files written on a worker thread, ``progress`` events of stage "export"), then
    starts the trainer. A bad case found during the export ends the run as bad input, nothing written;
    Stop or Cancel before the trainer started end it with nothing written or registered.
    """

    def __init__(self, logic: TrainingLogic, settings: TrainingSettings, job: ExportJob, stop_path: Path,
                 on_progress=None, on_log=None, on_epoch=None):
        self.logic, self.settings, self.job = logic, settings, job
        self.exported: ExportedCases | None = None
        self.runner = None  # the trainer's ProcessRunner once the export is done
        self.stop_path = stop_path
        self.on_progress, self.on_log, self.on_epoch = on_progress, on_log, on_epoch
        self.state = RunState.RUNNING
        self.epochs: list[dict] = []  # the trainer's epoch events (loss, metric, seconds left)
        self.status = "starting"
        self.error = ""
        self.model = None  # the registered ModelEntry after success
        self.stop_requested = self.cancel_requested = self.closed_scene = False
        atexit.register(self._kill_at_exit)

    @property
    def running(self) -> bool:
        return self.state is RunState.RUNNING

    @property
    def finished(self) -> bool:
        return not self.running

    @property
    def work_folder(self) -> Path:
        return self.job.folder.parent

    def poll(self, timeout: float = 0.0) -> list[dict]:
        """Advance the export, or handle the trainer's events that arrived; on a successful end register the package."""
        if self.finished:
            return []
        if self.runner is None:
            self._export_step(timeout)
            return []
        return poll_runner(self.runner, timeout, self._dispatch, self._finish)

    def wait(self, timeout: float | None = None):
        """Block until the end: the registered model entry; TaskError, TaskInputError or CancelledError otherwise."""
        poll_until_finished(self, timeout, self._cancel_now, "Training")
        raise_unless_succeeded(self.state, self.error, "Training was cancelled; no model was registered.")
        return self.model

    def _cancel_now(self) -> None:
        """Cancel without a grace period and wait until the trainer has gone (nothing registered)."""
        self.cancel(grace_seconds=0.0)
        while self.running:
            self.poll(0.05)

    def stop(self) -> None:
        """End after the current iteration, keeping the best weights so far (they are registered)."""
        if not self.running:
            return
        if self.runner is None:  # nothing trained yet: nothing to keep
            self.cancel()
            return
        if not get_training_task(self.settings.task).can_stop:
            raise InputError(f"The {self.settings.task} trainer cannot stop early; let it finish or cancel it.")
        self.stop_path.parent.mkdir(parents=True, exist_ok=True)
        self.stop_path.write_text("stop requested from Slicer\n", encoding="utf-8")
        self.stop_requested, self.status = True, "stopping after this iteration (the best weights are kept)"

    def cancel(self, grace_seconds: float = 5.0) -> None:
        """Terminate the trainer; nothing is registered."""
        if self.running:
            self.cancel_requested, self.status = True, "cancelling"
            if self.runner is None:
                self.job.abort()
                self._end(RunState.CANCELLED, "")
            else:
                self.runner.cancel(grace_seconds)

    def curves(self, table_node=None):
        """The loss and metric curves in a table node (filled or made), with plot series and a chart."""
        return fill_curves(self.logic.scene, self.epochs, self.settings.model_id, table_node)

    def _dispatch(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "epoch":
            self.epochs.append(event)
            self.status = _epoch_status(event)
            if self.on_epoch:
                self.on_epoch(event)
        elif kind == "progress":
            self.status = str(event.get("message", "")) or self.status
            if self.on_progress:
                self.on_progress(str(event.get("stage", "")), float(event.get("fraction", 0.0)), self.status)
        elif kind == "log" and self.on_log:
            self.on_log(str(event.get("message", "")))

    def _export_step(self, timeout: float) -> None:
        from spinebrain.errors import CancelledError

        try:
            message = self.job.step(timeout)
        except Exception as error:  # noqa: BLE001 -- the run ends with the message; nothing was written
            self.job.abort()
            bad = isinstance(error, (InputError, CancelledError))
            self._end(RunState.BAD_INPUT if bad else RunState.FAILED, str(error) if bad else
                      f"The cases could not be exported: {error}")
            return
        self.status = message
        if self.on_progress:
            self.on_progress("export", self.job.fraction, message)
        if self.job.result is not None:
            self.exported = self.job.result
            try:
                runner = self.logic.runner_factory(self.logic.command(self.settings, self.exported))
                runner.start()
            except Exception as error:  # noqa: BLE001 -- e.g. no Python to run the trainer: end the run, say why
                self._end(RunState.FAILED, f"The trainer could not be started: {error}")
                return
            self.runner, self.status = runner, "training starts"

    def _finish(self, result) -> None:
        state, self.error = result.state, result.error
        if state is RunState.SUCCEEDED and (self.cancel_requested or self.closed_scene):
            state = RunState.CANCELLED  # the cancel came too late to stop the process: still register nothing
        if state is RunState.SUCCEEDED:
            try:
                packages = [o.path for o in result.outputs if o.kind == "model"]
                if not packages:
                    raise InputError("The trainer ended without writing a model package; see the log.")
                self.model = self.logic.register(packages[-1])
                self.status = f"model {self.model.card.id} registered in {self.model.path.parent}"
            except Exception as error:  # noqa: BLE001 -- a failed install must not leave the run "running"
                state, self.error = RunState.FAILED, f"The model could not be registered: {error}"
        self._end(state, self.error)

    def _end(self, state: RunState, error: str) -> None:
        atexit.unregister(self._kill_at_exit)
        self.state, self.error = state, error
        if state is RunState.CANCELLED:
            self.status = "cancelled; no model was registered"
        elif self.error:
            self.status = self.error
        if self.on_log:
            self.on_log(self.status)

    def _kill_at_exit(self) -> None:
        if self.running and self.runner is not None:
            self.runner.cancel(grace_seconds=0.0)
        elif self.running:
            self.job.abort()


def _labelling_patches(region: str) -> tuple[int, int]:
    """The vertebra and anchor patch sizes the labelling trainer uses for ``region``."""
    from spinebrain.spinelabel.detector import PATCH_SIZE

    return PATCH_SIZE[region], PATCH_SIZE[f"{region}-anchor"]


def _epoch_status(event: dict) -> str:
    metric = next((key for key in event if key.startswith("val_") and not key.startswith("best_")), None)
    shown = f", {metric} {event[metric]:.3f}" if metric and event.get(metric) is not None else ""
    return (f"epoch {event.get('epoch')}/{event.get('epochs')}, loss {float(event.get('loss', 0)):.4f}{shown}, "
            f"about {float(event.get('seconds_left', 0)):.0f} s left")
