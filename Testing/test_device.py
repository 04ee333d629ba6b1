"""Device selection and the CPU fallback on GPU out-of-memory (runs on CPU-only CI)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
import torch

from spinebrain.device import available_devices, run_with_cpu_fallback, runs_on_cpu, select_device
from spinebrain.errors import InputError


@pytest.fixture(autouse=True)
def no_device_env(monkeypatch):
    monkeypatch.delenv("SPINEBRAIN_DEVICE", raising=False)


def test_available_devices_are_all_selectable():
    devices = available_devices()
    assert devices[0]["name"] == "cpu" and devices[0]["type"] == "cpu"
    assert sum(d["type"] == "cuda" for d in devices) == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    for device in devices:
        assert set(device) == {"name", "type", "description", "memory_bytes"}
        assert select_device(device["name"]) == torch.device(device["name"])


def test_auto_prefers_cuda_else_cpu():
    expected = torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu")
    assert select_device() == expected
    assert select_device("auto") == expected
    assert select_device(" CPU ") == torch.device("cpu")
    assert select_device(torch.device("cpu")) == torch.device("cpu")


def test_environment_overrides_auto_but_not_an_explicit_choice(monkeypatch):
    monkeypatch.setenv("SPINEBRAIN_DEVICE", "cpu")
    assert select_device() == torch.device("cpu")
    monkeypatch.setenv("SPINEBRAIN_DEVICE", "cuda:99")
    assert select_device("cpu") == torch.device("cpu")
    with pytest.raises(InputError, match=r"device in \$SPINEBRAIN_DEVICE 'cuda:99' is not available.*available: cpu"):
        select_device()


@pytest.mark.parametrize("preference", ["tpu", "cuda:x", "gpu0"])
def test_unknown_device_names(preference):
    with pytest.raises(InputError, match=f"Unknown device '{preference}'; use auto, cpu, cuda, cuda:N or mps"):
        select_device(preference)


def test_runs_on_cpu_agrees_with_select_device_and_says_false_when_unsure(monkeypatch):
    monkeypatch.delenv("SPINEBRAIN_DEVICE", raising=False)
    assert runs_on_cpu("cpu") and runs_on_cpu(" CPU ")
    assert not runs_on_cpu("cuda") and not runs_on_cpu("cuda:1") and not runs_on_cpu("mps")
    assert runs_on_cpu("auto") == (select_device("auto").type == "cpu") == runs_on_cpu(None)
    monkeypatch.setenv("SPINEBRAIN_DEVICE", "cpu")
    assert runs_on_cpu("auto") and not runs_on_cpu("cuda")
    with pytest.raises(InputError, match="Unknown device 'gpu0'"):
        runs_on_cpu("gpu0")


def test_runs_on_cpu_without_torch_asks_for_the_nvidia_driver():
    """In a fresh interpreter (torch not imported): auto is the CPU exactly where no NVIDIA driver is installed."""
    script = ("import sys; from spinebrain import device; print(device.runs_on_cpu('auto'), "
              "device._nvidia_driver_present(), 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if k != "SPINEBRAIN_DEVICE"})
    cpu, driver, imported = done.stdout.split()
    assert imported == "False" and cpu == str(driver == "False")


def test_unavailable_device_lists_the_available_ones():
    names = ", ".join(d["name"] for d in available_devices())
    with pytest.raises(InputError, match=f"'cuda:99' is not available on this computer; available: {names}"):
        select_device("cuda:99")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="'cuda' is not available"):
            select_device("cuda")


def _fails_on_gpu(calls: list, error: Exception):
    def run(device, scale, offset=0.0):
        calls.append(str(device))
        if device.type != "cpu":
            raise error
        return torch.ones(2, device=device) * scale + offset

    return run


def test_out_of_memory_falls_back_to_cpu(caplog):
    calls, messages = [], []
    run = _fails_on_gpu(calls, torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB"))
    with caplog.at_level(logging.WARNING, logger="spinebrain.device"):
        result = run_with_cpu_fallback(run, torch.device("cuda:0"), 3.0, offset=1.0, on_fallback=messages.append)
    assert calls == ["cuda:0", "cpu"]
    assert torch.equal(result, torch.full((2,), 4.0))
    assert len(messages) == 1 and "Out of memory on cuda:0" in messages[0] and "CPU" in messages[0]
    assert messages[0] in caplog.text


def test_mps_out_of_memory_runtime_error_falls_back():
    calls = []
    run = _fails_on_gpu(calls, RuntimeError("MPS backend out of memory (MPS allocated: 9 GB)"))
    assert torch.equal(run_with_cpu_fallback(run, "mps", 2.0), torch.full((2,), 2.0))
    assert calls == ["mps", "cpu"]


def test_other_errors_and_cpu_out_of_memory_propagate():
    calls = []
    with pytest.raises(ValueError, match="bad shape"):
        run_with_cpu_fallback(_fails_on_gpu(calls, ValueError("bad shape")), "cuda:0", 1.0)
    assert calls == ["cuda:0"]

    def always_oom(device):
        calls.append(str(device))
        raise torch.OutOfMemoryError("out of memory")

    calls.clear()
    with pytest.raises(torch.OutOfMemoryError):
        run_with_cpu_fallback(always_oom, "cpu")
    assert calls == ["cpu"]


def test_no_fallback_when_the_gpu_run_succeeds():
    calls, messages = [], []
    result = run_with_cpu_fallback(lambda device: calls.append(str(device)) or "ok", "cpu", on_fallback=messages.append)
    assert (result, calls, messages) == ("ok", ["cpu"], [])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_real_cuda_out_of_memory_falls_back():
    def allocate(device):
        total = torch.cuda.get_device_properties(0).total_memory if device.type == "cuda" else 0
        return torch.empty(max(total * 2, 8), dtype=torch.uint8, device=device).numel() if total else "cpu"

    messages = []
    assert run_with_cpu_fallback(allocate, "cuda:0", on_fallback=messages.append) == "cpu"
    assert len(messages) == 1
