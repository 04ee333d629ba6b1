"""Where a run writes: a temporary folder beside the destination, moved in only when the run succeeds.

Every command writes its files under :attr:`StagedOutputs.root`, a hidden folder created next to
the destination (same file system, so the final move is a rename). When the run ends without an
error, :meth:`StagedOutputs.commit` moves every file into the destination in one short step with
the cancel signals held back; on an error or a cancel (:class:`~spinebrain.errors.CancelledError`)
the temporary folder is removed and the destination is exactly as it was. Files that already exist
are never replaced unless the caller passes ``overwrite=True`` (the CLI's ``--overwrite``); the
checks run before any work (:func:`check_output_file`, :func:`check_output_folder`) and again at
the commit.

    with staged_outputs(out_dir, overwrite=args.overwrite, expected=["labels.mrk.json"]) as stage:
        write_markups(points, stage.path("labels.mrk.json"))
    final_paths = stage.committed
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Iterable
from pathlib import Path

from ..errors import InputError

NAME_MAX = 255  # bytes in one file name on the common file systems (ext4, APFS, NTFS)
_HOLD_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT") if hasattr(signal, name))


def check_name_length(path: Path, option: str = "--out") -> None:
    """InputError when ``path`` is empty, holds a NUL character, or one part is longer than a file system allows."""
    if not str(path).strip() or str(path) == ".":
        raise InputError(f"{option} is empty; give the name of the file or folder to write.")
    if "\x00" in str(path):
        raise InputError(f"{option} {str(path)!r} holds a NUL character, which no file name may; choose another name.")
    for part in Path(path).parts:
        if len(os.fsencode(part)) > NAME_MAX:
            raise InputError(f"The name {part[:40]}... in {option} is {len(os.fsencode(part))} bytes long, more than "
                             f"the {NAME_MAX} a file system allows; choose a shorter name.")


def check_output_file(path, overwrite: bool = False, suffix: str = "", option: str = "--out",
                      companions: Iterable = ()) -> Path:
    """Check an output file name before any work: not a folder, not existing (unless ``overwrite``), not too long.

    ``companions`` are the files written beside it (e.g. its ``.png``), checked the same way.
    """
    path = Path(path)
    check_name_length(path, option)
    if suffix and not path.name.lower().endswith(suffix):
        raise InputError(f"{option} {path} does not end in {suffix}; give a file name ending in {suffix}.")
    for target in (path, *(Path(c) for c in companions)):
        if target.is_dir():
            raise InputError(f"{option} {target} is an existing folder; give a file name that is not a folder, "
                             f"or remove the folder.")
        if target.exists() and not overwrite:
            raise InputError(f"{option}: {target} already exists; pass --overwrite to replace it, or choose another name.")
    _check_parent(path, option)
    return path


def check_output_folder(path, overwrite: bool = False, expected: Iterable[str] = (), option: str = "--out") -> Path:
    """Check an output folder before any work: not a file, and none of the ``expected`` names in it (unless ``overwrite``)."""
    path = Path(path)
    check_name_length(path, option)
    if path.exists() and not path.is_dir():
        raise InputError(f"{option} {path} is an existing file; give a folder for the results.")
    for name in expected:
        check_name_length(Path(name), option)
        if (path / name).exists() and not overwrite:
            raise InputError(f"{option} {path} already holds {name} from an earlier run; pass --overwrite to replace "
                             "it, or choose another folder.")
    _check_parent(path / "x", option)
    return path


def _check_parent(path: Path, option: str) -> None:
    ancestor = _existing_ancestor(path.parent)
    if not ancestor.is_dir():
        raise InputError(f"{option} {path} lies under {ancestor}, which is a file; choose a path in a folder.")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(f"{option} {path}: the folder {ancestor} is not writable; choose a folder you can write to.")


def _existing_ancestor(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


class StagedOutputs:
    """A run's files, written in a temporary folder and moved into ``destination`` by :meth:`commit`."""

    def __init__(self, destination, overwrite: bool = False):
        self.destination = Path(destination)
        self.overwrite = overwrite
        ancestor = _existing_ancestor(self.destination)
        try:
            self.root = Path(tempfile.mkdtemp(prefix=".spinebrain-", dir=ancestor))
        except OSError as error:
            raise InputError(f"Cannot write into {ancestor} ({error.strerror or error}); choose a folder you can "
                             "write to.") from None
        self.committed: list[Path] = []

    def path(self, relative) -> Path:
        """Where to write the file that ends up at ``destination / relative``."""
        return self.root / relative

    def final(self, staged) -> Path:
        """The destination path of a file written under :attr:`root`."""
        return self.destination / Path(staged).relative_to(self.root)

    def discard(self, relative) -> None:
        """Remove what was written under ``relative`` (a failed case's partial files)."""
        target = self.root / relative
        if target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        elif target.exists():
            target.unlink()

    def commit(self) -> list[Path]:
        """Move every staged file into the destination; refuse (moving nothing) if one would replace a file unasked."""
        staged = sorted(p for p in self.root.rglob("*") if p.is_file())
        for path in staged:
            final = self.final(path)
            if final.is_dir() or (final.exists() and not self.overwrite):
                what = "a folder" if final.is_dir() else "a file"
                raise InputError(f"{final} is already {what}; pass --overwrite to replace files, or choose another "
                                 "--out. Nothing was written.")
        with _signals_held():  # a cancel arriving now waits until every file is in place
            for path in staged:
                final = self.final(path)
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, final)
                self.committed.append(final)
        return self.committed

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def staged_outputs(destination, overwrite: bool = False):
    """Yield a :class:`StagedOutputs`; commit it when the block succeeds, remove it in every case."""
    stage = StagedOutputs(destination, overwrite)
    try:
        yield stage
        stage.commit()
    finally:
        stage.cleanup()


@contextlib.contextmanager
def _signals_held():
    if not hasattr(signal, "pthread_sigmask"):  # Windows: the commit is a few renames, the risk is small
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _HOLD_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
