"""Choosing where networks run (CPU, CUDA GPU, Apple MPS), and falling back to the CPU on GPU out-of-memory.

Precedence: an explicit device (CLI option / widget) > ``$SPINEBRAIN_DEVICE`` > ``auto``.
``auto`` takes the first CUDA GPU when there is one, else the CPU. MPS is used only when asked
for: some 3D operations the networks need are missing or slow on it.
"""

from __future__ import annotations

import ctypes.util
import logging
import os
import platform
import re
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from .errors import InputError

if TYPE_CHECKING:
    import torch

DEVICE_ENV = "SPINEBRAIN_DEVICE"
_DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")

logger = logging.getLogger(__name__)


def available_devices() -> list[dict]:
    """Every device this computer offers: name (as ``select_device`` takes it), type, description, memory."""
    import torch
    devices = [{"name": "cpu", "type": "cpu", "description": platform.processor() or platform.machine() or "CPU",
                "memory_bytes": _system_memory_bytes()}]
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            properties = torch.cuda.get_device_properties(index)
            devices.append({"name": f"cuda:{index}", "type": "cuda", "description": properties.name,
                            "memory_bytes": int(properties.total_memory)})
    if _mps_available():
        devices.append({"name": "mps", "type": "mps", "description": "Apple Metal (MPS)", "memory_bytes": None})
    return devices


def _system_memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None  # Windows: not known without extra packages


def _mps_available() -> bool:
    import torch
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def _asked_device(preference) -> tuple[str, str]:
    """The device asked for, as text (``$SPINEBRAIN_DEVICE`` standing in for ``auto``), and where it came from."""
    text = str(preference).strip().lower() if preference is not None else "auto"
    source = "device"
    if text == "auto" and os.environ.get(DEVICE_ENV, "").strip():
        text, source = os.environ[DEVICE_ENV].strip().lower(), f"device in ${DEVICE_ENV}"
    if not _DEVICE_PATTERN.match(text):
        raise InputError(f"Unknown {source} {text!r}; use auto, cpu, cuda, cuda:N or mps.")
    return text, source


def select_device(preference: str | torch.device | None = None) -> torch.device:
    """The torch device to run on; InputError naming the available ones if it cannot be used.

    ``preference``: ``"auto"``, ``"cpu"``, ``"cuda"`` (= ``"cuda:0"``), ``"cuda:N"`` or ``"mps"``;
    ``None`` or ``"auto"`` defer to ``$SPINEBRAIN_DEVICE`` and then to the automatic choice.
    """
    import torch

    text, source = _asked_device(preference)
    if text == "auto":
        return torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device("cuda:0" if text == "cuda" else text)
    available = [entry["name"] for entry in available_devices()]
    if str(device) not in available:
        raise InputError(f"The {source} {text!r} is not available on this computer; available: {', '.join(available)}.")
    return device


def runs_on_cpu(preference=None) -> bool:
    """True when :func:`select_device` would surely choose the CPU, known without importing torch (seconds).

    ``auto`` chooses a CUDA GPU only where an NVIDIA driver is installed; without one it is the CPU.
    Anything else this cannot tell cheaply is False (ask :func:`select_device`).
    """
    text, _source = _asked_device(preference)
    if text == "cpu" or ("torch" not in sys.modules and text == "auto" and not _nvidia_driver_present()):
        return True
    if text == "auto" and "torch" in sys.modules:  # imported already: asking costs nothing
        return select_device(text).type == "cpu"
    return False


def _nvidia_driver_present() -> bool:
    if sys.platform.startswith("linux"):
        return os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/nvidiactl")
    if sys.platform == "win32":
        return ctypes.util.find_library("nvcuda") is not None
    return False  # macOS: no CUDA; auto never picks MPS


def _out_of_memory_types() -> tuple[type[BaseException], ...]:
    import torch
    types = [getattr(torch, "OutOfMemoryError", None), getattr(torch.cuda, "OutOfMemoryError", None)]
    return tuple({t for t in types if t is not None})


def is_out_of_memory(error: BaseException) -> bool:
    """True for a torch out-of-memory error (CUDA's class, or MPS's RuntimeError message)."""
    if isinstance(error, _out_of_memory_types()):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def empty_cache(device: torch.device) -> None:
    """Give cached GPU memory back so a retry (or the next case) has room."""
    import torch

    if device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()
    elif device.type == "mps" and _mps_available():
        torch.mps.empty_cache()


def run_with_cpu_fallback(fn: Callable, device: torch.device | str, *args,
                          on_fallback: Callable[[str], None] | None = None, **kwargs):
    """Return ``fn(device, *args, **kwargs)``; on a GPU out-of-memory error, free memory and run it on the CPU.

    ``on_fallback`` receives the warning text (e.g. ``progress.log``). Errors on the CPU, and any
    other error, propagate unchanged.
    """
    import torch

    device = torch.device(device)
    try:
        return fn(device, *args, **kwargs)
    except Exception as error:  # noqa: BLE001 -- filtered just below
        if device.type == "cpu" or not is_out_of_memory(error):
            raise
        message = (f"Out of memory on {device} ({str(error).splitlines()[0] if str(error) else 'no details'}); "
                   "running on the CPU instead, which is slower.")
    # retried outside the except block so the traceback's GPU tensors can be freed first
    empty_cache(device)
    logger.warning(message)
    if on_fallback is not None:
        on_fallback(message)
    return fn(torch.device("cpu"), *args, **kwargs)
