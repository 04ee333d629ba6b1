"""A package's network exported to ONNX and run by onnxruntime on the CPU: the command line's fast start.

Why: on a 2-core machine importing torch and MONAI takes 3-4 s of a command's cold start, more than the
labelling itself, while onnxruntime imports in about 0.25 s. The ONNX file is made from the package's
own weights (:func:`export_onnx`, which needs torch, ``onnx`` and ``onnxscript``) and checked against torch
when it is made. It is used only on the CPU, only while its card entry names the very weights the package
holds (their sha256) and only when its own sha256 matches; anything else runs the network in torch as before.

Card ``extra["onnx"]``: ``file``, ``sha256`` (of that file), ``weights_sha256`` (the card's ``sha256`` it was
made from), ``pad_multiple`` (inputs are zero-padded at the high end to a multiple of this, then cropped
back: the exported core has no padding of its own), ``max_abs_difference`` (largest logit difference from
torch measured at export) and ``opset``.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

from ..errors import ModelError
from .card import CARD_FILE, ModelCard
from .package import sha256_file

ONNX_FILE = "network.onnx"  # not "model.*": that name is kept for weights files
CARD_KEY = "onnx"
#: Input sizes (rows, cols) the export is checked on: off the pad multiple, so the padding is exercised too.
CHECK_SIZES = ((128, 192), (203, 157))
#: Largest logit difference from torch accepted at export (float32 kernels differ by about 1e-4).
MAX_ABS_DIFFERENCE = 1e-3


def onnxruntime_installed() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def onnx_usable(folder: str | Path, card: ModelCard) -> bool:
    """True when the package holds an ONNX export of its current weights and onnxruntime is installed."""
    entry = card.extra.get(CARD_KEY)
    return bool(isinstance(entry, dict) and entry.get("weights_sha256") == card.sha256
                and (Path(folder) / str(entry.get("file", ONNX_FILE))).is_file() and onnxruntime_installed())


class OnnxNetwork:
    """The exported network: ``network(batch)`` takes a float32 (N, C, H, W) array and returns its logits."""

    def __init__(self, path: Path, network: dict, pad_multiple: int = 1, threads: int | None = None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.pad_multiple = int(pad_multiple)
        self.kwargs = dict(network.get("kwargs", {}))  # the card's network entry, as a torch network has them
        self.architecture = str(network["architecture"])

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        height, width = batch.shape[-2:]
        pad_h, pad_w = (-height) % self.pad_multiple, (-width) % self.pad_multiple
        if pad_h or pad_w:
            batch = np.pad(batch, [(0, 0)] * (batch.ndim - 2) + [(0, pad_h), (0, pad_w)])
        return self.session.run(None, {self.input_name: batch})[0][..., :height, :width]


def load_onnx_network(folder: str | Path, card: ModelCard, threads: int | None = None) -> OnnxNetwork:
    """The package's ONNX network, its file checked against the card first (ModelError if it does not match)."""
    entry = card.extra.get(CARD_KEY) or {}
    path = Path(folder) / str(entry.get("file", ONNX_FILE))
    if entry.get("weights_sha256") != card.sha256:
        raise ModelError(f"The ONNX export of model {card.id!r} was made from other weights; export it again "
                         "(spinebrain.models.onnx_network.export_onnx) or run on torch.")
    if not path.is_file() or sha256_file(path) != entry.get("sha256"):
        raise ModelError(f"The ONNX export {path} of model {card.id!r} is missing or does not match the sha256 in its "
                         "card: it is corrupted or tampered; export it again or remove the card's 'onnx' entry.")
    return OnnxNetwork(path, card.network, int(entry.get("pad_multiple", 1)), threads)


def export_onnx_when_possible(folder: str | Path) -> str:
    """:func:`export_onnx` where ``onnx`` and ``onnxscript`` are installed and the network has an export; one line
    saying what was done (a model without an export runs on torch, only slower to start)."""
    missing = [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        return (f"No ONNX export ({' and '.join(missing)} not installed: pip install 'slicer-spinebrain[export]'); "
                "the model runs on torch.")
    entry = export_onnx(folder)
    return f"ONNX export {entry['file']} written (largest logit difference from torch {entry['max_abs_difference']:.2g})."


def export_onnx(folder: str | Path, opset: int = 18) -> dict:
    """Write ``network.onnx`` beside the package's weights, check it against torch, record it in the card.

    The network class says what to export with ``onnx_core()`` -> (module, pad multiple, input channels): the
    part without its forward's shape arithmetic (padding to a multiple), which the exporter cannot keep symbolic.
    Returns the card entry. ModelError if the export differs from torch by more than :data:`MAX_ABS_DIFFERENCE`.
    """
    import torch

    from .network import load_network

    folder = Path(folder)
    card, network = load_network(folder, device="cpu")
    if not hasattr(network, "onnx_core"):
        raise ModelError(f"Model {card.id!r} ({card.network['architecture']}) has no ONNX export; it runs on torch.")
    core, pad_multiple, channels = network.onnx_core()
    size = [n + (-n) % pad_multiple for n in CHECK_SIZES[0]]
    example = torch.rand(2, channels, *size)
    dims = {0: torch.export.Dim("batch", min=1, max=64)}
    if pad_multiple > 1:
        dims.update({2: pad_multiple * torch.export.Dim("rows", min=1, max=256),
                     3: pad_multiple * torch.export.Dim("cols", min=1, max=256)})
    else:
        dims.update({2: torch.export.Dim("rows", min=2, max=4096), 3: torch.export.Dim("cols", min=2, max=4096)})
    path = folder / ONNX_FILE
    torch.onnx.export(core.eval(), (example,), str(path), input_names=["input"], output_names=["logits"],
                      dynamic_shapes=(dims,), opset_version=opset, dynamo=True, external_data=False)
    entry = {"file": ONNX_FILE, "sha256": sha256_file(path), "weights_sha256": card.sha256,
             "pad_multiple": pad_multiple, "opset": opset}
    exported = OnnxNetwork(path, card.network, pad_multiple)
    difference = 0.0
    generator = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for rows, cols in CHECK_SIZES:
            batch = torch.rand(2, channels, rows, cols, generator=generator)
            difference = max(difference, float(np.abs(network(batch).numpy() - exported(batch.numpy())).max()))
    if difference > MAX_ABS_DIFFERENCE:
        path.unlink()
        raise ModelError(f"The ONNX export of {card.id!r} differs from torch by {difference:.2g} (more than "
                         f"{MAX_ABS_DIFFERENCE}); it was not kept.")
    entry["max_abs_difference"] = float(f"{difference:.3g}")
    _write_card_entry(folder, entry)
    return entry


def _write_card_entry(folder: Path, entry: dict) -> None:
    """The card gains ``extra["onnx"]`` (a card keeps its extra keys at the top level); the rest is kept as written."""
    card_path = folder / CARD_FILE
    data = json.loads(card_path.read_text(encoding="utf-8"))
    data[CARD_KEY] = entry
    temporary = card_path.with_suffix(".tmp")
    temporary.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    temporary.replace(card_path)
