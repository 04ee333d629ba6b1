"""Reading and writing images (NIfTI, NRRD, MHA, DICOM series) without losing geometry.

SimpleITK does the format work; this module adds what users need around it: DICOM folders
with several series, clear errors for missing or unreadable files, and atomic writes so a
failed or cancelled run never leaves a half-written result behind.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from . import RESEARCH_NOTICE, __version__
from .errors import InputError
from .validate import check_volume

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm")


@dataclass(frozen=True)
class DicomSeries:
    uid: str
    description: str
    files: tuple[str, ...]

    def summary(self) -> str:
        uid = self.uid or "(no series UID)"  # anonymisers sometimes blank it
        return f"{uid}  ({len(self.files)} files)  {self.description}".rstrip()


def list_dicom_series(folder: str | os.PathLike) -> list[DicomSeries]:
    """All DICOM series found directly in ``folder``, with their file lists."""
    folder = str(folder)
    series = []
    for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(folder) or ():
        files = tuple(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, uid))
        series.append(DicomSeries(uid, _series_description(files[0]), files))
    return series


def _series_description(first_file: str) -> str:
    reader = sitk.ImageFileReader()
    reader.SetFileName(first_file)
    try:
        reader.ReadImageInformation()
        parts = [reader.GetMetaData(tag).strip() for tag in ("0008|0060", "0008|103e") if reader.HasMetaDataKey(tag)]
        return " ".join(p for p in parts if p)
    except RuntimeError:
        return ""


def read_image(path: str | os.PathLike, series_uid: str | None = None) -> sitk.Image:
    """Read an image file, or one DICOM series from a folder, keeping spacing/origin/direction.

    A folder holding several series needs ``series_uid`` (the error lists the choices).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"File not found: {path}. Check the path (and that the drive is mounted) and run again.")
    if path.is_dir():
        return _read_dicom_folder(path, series_uid)
    try:
        image = sitk.ReadImage(str(path))
        _check_nifti_complete(path)
        return image
    except RuntimeError as error:
        detail = _first_line(error).replace(f' for "{path}"', "")  # the path is already in the message
        raise InputError(
            f"Could not read {path} as an image ({detail}): the file is damaged or not an image; "
            "re-export it as NIfTI, NRRD, MHA or a DICOM folder and run again."
        ) from None


def _check_nifti_complete(path: Path) -> None:
    """Raise RuntimeError when a NIfTI file holds fewer voxel bytes than its header promises.

    ITK's NIfTI reader silently fills the missing part of a truncated file (an interrupted
    copy or download) with zeros, which would give a half-empty scan without a word.
    """
    name = path.name.lower()
    if not name.endswith((".nii", ".nii.gz")):
        return
    if name.endswith(".nii"):
        with open(path, "rb") as stream:
            header = stream.read(540)
        length = path.stat().st_size
    else:
        try:
            with gzip.open(path, "rb") as stream:
                header = stream.read(540)
                length = len(header) + sum(len(chunk) for chunk in iter(lambda: stream.read(1 << 22), b""))
        except (OSError, EOFError, zlib.error):
            raise RuntimeError("cut short: the compressed data ends early") from None
    needed = _nifti_bytes_needed(header)
    if needed is not None and length < needed:
        raise RuntimeError(f"cut short: {length} of the {needed} bytes its header announces")


def _nifti_bytes_needed(header: bytes) -> int | None:
    """Header size + voxel data size from a NIfTI-1 or NIfTI-2 header (None when unrecognised)."""
    for order in "<>":
        if len(header) >= 348 and struct.unpack(order + "i", header[:4])[0] == 348:  # NIfTI-1
            dims = struct.unpack(order + "8h", header[40:56])
            bitpix = struct.unpack(order + "h", header[72:74])[0]
            offset = int(struct.unpack(order + "f", header[108:112])[0])
            break
        if len(header) >= 540 and struct.unpack(order + "i", header[:4])[0] == 540:  # NIfTI-2
            bitpix = struct.unpack(order + "h", header[14:16])[0]
            dims = struct.unpack(order + "8q", header[16:80])
            offset = struct.unpack(order + "q", header[168:176])[0]
            break
    else:
        return None
    if not 1 <= dims[0] <= 7:
        return None
    return offset + int(np.prod(dims[1 : dims[0] + 1], dtype=np.int64)) * bitpix // 8


def _read_dicom_folder(folder: Path, series_uid: str | None) -> sitk.Image:
    series = list_dicom_series(folder)
    if not series:
        raise InputError(f"No DICOM series found in folder {folder}; point to a folder of DICOM files or an image file.")
    if series_uid is None and len(series) > 1:
        choices = "\n  ".join(s.summary() for s in series)
        raise InputError(
            f"The folder {folder} holds {len(series)} DICOM series; choose one with --series UID:\n  {choices}"
        )
    chosen = [s for s in series if series_uid in (None, s.uid)]
    if not chosen:
        raise InputError(f"DICOM series {series_uid} is not in {folder}; available: {', '.join(s.uid for s in series)}")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(list(chosen[0].files))
    try:
        return reader.Execute()
    except RuntimeError as error:
        raise InputError(f"Could not read DICOM series in {folder} ({_first_line(error)}).") from None


def load_volume(path: str | os.PathLike, series_uid: str | None = None, name: str = "input image") -> sitk.Image:
    """Read and validate a 3D scalar volume (see :func:`spinebrain.validate.check_volume`)."""
    return check_volume(read_image(path, series_uid), f"{name} {Path(path).name}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; move it into place only if the block succeeds.

    A failure or cancel inside the block removes the temporary file and leaves any existing
    file at ``path`` untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes) or ".tmp"
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name.split('.')[0]}-", suffix=suffix, dir=path.parent)
    os.close(handle)
    try:
        yield Path(temporary)
        os.chmod(temporary, _default_file_mode())  # mkstemp creates 0600; results should read like any file
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _default_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_image(image: sitk.Image, path: str | os.PathLike, compress: bool = True) -> Path:
    """Write ``image`` atomically, tagging it with the software version and the research notice."""
    path = Path(path)
    image = sitk.Image(image)  # shallow copy so the caller's metadata is untouched
    image.SetMetaData("SpineBrain_Notice", RESEARCH_NOTICE)
    image.SetMetaData("SpineBrain_Version", __version__)
    with atomic_path(path) as temporary:
        sitk.WriteImage(image, str(temporary), compress)
    return path


def _first_line(error: Exception) -> str:
    """The most specific line of a SimpleITK error, without its 'sitk::ERROR:' prefix."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1].removeprefix("sitk::ERROR:").strip() if lines else type(error).__name__
