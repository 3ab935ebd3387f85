"""Atomic replacement of a file or directory: write aside, then rename into place.

A writer gets a temporary sibling of the target, named
``.<name>.tmp-<host>-<pid>-<random>``, writes into it, and on success renames it to
the target. A directory target that exists is first renamed aside
(``.<name>.old``), the new one renamed in, and the old one deleted; a file target
is replaced by one ``os.replace``. A writer that fails removes its temporary; a
writer that is killed cannot, so the next writer of the same target removes the
temporaries of writers that are gone: those named with this host and the id of a
process that no longer runs. Temporaries of live processes, of other hosts, or
named otherwise are left alone. One writer per target at a time.

A target that is a symbolic link is followed: the link's target is replaced (its
temporaries and the directory aside sit beside it) and the link is kept, pointing to
the new contents.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["aside_path", "remove_stale_temps", "replacing_dir", "replacing_file", "resolved"]


@contextlib.contextmanager
def replacing_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yields an empty temporary directory that replaces ``path`` when the block succeeds.

    Args:
        path: The directory to create or replace (its parent must exist), or a
            link to one (the link's target is replaced; the link is kept).

    Yields:
        The temporary directory, a sibling of ``path`` (of a link's target). If the block raises, it
        is removed and ``path`` is left as it was.

    Raises:
        OSError: the parent is missing or not writable, or ``path`` is a file
            (the error names ``path``).

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     with replacing_dir(f"{tmp}/out") as out:
        ...         _ = (out / "a.txt").write_text("hi")
        ...     (Path(tmp) / "out" / "a.txt").read_text()
        'hi'
    """
    path = resolved(path)
    if path.exists() and not path.is_dir():
        raise _named(FileExistsError(17, "exists and is not a directory"), path)
    tmp = _make_temp(path, directory=True)
    try:
        yield tmp
        _commit(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def replacing_file(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yields a temporary file path that replaces ``path`` when the block succeeds.

    The file is fsynced before the rename, and the directory after it.

    Args:
        path: The file to create or replace (its parent must exist), or a link
            to one (the link's target is replaced; the link is kept).

    Yields:
        The temporary file's path (the file exists, empty). If the block raises,
        it is removed and ``path`` is left as it was.

    Raises:
        OSError: the parent is missing or not writable, or ``path`` is a
            directory (the error names ``path``).
    """
    path = resolved(path)
    if path.is_dir():
        raise _named(IsADirectoryError(21, "is a directory"), path)
    tmp = _make_temp(path, directory=False)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def resolved(path: str | os.PathLike[str]) -> Path:
    """``path``, or where it leads if it is a symbolic link (a chain of them followed)."""
    return Path(os.path.realpath(path)) if os.path.islink(path) else Path(path)


def aside_path(path: Path) -> Path:
    """Where an existing directory waits while its replacement is renamed in."""
    return path.parent / f".{path.name}.old"


def remove_stale_temps(path: str | os.PathLike[str]) -> list[Path]:
    """Removes the temporaries that killed writers of ``path`` left behind.

    Only temporaries named with this host and the id of a process that no longer
    runs are removed (directories without following links, or files).

    Args:
        path: The target whose temporaries to clean.

    Returns:
        The paths removed.
    """
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".{_glob_escape(path.name)}.tmp-*"):
        if not _is_stale(tmp.name[len(path.name) + len("..tmp-") :]):
            continue
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def fsync_dir(directory: Path) -> None:
    """Flushes a directory's entries (renames, new files) to disk."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ------------------------------------------------------------------------- helpers
def _make_temp(path: Path, directory: bool) -> Path:
    prefix = f".{path.name}.tmp-{_host()}-{os.getpid()}-"
    try:
        remove_stale_temps(path)
        if directory:
            return Path(tempfile.mkdtemp(prefix=prefix, dir=path.parent))
        fd, name = tempfile.mkstemp(prefix=prefix, dir=path.parent)
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o644)  # mkstemp's 0600 is meant for secrets, not data
        os.close(fd)
        return Path(name)
    except OSError as err:
        raise _named(err, path) from err


def _named(err: OSError, path: Path) -> OSError:
    return type(err)(err.errno, f"cannot save to {path}: {err.strerror}", str(path))


def _commit(tmp: Path, path: Path) -> None:
    """Renames ``tmp`` to ``path``; an existing directory goes aside first, then away."""
    aside = aside_path(path)
    if os.path.lexists(aside) and path.exists():
        _remove(aside)  # left by a crash after an earlier commit: ``path`` is newer
    if path.exists():
        _move_aside(path, aside)
    _move_in(tmp, path)
    fsync_dir(path.parent)
    if os.path.lexists(aside):
        _remove(aside)


def _remove(path: Path) -> None:
    """Deletes a directory tree, or only the link where ``path`` is a link."""
    if path.is_symlink() or not path.is_dir():
        path.unlink()
    else:
        shutil.rmtree(path)


def _move_aside(path: Path, aside: Path) -> None:
    os.rename(path, aside)


def _move_in(tmp: Path, path: Path) -> None:
    os.rename(tmp, path)


def _host() -> str:
    """This host's name, without the characters that temporary names separate on."""
    return "".join(c if c.isalnum() or c in "_." else "_" for c in socket.gethostname()) or "host"


def _is_stale(suffix: str) -> bool:
    """Whether ``<host>-<pid>-<random>`` names a writer on this host that is gone."""
    parts = suffix.rsplit("-", 2)
    if len(parts) != 3 or parts[0] != _host() or not parts[1].isdigit():
        return False
    return not _process_runs(int(parts[1]))


def _process_runs(pid: int) -> bool:
    if os.name != "posix" or pid == os.getpid():
        return True  # no safe liveness check here: keep the temporary
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)
