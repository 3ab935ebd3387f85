"""Saves from untrusted sources: crafted pickles, crafted manifests, links, concurrent writers.

The manifest's sha256 is unkeyed, so every crafted save here is re-signed the way an
attacker would: each file's size and sha256 and the body's sha256 recomputed
(``_resign``, written independently of torchbuf's own code).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensordict import TensorDict

from torchbuf import BufferingWrapper, TrajectoryWithRew, TransitionsWithRew, io
from torchbuf.io import CorruptSaveError


# ------------------------------------------------------------------ crafting
def _batch(n=6, value=1.0):
    flags = torch.zeros(n, dtype=torch.bool)
    obs = torch.full((n, 3), value)
    return TransitionsWithRew(
        obs=obs, acts=torch.zeros(n, dtype=torch.long), next_obs=obs + 1, dones=flags,
        terminated=flags, truncated=flags, rews=torch.full((n,), value),
        infos=np.array([{"i": i, "v": value} for i in range(n)]), batch_size=[n],
    )  # fmt: skip


def _digest(file):
    raw = Path(file).read_bytes()
    return {"bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}


def _resign(save, edit=None):
    """Rewrites ``save``'s manifest as a forger would: ``edit(body)``, then every listed
    file's size and sha256, then the body's sha256 (unkeyed: anyone can recompute it)."""
    doc = json.loads((save / "manifest.json").read_text())
    body = doc["body"]
    if edit is not None:
        edit(body)
    for rel in body.get("files", {}) if isinstance(body.get("files"), dict) else []:
        if (save / rel).is_file():
            body["files"][rel] = _digest(save / rel)
    doc["sha256"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    (save / "manifest.json").write_text(json.dumps(doc))


class _Payload:
    """Unpickling this creates ``marker``: what a crafted pickle's ``__reduce__`` runs."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _plant_pickle(save, marker):
    """Makes ``save`` hold a malicious pickle as its infos, re-signed."""
    (save / "objects.pkl").write_bytes(pickle.dumps(_Payload(marker)))

    def edit(body):
        body.setdefault("objects", {})["encoding"] = "pickle"
        body["files"]["objects.pkl"] = {}

    _resign(save, edit)


def _error_of(load):
    """What ``load()`` raised (``None`` if nothing): checked after the marker is."""
    try:
        load()
    except Exception as err:  # noqa: BLE001 (the test asserts which, after the marker)
        return err
    return None


# ------------------------------------------------------------------ item 5: pickles
def test_a_crafted_pickle_in_a_save_is_refused_and_never_run(tmp_path):
    save, marker = tmp_path / "s", tmp_path / "ran"
    io.save(save, _batch())
    _plant_pickle(save, marker)
    errors = [_error_of(lambda: io.load(save)), _error_of(lambda: io.load(save, verify=False))]
    assert not marker.exists(), "loading ran code from the save"
    for err in errors:
        assert type(err).__name__ == "UnsafeLoadError", repr(err)
        assert "objects.pkl" in str(err) and "allow_pickle=True" in str(err)


def test_allow_pickle_loads_a_pickled_save_and_runs_what_it_holds(tmp_path):
    """allow_pickle=True is the caller saying 'I trust this file': it does unpickle."""
    save, marker = tmp_path / "s", tmp_path / "ran"
    io.save(save, _batch())
    _plant_pickle(save, marker)
    with pytest.raises(CorruptSaveError):  # the payload is no infos array: refused after unpickling
        io.load(save, allow_pickle=True)
    assert marker.exists()


def test_a_crafted_pickle_in_a_checkpoint_is_refused_and_never_run(tmp_path):
    import gymnasium as gym
    from stable_baselines3.common.vec_env import DummyVecEnv

    make = lambda: BufferingWrapper(DummyVecEnv([lambda: gym.make("CartPole-v1")] * 2))  # noqa: E731
    venv = make()
    venv.reset()
    venv.step(np.zeros(2, dtype=np.int64))
    save, marker = tmp_path / "ck", tmp_path / "ran"
    io.save_checkpoint(save, venv)
    _plant_pickle(save, marker)
    err = _error_of(lambda: io.load_checkpoint(save, make()))
    assert not marker.exists(), "loading ran code from the checkpoint"
    assert type(err).__name__ == "UnsafeLoadError" and "allow_pickle=True" in str(err), repr(err)


def test_a_pickle_left_unlisted_in_a_save_is_never_read(tmp_path):
    """A default save's infos are data (objects.json / objects.bin): an objects.pkl beside
    them, not named by the manifest, is never opened."""
    save, marker = tmp_path / "s", tmp_path / "ran"
    io.save(save, _batch())
    (save / "objects.pkl").write_bytes(pickle.dumps(_Payload(marker)))
    assert list(io.load(save).infos) == list(_batch().infos)
    assert not marker.exists()


def test_a_pickle_planted_as_tensordict_data_is_never_read(tmp_path):
    """tensordict's load_memmap unpickles ``other.pickle`` of a non-tensor entry (with a
    FutureWarning only); torchbuf builds the tensors from its manifest and never calls it."""
    save, marker = tmp_path / "s", tmp_path / "ran"
    io.save(save, _batch())
    td = TensorDict({"x": torch.zeros(6)}, batch_size=[6])
    td.set_non_tensor("note", _Point(1))  # not JSON: tensordict pickles it
    td.memmap(tmp_path / "other")
    planted = next((tmp_path / "other").rglob("other.pickle"), None)
    if planted is None:
        pytest.skip("this tensordict writes non-tensor data without pickle")
    (planted).write_bytes(pickle.dumps(_Payload(marker)))
    for part in (tmp_path / "other").iterdir():
        os.rename(part, save / "data" / f"planted_{part.name}")
    _resign(save)
    io.load(save)
    assert not marker.exists()


def test_infos_that_are_not_data_need_allow_pickle_to_save(tmp_path):
    batch = _batch()
    batch.infos[2] = {"obj": _Payload(tmp_path / "x")}
    with pytest.raises(
        io.NotDataError, match=r"infos\[2\]\['obj'\]: a (tests\.)?test_io_safety\._Payload is not data"
    ):
        io.save(tmp_path / "s", batch)
    assert not (tmp_path / "s").exists()


class _Point:
    def __init__(self, x):
        self.x = x

    def __eq__(self, other):
        return isinstance(other, _Point) and other.x == self.x


def test_infos_saved_with_allow_pickle_load_only_with_allow_pickle(tmp_path):
    batch = _batch()
    batch.infos[1] = {"p": _Point(3)}
    io.save(tmp_path / "s", batch, allow_pickle=True)
    with pytest.raises(io.UnsafeLoadError, match="allow_pickle=True"):
        io.load(tmp_path / "s")
    assert io.load(tmp_path / "s", allow_pickle=True).infos[1] == {"p": _Point(3)}


def test_infos_of_every_data_type_round_trip_without_pickle(tmp_path):
    odd = {
        1: (np.float32(1.5), np.bool_(True), np.int8(-3)),
        "arr": np.arange(6, dtype=np.uint16).reshape(2, 3)[:, ::2],
        "t": torch.arange(4, dtype=torch.bfloat16),
        "t0": torch.tensor(7),
        "s": {1, 2},
        "f": frozenset({"a"}),
        "b": b"\x00\xff",
        "c": 1 + 2j,
        "nan": float("nan"),
        "inf": -float("inf"),
        "txt": np.array(["ab", "c"]),
        "$": None,
        "nested": [[], {}, np.empty((0, 2))],
        "objs": np.array([{"a": 1}, None], dtype=object),
    }
    batch = _batch(2)
    batch.infos[0] = odd
    io.save(tmp_path / "s", batch)
    assert not (tmp_path / "s" / "objects.pkl").exists()
    back = io.load(tmp_path / "s").infos[0]
    assert back.keys() == odd.keys()
    for key, value in odd.items():
        got = back[key]
        assert type(got) is type(value), key
        if isinstance(value, np.ndarray) and value.dtype != object:
            assert got.dtype == value.dtype and np.array_equal(got, value), key
        elif isinstance(value, torch.Tensor):
            assert got.dtype == value.dtype and torch.equal(got, value), key
        elif key == "nan":
            assert got != got
        elif key == "nested":
            assert got[:2] == [[], {}] and got[2].shape == (0, 2)
        elif key == "objs":
            assert list(got) == list(value)
        else:
            assert got == value and [type(v) for v in np.atleast_1d(got)] == [
                type(v) for v in np.atleast_1d(value)
            ], key


# ------------------------------------------------------------------ item 6: links
def test_saving_through_a_link_replaces_its_target_and_keeps_the_link(tmp_path):
    """The link is followed: the directory it points to is replaced atomically, the
    link kept; nothing is left aside, and a later save works the same way."""
    target, link = tmp_path / "runs" / "save", tmp_path / "latest"
    target.parent.mkdir()
    io.save(target, _batch(3, value=1.0))
    link.symlink_to(target, target_is_directory=True)
    io.save(link, _batch(4, value=2.0))  # the first save through the link
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert len(io.load(target)) == 4 and len(io.load(link)) == 4
    io.save(link, _batch(5, value=3.0))  # and every later one
    loaded = io.load(link)
    assert len(loaded) == 5 and bool((loaded.rews == 3.0).all())
    assert link.is_symlink() and sorted(p.name for p in tmp_path.iterdir()) == ["latest", "runs"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["save"]


def test_saving_through_a_dangling_link_creates_its_target(tmp_path):
    target, link = tmp_path / "save", tmp_path / "latest"
    link.symlink_to(target, target_is_directory=True)
    io.save(link, _batch(3))
    assert link.is_symlink() and target.is_dir() and len(io.load(link)) == 3


# ------------------------------------------------------------------ item 11: a replacing writer
WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from torchbuf import io
    from tests.test_io_safety import _batch

    path, n, started = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    saves = [_batch(400, value=1.0), _batch(400, value=2.0)]
    for i in range(n):
        io.save(path, saves[i % 2])
        started.touch()
    """
)


def test_a_reader_never_sees_a_mix_of_two_saves_while_a_writer_replaces_them(tmp_path):
    """A writer process replaces the save again and again (two contents of one shape);
    each load in the meantime returns one whole save, never a CorruptSaveError."""
    path, started = tmp_path / "s", tmp_path / "started"
    io.save(path, _batch(400, value=1.0))
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), "400", str(started)], env=env)
    loads = seen_during = 0
    try:
        while writer.poll() is None or loads < 50:
            loaded = io.load(path)
            value = float(loaded.rews[0])
            assert value in (1.0, 2.0)
            assert bool((loaded.rews == value).all()) and bool((loaded.obs == value).all())
            assert all(info["v"] == value for info in loaded.infos), "infos of one save, tensors of another"
            loads += 1
            seen_during += writer.poll() is None and started.exists()
    finally:
        writer.kill()
        writer.wait()
    assert seen_during > 20, "the loads overlapped the writer's saves"


# ------------------------------------------------------------------ item 12: crafted manifests
def test_a_field_file_that_the_manifest_does_not_list_is_refused(tmp_path):
    """Unlisted means unhashed: its contents could be anything."""
    save = tmp_path / "s"
    io.save(save, _batch(value=1.0))
    (save / "data" / "rews.memmap").write_bytes(torch.full((6,), 9.0).numpy().tobytes())
    _resign(save, lambda body: body["files"].pop("data/rews.memmap"))
    with pytest.raises(CorruptSaveError, match=r"rews.*which 'files' does not list"):
        io.load(save)


@pytest.mark.parametrize(
    "where", ["files", "field", "absolute"], ids=["files-entry", "field-file", "absolute-path"]
)
def test_a_path_outside_the_save_is_refused(tmp_path, where):
    save = tmp_path / "s"
    io.save(save, _batch())
    outside = tmp_path / "secret.memmap"
    outside.write_bytes(torch.full((6,), 5.0).numpy().tobytes())
    rel = str(outside) if where == "absolute" else "../secret.memmap"

    def edit(body):
        body["files"][rel] = _digest(outside)
        if where != "files":
            body["fields"]["rews"]["file"] = rel

    _resign(save, edit)
    with pytest.raises(CorruptSaveError, match="does not stay inside the save"):
        io.load(save)


def test_a_link_inside_a_save_is_not_followed(tmp_path):
    save = tmp_path / "s"
    io.save(save, _batch(value=1.0))
    outside = tmp_path / "secret.memmap"
    outside.write_bytes(torch.full((6,), 5.0).numpy().tobytes())
    (save / "data" / "rews.memmap").unlink()
    (save / "data" / "rews.memmap").symlink_to(outside)
    _resign(save)
    with pytest.raises(
        CorruptSaveError, match=r"rews\.memmap \(field 'rews'\): missing.*links are not followed"
    ):
        io.load(save)


def _trajs():
    n = 3
    return [
        TrajectoryWithRew(
            obs=TensorDict({"a": torch.randn(n + 1, 2)}, batch_size=[n + 1]),
            acts=torch.zeros(n, dtype=torch.long),
            rews=torch.ones(n),
            terminated=torch.zeros(n, dtype=torch.bool),
            truncated=torch.tensor([False, False, True]),
            infos=np.array([{"k": 1}] * n),
            terminal=True,
            batch_size=[],
        )
    ] * 2


def _paths(value, prefix=()):
    """Every path into a JSON value (dict keys and list indices)."""
    yield prefix
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, inner in items:
        yield from _paths(inner, (*prefix, key))


JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 2**70), st.floats(), st.text(max_size=5),
    st.lists(st.integers(-2, 3), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)  # fmt: skip


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("pristine")
    io.save(root / "transitions", _batch())
    io.save(root / "trajectories", _trajs())
    return root


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), kind=st.sampled_from(["transitions", "trajectories"]))
def test_a_malformed_manifest_body_raises_corrupt_save_error(pristine, tmp_path_factory, data, kind):
    """Any entry of a (re-signed) body deleted or replaced by junk: the load either
    returns or raises CorruptSaveError, never AttributeError / KeyError / TypeError / ..."""
    save = tmp_path_factory.mktemp("fuzz") / kind
    os.system(f"cp -r {pristine / kind} {save}")  # noqa: S605 (test paths)
    body = json.loads((save / "manifest.json").read_text())["body"]
    paths = [p for p in _paths(body) if p]
    path = data.draw(st.sampled_from(sorted(paths, key=str)))
    delete = data.draw(st.booleans()) and isinstance(_at(body, path[:-1]), dict)
    junk = None if delete else data.draw(JUNK)

    def edit(b):
        parent = _at(b, path[:-1])
        if delete:
            del parent[path[-1]]
        else:
            parent[path[-1]] = copy.deepcopy(junk)

    _resign(save, edit)
    with contextlib.suppress(CorruptSaveError):
        io.load(save)


def _at(value, path):
    for key in path:
        value = value[key]
    return value
