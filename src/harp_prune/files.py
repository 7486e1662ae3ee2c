"""Output files: checked before any work starts, written atomically, OS errors turned into one-line HarpErrors.

Every file harp-prune writes goes to a temporary name beside its target and is renamed over it only once
complete, so a full disk, a missing permission or an interrupt never leaves a half-written file behind.
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harp_prune.errors import HarpError

TEMP_SUFFIX = ".tmp"

_NO_SPACE = "free some disk space or write somewhere else"
_NO_PERMISSION = "check its permissions or choose another path"
_FIXES = {
    errno.ENOSPC: _NO_SPACE,
    errno.EDQUOT: _NO_SPACE,
    errno.EFBIG: _NO_SPACE,
    errno.EACCES: _NO_PERMISSION,
    errno.EPERM: _NO_PERMISSION,
    errno.EROFS: "the file system is read-only; choose another path",
    errno.EISDIR: "that is a folder; give a file path",
    errno.ENOTDIR: "a regular file is in the way of that path; choose another path",
    errno.EEXIST: "a file of that name is in the way; remove it or choose another path",
    errno.ENOENT: "check that the path exists",
    errno.ENAMETOOLONG: "choose a shorter path",
}


def describe_os_error(error: OSError, path: str | os.PathLike[str] | None = None) -> str:
    """``<path>: <reason>; <fix>`` for an OSError, the fix chosen by its errno."""
    where = path if path is not None else error.filename
    reason = error.strerror or str(error)
    fix = _FIXES.get(error.errno, "check the path and the disk")
    return f"{where}: {reason}; {fix}" if where is not None else f"{reason}; {fix}"


def _nearest_existing(path: Path) -> Path:
    """``path`` itself or its nearest ancestor that exists (the current folder at worst)."""
    return next((candidate for candidate in (path, *path.parents) if candidate.exists()), Path.cwd())


def check_output_dir(path: str | os.PathLike[str], what: str = "output folder") -> Path:
    """Fail now, not after the work, when files cannot be written in ``path``: a file is in its way, or the
    folder it would be created in is not writable. Nothing is created: a command that fails before its work
    leaves no folder behind; the writers create it (``atomic_output``)."""
    path = Path(path)
    existing = _nearest_existing(path)
    if not existing.is_dir():
        raise HarpError(f"{what} {path} cannot be created: {existing} is a file, not a folder; "
                        "choose another path or remove that file")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == path else f" ({existing} is not)"
        raise HarpError(f"{what} {path} is not writable{where}; {_NO_PERMISSION}")
    return path


def check_output_file(path: str | os.PathLike[str], what: str = "output file") -> Path:
    """Fail now, not after the work, when ``path`` cannot be written (a folder, or in an unwritable place)."""
    path = Path(path)
    if path.is_dir():
        raise HarpError(f"{what} {path} is a folder; give a file path")
    check_output_dir(path.parent, f"folder of the {what}")
    return path


@contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer; renamed over ``path`` when the block completes.

    On any failure the temporary file is removed and ``path`` is left as it was; an OSError (disk full,
    permissions, ...) is raised as a one-line HarpError.
    """
    path = Path(path)
    # not mkstemp: writers that take a path create the file themselves, with the user's umask
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        with open(tmp, "rb+") as written:  # on disk before the rename, so a crash leaves the old or the new file
            os.fsync(written.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise HarpError(f"cannot write {describe_os_error(exc, path)}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike[str], data: str | bytes | memoryview) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically."""
    path = Path(path)
    with atomic_output(path) as tmp, open(tmp, "xb") as stream:
        stream.write(data.encode() if isinstance(data, str) else data)
    return path
