"""``spinebrain info``: versions, compute devices and installed models, for bug reports and set-up checks."""

from __future__ import annotations

import json
import platform
import sys
from importlib import metadata

from .. import RESEARCH_NOTICE, __version__
from ..errors import InputError
from ..protocol import Progress

#: Distributions whose versions a bug report needs (display name -> PyPI name).
LIBRARIES = {"torch": "torch", "monai": "monai", "SimpleITK": "SimpleITK", "numpy": "numpy",
             "safetensors": "safetensors", "slicerio": "slicerio", "onnxruntime": "onnxruntime"}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "info", help="show versions, compute devices and installed models",
        description="Show the SlicerSpineBrain version, library versions, compute devices, installed "
        f"models (bundled and user) and where the user model folder is. {RESEARCH_NOTICE}",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document (machine-readable)")
    parser.set_defaults(run=run)


def run(args, progress: Progress) -> None:
    info = collect_info()
    if progress.json_lines:
        progress.emit("info", info=info)
    elif args.json:
        print(json.dumps(info, indent=2))
    else:
        print(format_info(info))


def collect_info() -> dict:
    """Everything ``spinebrain info`` reports, as JSON-ready data."""
    from ..device import DEVICE_ENV, available_devices, select_device
    from ..models import BUNDLED_DIR_ENV, USER_DIR_ENV, ModelRegistry

    try:
        selected, device_problem = str(select_device()), None
    except InputError as error:
        selected, device_problem = None, str(error)
    registry = ModelRegistry()
    models = [_model_info(entry) for entry in registry.list_models()]
    return {
        "spinebrain": __version__,
        "research_notice": RESEARCH_NOTICE,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "executable": sys.executable,
        "libraries": {name: _version(dist) for name, dist in LIBRARIES.items()},
        "devices": available_devices(),
        "selected_device": selected,
        "device_problem": device_problem,
        "device_env": DEVICE_ENV,
        "tasks": _tasks_info(models),
        "models": models,
        "model_problems": [{"path": str(path), "message": message} for path, message in registry.problems],
        "user_models_dir": str(registry.user_dir),
        "user_models_env": USER_DIR_ENV,
        "bundled_models_dir": str(registry.bundled_dir),
        "bundled_models_env": BUNDLED_DIR_ENV,
    }


def _tasks_info(models: list[dict]) -> list[dict]:
    """Each task of the registry: available or planned, and the usable installed models that serve it."""
    from ..tasks import TASKS

    return [{"name": task.name, "title": task.title, "available": task.available, "card_tasks": list(task.card_tasks),
             "models": [m["id"] for m in models if m["task"] in task.card_tasks and m["usable"]]} for task in TASKS]


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _model_info(entry) -> dict:
    """A model's card summary, and whether its weights match the card's sha256 (a package failing it is unusable)."""
    from ..models import verify_weights
    from ..models.onnx_network import onnx_usable

    card = entry.card
    try:
        verify_weights(entry.path, card)
        problem = None
    except InputError as error:
        problem = str(error)
    return {"usable": problem is None, "problem": problem,
        "id": card.id, "task": card.task, "region": card.region, "version": card.version,
        "source": entry.source, "overrides_bundled": entry.overrides_bundled, "path": str(entry.path),
        "modalities": card.modalities, "validated_modalities": card.validated_modalities,
        "metrics": card.metrics, "metrics_summary": card.metrics_summary(), "created": card.created,
        "onnx": problem is None and onnx_usable(entry.path, card),  # a CPU run without torch (its ONNX export)
        "rib_classifier": bool(card.extra.get("ribs")),  # SpineLabel: names T12 from the last rib
    }


def format_info(info: dict) -> str:
    """The human-readable report."""
    lines = [f"SlicerSpineBrain {info['spinebrain']}", info["research_notice"], "",
             f"Python      {info['python']} ({info['executable']})", f"Platform    {info['platform']}"]
    lines += [f"{name:<11} {version or 'not installed'}" for name, version in info["libraries"].items()]
    lines += ["", "Devices:"]
    for device in info["devices"]:
        memory = f", {device['memory_bytes'] / 2**30:.1f} GiB" if device["memory_bytes"] else ""
        lines.append(f"  {device['name']:<8} {device['description']}{memory}")
    chosen = info["selected_device"] or f"none -- {info['device_problem']}"
    lines.append(f"  used by default: {chosen} (set ${info['device_env']} to change)")
    lines += ["", "Tasks:"]
    for task in info["tasks"]:
        state = (", ".join(task["models"]) or "no usable model") if task["available"] else "planned, not in this version"
        lines.append(f"  {task['name']:<14} {task['title']}: {state}")
    lines += ["", "Models:"]
    if not info["models"]:
        lines.append("  none installed -- train one with 'spinebrain train TASK ...' or import a package")
    for model in info["models"]:
        region = f", region {model['region']}" if model["region"] else ""
        note = " (replaces the bundled one)" if model["overrides_bundled"] else ""
        validated = ", ".join(model["validated_modalities"]) or "not stated"
        state = "" if model["usable"] else "  UNUSABLE"
        lines.append(f"  {model['id']} v{model['version']} [{model['source']}{note}]: {model['task']}{region}{state}")
        if not model["usable"]:
            lines.append(f"      {model['problem']}")
        lines.append(f"      inputs {', '.join(model['modalities'])}; validated on {validated}; "
                     f"metrics: {model['metrics_summary']}")
        if model["onnx"]:
            lines.append("      on the CPU it runs its ONNX export (onnxruntime, no torch)")
        if model["rib_classifier"]:
            lines.append("      names T12 from the last rib (its rib classifier), besides its anchor")
    for problem in info["model_problems"]:
        lines.append(f"  not used: {problem['path']}: {problem['message']}")
    lines += ["", f"User model folder:    {info['user_models_dir']} (set ${info['user_models_env']} to change)",
              f"Bundled model folder: {info['bundled_models_dir']}"]
    return "\n".join(lines)
