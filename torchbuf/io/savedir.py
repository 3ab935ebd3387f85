"""Save directories: memory-mapped tensors, infos as data, a checked manifest.

A save is one directory::

    <path>/
        manifest.json   format version, kind, metadata; per file: size and sha256;
                        per tensor field: its key, file, shape and dtype; per
                        (nested) TensorDict: its batch size
        data/           ``TensorDict.memmap``: one raw ``.memmap`` file per leaf
                        tensor, ``meta.json`` per (nested) TensorDict
        objects.json    host objects (infos) as a JSON tree (:mod:`torchbuf.io.objects`)
        objects.bin     the bytes of the arrays and tensors in them
        objects.pkl     instead of the two: infos pickled, only where the caller
                        allowed it (``allow_pickle=True``)

Writes are atomic (:mod:`torchbuf.io.atomic`). Reads build the tensors from the
manifest alone (tensordict's ``meta.json`` files are hashed, never interpreted), and
read every file through one descriptor opened inside the save's directory, without
following links: what is hashed is what is mapped, and a save that a writer replaces
meanwhile is either read whole or read again. A file that is missing, truncated or
corrupt raises :class:`CorruptSaveError` naming it, never returning wrong data; a
pickled save raises :class:`UnsafeLoadError` unless ``allow_pickle=True``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import mmap
import os
import pickle
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase, is_tensor_collection

from torchbuf.io import atomic, manifest, objects
from torchbuf.io.manifest import OBJECT_FILES, CorruptSaveError

__all__ = ["CorruptSaveError", "UnsafeLoadError", "read", "write"]

MANIFEST = "manifest.json"
DATA = "data"
_CHUNK = 1 << 22
_RETRIES = 20
_FOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


class UnsafeLoadError(ValueError):
    """Loading a save would unpickle (run code from the file), and the caller did not allow it."""


# ------------------------------------------------------------------------- writing
def write(
    path: str | os.PathLike[str],
    kind: str,
    data: TensorDictBase,
    objects_: Any,
    meta: dict,
    allow_pickle: bool = False,
) -> None:
    """Writes a save atomically, replacing any save at ``path``.

    Args:
        path: The save directory to create or replace (a link to one: its target).
        kind: What the save holds (recorded in the manifest, checked by :func:`read`).
        data: The tensors (CPU or any device), saved with ``TensorDict.memmap``.
        objects_: Host objects (infos), saved as data (:mod:`torchbuf.io.objects`).
        meta: JSON-serialisable metadata for the manifest.
        allow_pickle: Pickle ``objects_`` where they are not data (a class
            instance, a function); loading them then needs ``allow_pickle=True``.

    Raises:
        objects.NotDataError: ``objects_`` are not data and ``allow_pickle`` is
            false; the message names the entry.
        OSError: the parent directory is missing or not writable (the error
            names ``path``).
    """
    blobs = _encode_objects(objects_, allow_pickle)
    with atomic.replacing_dir(path) as tmp:
        _write_contents(Path(tmp), kind, data, blobs, meta)


def _encode_objects(value: Any, allow_pickle: bool) -> dict[str, bytes]:
    try:
        tree, buffer = objects.encode(value)
    except objects.NotDataError:
        if not allow_pickle:
            raise
        return {OBJECT_FILES["pickle"][0]: pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)}
    json_file, bin_file = OBJECT_FILES["data"]
    return {json_file: json.dumps(tree).encode(), bin_file: buffer}


def _write_contents(tmp: Path, kind: str, data: TensorDictBase, blobs: dict[str, bytes], meta: dict) -> None:
    mapped = data.to("cpu").memmap(tmp / DATA)
    for name, raw in blobs.items():
        (tmp / name).write_bytes(raw)
    files = {_rel(tmp, p): _digest(p, sync=True) for p in sorted(tmp.rglob("*")) if p.is_file()}
    nested = [(k, v) for k, v in mapped.items(True, False) if is_tensor_collection(v)]
    tds: list[tuple[Any, Any]] = [((), mapped), *sorted(nested, key=lambda kv: len(_key(kv[0])))]
    leaves = mapped.items(True, True)
    body = {
        "format": manifest.FORMAT,
        "format_version": manifest.FORMAT_VERSION,
        "kind": kind,
        "meta": meta,
        "tensordicts": [{"key": list(_key(k)), "batch_size": list(td.batch_size)} for k, td in tds],
        "fields": {"/".join(_key(k)): _field_entry(tmp, k, leaf) for k, leaf in leaves},
        "objects": {"encoding": "pickle" if OBJECT_FILES["pickle"][0] in blobs else "data"},
        "files": files,
    }
    del mapped, tds, nested
    with open(tmp / MANIFEST, "w") as f:
        f.write(manifest.text(body))
        f.flush()
        os.fsync(f.fileno())
    for directory in sorted((p for p in tmp.rglob("*") if p.is_dir()), reverse=True):
        atomic.fsync_dir(directory)
    atomic.fsync_dir(tmp)


def _field_entry(root: Path, key: Any, leaf: Any) -> dict[str, Any]:
    return {
        "key": list(_key(key)),
        "file": _rel(root, Path(leaf.filename)),
        "shape": list(leaf.shape),
        "dtype": str(leaf.dtype),
    }


# ------------------------------------------------------------------------- reading
def read(
    path: str | os.PathLike[str], kind: str | None = None, verify: bool = True, allow_pickle: bool = False
) -> tuple[TensorDictBase, Any, dict[str, Any]]:
    """Reads a save after checking it against its manifest.

    Args:
        path: The save directory (or a link to one).
        kind: The kind expected, or ``None`` for any.
        verify: Check every file's sha256 (reads each file once). Sizes, shapes
            and dtypes are checked either way.
        allow_pickle: Unpickle the infos of a save that holds them pickled
            (this runs code from the file: only for saves you trust).

    Returns:
        A tuple ``(data, objects, manifest)`` of the tensors memory-mapped (lazy,
        zero-copy, on the CPU, copy-on-write: in-place writes do not reach the
        files), the infos, and the manifest's body.

    Raises:
        FileNotFoundError: no save at ``path``.
        CorruptSaveError: a file is missing, truncated or corrupt, or the manifest
            is malformed (the message names them), or writers replaced the save
            again and again while it was read.
        UnsafeLoadError: the save holds pickled infos and ``allow_pickle`` is false.
    """
    errors: list[Exception] = []
    for _ in range(_RETRIES):
        with _Snapshot.open(Path(path)) as snap:
            try:
                return _read(snap, kind, verify, allow_pickle)
            except CorruptSaveError as err:
                if not snap.replaced():
                    raise
                errors.append(err)  # a writer replaced the save meanwhile: read the new one
    raise CorruptSaveError(
        f"{path}: the save changed while it was read, {len(errors)} times in a row (a writer "
        f"is replacing it); the last read found: {errors[-1]}"
    )


def _read(snap: _Snapshot, kind: str | None, verify: bool, allow_pickle: bool) -> tuple[Any, Any, dict]:
    root = snap.root
    body = manifest.parse(snap.read_bytes(MANIFEST), str(root / MANIFEST))
    if kind is not None and body["kind"] != kind:
        raise CorruptSaveError(f"{root}: holds {body['kind']!r}, expected {kind!r}")
    encoding = body["objects"]["encoding"]
    if encoding == "pickle" and not allow_pickle:
        raise UnsafeLoadError(
            f"{root}: its infos are pickled ({OBJECT_FILES['pickle'][0]}), and unpickling runs code "
            "from the file; load it with allow_pickle=True only if you trust where it came from"
        )
    owners = {entry["file"]: name for name, entry in body["fields"].items()}
    with contextlib.ExitStack() as stack:
        fds = {}
        for rel, entry in body["files"].items():  # all opened first: a replaced save stays readable
            fds[rel] = stack.enter_context(snap.open_file(rel, entry, owners.get(rel)))
        if verify:
            for rel, fd in fds.items():
                if _sha(fd) != body["files"][rel]["sha256"]:
                    raise CorruptSaveError(f"{snap.what(rel, owners.get(rel))}: sha256 mismatch (corrupt)")
        data = _build(snap, body, fds)
        infos = _read_objects(snap, encoding, fds)
    return data, infos, body


def _build(snap: _Snapshot, body: dict, fds: dict[str, int]) -> TensorDictBase:
    """The TensorDict of the manifest's fields, each mapped from its file."""
    try:
        root = TensorDict({}, batch_size=body["tensordicts"][0]["batch_size"])
        for entry in body["tensordicts"][1:]:
            root[tuple(entry["key"])] = TensorDict({}, batch_size=entry["batch_size"])
    except (RuntimeError, ValueError, KeyError, TypeError) as err:
        raise CorruptSaveError(f"{snap.root / MANIFEST}: malformed manifest: tensordicts: {err}") from err
    for name, entry in body["fields"].items():
        what = snap.what(entry["file"], name)
        tensor = _map(fds.get(entry["file"]), manifest.torch_dtype(entry["dtype"]), entry["shape"], what)
        try:
            root[tuple(entry["key"])] = tensor
        except (RuntimeError, ValueError, KeyError, TypeError) as err:
            raise CorruptSaveError(f"{what}: does not fit its TensorDict: {err}") from err
    return root


def _map(fd: int | None, dtype: torch.dtype, shape: list[int], what: str) -> torch.Tensor:
    """The tensor in file ``fd``, mapped copy-on-write (lazy, zero-copy; writes stay in memory)."""
    count = math.prod(shape)
    if count == 0:
        return torch.empty(shape, dtype=dtype)
    assert fd is not None  # checked with the manifest: a non-empty field's file is listed
    size = os.fstat(fd).st_size
    if size != count * dtype.itemsize:
        raise CorruptSaveError(f"{what}: {size} bytes, its {dtype} {shape} needs {count * dtype.itemsize}")
    by_fd = f"/proc/self/fd/{fd}"  # this very file, wherever it was renamed; mapped without a kept fd
    if os.path.exists(by_fd):
        return torch.from_file(by_fd, shared=False, size=count, dtype=dtype).reshape(shape)
    mapped = mmap.mmap(fd, size, access=mmap.ACCESS_COPY)
    return torch.frombuffer(mapped, dtype=dtype, count=count).reshape(shape)


def _read_objects(snap: _Snapshot, encoding: str, fds: dict[str, int]) -> Any:
    if encoding == "pickle":
        return pickle.loads(_all_bytes(fds[OBJECT_FILES["pickle"][0]]))  # noqa: S301 (allow_pickle)
    json_file, bin_file = OBJECT_FILES["data"]
    try:
        tree = json.loads(_all_bytes(fds[json_file]))
        return objects.decode(tree, bytearray(_all_bytes(fds[bin_file])))
    except (ValueError, RecursionError) as err:  # objects.ObjectsError is a ValueError
        raise CorruptSaveError(f"{snap.what(json_file, None)}: malformed infos: {err}") from err


class _Snapshot:
    """A save directory held open: files opened through it come from that one directory."""

    def __init__(self, path: Path, root: Path, fd: int):
        self.path, self.root, self.fd = path, root, fd

    @classmethod
    @contextlib.contextmanager
    def open(cls, path: Path) -> Iterator[_Snapshot]:
        target = atomic.resolved(path)
        for root in (target, atomic.aside_path(target), target):  # a replacement may be midway
            try:
                fd = os.open(root, os.O_RDONLY | _DIRECTORY)
                break
            except (FileNotFoundError, NotADirectoryError):
                continue
        else:
            raise FileNotFoundError(2, "no torchbuf save here", str(path))
        try:
            yield cls(path, root, fd)
        finally:
            os.close(fd)

    def replaced(self) -> bool:
        """Whether a writer replaced the save while it was read (the directory read is not its save)."""
        target = atomic.resolved(self.path)
        if self.root == target:
            return not self._names_this(target)
        return os.path.lexists(target) or not self._names_this(self.root)  # read aside, mid-replacement

    def _names_this(self, path: Path) -> bool:
        try:
            now, here = os.stat(path), os.fstat(self.fd)
        except OSError:
            return False
        return (now.st_dev, now.st_ino) == (here.st_dev, here.st_ino)

    def what(self, rel: str, field: str | None) -> str:
        return f"{self.root / rel}" + (f" (field {field!r})" if field else "")

    @contextlib.contextmanager
    def open_file(self, rel: str, entry: dict[str, Any], field: str | None) -> Iterator[int]:
        """A descriptor of the save's file ``rel`` (no link followed), after checking its size."""
        what = self.what(rel, field)
        try:
            fd = self._open(rel)
        except OSError as err:
            raise CorruptSaveError(f"{what}: missing ({err.strerror}; links are not followed)") from err
        try:
            size = os.fstat(fd).st_size
            if size != entry["bytes"]:
                raise CorruptSaveError(
                    f"{what}: {size} bytes, the manifest says {entry['bytes']} (truncated or overwritten)"
                )
            yield fd
        finally:
            os.close(fd)

    def _open(self, rel: str) -> int:
        parts = manifest.check_rel(rel, str(self.root / MANIFEST))
        fd = self.fd
        for part in parts[:-1]:
            inner = os.open(part, os.O_RDONLY | _DIRECTORY | _FOLLOW, dir_fd=fd)
            if fd != self.fd:
                os.close(fd)
            fd = inner
        try:
            out = os.open(parts[-1], os.O_RDONLY | _FOLLOW, dir_fd=fd)
        finally:
            if fd != self.fd:
                os.close(fd)
        if not _is_file(out):
            os.close(out)
            raise IsADirectoryError(21, "not a regular file")
        return out

    def read_bytes(self, rel: str) -> bytes:
        try:
            fd = self._open(rel)
        except OSError as err:
            raise CorruptSaveError(
                f"{self.root / rel}: missing (not a torchbuf save, or an unfinished one)"
            ) from err
        try:
            return _all_bytes(fd)
        finally:
            os.close(fd)


# ------------------------------------------------------------------------- helpers
def _is_file(fd: int) -> bool:
    return stat.S_ISREG(os.fstat(fd).st_mode)


def _all_bytes(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    chunks, at = [], 0
    while at < size:
        chunk = os.pread(fd, min(_CHUNK, size - at), at)
        if not chunk:
            break
        chunks.append(chunk)
        at += len(chunk)
    return b"".join(chunks)


def _sha(fd: int) -> str:
    sha, at = hashlib.sha256(), 0
    while chunk := os.pread(fd, _CHUNK, at):
        sha.update(chunk)
        at += len(chunk)
    return sha.hexdigest()


def _digest(file: Path, sync: bool = False) -> dict[str, Any]:
    """Size and sha256 of ``file``; with ``sync``, fsynced to disk too."""
    sha = hashlib.sha256()
    with open(file, "rb") as f:
        while chunk := f.read(_CHUNK):
            sha.update(chunk)
        if sync:
            os.fsync(f.fileno())
        size = f.tell()
    return {"bytes": size, "sha256": sha.hexdigest()}


def _rel(root: Path, file: Path) -> str:
    return file.resolve().relative_to(root.resolve()).as_posix()


def _key(key: Any) -> tuple[str, ...]:
    return key if isinstance(key, tuple) else (key,)
