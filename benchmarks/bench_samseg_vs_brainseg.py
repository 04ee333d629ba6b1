"""FreeSurfer's SAMSEG beside BrainSeg on the real brain B5: Dice per class, wall time and peak memory of both.

    python benchmarks/bench_samseg_vs_brainseg.py --threads 1
    python benchmarks/bench_samseg_vs_brainseg.py --samseg /work/runs/brainui/samseg-venv/bin/run_samseg

SAMSEG is a yardstick, never a dependency: install it into a separate virtual environment
(``python -m venv VENV && VENV/bin/pip install samseg``; its atlas ships inside the wheel) and point
``--samseg`` (or ``$SAMSEG``) at its ``run_samseg``. Without it the SAMSEG row says "not installed"
and only BrainSeg runs.

Both run as child processes on the same input (B5 ``bet.nii.gz``, a skull-stripped 1 mm T1) with the
same thread count; wall time is the child's, CPU time its user + system seconds (the figure that does
not depend on what else the machine runs), peak memory its maximum resident set size
(``getrusage(RUSAGE_CHILDREN)`` of a wrapper with that one child). The reference is the one of
``benchmarks/eval_brainseg_tissue.py`` (FSL FAST argmax inside the brain, the two artificial spheres
ignored). SAMSEG's ``seg.mgz`` is mapped to tissue classes with :data:`SAMSEG_TO_TISSUE` -- the
FreeSurfer grouping of the B7 data's ``tissue3_rule`` -- and everything else (vessels, skull, scalp,
eyes, unknown) is background.

| class | FreeSurfer labels (SAMSEG output) |
|---|---|
| CSF (1) | 4, 5, 14, 15, 24, 43, 44, 72 (lateral / inferior lateral / 3rd / 4th / 5th ventricles, CSF) |
| GM (2) | 3, 42 (cortex), 8, 47 (cerebellar cortex), 10, 49 (thalamus), 11, 50 (caudate), 12, 51 (putamen), 13, 52 (pallidum), 17, 53 (hippocampus), 18, 54 (amygdala), 26, 58 (accumbens) |
| WM (3) | 2, 41 (cerebral WM), 7, 46 (cerebellar WM), 16 (brain stem), 28, 60 (ventral DC), 25, 57 (lesions), 77 (WM hypointensities), 85 (optic chiasm) |
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SAMSEG_TO_TISSUE = {
    1: (4, 5, 14, 15, 24, 43, 44, 72),
    2: (3, 42, 8, 47, 10, 49, 11, 50, 12, 51, 13, 52, 17, 53, 18, 54, 26, 58),
    3: (2, 41, 7, 46, 16, 28, 60, 25, 57, 77, 85),
}
_MEASURE = ("import resource, subprocess, sys, time\n"
            "start = time.perf_counter()\n"
            "code = subprocess.call(sys.argv[1:])\n"
            "usage = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
            "print('MEASURED', code, time.perf_counter() - start, usage.ru_maxrss, usage.ru_utime + usage.ru_stime)\n")


def measured(command: list[str], threads: int, log: Path) -> tuple[int, float, float, float]:
    """(exit code, wall seconds, peak resident memory in MB, CPU seconds user + system) of one child process."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=str(threads),
               PYTHONPATH=str(ROOT))
    with open(log, "w") as handle:
        output = subprocess.run([sys.executable, "-c", _MEASURE, *command], env=env, stdout=subprocess.PIPE,
                                stderr=handle, text=True).stdout
    line = next(line for line in output.splitlines() if line.startswith("MEASURED"))
    _, code, seconds, kilobytes, cpu = line.split()
    return int(code), float(seconds), float(kilobytes) / 1024.0, float(cpu)


def samseg_tissue(seg_mgz: Path, like: sitk.Image) -> sitk.Image:
    """SAMSEG's labels as 1 CSF / 2 GM / 3 WM on ``like``'s grid (nibabel reads .mgz; nearest neighbour)."""
    import nibabel

    from spinebrain.resample import resample_like

    loaded = nibabel.load(str(seg_mgz))
    nifti = Path(tempfile.mkdtemp()) / "seg.nii.gz"
    nibabel.save(nibabel.Nifti1Image(np.asarray(loaded.dataobj).astype(np.int32), loaded.affine), str(nifti))
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(nifti)))
    tissue = np.zeros(labels.shape, np.uint8)
    for value, members in SAMSEG_TO_TISSUE.items():
        tissue[np.isin(labels, members)] = value
    image = sitk.GetImageFromArray(tissue)
    image.CopyInformation(sitk.ReadImage(str(nifti)))
    return resample_like(image, like, is_label=True, default_value=0)


def b5_reference():
    spec = importlib.util.spec_from_file_location("eval_tissue", ROOT / "benchmarks" / "eval_brainseg_tissue.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.DATA / "B5_nii2mesh_t1_fast" / "bet.nii.gz", *module.b5_reference()


def dice_row(name: str, predicted: sitk.Image | None, reference, ignore, code, seconds, memory, cpu) -> dict:
    from spinebrain.brainseg.quantify import tissue_metrics

    row = {"method": name, "exit code": code, "wall seconds": round(seconds, 1), "CPU seconds": round(cpu, 1),
           "peak memory MB": round(memory)}
    if predicted is not None:
        brain = sitk.Cast(reference > 0, sitk.sitkUInt8)
        inside = sitk.Mask(predicted, brain)  # both judged inside the reference brain
        row.update({f"{r['structure']} Dice": round(r["dice"], 3) for r in tissue_metrics(inside, reference, ignore)})
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samseg", default=os.environ.get("SAMSEG") or shutil.which("run_samseg"),
                        help="run_samseg of a separate virtual environment (default $SAMSEG, else on PATH)")
    parser.add_argument("--model", help="BrainSeg tissue model (default: the installed one)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", default=tempfile.mkdtemp(prefix="bench-samseg-"), help="scratch folder")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()
    from spinebrain.outputs import read_segmentation

    t1_path, _t1, reference, ignore = b5_reference()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    command = [sys.executable, "-m", "spinebrain", "brain-seg", "--t1", str(t1_path), "--out", str(work / "brainseg"),
               "--device", "cpu", "--overwrite", "--quiet"] + (["--model", args.model] if args.model else [])
    code, seconds, memory, cpu = measured(command, args.threads, work / "brainseg.log")
    labels = read_segmentation(work / "brainseg" / "bet.seg.nrrd")[0] if code == 0 else None
    rows.append(dice_row("BrainSeg", labels, reference, ignore, code, seconds, memory, cpu))
    if args.samseg and Path(args.samseg).exists():
        out = work / "samseg"
        code, seconds, memory, cpu = measured([args.samseg, "-i", str(t1_path), "-o", str(out), "--threads",
                                               str(args.threads)], args.threads, work / "samseg.log")
        seg = out / "seg.mgz"
        labels = samseg_tissue(seg, reference) if code == 0 and seg.is_file() else None
        rows.append(dice_row("SAMSEG", labels, reference, ignore, code, seconds, memory, cpu))
    else:
        rows.append({"method": "SAMSEG", "note": "not installed (pip install samseg into a separate venv; --samseg)"})
    for row in rows:
        print("  ".join(f"{key}: {value}" for key, value in row.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
