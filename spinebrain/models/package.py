"""Writing and reading model packages: ``<model-id>/model_card.json`` + ``model.safetensors`` (or ``model.pt``).

Reading checks the card, the task and the sha256 of the weights *before* any byte of the weights
is deserialised, and deserialises the very bytes that were hashed. ``model.pt`` files are read only
with ``torch.load(weights_only=True)``, which refuses pickles that would run code.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ModelError
from ..tasks import card_tasks_for
from .card import CARD_FILE, ModelCard

if TYPE_CHECKING:  # torch is imported where weights are handled: reading a card or hashing a file needs none
    import torch

SAFETENSORS_FILE = "model.safetensors"
TORCH_FILE = "model.pt"
#: Weights file names in order of preference; a card may name only one of these.
WEIGHTS_FILES = (SAFETENSORS_FILE, TORCH_FILE)
_FORMATS = {"safetensors": SAFETENSORS_FILE, "pt": TORCH_FILE}


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- writing -------------------------------------------------------------------------------------
def refuse_existing_package(folder: str | os.PathLike, model_id: str) -> None:
    """ModelError when ``folder/model_id`` exists: trainers call it before training, not only when saving."""
    target = Path(folder) / model_id
    if target.exists():
        raise ModelError(f"A model package already exists at {target}; choose another --id or --out (or remove "
                         "that folder), then run again.")


def save_model_package(folder: str | os.PathLike, state_dict: Mapping[str, torch.Tensor], card: ModelCard,
                       weights_format: str = "safetensors", overwrite: bool = False) -> Path:
    """Write the package ``<folder>/<card.id>/`` and return its path.

    Fills in ``card.sha256`` and ``card.weights_file``. The package is assembled in a hidden
    temporary folder and renamed into place, so a failure or cancel leaves no half-written package
    (and, with ``overwrite``, the previous package stays until the new one is complete).
    """
    if weights_format not in _FORMATS:
        raise ModelError(f"Unknown weights format {weights_format!r}; use 'safetensors' or 'pt'.")
    card.validate()
    tensors = _plain_tensors(state_dict)
    folder = Path(folder)
    target = folder / card.id
    if not overwrite:
        refuse_existing_package(folder, card.id)
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{card.id}-", dir=folder))
    staging.chmod(0o755)  # mkdtemp makes it private; the package should be readable like any folder
    try:
        weights_path = staging / _FORMATS[weights_format]
        _write_weights(tensors, weights_path, card)
        card.sha256 = sha256_file(weights_path)
        card.weights_file = weights_path.name
        (staging / CARD_FILE).write_text(card.to_json(), encoding="utf-8")
        move_into_place(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _plain_tensors(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    import torch

    if not isinstance(state_dict, Mapping) or not state_dict:
        raise ModelError("The weights to save must be a non-empty state dict (name -> tensor).")
    bad = [str(key) for key, value in state_dict.items() if not isinstance(key, str) or not torch.is_tensor(value)]
    if bad:
        raise ModelError(
            f"The state dict entries {', '.join(bad[:5])} are not named tensors; save model.state_dict() only."
        )
    # clone: safetensors refuses tensors that share memory (tied weights, views)
    return {key: value.detach().cpu().contiguous().clone() for key, value in state_dict.items()}


def _write_weights(tensors: dict[str, torch.Tensor], path: Path, card: ModelCard) -> None:
    if path.name == SAFETENSORS_FILE:
        from safetensors.torch import save_file

        save_file(tensors, str(path), metadata={"model_id": card.id, "task": card.task})
    else:
        import torch

        torch.save(tensors, path)


def move_into_place(staging: Path, target: Path) -> None:
    """Rename a finished folder to ``target``, replacing an existing one only once the new one is there."""
    if not target.exists():
        os.replace(staging, target)
        return
    previous = Path(tempfile.mkdtemp(prefix=f".{target.name}-old-", dir=target.parent))
    previous.rmdir()
    os.replace(target, previous)
    try:
        os.replace(staging, target)
    except BaseException:
        os.replace(previous, target)  # put the old package back
        raise
    shutil.rmtree(previous, ignore_errors=True)


# -- reading -------------------------------------------------------------------------------------
def read_package(folder: str | os.PathLike, task: str | None = None) -> tuple[ModelCard, dict[str, torch.Tensor]]:
    """Return ``(card, state_dict)`` of the package in ``folder``, verified, on the CPU.

    ``task``, when given, must match the card. The weights are hashed and the very bytes that were
    hashed are deserialised. (Finding a package by id or task is the registry's job:
    :func:`spinebrain.models.registry.load_model_package`.)
    """
    folder = Path(folder)
    card = ModelCard.read(folder)
    check_task(card, task)
    weights_path = weights_file_of(folder, card)
    data = weights_path.read_bytes()
    _check_sha256(sha256_of(data), card, weights_path)
    return card, _deserialise(data, weights_path)


def verify_weights(folder: str | os.PathLike, card: ModelCard) -> None:
    """ModelError when the package's weights file is missing or does not match the card's sha256 (no loading)."""
    weights_path = weights_file_of(Path(folder), card)
    _check_sha256(sha256_file(weights_path), card, weights_path)


def _check_sha256(digest: str, card: ModelCard, weights_path: Path) -> None:
    if digest != card.sha256:
        raise ModelError(
            f"The weights {weights_path} do not match the sha256 in the model card of {card.id!r}: the model is "
            "tampered or corrupted: re-download/re-train, do not use."
        )


def check_task(card: ModelCard, task: str | None) -> None:
    """ModelError unless the card serves ``task`` (a card task, or a task of :mod:`spinebrain.tasks`)."""
    if task is not None and card.task not in card_tasks_for(task):
        raise ModelError(
            f"Model {card.id!r} is for {card.task} but {task} was asked; choose a {task} model "
            "('spinebrain info' lists the installed ones) or train one."
        )


def weights_file_of(folder: Path, card: ModelCard) -> Path:
    """The weights file of a package: the one the card names, else the preferred one present."""
    if card.weights_file:
        if card.weights_file not in WEIGHTS_FILES:
            raise ModelError(
                f"Model {card.id!r} names weights {card.weights_file!r}, an unsupported format; "
                f"packages hold {' or '.join(WEIGHTS_FILES)} (re-export the weights as a state dict)."
            )
        candidates = [folder / card.weights_file]
    else:
        candidates = [folder / name for name in WEIGHTS_FILES]
    for path in candidates:
        if path.is_file():
            return path
    others = sorted(p.name for p in folder.glob("model.*") if p.name != CARD_FILE)
    if others and not card.weights_file:
        raise ModelError(
            f"Model {card.id!r} holds weights in an unsupported format ({', '.join(others)}); "
            f"packages hold {' or '.join(WEIGHTS_FILES)} (re-export the weights as a state dict)."
        )
    raise ModelError(
        f"The weights file of model {card.id!r} is missing ({candidates[0]}); re-download or re-train the model."
    )


def _deserialise(data: bytes, path: Path) -> dict[str, torch.Tensor]:
    if path.name == SAFETENSORS_FILE:
        from safetensors import SafetensorError
        from safetensors.torch import load

        try:
            tensors = load(data)
        except (SafetensorError, ValueError, RuntimeError) as error:
            raise ModelError(
                f"{path} is not a readable safetensors file ({error}); re-download or re-train the model."
            ) from None
    else:
        tensors = _torch_load_weights_only(data, path)
    return tensors


def _torch_load_weights_only(data: bytes, path: Path) -> dict[str, torch.Tensor]:
    import torch

    try:
        loaded = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelError(
            f"{path} holds more than plain weights (torch.load(weights_only=True) refused it: {first_line}); "
            "it could run code when loaded, so it was not opened: do not use it, re-export the weights "
            "as a state dict (preferably model.safetensors)."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise ModelError(
            f"{path} is not a readable PyTorch weights file ({error}); re-download or re-train the model."
        ) from None
    if not isinstance(loaded, Mapping) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in loaded.items()):
        raise ModelError(
            f"{path} holds a {type(loaded).__name__}, not a state dict of named tensors, an unsupported format; "
            "re-export it with torch.save(model.state_dict(), ...)."
        )
    return dict(loaded)
