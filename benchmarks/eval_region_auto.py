"""How often does region "auto" pick the right SpineLabel model? Generated scans and the real scans.

Usage: python benchmarks/eval_region_auto.py [--seeds 8] [--data ../shared/data]

Generated: lumbar CT / T1 / T2 and cervical T1 / T2 views (seeds 5000+), the truth is the view.
Real (when the data folder is there): the lumbar / thoracolumbar MR sets A10-A12 (lumbar) and the
crops A5, A6 (lumbar CT) and A7, A9 (cervical MR). Prints one line per case and a table per set.
The whole-spine model, where installed, serves every region: its choice counts as right (a column counts it).
"""

from __future__ import annotations

import argparse
import glob
import os
from pathlib import Path

from spinebrain.errors import InputError
from spinebrain.io import load_volume
from spinebrain.spinelabel.pipeline import label_spine_best, load_spine_label_models
from spinebrain.synth.spine import generate_spine

GENERATED = [("lumbar", "ct"), ("lumbar", "t1"), ("lumbar", "t2"), ("cervical", "t1"), ("cervical", "t2")]
REAL_CROPS = {"A5_ts_aorta_ct_cropped/ct.nii.gz": "lumbar", "A6_tptbox_sample_ct/sub-ct_label-22_ct.nii.gz": "lumbar",
              "A7_tptbox_sample_mri/sub-mri_label-6_T2w.nii.gz": "cervical", "A9_sct_t2_cervical/t2.nii.gz": "cervical"}


def cases(seeds: int, data: Path):
    for view, modality in GENERATED:
        for seed in range(5000, 5000 + seeds):
            yield f"generated {view} {modality}", f"seed {seed}", view, lambda s=seed, v=view, m=modality: \
                generate_spine(s, modality=m, view=v).image
    for path in sorted(glob.glob(str(data / "A1[012]_*" / "*" / "image.nii.gz"))):
        yield Path(path).parts[-3][:3] + " MR", Path(path).parts[-2], "lumbar", lambda p=path: load_volume(p)
    for relative, truth in REAL_CROPS.items():
        if (data / relative).is_file():
            yield relative[:2] + " crop", relative.split("/")[0], truth, lambda p=data / relative: load_volume(p)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--data", default=os.environ.get("SPINEBRAIN_TEST_DATA", "../shared/data"))
    args = parser.parse_args()
    models = load_spine_label_models("auto", device="cpu")
    table: dict[str, list[int]] = {}
    for group, name, truth, load in cases(args.seeds, Path(args.data)):
        try:
            result = label_spine_best(load(), models)
            region = result.region
        except InputError as error:
            region = f"refused ({error})"
        right = table.setdefault(group, [0, 0, 0, 0])
        right[0] += 1
        right[1] += region in (truth, "whole")
        right[2] += region == "cervical" and truth == "lumbar"
        right[3] += region == "whole"
        print(f"{group:22s} {name:12s} truth {truth:9s} auto {region}", flush=True)
    print(f"\n{'set':22s} cases  right region  lumbar called cervical  whole-spine model")
    for group, (count, right, wrong, whole) in table.items():
        print(f"{group:22s} {count:5d}  {right:12d}  {wrong:22d}  {whole:17d}")


if __name__ == "__main__":
    main()
