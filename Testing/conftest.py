"""Shared pytest fixtures: real cases from ../shared/data and a real MRML scene (slicer-core)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the module folders (SpineLabel/, ...) import like Slicer would


def real_data_dir() -> Path:
    """Folder of the real cases: $SPINEBRAIN_TEST_DATA, else ../shared/data beside the repository."""
    return Path(os.environ.get("SPINEBRAIN_TEST_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    folder = real_data_dir()
    if not folder.is_dir():
        pytest.skip(f"real cases not found at {folder} (set SPINEBRAIN_TEST_DATA)")
    return folder


@pytest.fixture
def real_case(data_dir):
    """Return a function giving the path of one file of a real case, skipping if it is missing."""

    def _path(relative: str) -> Path:
        path = data_dir / relative
        if not path.exists():
            pytest.skip(f"real case file missing: {path}")
        return path

    return _path


@pytest.fixture
def scene():
    """A fresh real MRML scene from the slicer-core wheel (skipped where the wheel is unavailable)."""
    slicer = pytest.importorskip("slicer", reason="slicer-core wheel not installed (Linux x86_64 only)")
    mrml_scene = slicer.vtkMRMLScene()
    yield mrml_scene
    mrml_scene.Clear(True)


@pytest.fixture(scope="session")
def spine_label_models():
    """The installed SpineLabel models (every region), skipping where none is installed."""
    from spinebrain.errors import ModelError
    from spinebrain.spinelabel.pipeline import load_spine_label_models

    try:
        return load_spine_label_models("auto")
    except ModelError as error:
        pytest.skip(f"no spine-label model installed: {error}")


@pytest.fixture(scope="session")
def lumbar_ct_phantom(tmp_path_factory) -> Path:
    """A generated lumbar CT (seed 3) as an NRRD file, made once per session (generation takes seconds)."""
    import SimpleITK as sitk

    from spinebrain.synth.spine import generate_spine

    case = generate_spine(3, modality="ct", view="lumbar", orientation="sagittal")
    path = tmp_path_factory.mktemp("phantom") / "ct_lumbar.nrrd"
    sitk.WriteImage(case.image, str(path))
    return path
