"""The 3D mode's command-line handlers (``spinebrain spine-segment --mode 3d``, ``train`` / ``evaluate``).

:mod:`spinebrain.commands.spine_segment` owns the parsers and hands ``--mode 3d`` over to these.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..errors import InputError
from ..protocol import output_kind

SEG_SUFFIX = ".seg.nrrd"


def load_model(args, progress):
    from .pipeline3d import load_model_3d

    progress.update("load", 0.0, "loading the 3D CT vertebra model")
    model = load_model_3d(args.model, device=args.device)
    progress.log(f"Model: {model.card.id} (patch {model.card.patch_size[0]}³ at {model.card.spacing[0]} mm)")
    return model


def segment_one(image, seg_path: Path, model, points, png: bool, progress, direction: str = "down") -> dict:
    from .pipeline3d import segment_vertebrae, write_results

    result = segment_vertebrae(image, model, points, direction=direction, progress=progress)
    if not result.vertebrae:
        progress.log(f"{seg_path.name}: no vertebra found")
    png_path = seg_path.with_name(seg_path.name[: -len(SEG_SUFFIX)] + ".png") if png else None
    written = write_results(image, result, seg_path, png_path)
    progress.log(f"{len(result.vertebrae)} vertebrae in {result.seconds:.1f} s, steps {result.steps}")
    return {"vertebrae": len(result.vertebrae), "names": " ".join(v.name for v in result.vertebrae),
            "complete": sum(v.complete for v in result.vertebrae), "outputs": written}


def run_single(args, image, points, out: Path, progress) -> None:
    from ..outputs import staged_outputs

    model = load_model(args, progress)
    with staged_outputs(out.parent, args.overwrite) as stage:
        fields = segment_one(image, stage.path(out.name), model, points, args.png, progress, args.direction)
    for path in (stage.final(p) for p in fields["outputs"]):
        progress.result(path, kind=output_kind(path))


def train(args, progress) -> None:
    from .data3d import build_cache
    from .training3d import Train3DOptions, export_package, train as train_3d

    out = Path(args.out)
    cache = Path(args.cache) if args.cache else out / "cache"
    first, last = (int(x) for x in args.synthetic.split(":"))
    maps = []
    if args.data:
        verse = Path(args.data) / "A8_verse_sub-verse004_labels_only" / "sub-verse004_seg-vert_msk.nii.gz"
        maps = [verse] if verse.is_file() else []
    progress.update("data", 0.0, f"preparing {last - first} generated CT cases in {cache}")
    build_cache(cache, range(first, last), args.spacing, "train_", maps, per_map=max(1, (last - first) // 2))
    build_cache(cache, range(90000, 90000 + args.validation_cases), args.spacing, "val_", [], 0)
    stop = None if args.minutes is None else time.time() + 60 * args.minutes
    train_3d(Train3DOptions(str(cache), str(out), spacing_mm=args.spacing, patch=args.patch, filters=args.filters,
                            levels=args.levels, max_epochs=args.epochs, samples_per_epoch=args.samples,
                            stop_at=stop), progress)
    package = export_package(out, out / "package", metrics={}, command="spinebrain train spine-segment --mode 3d")
    progress.result(package, kind="model")


def evaluate(args, progress) -> None:
    from .evaluation3d import evaluate_model
    from .pipeline3d import load_model_3d

    if not args.synthetic and not args.data:
        raise InputError("Give --synthetic FIRST:LAST seeds and/or --data (the real CT crops) to evaluate on.")
    model = load_model_3d(args.model, device="cpu")
    evaluate_model(model, args.synthetic, args.data, log=progress.log)
