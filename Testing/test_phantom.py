"""`spinebrain phantom`: a generated case written in Slicer formats, read back consistently."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest
import SimpleITK as sitk

from spinebrain.anatomy import VERTEBRA_LABELS
from spinebrain.cli import main
from spinebrain.errors import EXIT_BAD_INPUT
from spinebrain.geometry import ras_to_index, same_grid
from spinebrain.outputs import read_markups, read_segmentation, read_table
from spinebrain.protocol import Progress
from spinebrain.synth.cases import VERTEBRA_COLUMNS, VOLUME_COLUMNS

SPINE_FILES = ["spine_ct.nrrd", "spine_vertebrae.seg.nrrd", "spine_body_centres.mrk.json", "spine_vertebrae.csv",
               "spine_metadata.json", "spine_overview.png"]


def _run(argv: list[str]) -> tuple[int, list[dict]]:
    """Run the CLI in-process with JSON-lines progress; returns (exit code, events)."""
    from spinebrain.cli import build_parser, execute

    stream = io.StringIO()
    args = build_parser().parse_args(["--progress-json", *argv])
    code = execute(args.run, args, Progress(json_lines=True, stream=stream))
    return code, [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.fixture(scope="module")
def spine_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("spine")
    code, events = _run(["phantom", "spine", "--out", str(out), "--seed", "3", "--spacing", "2.5"])
    assert code == 0, events
    return out, events


def test_spine_phantom_writes_announced_files(spine_folder):
    out, events = spine_folder
    announced = {e["path"]: e["kind"] for e in events if e["event"] == "result"}
    assert sorted(announced) == sorted(str(out / name) for name in SPINE_FILES)
    assert announced[str(out / "spine_vertebrae.seg.nrrd")] == "segmentation"
    assert announced[str(out / "spine_body_centres.mrk.json")] == "markups"
    assert all((out / name).stat().st_size > 0 for name in SPINE_FILES)
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "temporary files left behind"
    assert events[-1] == {"event": "done", "code": 0}


def test_spine_phantom_files_agree(spine_folder):
    out, _ = spine_folder
    image = sitk.ReadImage(str(out / "spine_ct.nrrd"))
    labels, names = read_segmentation(out / "spine_vertebrae.seg.nrrd")
    points = read_markups(out / "spine_body_centres.mrk.json")
    table = read_table(out / "spine_vertebrae.csv", VERTEBRA_COLUMNS)

    assert same_grid(image, labels)
    assert all(VERTEBRA_LABELS[name] == value for value, name in names.items())
    present = set(np.unique(sitk.GetArrayViewFromImage(labels)).tolist()) - {0}
    assert present == {row["label"] for row in table} == set(names)
    assert {row["name"] for row in table} == set(names.values())
    # each body centre lies in the image, inside (or within 2 voxels of) its own vertebra
    array = sitk.GetArrayViewFromImage(labels)
    for point in points:
        i, j, k = np.rint(ras_to_index(labels, point.ras)).astype(int)
        window = array[max(k - 2, 0):k + 3, max(j - 2, 0):j + 3, max(i - 2, 0):i + 3]
        assert VERTEBRA_LABELS[point.label] in window, point
    # table volumes are the voxel counts of the written segmentation, in mm³
    voxel = float(np.prod(labels.GetSpacing()))
    for row in table:
        assert row["volume"] == pytest.approx(np.count_nonzero(array == row["label"]) * voxel, rel=1e-6)
        assert row["complete"] == (row["fraction outside"] <= 3.0)
    metadata = json.loads((out / "spine_metadata.json").read_text())
    assert metadata["seed"] == 3 and metadata["modality"] == "ct" and "notice" in metadata


def test_spine_phantom_is_deterministic(spine_folder, tmp_path):
    out, _ = spine_folder
    code, _ = _run(["phantom", "spine", "--out", str(tmp_path), "--seed", "3", "--spacing", "2.5"])
    assert code == 0
    for name in ("spine_vertebrae.csv", "spine_body_centres.mrk.json"):
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes()
    first, second = (sitk.GetArrayFromImage(sitk.ReadImage(str(f / "spine_ct.nrrd"))) for f in (out, tmp_path))
    assert hashlib.sha256(first.tobytes()).digest() == hashlib.sha256(second.tobytes()).digest()


def test_brain_phantom_writes_tissue_lesions_and_volumes(tmp_path):
    code, events = _run(["phantom", "brain", "--out", str(tmp_path), "--contrasts", "t1,flair", "--lesions", "ms",
                         "--spacing", "3"])
    assert code == 0, events
    names = {p.name for p in tmp_path.iterdir() if not p.name.endswith(".schema.csv")}
    assert names == {"brain_t1.nrrd", "brain_flair.nrrd", "brain_tissue.seg.nrrd", "brain_lesions.seg.nrrd",
                     "brain_volumes.csv", "brain_metadata.json", "brain_overview.png"}
    t1 = sitk.ReadImage(str(tmp_path / "brain_t1.nrrd"))
    tissue, tissue_names = read_segmentation(tmp_path / "brain_tissue.seg.nrrd")
    lesions, lesion_names = read_segmentation(tmp_path / "brain_lesions.seg.nrrd")
    assert same_grid(t1, tissue) and same_grid(t1, lesions)
    assert set(tissue_names.values()) == {"Grey matter", "White matter", "Cerebrospinal fluid"}
    assert set(lesion_names.values()) == {"Lesion"}
    rows = {row["structure"]: row for row in read_table(tmp_path / "brain_volumes.csv", VOLUME_COLUMNS)}
    voxel_ml = float(np.prod(tissue.GetSpacing())) / 1000.0
    tissue_array = sitk.GetArrayViewFromImage(tissue)
    for value, name in tissue_names.items():
        assert rows[name]["volume"] == pytest.approx(np.count_nonzero(tissue_array == value) * voxel_ml)
    assert rows["Intracranial volume"]["volume"] == pytest.approx(np.count_nonzero(tissue_array) * voxel_ml)
    lesion_voxels = np.count_nonzero(sitk.GetArrayViewFromImage(lesions))
    assert rows["Total lesion load"]["volume"] == pytest.approx(lesion_voxels * voxel_ml)
    assert rows["Total lesion load"]["lesion count"] >= 1
    assert rows["Grey matter"]["lesion count"] is None


def test_phantom_rejects_unknown_contrast(tmp_path, capsys):
    assert main(["phantom", "brain", "--out", str(tmp_path), "--contrasts", "t1,dwi"]) == EXIT_BAD_INPUT
    assert "dwi" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_phantom_needs_a_kind(capsys):
    assert main(["phantom", "--out", "x"]) == EXIT_BAD_INPUT
