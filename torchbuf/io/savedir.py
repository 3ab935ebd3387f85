"""Save directories: memory-mapped tensors, a pickled side file, a checked manifest.

A save is one directory::

    <path>/
        manifest.json   format version, kind, metadata; per file: size and sha256;
                        per tensor field: its file, shape and dtype
        data/           ``TensorDict.memmap``: one raw ``.memmap`` file per leaf
                        tensor, ``meta.json`` per (nested) TensorDict
        objects.pkl     host objects (infos), pickled

Writes are atomic (:mod:`torchbuf.io.atomic`): everything goes into a sibling
temporary directory (``.<name>.tmp-*``), every file and directory is fsynced, and
the directory is renamed into place. An existing save is first renamed aside
(``.<name>.old``), the new one renamed in, and the old one deleted; a crash between
the two renames leaves the old save aside, where :func:`read` finds it. The next
save to the same path removes what a killed writer left. Reads check the manifest before
mapping any tensor, so a truncated, corrupt or missing file raises
:class:`CorruptSaveError` naming it, never returning wrong data.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import pickle
from pathlib import Path
from typing import Any

from tensordict import TensorDict, TensorDictBase

from torchbuf.io import atomic

FORMAT = "torchbuf"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DATA = "data"
OBJECTS = "objects.pkl"
_CHUNK = 1 << 22


class CorruptSaveError(ValueError):
    """A save on disk does not match its manifest (truncated, corrupt or missing file)."""


# ------------------------------------------------------------------------- writing
def write(path: str | os.PathLike[str], kind: str, data: TensorDictBase, objects: Any, meta: dict) -> None:
    """Writes a save atomically, replacing any save at ``path``.

    Args:
        path: The save directory to create or replace.
        kind: What the save holds (recorded in the manifest, checked by :func:`read`).
        data: The tensors (CPU or any device), saved with ``TensorDict.memmap``.
        objects: Host objects, pickled into ``objects.pkl``.
        meta: JSON-serialisable metadata for the manifest.

    Raises:
        OSError: the parent directory is missing or not writable (the error
            names ``path``).
    """
    with atomic.replacing_dir(path) as tmp:
        _write_contents(Path(tmp), kind, data, objects, meta)


def _write_contents(tmp: Path, kind: str, data: TensorDictBase, objects: Any, meta: dict) -> None:
    mapped = data.to("cpu").memmap(tmp / DATA)
    with open(tmp / OBJECTS, "wb") as f:
        pickle.dump(objects, f, protocol=pickle.HIGHEST_PROTOCOL)
    files = {_rel(tmp, p): _digest(p, sync=True) for p in sorted(tmp.rglob("*")) if p.is_file()}
    fields = {_field_name(key): _field_entry(tmp, leaf) for key, leaf in mapped.items(True, True)}
    del mapped
    body = {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": kind, "meta": meta}
    body.update(fields=fields, files=files)
    text = json.dumps({"body": body, "sha256": _text_sha(body)}, indent=1)
    with open(tmp / MANIFEST, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    for directory in sorted((p for p in tmp.rglob("*") if p.is_dir()), reverse=True):
        atomic.fsync_dir(directory)
    atomic.fsync_dir(tmp)


def _field_entry(root: Path, leaf: Any) -> dict[str, Any]:
    return {
        "file": _rel(root, Path(leaf.filename)),
        "shape": list(leaf.shape),
        "dtype": str(leaf.dtype),
    }


# ------------------------------------------------------------------------- reading
def read(
    path: str | os.PathLike[str], kind: str | None = None, verify: bool = True
) -> tuple[TensorDictBase, Any, dict[str, Any]]:
    """Reads a save after checking it against its manifest.

    Args:
        path: The save directory.
        kind: The kind expected, or ``None`` for any.
        verify: Check every file's sha256 (reads each file once). Sizes, shapes
            and dtypes are checked either way.

    Returns:
        A tuple ``(data, objects, manifest)`` of the tensors memory-mapped (lazy, zero-copy,
        on the CPU; in-place writes do not reach the files where tensordict maps
        them copy-on-write), the unpickled objects, and the manifest's body.

    Raises:
        FileNotFoundError: no save at ``path``.
        CorruptSaveError: a file is missing, truncated or corrupt, or a field's
            shape or dtype disagrees with the manifest (the message names them).
    """
    root = _existing(Path(path))
    body = _manifest(root)
    if kind is not None and body["kind"] != kind:
        raise CorruptSaveError(f"{root}: holds {body['kind']!r}, expected {kind!r}")
    owners = {entry["file"]: name for name, entry in body["fields"].items()}
    for rel, entry in body["files"].items():
        _check_file(root, rel, entry, owners.get(rel), verify)
    data = _load_data(root)
    _check_fields(root, data, body["fields"])
    with open(root / OBJECTS, "rb") as f:
        objects = pickle.load(f)  # noqa: S301 (checked against the manifest above)
    return data, objects, body


def _existing(path: Path) -> Path:
    if path.is_dir():
        return path
    aside = atomic.aside_path(path)
    if aside.is_dir():
        return aside  # a crash interrupted a replacement: the previous save is intact
    raise FileNotFoundError(2, "no torchbuf save here", str(path))


def _manifest(root: Path) -> dict[str, Any]:
    file = root / MANIFEST
    try:
        doc = json.loads(file.read_text())
        body = doc["body"]
        ok = doc["sha256"] == _text_sha(body)
    except FileNotFoundError as err:
        raise CorruptSaveError(f"{file}: missing (not a torchbuf save, or an unfinished one)") from err
    except (ValueError, KeyError, TypeError) as err:
        raise CorruptSaveError(f"{file}: unreadable manifest (truncated or corrupt): {err}") from err
    if not ok:
        raise CorruptSaveError(f"{file}: manifest checksum mismatch (corrupt)")
    if body.get("format") != FORMAT or int(body.get("format_version", 0)) > FORMAT_VERSION:
        raise CorruptSaveError(
            f"{file}: format {body.get('format')!r} version {body.get('format_version')!r} "
            f"is not {FORMAT!r} version <= {FORMAT_VERSION}"
        )
    return body


def _check_file(root: Path, rel: str, entry: dict[str, Any], field: str | None, verify: bool) -> None:
    file = root / rel
    what = f"{file}" + (f" (field {field!r})" if field else "")
    if not file.is_file():
        raise CorruptSaveError(f"{what}: missing")
    size = file.stat().st_size
    if size != entry["bytes"]:
        raise CorruptSaveError(
            f"{what}: {size} bytes, the manifest says {entry['bytes']} (truncated or overwritten)"
        )
    if verify and _digest(file)["sha256"] != entry["sha256"]:
        raise CorruptSaveError(f"{what}: sha256 mismatch (corrupt)")


def _load_data(root: Path) -> TensorDictBase:
    # Copy-on-write maps where tensordict offers them: writes to loaded tensors stay in memory.
    copy_on_write = "mode" in inspect.signature(TensorDict.load_memmap).parameters
    kwargs: dict[str, Any] = {"mode": "r"} if copy_on_write else {}
    try:
        return TensorDict.load_memmap(root / DATA, **kwargs)
    except Exception as err:
        raise CorruptSaveError(f"{root / DATA}: tensordict could not load it: {err}") from err


def _check_fields(root: Path, data: TensorDictBase, fields: dict[str, Any]) -> None:
    found = {_field_name(key): leaf for key, leaf in data.items(True, True)}
    if set(found) != set(fields):
        missing, extra = sorted(set(fields) - set(found)), sorted(set(found) - set(fields))
        raise CorruptSaveError(
            f"{root / DATA}: fields differ from the manifest: missing {missing}, extra {extra}"
        )
    for name, entry in fields.items():
        leaf = found[name]
        if list(leaf.shape) != entry["shape"] or str(leaf.dtype) != entry["dtype"]:
            raise CorruptSaveError(
                f"{root / entry['file']} (field {name!r}): {leaf.dtype} {list(leaf.shape)}, "
                f"the manifest says {entry['dtype']} {entry['shape']}"
            )


# ------------------------------------------------------------------------- helpers
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


def _text_sha(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _rel(root: Path, file: Path) -> str:
    return file.resolve().relative_to(root.resolve()).as_posix()


def _field_name(key: Any) -> str:
    return "/".join(key) if isinstance(key, tuple) else str(key)
