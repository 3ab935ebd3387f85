"""A save's manifest: its text, and the checks that a manifest read from disk is well formed.

The manifest (``manifest.json``) is ``{"body": ..., "sha256": ...}``, the sha256 being
that of the body's canonical JSON. It is unkeyed: it detects corruption (a torn write,
a flipped bit), not tampering, since whoever edits a body can recompute it. What makes
loading an untrusted save safe is that nothing in it is executed, and that
:func:`parse` checks every entry of the body before anything is opened: the types
and keys, every path being a plain relative path inside the save, every tensor field
naming a listed file, every dtype being one of torch's. Anything else raises
:class:`CorruptSaveError`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

import torch

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "CorruptSaveError",
    "body_sha",
    "check_rel",
    "parse",
    "text",
    "torch_dtype",
]

FORMAT = "torchbuf"
FORMAT_VERSION = 2
OBJECT_FILES = {"data": ("objects.json", "objects.bin"), "pickle": ("objects.pkl",)}
"""The files that hold a save's infos, per encoding."""

_TORCH_DTYPES = {str(d): d for d in vars(torch).values() if isinstance(d, torch.dtype)}
_HEX64 = re.compile(r"[0-9a-f]{64}")
_PART = re.compile(r"[^/\\\0]+")


class CorruptSaveError(ValueError):
    """A save on disk does not match its manifest, or its manifest is malformed."""


def text(body: dict[str, Any]) -> str:
    """The manifest file's text for ``body``."""
    return json.dumps({"body": body, "sha256": body_sha(body)}, indent=1)


def body_sha(body: dict[str, Any]) -> str:
    """The sha256 of ``body``'s canonical JSON."""
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def parse(raw: bytes, where: str) -> dict[str, Any]:
    """The body of the manifest ``raw``, after checking all of it.

    Args:
        raw: The manifest file's bytes.
        where: The manifest's path, for error messages.

    Returns:
        The body: ``format``, ``format_version``, ``kind``, ``meta`` (a dict),
        ``tensordicts`` (``[{"key": [...], "batch_size": [...]}]``, the root first),
        ``fields`` (name to ``{"key", "file", "shape", "dtype"}``), ``objects``
        (``{"encoding": "data" | "pickle"}``) and ``files`` (path to
        ``{"bytes", "sha256"}``).

    Raises:
        CorruptSaveError: the manifest does not parse, does not match its sha256,
            is of another format or version, or an entry is malformed; the
            message names the entry.
    """
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as err:
        raise CorruptSaveError(f"{where}: unreadable manifest (truncated or corrupt): {err}") from err
    if not isinstance(doc, dict) or not isinstance(doc.get("body"), dict) or "sha256" not in doc:
        raise CorruptSaveError(f"{where}: unreadable manifest (no body and sha256)")
    body = doc["body"]
    if doc["sha256"] != body_sha(body):
        raise CorruptSaveError(f"{where}: manifest checksum mismatch (corrupt)")
    if body.get("format") != FORMAT or body.get("format_version") != FORMAT_VERSION:
        raise CorruptSaveError(
            f"{where}: format {body.get('format')!r} version {body.get('format_version')!r} "
            f"is not {FORMAT!r} version {FORMAT_VERSION}"
        )
    _Checker(where).body(body)
    return body


class _Checker:
    def __init__(self, where: str):
        self.where = where

    def fail(self, entry: str, what: str) -> CorruptSaveError:
        return CorruptSaveError(f"{self.where}: malformed manifest: {entry} {what}")

    def get(self, mapping: dict, key: str, kind: type | tuple[type, ...], entry: str) -> Any:
        if not isinstance(mapping, dict):
            raise self.fail(entry, f"is a {type(mapping).__name__}, not a mapping")
        if key not in mapping:
            raise self.fail(entry, f"has no {key!r}")
        value = mapping[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(f"{entry}[{key!r}]", f"is a {type(value).__name__}")
        return value

    def ints(self, value: Any, entry: str) -> list[int]:
        if not isinstance(value, list) or not all(type(n) is int and 0 <= n < 2**48 for n in value):
            raise self.fail(entry, f"is not a list of sizes: {value!r}")
        return value

    def key(self, value: Any, entry: str) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(p, str) and p for p in value):
            raise self.fail(entry, f"is not a key (a list of names): {value!r}")
        return value

    def body(self, body: dict) -> None:
        self.get(body, "kind", str, "body")
        self.get(body, "meta", dict, "body")
        files = self.get(body, "files", dict, "body")
        for rel, entry in files.items():
            check_rel(rel, self.where)
            self.get(entry, "bytes", int, f"files[{rel!r}]")
            sha = self.get(entry, "sha256", str, f"files[{rel!r}]")
            if entry["bytes"] < 0 or not _HEX64.fullmatch(sha):
                raise self.fail(f"files[{rel!r}]", "has a negative size or a malformed sha256")
        tds = self.tensordicts(self.get(body, "tensordicts", list, "body"))
        for name, entry in self.get(body, "fields", dict, "body").items():
            self.field(name, entry, files, tds)
        objects = self.get(body, "objects", dict, "body")
        encoding = self.get(objects, "encoding", str, "objects")
        if encoding not in OBJECT_FILES:
            raise self.fail("objects['encoding']", f"is {encoding!r}, not one of {sorted(OBJECT_FILES)}")
        for rel in OBJECT_FILES[encoding]:
            if rel not in files:
                raise self.fail("files", f"does not list {rel!r}")

    def tensordicts(self, entries: list) -> set[tuple[str, ...]]:
        keys: list[tuple[str, ...]] = []
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise self.fail(f"tensordicts[{i}]", "is not an object")
            at = f"tensordicts[{i}]"
            key = tuple(self.key(self.get(entry, "key", list, at), f"{at}['key']"))
            self.ints(self.get(entry, "batch_size", list, at), f"{at}['batch_size']")
            if (key[:-1] not in keys if key else i != 0) or key in keys:
                raise self.fail(f"tensordicts[{i}]", f"key {list(key)} repeats or comes before its parent")
            keys.append(key)
        if not keys:
            raise self.fail("tensordicts", "is empty")
        return set(keys)

    def field(self, name: str, entry: Any, files: dict, tds: set[tuple[str, ...]]) -> None:
        at = f"fields[{name!r}]"
        if not isinstance(entry, dict):
            raise self.fail(at, "is not an object")
        key = tuple(self.key(self.get(entry, "key", list, at), f"{at}['key']"))
        if "/".join(key) != name or key[:-1] not in tds or key in tds:
            raise self.fail(at, f"key {list(key)} does not name a field of the listed tensordicts")
        shape = self.ints(self.get(entry, "shape", list, at), f"{at}['shape']")
        if self.get(entry, "dtype", str, at) not in _TORCH_DTYPES:
            raise self.fail(f"{at}['dtype']", f"{entry['dtype']!r} is not a torch dtype")
        file = self.get(entry, "file", str, at)
        check_rel(file, self.where)
        if file not in files and math.prod(shape) > 0:
            raise self.fail(at, f"names the file {file!r}, which 'files' does not list (unhashed)")


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype named ``name`` (as ``str(dtype)`` writes it; checked by :func:`parse`)."""
    return _TORCH_DTYPES[name]


def check_rel(rel: Any, where: str) -> tuple[str, ...]:
    """The parts of ``rel``, a plain relative path inside the save.

    Raises:
        CorruptSaveError: ``rel`` is not a string, is absolute, or has an empty,
            ``.`` or ``..`` part or a backslash.
    """
    parts = tuple(rel.split("/")) if isinstance(rel, str) else ()
    if not parts or not all(_PART.fullmatch(p) and p not in (".", "..") for p in parts):
        raise CorruptSaveError(f"{where}: malformed manifest: the path {rel!r} does not stay inside the save")
    return parts
