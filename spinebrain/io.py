"""Reading and writing images (NIfTI, NRRD, MHA, DICOM series) without losing geometry.

SimpleITK does the format work; this module adds what users need around it: DICOM folders
with several series, clear errors for missing or unreadable files, and atomic writes so a
failed or cancelled run never leaves a half-written result behind.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import struct
import tempfile
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from . import RESEARCH_NOTICE, __version__
from .errors import InputError, InputTypeError
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
    with _itk_warnings_hidden():  # GDCM prints a raw "No Series were found" warning for non-DICOM folders
        for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(folder) or ():
            files = tuple(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, uid))
            series.append(DicomSeries(uid, _series_description(files[0]), files))
    return series


@contextlib.contextmanager
def _itk_warnings_hidden():
    """ITK's warnings are C++ text on stderr; the checks here say what matters in a sentence instead."""
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)


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
    path = _checked_path(path)
    if not path.exists():
        raise InputError(f"File not found: {path}. Check the path (and that the drive is mounted) and run again.")
    if path.is_dir():
        return _read_dicom_folder(path, series_uid)
    if series_uid:  # silently reading the file would hide that the series asked for was not used
        raise InputError(f"--series chooses one DICOM series in a folder, but {path.name} is a single image file; "
                         "drop --series, or give the folder that holds the series.")
    prefetched = _prefetched.pop(path.resolve(), None)
    return prefetched.result() if prefetched is not None else _read_file(path)


def _read_file(path: Path) -> sitk.Image:
    try:
        with _itk_warnings_hidden():
            _check_declared_size(path)
            # the file checks decompress the file a second time: alongside ITK's read (both release the GIL),
            # which halves the reading time of a large .nii.gz
            with ThreadPoolExecutor(max_workers=1) as pool:
                checked = pool.submit(_check_nifti_file, path)
                image = sitk.ReadImage(str(path))
                checked.result()
        return image
    except RuntimeError as error:
        detail = _first_line(error).replace(f' for "{path}"', "")  # the path is already in the message
        raise InputError(
            f"Could not read {path} as an image ({detail}): the file is damaged or not an image; "
            "re-export it as NIfTI, NRRD, MHA or a DICOM folder and run again."
        ) from None


#: Image files being read ahead (:func:`prefetch_image`), by resolved path.
_prefetched: dict[Path, Future] = {}


def prefetch_image(path: str | os.PathLike) -> None:
    """Start reading one image file on a thread; the next :func:`read_image` of that file takes the result (the
    image, or the error it would have raised).

    Why: the command line's cold start. ITK's reader and the file checks let the interpreter go, so the scan is
    read while torch and MONAI import (:mod:`spinebrain.startup`). The reading imports no module, so it cannot
    meet the import half-way. A folder (DICOM) is left to be read when asked.
    """
    path = Path(path)
    if not path.is_file() or path.resolve() in _prefetched:
        return
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spinebrain-read-ahead")
    _prefetched[path.resolve()] = pool.submit(_read_file, path)
    pool.shutdown(wait=False)


#: A header declaring more voxels than this is refused before ITK tries to allocate them (a CT of
#: 512 x 512 x 3000 has 0.8 billion).
MAX_VOXELS = 2_000_000_000


def _check_declared_size(path: Path) -> None:
    """Refuse a header whose sizes no scan has (a hostile or broken header) before memory is allocated for it."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()  # RuntimeError for unreadable files, reported like any read error
    voxels = int(np.prod(reader.GetSize(), dtype=np.float64))
    if voxels > MAX_VOXELS:
        size = " x ".join(str(n) for n in reader.GetSize())
        raise InputError(f"The image {path.name} declares {size} voxels, more than the {MAX_VOXELS:,} this software "
                         "reads; check the file header, or crop the scan.")


def _check_nifti_file(path: Path) -> None:
    """Raise InputError (RuntimeError when cut short) for what ITK's NIfTI reader lets through without a word.

    * a truncated file (an interrupted copy or download): ITK fills the missing part with zeros;
    * NaN or infinite voxels: ITK reads them as 0, so the check reads the voxel bytes itself;
    * no geometry: voxel size 0 with neither a qform nor an sform, which ITK reads as 1 mm.
    """
    name = path.name.lower()
    if not name.endswith((".nii", ".nii.gz")):
        return
    if name.endswith(".nii"):
        data = path.read_bytes()
    else:
        try:
            with gzip.open(path, "rb") as stream:
                data = stream.read()
        except (OSError, EOFError, zlib.error):
            raise RuntimeError("cut short: the compressed data ends early") from None
    header = _nifti_header(data[:540])
    if header is None:
        return
    needed = header["offset"] + int(np.prod(header["dims"], dtype=np.int64)) * header["bitpix"] // 8
    if len(data) < needed:
        raise RuntimeError(f"cut short: {len(data)} of the {needed} bytes its header announces")
    spacing = header["pixdim"][: min(3, len(header["dims"]))]
    if header["qform"] == 0 and header["sform"] == 0 and not all(np.isfinite(v) and v > 0 for v in spacing):
        raise InputError(f"The image {path.name} has no geometry (voxel size 0, neither qform nor sform), so its "
                         "voxel size and orientation are unknown; re-export the scan with its geometry.")
    dtype = _NIFTI_FLOAT_TYPES.get(header["datatype"])
    if dtype is not None:
        voxels = np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder(header["order"]), offset=header["offset"],
                               count=int(np.prod(header["dims"], dtype=np.int64)))
        bad = int(np.count_nonzero(~np.isfinite(voxels)))
        if bad:
            raise InputError(f"The image {path.name} contains {bad} NaN or infinite voxels; replace them (e.g. with "
                             "0) or re-export the scan, and run again.")


_NIFTI_FLOAT_TYPES = {16: "f4", 64: "f8"}  # NIfTI datatype codes of float32 and float64


def _nifti_header(header: bytes) -> dict | None:
    """The fields the checks need from a NIfTI-1 or NIfTI-2 header (None when unrecognised)."""
    for order in "<>":
        def read(fmt, start, order=order):
            return struct.unpack(order + fmt, header[start : start + struct.calcsize(order + fmt)])

        if len(header) >= 348 and read("i", 0)[0] == 348:  # NIfTI-1
            dims, datatype, bitpix = read("8h", 40), read("h", 70)[0], read("h", 72)[0]
            pixdim, offset, qform, sform = read("8f", 76), int(read("f", 108)[0]), *read("2h", 252)
            break
        if len(header) >= 540 and read("i", 0)[0] == 540:  # NIfTI-2
            datatype, bitpix, dims = read("h", 12)[0], read("h", 14)[0], read("8q", 16)
            pixdim, offset, qform, sform = read("8d", 104), read("q", 168)[0], *read("2i", 344)
            break
    else:
        return None
    if not 1 <= dims[0] <= 7:
        return None
    return {"order": order, "dims": dims[1 : dims[0] + 1], "datatype": datatype, "bitpix": bitpix,
            "pixdim": pixdim[1:4], "offset": offset, "qform": qform, "sform": sform}


def _checked_path(path) -> Path:
    if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        kind = "an empty name" if isinstance(path, str) else "None" if path is None else type(path).__name__
        raise InputTypeError(f"An image path is needed, not {kind}; give the path of a NIfTI, NRRD or MHA file or "
                             "of a DICOM folder.")
    if "\x00" in str(path):
        raise InputError(f"The image path {str(path)!r} holds a NUL character; give the path of an image file.")
    return Path(path)


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
    return check_volume(read_image(path, series_uid), f"{name} {_checked_path(path).name}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; move it into place only if the block succeeds.

    A failure or cancel inside the block removes the temporary file and leaves any existing
    file at ``path`` untouched.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name.split('.')[0][:24]}-", suffix=_short_suffix(path),
                                             dir=path.parent)  # short: a long file name must not overflow NAME_MAX
    except OSError as error:
        raise InputError(f"Cannot write {path.name} into {path.parent} ({error.strerror or error}); choose a folder "
                         "you can write to.") from None
    os.close(handle)
    try:
        yield Path(temporary)
        os.chmod(temporary, _default_file_mode())  # mkstemp creates 0600; results should read like any file
        os.replace(temporary, path)
    except OSError as error:  # a full disk or a folder that went away: a sentence, not a traceback
        raise InputError(f"Could not write {path.name} into {path.parent} ({error.strerror or error}); free some "
                         "space or choose another folder, then run again.") from None
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _short_suffix(path: Path) -> str:
    """The suffix writers dispatch on (``.nii.gz``, ``.seg.nrrd``, ``.mrk.json``...), at most 16 characters."""
    suffixes = path.suffixes[-2:]
    suffix = "".join(suffixes) if len("".join(suffixes)) <= 16 else path.suffix
    return suffix[:16] if suffix else ".tmp"


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
        try:
            sitk.WriteImage(image, str(temporary), compress)
        except RuntimeError as error:  # ITK's text is several lines of C++ context: keep its last line
            detail = _first_line(error).replace(f' for "{temporary}"', "").replace(str(temporary), path.name)
            raise InputError(f"Could not write {path.name} ({detail}); check the file name and that "
                             "the folder has space, then run again.") from None
    return path


def _first_line(error: Exception) -> str:
    """The most specific line of a SimpleITK error, without ITK's or teem's prefixes (``sitk::ERROR:``, ``[nrrd]``)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    line = lines[-1].removeprefix("sitk::ERROR:").strip()
    return re.sub(r"^(\[\w+\]\s*\w+:\s*)+", "", line)  # teem names its function: "[nrrd] _nrrdRead...: "
