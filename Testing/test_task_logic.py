"""The shared task Logic on real MRML (slicer-core): import only on success, cancel, failure, undo; and the
Apply / Cancel state machine the Qt panel shows (spinebrain_slicer.task_panel) on the same runs.

A stand-in runner (the Runner protocol) replays scripted events, so each ending is tested
without a process; the in-process runner runs real work on its worker thread. The end-to-end
runs of a real ``spinebrain`` process are in test_spinelabel_parity.py and test_spinelabel_run.py.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core wheel not installed (Linux x86_64 only)")

from spinebrain.errors import CancelledError, InputError  # noqa: E402
from spinebrain.tables import Column  # noqa: E402
from spinebrain_slicer import bridge  # noqa: E402
from spinebrain_slicer.runner import OutputFile, RunResult, RunState  # noqa: E402
from spinebrain_slicer.task_logic import InProcessRunner, NodeHistory, TaskError, TaskJob, TaskLogic  # noqa: E402
from spinebrain_slicer.task_panel import (  # noqa: E402
    CANCELLING_STATUS, RUNNING_STATUS, PanelState, PanelView, TaskRunControls,
)

COLUMNS = [Column("name", "text"), Column("value", "float")]


class ScriptedRunner:
    """A stand-in for ProcessRunner: hands out ``events`` one per poll, then ends with ``state``."""

    def __init__(self, events, state=RunState.SUCCEEDED, error="", outputs=()):
        self.events, self.state_at_end, self.error, self.outputs = list(events), state, error, list(outputs)
        self.started = self.cancelled = False
        self.finished = False

    def start(self):
        self.started = True
        return self

    def poll(self, timeout=0.0):
        if self.cancelled or not self.events:
            self.finished = True
            return []
        return [self.events.pop(0)]

    def cancel(self, grace_seconds=5.0):
        self.cancelled = True

    def result(self):
        state = RunState.CANCELLED if self.cancelled else self.state_at_end
        return RunResult(state, None, self.outputs, "" if self.cancelled else self.error)


class TableTask(TaskLogic):
    """A tiny task: the 'command' is scripted; the import writes a table node from the result value."""

    def __init__(self, scene, runner, fail_import=False):
        super().__init__(scene, runner_factory=lambda args: runner)
        self.fail_import = fail_import
        self.args = None

    def prepare(self, request, workdir):
        if request.get("bad"):
            raise InputError("The request is bad; fix it.")
        self.args = ["table", str(workdir)]
        return TaskJob(args=self.args, context={"output": request.get("output")},
                       replaces=[request["output"]] if request.get("output") else [])

    def import_results(self, job, result, value=None):
        records = [{"name": o.kind, "value": float(len(o.info))} for o in result.outputs]
        node = bridge.table_node_from_records(self.scene, records, COLUMNS, "Result", job.context["output"])
        if self.fail_import:
            self.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "half-made")
            raise RuntimeError("disk full")
        return node


def scene_state(scene):
    """Every node's class, name and content (tables: their records) -- to compare before and after."""
    state = []
    for i in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(i)
        content = bridge.records_from_table_node(node, COLUMNS) if node.IsA("vtkMRMLTableNode") else None
        state.append((node.GetID(), node.GetClassName(), node.GetName(), str(content)))
    return state


def existing_table(scene):
    return bridge.table_node_from_records(scene, [{"name": "before", "value": 1.0}], COLUMNS, "Mine")


PROGRESS = [{"event": "progress", "stage": "work", "fraction": f, "message": f"{f}"} for f in (0.0, 0.5, 1.0)]


def test_success_streams_progress_then_imports_and_keeps_the_old_content_for_undo(scene):
    table = existing_table(scene)
    runner = ScriptedRunner(PROGRESS + [{"event": "log", "message": "hello"}],
                            outputs=[OutputFile(Path("/x.csv"), "table", {"model": "m"})])
    steps, logs = [], []
    logic = TableTask(scene, runner)
    run = logic.start({"output": table}, on_progress=lambda *a: steps.append(a), on_log=logs.append)
    assert runner.started and logic.args[0] == "table" and not run.finished
    assert run.wait() is table and run.state is RunState.SUCCEEDED
    assert [s[1] for s in steps] == [0.0, 0.5, 1.0] and logs == ["hello"]
    assert bridge.records_from_table_node(table, COLUMNS) == [{"name": "table", "value": 1.0}]
    assert not Path(logic.args[1]).exists()  # the work folder is gone
    assert logic.undo(table) and bridge.records_from_table_node(table, COLUMNS) == [{"name": "before", "value": 1.0}]
    assert not logic.undo(table)


@pytest.mark.parametrize("ending", ["cancel", "failure", "import fails"])
def test_cancel_failure_or_a_failed_import_leave_the_scene_as_it_was(scene, ending):
    table = existing_table(scene)
    before = scene_state(scene)
    runner = ScriptedRunner(PROGRESS, state=RunState.FAILED if ending == "failure" else RunState.SUCCEEDED,
                            error="spinebrain: the scan is 2D; give a 3D scan.", outputs=[OutputFile(Path("/x"), "t")])
    logic = TableTask(scene, runner, fail_import=ending == "import fails")
    run = logic.start({"output": table})
    run.poll()  # the first progress event
    if ending == "cancel":
        run.cancel()
        with pytest.raises(CancelledError):
            run.wait()
    else:
        with pytest.raises(TaskError) as error:
            run.wait()
        expected = "2D" if ending == "failure" else "disk full"
        assert expected in str(error.value) and expected in run.error
    assert scene_state(scene) == before and not logic.can_undo(table)


def test_bad_input_is_refused_before_anything_starts(scene):
    runner = ScriptedRunner(PROGRESS)
    with pytest.raises(InputError, match="bad"):
        TableTask(scene, runner).start({"bad": True})
    assert not runner.started


def test_in_process_runner_reports_progress_errors_and_stops_at_the_next_update_after_cancel():
    done = InProcessRunner(lambda progress: (progress.update("a", 0.5, "half"), 42)[1]).start()
    events = []
    while not done.finished:
        events += done.poll(0.05)
    assert done.value == 42 and done.result().ok and events[0]["fraction"] == 0.5

    bad = InProcessRunner(lambda progress: (_ for _ in ()).throw(InputError("No spine here; pick a spine scan.")))
    bad.start()
    while not bad.finished:
        bad.poll(0.05)
    assert bad.result().state is RunState.BAD_INPUT and bad.result().error == "No spine here; pick a spine scan."

    started, go_on = threading.Event(), threading.Event()

    def long_work(progress):
        progress.update("a", 0.0)
        started.set()
        go_on.wait(10)
        progress.update("a", 0.5)  # raises: cancelled
        return "should not get here"

    runner = InProcessRunner(long_work).start()
    started.wait(10)
    runner.cancel()
    go_on.set()
    while not runner.finished:
        runner.poll(0.05)
    assert runner.result().state is RunState.CANCELLED and runner.value is None


def test_node_history_restores_markups_content_and_attributes(scene):
    import vtk

    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Points")
    node.AddControlPoint(vtk.vtkVector3d(1, 2, 3), "L1")
    node.SetAttribute("SpineLabel.Model", "old")
    history = NodeHistory(limit=2)
    history.push(node)
    node.RemoveAllControlPoints()
    node.SetAttribute("SpineLabel.Model", "new")
    count = scene.GetNumberOfNodes()
    assert history.undo(node)
    assert node.GetNumberOfControlPoints() == 1 and node.GetNthControlPointLabel(0) == "L1"
    assert node.GetAttribute("SpineLabel.Model") == "old" and scene.GetNumberOfNodes() == count
    for _ in range(3):
        history.push(node)
    assert history.undo(node) and history.undo(node) and not history.undo(node)  # only `limit` kept


def test_a_wait_that_times_out_cancels_the_run_and_changes_nothing(scene):
    table = existing_table(scene)
    before = scene_state(scene)

    class Endless(ScriptedRunner):
        def poll(self, timeout=0.0):
            if self.cancelled:
                self.finished = True
            return []

    runner = Endless([])
    logic = TableTask(scene, runner)
    run = logic.start({"output": table})
    with pytest.raises(TimeoutError):
        run.wait(timeout=0.2)
    assert runner.cancelled and run.state is RunState.CANCELLED and not run.workdir.exists()
    assert scene_state(scene) == before


# -- the Apply / Cancel state machine (what the Qt panel shows), on the same runs -------------------

def test_panel_goes_idle_running_idle_shows_progress_and_allows_one_run_at_a_time(scene):
    table = existing_table(scene)
    inputs_chosen, finished, logs = [False], [], []
    controls = TaskRunControls(can_apply=lambda: inputs_chosen[0], on_log=logs.append, on_finished=finished.append)
    assert controls.view() == PanelView(apply_enabled=False, cancel_enabled=False, cancel_visible=False,
                                        progress_visible=False, progress_percent=0, status="")
    inputs_chosen[0] = True
    assert controls.view().apply_enabled
    logic = TableTask(scene, ScriptedRunner(PROGRESS[:2] + [{"event": "log", "message": "hello"}],
                                            outputs=[OutputFile(Path("/x.csv"), "table", {"model": "m"})]))
    assert controls.start(lambda **callbacks: logic.start({"output": table}, **callbacks))
    view = controls.view()
    assert controls.state is PanelState.RUNNING and view.status == RUNNING_STATUS
    assert not view.apply_enabled and view.cancel_enabled and view.cancel_visible and view.progress_visible
    assert not controls.start(lambda **callbacks: pytest.fail("a second run must not start"))
    assert not controls.poll() and controls.view().progress_percent == 0  # first event: 0 %
    assert not controls.poll() and controls.view().progress_percent == 50 and controls.view().status == "work: 0.5"
    while not controls.poll():
        pass
    view = controls.view()
    assert controls.state is PanelState.IDLE and view.status == "Done." and view.apply_enabled
    assert not view.cancel_visible and view.progress_visible  # the bar keeps showing how far the run got
    assert [run.output for run in finished] == [table] and logs == ["hello"]
    assert bridge.records_from_table_node(table, COLUMNS) == [{"name": "table", "value": 1.0}]
    assert not controls.poll() and len(finished) == 1  # on_finished once per run


def test_panel_cancel_leaves_the_scene_as_it_was_and_says_so(scene):
    table = existing_table(scene)
    before = scene_state(scene)
    runner = ScriptedRunner(PROGRESS, outputs=[OutputFile(Path("/x.csv"), "table", {})])
    finished = []
    controls = TaskRunControls(on_finished=finished.append)
    controls.start(lambda **callbacks: TableTask(scene, runner).start({"output": table}, **callbacks))
    controls.poll()
    assert controls.cancel() and runner.cancelled
    view = controls.view()
    assert controls.state is PanelState.CANCELLING and view.status == CANCELLING_STATUS
    assert not view.cancel_enabled and view.cancel_visible and not view.apply_enabled
    assert not controls.cancel()  # a second click does nothing
    while not controls.poll():
        pass
    assert controls.view().status == "Cancelled; nothing was changed." and controls.view().apply_enabled
    assert finished[0].state is RunState.CANCELLED and scene_state(scene) == before


def test_panel_shows_a_failures_message_and_stays_idle_on_bad_input(scene):
    table = existing_table(scene)
    before = scene_state(scene)
    failing = ScriptedRunner(PROGRESS, state=RunState.FAILED, error="spinebrain: the scan is 2D; give a 3D scan.")
    controls = TaskRunControls()
    controls.start(lambda **callbacks: TableTask(scene, failing).start({"output": table}, **callbacks))
    while not controls.poll():
        pass
    assert controls.view().status == "spinebrain: the scan is 2D; give a 3D scan." and scene_state(scene) == before
    with pytest.raises(InputError, match="bad"):
        controls.start(lambda **callbacks: TableTask(scene, ScriptedRunner(PROGRESS)).start({"bad": True}, **callbacks))
    assert controls.state is PanelState.IDLE and controls.view().apply_enabled


def test_panel_stop_cancels_a_running_run_and_waits_for_its_end(scene):
    table = existing_table(scene)
    before = scene_state(scene)
    runner = ScriptedRunner(PROGRESS * 5)
    controls = TaskRunControls()
    controls.start(lambda **callbacks: TableTask(scene, runner).start({"output": table}, **callbacks))
    controls.stop()
    assert runner.cancelled and controls.run.finished and controls.state is PanelState.IDLE
    assert controls.view().status == "Cancelled; nothing was changed." and scene_state(scene) == before
