"""Reading and writing images keeps geometry; DICOM folders with several series; atomic writes."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from spinebrain import RESEARCH_NOTICE, __version__
from spinebrain.errors import InputError
from spinebrain.geometry import array_from_image, same_grid
from spinebrain.io import atomic_path, list_dicom_series, load_volume, read_image, write_image
from spinebrain.resample import orientation_of, reorient


def oblique_volume(pixel_type=np.int16) -> sitk.Image:
    rng = np.random.default_rng(3)
    image = sitk.GetImageFromArray(rng.integers(-1000, 2000, size=(6, 9, 11)).astype(pixel_type))
    image.SetSpacing((0.68, 1.25, 3.3))
    image.SetOrigin((-101.3, 55.7, 812.25))
    image.SetDirection(Rotation.from_euler("xyz", [12, -7, 33], degrees=True).as_matrix().ravel())
    return image


def assert_same_geometry(a: sitk.Image, b: sitk.Image, atol: float) -> None:
    assert a.GetSize() == b.GetSize()
    assert np.allclose(a.GetSpacing(), b.GetSpacing(), atol=atol)
    assert np.allclose(a.GetOrigin(), b.GetOrigin(), atol=atol * 100)  # origins are ~100 mm
    assert np.allclose(a.GetDirection(), b.GetDirection(), atol=atol)


# ---------------------------------------------------------------------------- file formats


@pytest.mark.parametrize(
    "suffix, atol",
    [(".nrrd", 1e-9), (".mha", 1e-9), (".nii.gz", 1e-5), (".nii", 1e-5)],  # NIfTI stores float32
)
def test_round_trip_keeps_geometry_and_values(tmp_path, suffix, atol):
    image = oblique_volume()
    path = write_image(image, tmp_path / f"volume{suffix}")
    assert path.exists()
    back = read_image(path)
    assert_same_geometry(back, image, atol)
    assert same_grid(back, image, tolerance_mm=1e-3)
    assert back.GetPixelID() == image.GetPixelID()
    assert np.array_equal(array_from_image(back), array_from_image(image))


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_written_files_carry_the_notice_and_version(tmp_path, suffix):
    image = oblique_volume()
    image.SetMetaData("Caller", "kept")
    write_image(image, tmp_path / f"tagged{suffix}")
    back = read_image(tmp_path / f"tagged{suffix}")
    assert back.GetMetaData("SpineBrain_Notice") == RESEARCH_NOTICE
    assert back.GetMetaData("SpineBrain_Version") == __version__
    assert not image.HasMetaDataKey("SpineBrain_Notice")  # the caller's image is untouched


def test_write_image_is_atomic(tmp_path):
    target = tmp_path / "out" / "result.nrrd"
    write_image(oblique_volume(), target)
    before = target.read_bytes()

    with pytest.raises(InputError, match="Could not write result.unknownformat"):  # SimpleITK cannot write this suffix
        write_image(oblique_volume(), tmp_path / "out" / "result.unknownformat")
    with pytest.raises(KeyError), atomic_path(target) as temporary:
        temporary.write_bytes(b"half a file")
        raise KeyError("cancelled half-way")

    assert target.read_bytes() == before  # the earlier result survives
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["result.nrrd"]  # no leftovers


def test_atomic_path_moves_into_place(tmp_path):
    target = tmp_path / "new" / "table.csv"
    with atomic_path(target) as temporary:
        assert temporary.parent == target.parent and temporary != target
        temporary.write_text("a,b\n")
    assert target.read_text() == "a,b\n"
    assert [p.name for p in target.parent.iterdir()] == ["table.csv"]


# ---------------------------------------------------------------------------- DICOM


def write_dicom_series(folder, series_uid: str, size=(8, 6, 4), spacing=(0.8, 0.8, 2.5), origin=(10, -20, 30)):
    """Write a small axial CT-like series slice by slice with SimpleITK (the way a scanner export looks)."""
    folder.mkdir(parents=True, exist_ok=True)
    volume = sitk.GetImageFromArray(np.arange(np.prod(size[::-1]), dtype=np.int16).reshape(size[::-1]))
    volume.SetSpacing(spacing)
    volume.SetOrigin(origin)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(size[2]):
        slice_ = volume[:, :, k]
        position = volume.TransformIndexToPhysicalPoint((0, 0, k))
        tags = {
            "0008|0060": "CT",
            "0008|103e": f"series {series_uid[-1]}",
            "0020|000d": "1.2.826.0.1.3680043.2.1125.1",
            "0020|000e": series_uid,
            "0008|0018": f"{series_uid}.{k + 1}",
            "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{v:.4f}" for v in position),
            "0020|0037": "1\\0\\0\\0\\1\\0",
            "0018|0050": str(spacing[2]),
            "0028|0030": f"{spacing[1]}\\{spacing[0]}",
        }
        for tag, value in tags.items():
            slice_.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{series_uid}-{k:03d}.dcm"))
        writer.Execute(slice_)
    return volume


def test_folder_with_two_series_lists_both_and_reads_the_chosen_one(tmp_path):
    first = write_dicom_series(tmp_path / "dicom", "1.2.826.0.1.3680043.2.1125.11")
    second = write_dicom_series(tmp_path / "dicom", "1.2.826.0.1.3680043.2.1125.22", size=(5, 7, 3), origin=(0, 0, 0))

    series = list_dicom_series(tmp_path / "dicom")
    assert sorted(s.uid for s in series) == ["1.2.826.0.1.3680043.2.1125.11", "1.2.826.0.1.3680043.2.1125.22"]

    with pytest.raises(InputError) as error:
        read_image(tmp_path / "dicom")
    message = str(error.value)
    assert "2 DICOM series" in message and "--series" in message
    assert "1.2.826.0.1.3680043.2.1125.11" in message and "1.2.826.0.1.3680043.2.1125.22" in message
    assert "(4 files)" in message and "(3 files)" in message

    for uid, expected in [("1.2.826.0.1.3680043.2.1125.22", second), ("1.2.826.0.1.3680043.2.1125.11", first)]:
        image = read_image(tmp_path / "dicom", series_uid=uid)
        assert same_grid(image, expected, tolerance_mm=1e-3)
        assert np.array_equal(array_from_image(image), array_from_image(expected))

    with pytest.raises(InputError, match="not in"):
        read_image(tmp_path / "dicom", series_uid="9.9.9")


def test_folder_with_one_series_needs_no_choice(tmp_path):
    expected = write_dicom_series(tmp_path / "one", "1.2.826.0.1.3680043.2.1125.33")
    image = load_volume(tmp_path / "one")
    assert same_grid(image, expected, tolerance_mm=1e-3)


def test_folder_without_dicom(tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(InputError, match="No DICOM series"):
        read_image(tmp_path)


@pytest.mark.realdata
def test_real_dicom_series_matches_its_reference_segmentation(real_case):
    folder = real_case("A3_ts_example_ct_dicom/dicom")
    reference = sitk.ReadImage(str(real_case("A3_ts_example_ct_dicom/seg_total_v2.nii.gz")))

    ct = load_volume(folder, name="CT")
    assert ct.GetSize() == (512, 512, 20)
    assert np.allclose(ct.GetSpacing(), (0.977, 0.977, 2.0), atol=1e-3)
    assert len(list_dicom_series(folder)) == 1

    # The NIfTI holds the same voxels stored LAS (j flipped); on the DICOM's axis order the grids match.
    assert orientation_of(ct) == "LPS" and orientation_of(reference) == "LAS"
    labels = reorient(reference, orientation_of(ct))
    assert same_grid(ct, labels)
    # ... and the labels sit on the right anatomy: the vertebrae (T12 = 32, T11 = 33) are bone.
    hu, vertebrae = array_from_image(ct), np.isin(array_from_image(labels), [32, 33])
    assert vertebrae.sum() > 1000
    assert np.median(hu[vertebrae]) > 150 > np.median(hu[array_from_image(labels) == 0])


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".nrrd", ".mha"])
def test_truncated_file_is_refused_not_zero_filled(tmp_path, suffix):
    # ITK's NIfTI reader would silently fill a truncated file with zeros; read_image must refuse it.
    path = write_image(oblique_volume(np.float32), tmp_path / f"scan{suffix}", compress=False)
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
    with pytest.raises(InputError, match="damaged"):
        read_image(path)


def test_a_series_uid_with_a_single_file_is_refused_not_ignored(tmp_path):
    path = write_image(oblique_volume(), tmp_path / "scan.nii.gz")
    with pytest.raises(InputError, match=r"--series chooses one DICOM series in a folder.*scan\.nii\.gz"):
        read_image(path, series_uid="1.2.3")
    assert read_image(path).GetSize() == oblique_volume().GetSize()  # without --series it reads as before
