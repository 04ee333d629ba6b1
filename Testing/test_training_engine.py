"""Training engine: a tiny run that writes a loadable package, early stop, stop file, cancel, resume after a kill, DDP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from spinebrain.errors import CancelledError, InputError
from spinebrain.inference import run_inference
from spinebrain.models import load_network
from spinebrain.protocol import Progress
from spinebrain.training import engine, read_datalist, split_datalist
from spinebrain.training.segmentation import SegmentationRecipe, train_segmentation

REPO = Path(__file__).resolve().parents[1]
TINY_UNET = {"architecture": "UNet", "kwargs": {"channels": [4, 8], "strides": [2], "num_res_units": 0}}
COMMAND_OPTIONS = ["--task", "spine-segment", "--labels", '{"0": "background", "1": "bone"}', "--spacing", "1.5",
                   "1.5", "1.5", "--patch", "16", "16", "16", "--network", "UNet", "--network-kwargs",
                   json.dumps(TINY_UNET["kwargs"]), "--batch-size", "2", "--device", "cpu", "--threads", "1"]


@pytest.fixture(scope="module")
def datalist(tmp_path_factory) -> Path:
    """Four 24^3 scans with a bright box (label 1) in noise; three to train on, one to validate."""
    folder = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    cases = []
    for number in range(4):
        label = np.zeros((24, 24, 24), np.uint8)
        k, j, i = rng.integers(8, 16, 3)
        label[k - 5:k + 5, j - 4:j + 4, i - 5:i + 5] = 1
        image = sitk.GetImageFromArray((100.0 * label + rng.normal(0, 20, label.shape)).astype(np.float32))
        image.SetSpacing((1.5, 1.5, 1.5))
        mask = sitk.GetImageFromArray(label)
        mask.CopyInformation(image)
        sitk.WriteImage(image, str(folder / f"scan{number}.nii.gz"))
        sitk.WriteImage(mask, str(folder / f"scan{number}_label.nii.gz"))
        cases.append({"image": f"scan{number}.nii.gz", "label": f"scan{number}_label.nii.gz"})
    path = folder / "datalist.json"
    path.write_text(json.dumps({"training": cases[:3], "validation": cases[3:]}))
    return path


def recipe(datalist: Path, out: Path, **changes) -> SegmentationRecipe:
    settings = dict(datalist=str(datalist), out=str(out), model_id="tiny-seg", task="spine-segment",
                    labels={"0": "background", "1": "bone"}, spacing=[1.5, 1.5, 1.5], patch_size=[16, 16, 16],
                    network=TINY_UNET, epochs=2, batch_size=2, device="cpu", command="test")
    settings.update(changes)
    return SegmentationRecipe(**settings)


def epochs_logged(run_dir: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_datalists_resolve_paths_and_hold_out_validation(datalist, tmp_path):
    cases = read_datalist(datalist)
    assert len(cases) == 3 and all(Path(case["image"]).is_absolute() for case in cases)
    training_only = tmp_path / "training_only.json"
    training_only.write_text(json.dumps({"training": json.loads(datalist.read_text())["training"]}).replace(
        '"scan', f'"{datalist.parent}/scan'))
    training, validation = split_datalist(training_only, 0.34, seed=1)
    assert len(training) == 2 and len(validation) == 1
    missing = tmp_path / "missing.json"
    missing.write_text(json.dumps({"training": [{"image": "nowhere.nii.gz", "label": "nowhere.nii.gz"}]}))
    with pytest.raises(InputError, match="does not exist"):
        read_datalist(missing)


def test_a_tiny_run_writes_a_package_the_inference_block_runs(datalist, tmp_path):
    progress_lines = []

    class Collect(Progress):
        def emit(self, event, **fields):
            progress_lines.append({"event": event, **fields})

    path = train_segmentation(recipe(datalist, tmp_path), Collect(json_lines=True))
    card, network = load_network(path)
    assert card.metrics["epochs_run"] == 2 and card.metrics["stopped"] == "completed"
    assert 0.0 <= card.metrics["val_mean_dice"] <= 1.0 and card.metrics["best_epoch"] in (1, 2)
    assert "3 training and 1 validation cases" in card.training_data and card.training_command == "test"
    epochs = [line for line in progress_lines if line["event"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [1, 2] and all("seconds_left" in e and "loss" in e for e in epochs)
    run_dir = tmp_path / ".runs" / "tiny-seg"
    assert epochs_logged(run_dir) == [1, 2]
    assert (run_dir / "metrics.csv").read_text().splitlines()[0].startswith("epoch,epochs,loss,val_mean_dice")
    image = sitk.ReadImage(read_datalist(datalist, "validation")[0]["image"])
    result = run_inference(image, network, card)
    assert result.labels.GetSize() == image.GetSize()


def test_early_stopping_ends_a_run_that_stops_improving(datalist, tmp_path):
    # a zero learning rate keeps the weights, so the metric never improves after the first validation
    path = train_segmentation(recipe(datalist, tmp_path, epochs=10, patience=2, learning_rate=0.0))
    card, _ = load_network(path)
    assert card.metrics["stopped"] == "early stopping"
    assert card.metrics["epochs_run"] == 3 and card.metrics["best_epoch"] == 1


class StopAfterFirstEpoch(Progress):
    def __init__(self, stop_file: Path):
        super().__init__(quiet=True)
        self.stop_file = stop_file

    def emit(self, event, **fields):
        if event == "epoch" and fields["epoch"] == 1:
            self.stop_file.write_text("stop")


def test_a_stop_file_ends_the_run_and_keeps_the_best_so_far(datalist, tmp_path):
    stop_file = tmp_path / ".runs" / "tiny-seg" / "STOP"
    path = train_segmentation(recipe(datalist, tmp_path, epochs=20, batch_size=1), StopAfterFirstEpoch(stop_file))
    card, _ = load_network(path)
    assert card.metrics["stopped"] == "stop requested"
    assert card.metrics["epochs_run"] == 2 and card.metrics["best_epoch"] == 1  # stopped within epoch 2


class CancelInSecondEpoch(Progress):
    def __init__(self):
        super().__init__(quiet=True)

    def emit(self, event, **fields):
        if event == "epoch":
            raise CancelledError("Cancelled by signal SIGTERM.")  # what cancel_on_terminate raises


def test_a_cancel_writes_no_package(datalist, tmp_path):
    with pytest.raises(CancelledError):
        train_segmentation(recipe(datalist, tmp_path, epochs=5), CancelInSecondEpoch())
    assert not (tmp_path / "tiny-seg").exists()


def test_settings_the_card_cannot_hold_fail_before_training(datalist, tmp_path):
    with pytest.raises(InputError, match="spacing"):
        train_segmentation(recipe(datalist, tmp_path, spacing=[0, 1, 1]))


def _command(datalist: Path, out: Path, epochs: int) -> list[str]:
    return ["-m", "spinebrain.training", "--progress-json", "segment", "--datalist", str(datalist), "--out", str(out),
            "--id", "tiny-seg", "--epochs", str(epochs), *COMMAND_OPTIONS]


def _environment() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}  # gloo on loopback: this machine's own address only


@pytest.mark.slow
def test_a_killed_run_resumes_where_its_last_checkpoint_left_off(datalist, tmp_path):
    command = [sys.executable, *_command(datalist, tmp_path, epochs=8)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=_environment())
    try:
        for line in process.stdout:  # kill hard (no clean-up) right after the second epoch's report
            if '"event": "epoch"' in line and json.loads(line)["epoch"] >= 2:
                process.send_signal(signal.SIGKILL)
                break
    finally:
        process.kill()
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "the first run ended before it could be killed"
    run_dir = tmp_path / ".runs" / "tiny-seg"
    checkpoint_epoch = engine.checkpoint_epoch(run_dir / "resume.pt")
    assert 1 <= checkpoint_epoch < 8 and not (tmp_path / "tiny-seg").exists()

    second = subprocess.run(command, capture_output=True, text=True, env=_environment(), timeout=600)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    events = [json.loads(line) for line in second.stdout.splitlines() if line.startswith("{")]
    resumed = [e["epoch"] for e in events if e["event"] == "epoch"]
    assert resumed == list(range(checkpoint_epoch + 1, 9))
    card, _ = load_network(tmp_path / "tiny-seg")
    assert card.metrics["resumed_from_epoch"] == checkpoint_epoch and card.metrics["epochs_run"] == 8


@pytest.mark.slow
def test_the_same_command_trains_with_ddp_on_two_gloo_processes(datalist, tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2",
               *_command(datalist, tmp_path, epochs=2)]
    completed = subprocess.run(command, capture_output=True, text=True, env=_environment(), timeout=600)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    events = [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]
    assert [e["event"] for e in events].count("result") == 1  # only rank 0 reports and writes
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [1, 2]
    assert epochs_logged(tmp_path / ".runs" / "tiny-seg") == [1, 2]
    card, _ = load_network(tmp_path / "tiny-seg")
    assert card.metrics["epochs_run"] == 2


@pytest.mark.parametrize("world_size", ["1", "2"])
def test_a_command_exits_with_its_code_and_its_output_under_torchrun_too(world_size):
    # under torchrun (WORLD_SIZE > 1) the exit skips the C++ teardown that can abort a finished gloo run,
    # so buffered output must be flushed first: a pipe buffers print()
    script = "from spinebrain.cli import exit_process; print('all written', end=''); exit_process(3)"
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                               env={**_environment(), "WORLD_SIZE": world_size, "PYTHONUNBUFFERED": ""})
    assert (completed.returncode, completed.stdout) == (3, "all written")


@pytest.mark.slow
def test_a_terminate_signal_cancels_the_command_and_registers_nothing(datalist, tmp_path):
    process = subprocess.Popen([sys.executable, *_command(datalist, tmp_path, epochs=50)], stdout=subprocess.PIPE,
                               text=True, env=_environment())
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            if '"event": "epoch"' in line:  # training is under way: cancel as Slicer's runner would
                process.send_signal(signal.SIGTERM)
                break
        lines += process.stdout.readlines()
        process.wait(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 3  # EXIT_CANCELLED
    assert json.loads(lines[-1]) == {"event": "done", "code": 3}
    assert not (tmp_path / "tiny-seg").exists()
