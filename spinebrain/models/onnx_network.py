"""A package's network exported to ONNX and run by onnxruntime on the CPU: the command line's fast start.

Why: on a 2-core machine importing torch and MONAI takes 3-4 s of a command's cold start, more than the
labelling itself, while onnxruntime imports in about 0.25 s. The ONNX file is made from the package's
own weights (:func:`export_onnx`, which needs torch, ``onnx`` and ``onnxscript``) and checked against torch
when it is made. It is used only on the CPU, only while its card entry names the very weights the package
holds (their sha256) and only when its own sha256 matches; anything else runs the network in torch as before.

A network may consist of parts run one by one (the paper's detector pair: ``vertebra`` and ``anchor``); each part
is one file. Card ``extra["onnx"]``: ``weights_sha256`` (the card's ``sha256`` the export was made from), ``opset``
and ``parts``, per part: ``file``, ``sha256`` (of that file), ``pad_multiple`` (inputs are zero-padded at the high
end to a multiple of this, then cropped back: the exported core has no padding of its own) and
``max_abs_difference`` (largest logit difference from torch measured at export).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

from ..errors import ModelError
from .card import CARD_FILE, ModelCard
from .package import sha256_file

SINGLE_PART = "network"  # a network exported whole (the heatmap U-Net): loaded as one OnnxNetwork
CARD_KEY = "onnx"
#: Input sizes (rows, cols) the export is checked on: off the pad multiple, so the padding is exercised too.
CHECK_SIZES = ((128, 192), (203, 157))
#: Largest logit difference from torch accepted at export (float32 kernels differ by about 1e-4).
MAX_ABS_DIFFERENCE = 1e-3


def onnx_file(part: str) -> str:
    """``network.onnx``, or ``network-<part>.onnx`` (not "model.*": that name is kept for weights files)."""
    return "network.onnx" if part == SINGLE_PART else f"network-{part}.onnx"


def onnxruntime_installed() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def onnx_usable(folder: str | Path, card: ModelCard) -> bool:
    """True when the package holds an ONNX export of its current weights and onnxruntime is installed."""
    entry = card.extra.get(CARD_KEY)
    parts = entry.get("parts") if isinstance(entry, dict) else None
    return bool(isinstance(parts, dict) and parts and entry.get("weights_sha256") == card.sha256
                and all((Path(folder) / str(part.get("file", ""))).is_file() for part in parts.values())
                and onnxruntime_installed())


class OnnxNetwork:
    """One exported network: ``network(batch)`` takes a float32 (N, C, H, W) array and returns its logits."""

    def __init__(self, path: Path, kwargs: dict, pad_multiple: int = 1, threads: int | None = None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.pad_multiple = int(pad_multiple)
        self.kwargs = dict(kwargs)  # the constructor arguments in the card, as the torch network holds them

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        height, width = batch.shape[-2:]
        pad_h, pad_w = (-height) % self.pad_multiple, (-width) % self.pad_multiple
        if not (pad_h or pad_w):
            return self.session.run(None, {self.input_name: batch})[0]
        batch = np.pad(batch, [(0, 0)] * (batch.ndim - 2) + [(0, pad_h), (0, pad_w)])
        return self.session.run(None, {self.input_name: batch})[0][..., :height, :width]


class OnnxParts:
    """A network of several exported parts, each an attribute (``pair.vertebra``, ``pair.anchor``) as in torch."""

    def __init__(self, parts: dict[str, OnnxNetwork]):
        self.__dict__.update(parts)


def load_onnx_network(folder: str | Path, card: ModelCard, threads: int | None = None) -> OnnxNetwork | OnnxParts:
    """The package's ONNX network (its parts), each file checked against the card first (ModelError if not)."""
    entry = card.extra.get(CARD_KEY) or {}
    if entry.get("weights_sha256") != card.sha256:
        raise ModelError(f"The ONNX export of model {card.id!r} was made from other weights; export it again "
                         "(spinebrain.models.onnx_network.export_onnx) or run on torch.")
    kwargs = card.network.get("kwargs", {})
    loaded = {}
    for name, part in (entry.get("parts") or {}).items():
        path = Path(folder) / str(part.get("file", ""))
        if not path.is_file() or sha256_file(path) != part.get("sha256"):
            raise ModelError(f"The ONNX export {path} of model {card.id!r} is missing or does not match the sha256 in "
                             "its card: it is corrupted or tampered; export it again or remove the card's 'onnx' entry.")
        loaded[name] = OnnxNetwork(path, kwargs if name == SINGLE_PART else kwargs.get(name, {}),
                                   int(part.get("pad_multiple", 1)), threads)
    return loaded[SINGLE_PART] if set(loaded) == {SINGLE_PART} else OnnxParts(loaded)


def export_onnx_when_possible(folder: str | Path) -> str:
    """:func:`export_onnx` where ``onnx`` and ``onnxscript`` are installed and the network has an export; one line
    saying what was done (a model without an export runs on torch, only slower to start)."""
    missing = [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        return (f"No ONNX export ({' and '.join(missing)} not installed: pip install 'slicer-spinebrain[export]'); "
                "the model runs on torch.")
    entry = export_onnx(folder)
    worst = max(part["max_abs_difference"] for part in entry["parts"].values())
    return f"ONNX export written ({len(entry['parts'])} file(s), largest logit difference from torch {worst:.2g})."


def export_onnx(folder: str | Path, opset: int = 18) -> dict:
    """Write the ONNX file of each part beside the package's weights, check each against torch, record them in the
    card; returns the card entry.

    The network class says what to export with ``onnx_parts()`` -> {name: (module, pad multiple, input channels)}:
    modules without their forward's shape arithmetic (padding to a multiple), which the exporter cannot keep
    symbolic. ModelError (and nothing kept) if a part differs from torch by more than :data:`MAX_ABS_DIFFERENCE`.
    """
    from .network import load_network

    folder = Path(folder)
    card, network = load_network(folder, device="cpu")
    if not hasattr(network, "onnx_parts"):
        raise ModelError(f"Model {card.id!r} ({card.network['architecture']}) has no ONNX export; it runs on torch.")
    parts, written = {}, []
    try:
        for name, (module, pad_multiple, channels) in network.onnx_parts().items():
            path = folder / onnx_file(name)
            written.append(path)
            difference = _export_part(module.eval(), path, pad_multiple, channels, opset)
            if difference > MAX_ABS_DIFFERENCE:
                raise ModelError(f"The ONNX export of {card.id!r} ({name}) differs from torch by {difference:.2g} "
                                 f"(more than {MAX_ABS_DIFFERENCE}); it was not kept.")
            parts[name] = {"file": path.name, "sha256": sha256_file(path), "pad_multiple": pad_multiple,
                           "max_abs_difference": float(f"{difference:.3g}")}
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    entry = {"weights_sha256": card.sha256, "opset": opset, "parts": parts}
    _write_card_entry(folder, entry)
    return entry


def _export_part(module, path: Path, pad_multiple: int, channels: int, opset: int) -> float:
    """Export one module with dynamic batch and plane sizes; the largest logit difference from torch on
    :data:`CHECK_SIZES` (padded and cropped as :class:`OnnxNetwork` does)."""
    import torch
    import torch.nn.functional as F

    example = torch.rand(2, channels, *[n + (-n) % pad_multiple for n in CHECK_SIZES[0]])
    dims = {0: torch.export.Dim("batch", min=1, max=64)}
    if pad_multiple > 1:
        dims.update({2: pad_multiple * torch.export.Dim("rows", min=1, max=256),
                     3: pad_multiple * torch.export.Dim("cols", min=1, max=256)})
    else:
        dims.update({2: torch.export.Dim("rows", min=16, max=4096), 3: torch.export.Dim("cols", min=16, max=4096)})
    torch.onnx.export(module, (example,), str(path), input_names=["input"], output_names=["logits"],
                      dynamic_shapes=(dims,), opset_version=opset, dynamo=True, external_data=False,
                      verbose=False)  # its progress lines would go to stdout, where a JSON progress stream runs
    exported = OnnxNetwork(path, {}, pad_multiple)
    generator, difference = torch.Generator().manual_seed(0), 0.0
    with torch.inference_mode():
        for rows, cols in CHECK_SIZES:
            batch = torch.rand(2, channels, rows, cols, generator=generator)
            padded = F.pad(batch, (0, (-cols) % pad_multiple, 0, (-rows) % pad_multiple))
            expected = module(padded)[..., :rows, :cols].numpy()
            difference = max(difference, float(np.abs(expected - exported(batch.numpy())).max()))
    return difference


def _write_card_entry(folder: Path, entry: dict) -> None:
    write_card_entry(folder, CARD_KEY, entry)


def write_card_entry(folder: str | Path, key: str, entry) -> None:
    """The card gains ``extra[key]`` (a card keeps its extra keys at the top level); the rest is kept as written,
    in its own indentation."""
    card_path = Path(folder) / CARD_FILE
    text = card_path.read_text(encoding="utf-8")
    data = json.loads(text)
    data[key] = entry
    lines = text.splitlines()
    indent = len(lines[1]) - len(lines[1].lstrip(" ")) if len(lines) > 1 else 2
    temporary = card_path.with_suffix(".tmp")
    temporary.write_text(json.dumps(data, indent=indent or 2, ensure_ascii=False) + "\n", encoding="utf-8")
    temporary.replace(card_path)
