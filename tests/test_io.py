"""Save/load of batches and trajectories, buffer checkpoints, and faults on disk."""

from __future__ import annotations

import copy
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stable_baselines3.common.vec_env import DummyVecEnv
from tensordict import TensorDict, TensorDictBase

from tests.helpers import ACT_SPACES, OBS_SPACES, ScheduleEnv, assert_obs_equal, stack_obs
from torchbuf import (
    BufferingWrapper,
    Trajectory,
    TrajectoryWithRew,
    Transitions,
    TransitionsWithRew,
    io,
)
from torchbuf.data.convert import obs_to_tensors
from torchbuf.io import atomic, manifest, savedir
from torchbuf.io.savedir import CorruptSaveError
from torchbuf.wrappers.vector import VectorBufferingWrapper

CPU = torch.device("cpu")
GYM1 = not gym.__version__.startswith("0.")
SLOW = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------ comparisons
def same(a, b):
    """Exact equality of tensors, TensorDicts, arrays and (nested) Python containers."""
    if isinstance(a, torch.Tensor | TensorDictBase):
        assert_obs_equal(a, b)
        return True
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray):
        if a.dtype == object:
            return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
        return a.dtype == np.asarray(b).dtype and np.array_equal(a, b)
    return type(a) is type(b) and a == b


def assert_batches_equal(a, b):
    assert type(a) is type(b)
    names = ["obs", "acts", "terminated", "truncated"]
    names += ["next_obs", "dones"] if isinstance(a, Transitions) else []
    names += ["rews"] if isinstance(a, TransitionsWithRew | TrajectoryWithRew) else []
    for name in names:
        assert_obs_equal(getattr(a, name), getattr(b, name))
    if isinstance(a, Trajectory):
        assert a.terminal == b.terminal
    assert (a.infos is None) == (b.infos is None)
    assert a.infos is None or same(np.asarray(a.infos, dtype=object), np.asarray(b.infos, dtype=object))


def assert_pops_equal(got, expected):
    assert len(got) == len(expected)
    for x, y in zip(got, expected):
        if isinstance(x, str) or isinstance(y, str):
            assert x == y
        elif isinstance(x, Transitions):
            assert_batches_equal(x, y)
        else:
            (tx, lx), (ty, ly) = x, y
            assert lx == ly and len(tx) == len(ty)
            for a, b in zip(tx, ty):
                assert_batches_equal(a, b)


# ------------------------------------------------------------------ batches
def _samples(space, n, seed):
    space = copy.deepcopy(space)
    space.seed(seed)
    return obs_to_tensors(stack_obs([space.sample() for _ in range(n + 1)]), n + 1, CPU)[:n]


def _infos(draw, n):
    items = st.dictionaries(st.sampled_from(["t", "ok", "name"]), st.integers() | st.booleans() | st.text())
    return draw(
        st.none() | st.lists(items, min_size=n, max_size=n).map(lambda xs: np.array(xs + [None])[:-1])
    )


@st.composite
def transitions(draw):
    n = draw(st.integers(0, 6))
    obs_space, act_space = OBS_SPACES[draw(st.sampled_from(sorted(OBS_SPACES)))], ACT_SPACES["box"]
    seed = draw(st.integers(0, 100))
    terminated = torch.tensor(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=torch.bool)
    truncated = torch.tensor(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=torch.bool)
    fields = dict(
        obs=_samples(obs_space, n, seed),
        acts=_samples(act_space, n, seed + 1),
        next_obs=_samples(obs_space, n, seed + 2),
        dones=terminated | truncated,
        terminated=terminated,
        truncated=truncated,
        infos=_infos(draw, n),
        batch_size=[n],
    )
    if draw(st.booleans()):
        return Transitions(**fields)
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    return TransitionsWithRew(**fields, rews=torch.arange(n, dtype=dtype) / 3)


@st.composite
def trajectories(draw):
    obs_space = OBS_SPACES[draw(st.sampled_from(sorted(OBS_SPACES)))]
    act_space = ACT_SPACES[draw(st.sampled_from(sorted(ACT_SPACES)))]
    with_rew = draw(st.booleans())
    out = []
    for i, n in enumerate(draw(st.lists(st.integers(0, 5), max_size=4))):
        flags = draw(st.lists(st.booleans(), min_size=2 * n, max_size=2 * n))
        fields = dict(
            obs=_samples(obs_space, n + 1, 10 * i),
            acts=_samples(act_space, n, 10 * i + 1),
            terminated=torch.tensor(flags[:n], dtype=torch.bool),
            truncated=torch.tensor(flags[n:], dtype=torch.bool),
            infos=_infos(draw, n),
            terminal=draw(st.booleans()),
            batch_size=[],
        )
        out.append(TrajectoryWithRew(**fields, rews=torch.rand(n)) if with_rew else Trajectory(**fields))
    return out


@SLOW
@given(batch=transitions())
def test_transitions_round_trip_exactly(batch):
    with tempfile.TemporaryDirectory() as tmp:
        io.save(f"{tmp}/t", batch)
        assert_batches_equal(io.load(f"{tmp}/t"), batch)


@SLOW
@given(trajs=trajectories())
def test_trajectories_round_trip_exactly(trajs):
    with tempfile.TemporaryDirectory() as tmp:
        io.save(f"{tmp}/t", trajs)
        loaded = io.load(f"{tmp}/t")
        assert isinstance(loaded, list) and len(loaded) == len(trajs)
        for a, b in zip(loaded, trajs):
            assert_batches_equal(a, b)


def test_popped_trajectories_are_stored_as_one_file_per_field(tmp_path):
    venv = BufferingWrapper(_sb3_env("dict", "discrete", [([2, 3], [False, True])] * 2))
    venv.reset()
    for _ in range(9):
        venv.step(np.zeros(2, dtype=np.int64))
    trajs, _ = venv.pop_trajectories()
    io.save(tmp_path / "t", trajs)
    memmaps = sorted(p.relative_to(tmp_path / "t").as_posix() for p in tmp_path.rglob("*.memmap"))
    assert memmaps == [
        "data/index/lengths.memmap",
        "data/index/terminal.memmap",
        "data/obs/img.memmap",
        "data/obs/pos.memmap",
        "data/steps/acts.memmap",
        "data/steps/rews.memmap",
        "data/steps/terminated.memmap",
        "data/steps/truncated.memmap",
    ]
    loaded = io.load(tmp_path / "t")
    assert len(loaded) == len(trajs) > 2
    for a, b in zip(loaded, trajs):
        assert_batches_equal(a, b)


def _mapped_file(tensor):
    """The file that ``tensor``'s memory is a mapping of (from /proc/self/maps), or ``None``."""
    ptr = tensor.data_ptr()
    for line in Path("/proc/self/maps").read_text().splitlines():
        span, *_, name = line.split(maxsplit=5) if len(line.split()) > 5 else (line.split()[0], "")
        lo, hi = (int(x, 16) for x in span.split("-"))
        if lo <= ptr < hi:
            return name or None
    return None


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux's /proc/self/maps")
def test_load_is_memory_mapped_and_writes_do_not_reach_the_file(tmp_path):
    batch = _big_batch(100, value=1.0)
    io.save(tmp_path / "t", batch)
    loaded = io.load(tmp_path / "t")
    assert _mapped_file(loaded.obs) == str(tmp_path / "t" / "data" / "obs.memmap")
    loaded.obs.zero_()
    assert bool((io.load(tmp_path / "t").obs == 1.0).all())


def test_save_rejects_other_objects(tmp_path):
    with pytest.raises(TypeError, match="Transitions or a sequence"):
        io.save(tmp_path / "x", {"obs": torch.zeros(2)})


# ------------------------------------------------------------------ checkpoints
def _sb3_env(obs_key, act_key, schedules, seed=0):
    fns = [
        (
            lambda lens=lens, trunc=trunc, i=i: ScheduleEnv(
                copy.deepcopy(OBS_SPACES[obs_key]), ACT_SPACES[act_key], lens, trunc, seed + i
            )
        )
        for i, (lens, trunc) in enumerate(schedules)
    ]
    return DummyVecEnv(fns)


def _vec_env(obs_key, act_key, schedules, mode):
    fns = [
        (
            lambda lens=lens, trunc=trunc, i=i: ScheduleEnv(
                copy.deepcopy(OBS_SPACES[obs_key]), ACT_SPACES[act_key], lens, trunc, i
            )
        )
        for i, (lens, trunc) in enumerate(schedules)
    ]
    if GYM1:
        return gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode(mode))
    return gym.vector.SyncVectorEnv(fns)


def _pop(wrapper, kind):
    if kind == "transitions":
        return wrapper.pop_transitions() if wrapper.n_unpopped else "empty"
    return wrapper.pop_finished_trajectories() if kind == "finished" else wrapper.pop_trajectories()


def _run(wrapper, actions, pops, steps, step=None):
    """Steps ``wrapper`` through ``actions[steps]``, popping at the scheduled steps."""
    out = []
    for t in steps:
        (step or wrapper.step)(actions[t])
        out += [_pop(wrapper, kind) for when, kind in pops if when == t]
    return out


def _final_pops(wrapper):
    return [_pop(wrapper, kind) for kind in ("finished", "trajectories", "transitions")]


schedule = st.tuples(
    st.lists(st.integers(1, 5), min_size=1, max_size=3), st.lists(st.booleans(), min_size=3, max_size=3)
)
pop_plan = st.lists(
    st.tuples(st.integers(0, 20), st.sampled_from(["transitions", "trajectories", "finished"]))
)


def _actions(act_key, n_envs, n_steps):
    space = copy.deepcopy(ACT_SPACES[act_key])
    space.seed(0)
    return [np.stack([space.sample() for _ in range(n_envs)]) for _ in range(n_steps)]


@SLOW
@given(
    obs_key=st.sampled_from(sorted(k for k in OBS_SPACES if k != "nested")),  # SB3 rejects nested dicts
    schedules=st.lists(schedule, min_size=1, max_size=3),
    pops=pop_plan,
    n_before=st.integers(0, 12),
    n_after=st.integers(1, 10),
    capacity=st.sampled_from([4, 64]),
)
def test_sb3_checkpoint_resumes_as_an_uninterrupted_run(
    obs_key, schedules, pops, n_before, n_after, capacity
):
    schedules = [(lens, trunc[: len(lens)]) for lens, trunc in schedules]
    actions = _actions("multidiscrete", len(schedules), n_before + n_after)
    make = lambda: BufferingWrapper(_sb3_env(obs_key, "multidiscrete", schedules), capacity=capacity)  # noqa: E731
    whole = make()
    whole.reset()
    expected = _run(whole, actions, pops, range(n_before + n_after)) + _final_pops(whole)

    first = make()
    first.reset()
    got = _run(first, actions, pops, range(n_before))
    with tempfile.TemporaryDirectory() as tmp:
        io.save_checkpoint(f"{tmp}/ck", first)
        resumed = make()
        resumed.venv.reset()  # restore the env: replay it from its seed, outside the buffer
        for t in range(n_before):
            resumed.venv.step(actions[t])
        io.load_checkpoint(f"{tmp}/ck", resumed)
    assert resumed.n_transitions == first.n_transitions and resumed.n_unpopped == first.n_unpopped
    got += _run(resumed, actions, pops, range(n_before, n_before + n_after)) + _final_pops(resumed)
    assert_pops_equal(got, expected)


@SLOW
@given(
    mode=st.sampled_from(["NextStep", "SameStep"] if GYM1 else ["SameStep"]),
    obs_key=st.sampled_from(["nested", "image", "discrete"]),
    schedules=st.lists(schedule, min_size=1, max_size=3),
    pops=pop_plan,
    n_before=st.integers(0, 12),
    n_after=st.integers(1, 10),
)
def test_vector_checkpoint_resumes_as_an_uninterrupted_run(mode, obs_key, schedules, pops, n_before, n_after):
    schedules = [(lens, trunc[: len(lens)]) for lens, trunc in schedules]
    actions = _actions("discrete", len(schedules), n_before + n_after)
    make = lambda: VectorBufferingWrapper(_vec_env(obs_key, "discrete", schedules, mode), capacity=4)  # noqa: E731
    whole = make()
    whole.reset(seed=1)
    expected = _run(whole, actions, pops, range(n_before + n_after)) + _final_pops(whole)

    first = make()
    first.reset(seed=1)
    got = _run(first, actions, pops, range(n_before))
    with tempfile.TemporaryDirectory() as tmp:
        io.save_checkpoint(f"{tmp}/ck", first)
        resumed = make()
        io.load_checkpoint(f"{tmp}/ck", resumed)  # before or after restoring the env: either works
        resumed.env.reset(seed=1)
        for t in range(n_before):
            resumed.env.step(actions[t])
    got += _run(resumed, actions, pops, range(n_before, n_before + n_after)) + _final_pops(resumed)
    assert_pops_equal(got, expected)


def test_checkpoint_refuses_a_pending_step_and_a_wrapper_that_does_not_fit(tmp_path):
    venv = BufferingWrapper(_sb3_env("box", "discrete", [([3], [False])] * 2))
    venv.reset()
    venv.step_async(np.zeros(2, dtype=np.int64))
    with pytest.raises(RuntimeError, match="step_async"):
        io.save_checkpoint(tmp_path / "ck", venv)
    venv.step_wait()
    io.save_checkpoint(tmp_path / "ck", venv)
    with pytest.raises(ValueError, match="3 envs|2 envs"):
        io.load_checkpoint(
            tmp_path / "ck", BufferingWrapper(_sb3_env("box", "discrete", [([3], [False])] * 3))
        )
    vec = VectorBufferingWrapper(_vec_env("box", "discrete", [([3], [False])] * 2, "SameStep"))
    with pytest.raises(ValueError, match="'sb3'"):
        io.load_checkpoint(tmp_path / "ck", vec)
    io.save(tmp_path / "t", venv.pop_transitions())
    with pytest.raises(CorruptSaveError, match="'checkpoint'"):
        io.load_checkpoint(tmp_path / "t", venv)
    with pytest.raises(CorruptSaveError, match="not transitions or trajectories"):
        io.load(tmp_path / "ck")


# ------------------------------------------------------------------ faults
def _big_batch(n, value=0.0, width=1):
    flags = torch.zeros(n, dtype=torch.bool)
    obs = torch.full((n, width), value)
    return TransitionsWithRew(
        obs=obs, acts=torch.zeros(n, dtype=torch.long), next_obs=obs + 1, dones=flags,
        terminated=flags, truncated=flags, rews=torch.full((n,), value),
        infos=np.array([{"i": i} for i in range(n)]), batch_size=[n],
    )  # fmt: skip


WRITER = textwrap.dedent(
    """
    import importlib, sys, time
    from pathlib import Path
    from torchbuf import io
    from tests.test_io import _big_batch

    path, signal_file, pause_at, n = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    if pause_at != "none":
        module, name = pause_at.split(":")

        def paused(*args, **kwargs):
            signal_file.touch()  # the writer is inside the save: kill it now
            time.sleep(600)

        setattr(importlib.import_module(module), name, paused)
    batch = _big_batch(n, value=2.0, width=1024)
    signal_file.with_suffix(".ready").touch()
    io.save(path, batch)
    """
)


def _start_writer(path, pause_at, n):
    signal_file = Path(path).parent / "signal"
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(signal_file), pause_at, str(n)], env=env
    )
    return proc, signal_file


def _wait_for(proc, condition, what):
    deadline = time.monotonic() + 120
    while not condition():
        assert proc.poll() is None, f"the writer exited (rc {proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.002)


def _temp_dirs(path):
    return list(Path(path).parent.glob(f".{Path(path).name}.tmp-*"))


@pytest.mark.parametrize("pause_at", ["torchbuf.io.savedir:_digest", "torchbuf.io.atomic:_move_in"])
def test_a_writer_killed_mid_save_leaves_the_previous_save_intact(tmp_path, pause_at):
    """``_digest``: files written, none committed; ``_move_in``: the old save already renamed aside."""
    path = tmp_path / "save"
    old = _big_batch(50, value=1.0)
    io.save(path, old)
    proc, signal_file = _start_writer(path, pause_at, 2000)
    _wait_for(proc, signal_file.exists, "the writer paused inside the save")
    assert _temp_dirs(path), "the kill lands while the new save is in its temporary directory"
    if pause_at.endswith("_move_in"):
        assert not path.exists() and (tmp_path / ".save.old").is_dir()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _temp_dirs(path), "the killed writer left its temporary directory"
    assert_batches_equal(io.load(path), old)
    new = _big_batch(30, value=3.0)
    io.save(path, new)  # the next save recovers: the old save is replaced, nothing left behind
    assert_batches_equal(io.load(path), new)
    assert not (tmp_path / ".save.old").exists()
    assert not _temp_dirs(path), "the next save removed the killed writer's temporary directory"


def test_a_writer_killed_at_any_moment_leaves_one_whole_save(tmp_path):
    """No pause: the kill lands wherever the writer is; either save loads whole, never a mix."""
    path = tmp_path / "save"
    old = _big_batch(50, value=1.0)
    io.save(path, old)
    proc, signal_file = _start_writer(path, "none", 8000)  # ~64 MB of observations
    _wait_for(proc, lambda: bool(_temp_dirs(path)), "the writer started its temporary directory")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    loaded = io.load(path)
    assert len(loaded) in (50, 8000)
    if len(loaded) == 50:
        assert_batches_equal(loaded, old)
    else:
        assert bool((loaded.obs == 2.0).all()) and bool((loaded.rews == 2.0).all())
    io.save(path, old)
    assert not _temp_dirs(path) and not (tmp_path / ".save.old").exists()
    assert_batches_equal(io.load(path), old)


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: no process has this id now (until the system reuses it)
    return proc.pid


def test_a_save_removes_only_temporaries_of_writers_that_are_gone(tmp_path):
    path = tmp_path / "save"
    host = atomic._host()
    dead, live = _dead_pid(), os.getpid()
    stale = [tmp_path / f".save.tmp-{host}-{dead}-abc", tmp_path / f".save.tmp-{host}-{dead}-file"]
    kept = [
        tmp_path / f".save.tmp-{host}-{live}-abc",  # a writer that still runs (this process)
        tmp_path / f".save.tmp-otherhost-{dead}-abc",  # another host's: its process is unknown here
        tmp_path / ".save.tmp-unnamed",  # not named by torchbuf
        tmp_path / f".other.tmp-{host}-{dead}-abc",  # another target's
    ]
    for p in [stale[0], *kept]:
        p.mkdir()
        (p / "part.memmap").write_bytes(b"x")
    stale[1].write_bytes(b"x")
    io.save(path, _big_batch(3))
    assert not any(p.exists() for p in stale)
    assert all((p / "part.memmap").exists() for p in kept)
    assert_batches_equal(io.load(path), _big_batch(3))


def test_a_full_disk_fails_loudly_and_keeps_the_old_save(tmp_path, monkeypatch):
    path = tmp_path / "save"
    old = _big_batch(4, value=1.0)
    io.save(path, old)
    real = savedir._digest

    def full(file, sync=False):
        if file.name == "objects.bin":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(file))
        return real(file, sync)

    monkeypatch.setattr(savedir, "_digest", full)
    with pytest.raises(OSError) as err:
        io.save(path, _big_batch(8))
    assert err.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert not _temp_dirs(path), "the failed save removed its temporary directory"
    assert_batches_equal(io.load(path), old)


def test_a_full_disk_while_checkpointing_fails_loudly(tmp_path, monkeypatch):
    venv = BufferingWrapper(_sb3_env("box", "discrete", [([3], [False])] * 2))
    venv.reset()
    venv.step(np.zeros(2, dtype=np.int64))
    io.save_checkpoint(tmp_path / "ck", venv)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(TensorDict, "memmap", full)
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint(tmp_path / "ck", venv)
    monkeypatch.undo()
    resumed = BufferingWrapper(_sb3_env("box", "discrete", [([3], [False])] * 2))
    io.load_checkpoint(tmp_path / "ck", resumed)
    assert resumed.n_transitions == venv.n_transitions == 2


@pytest.fixture
def saved(tmp_path):
    batch = TransitionsWithRew(**{**_fields(_big_batch(20)), "obs": _samples(OBS_SPACES["dict"], 20, 0)})
    io.save(tmp_path / "s", batch)
    return tmp_path / "s"


def _fields(batch):
    names = ("obs", "acts", "next_obs", "dones", "terminated", "truncated", "rews", "infos")
    return {**{k: getattr(batch, k) for k in names}, "batch_size": batch.batch_size}


def test_a_corrupt_byte_is_reported_with_file_and_field(saved):
    file = saved / "data" / "obs" / "img.memmap"
    raw = bytearray(file.read_bytes())
    raw[7] ^= 0xFF
    file.write_bytes(bytes(raw))
    with pytest.raises(CorruptSaveError, match=r"img\.memmap \(field 'obs/img'\): sha256 mismatch"):
        io.load(saved)


def test_a_truncated_file_is_reported_with_file_and_field(saved):
    file = saved / "data" / "rews.memmap"
    file.write_bytes(file.read_bytes()[:-3])
    with pytest.raises(CorruptSaveError, match=r"rews\.memmap \(field 'rews'\): 77 bytes"):
        io.load(saved, verify=False)  # sizes are checked even without checksums


def test_a_missing_file_is_reported(saved):
    (saved / "objects.json").unlink()
    with pytest.raises(CorruptSaveError, match=r"objects\.json: missing"):
        io.load(saved)
    (saved / "data" / "acts.memmap").unlink()
    with pytest.raises(CorruptSaveError, match=r"acts\.memmap \(field 'acts'\): missing"):
        io.load(saved)


def test_a_wrong_dtype_is_reported_with_file_and_field(saved):
    """The manifest alone says how to read each file: tensordict's meta.json is hashed, never
    interpreted, and a manifest dtype that does not fit the file is reported."""
    meta_file = saved / "data" / "meta.json"
    text = meta_file.read_text()
    at = text.index('"rews"')
    rews = text[at:].replace('"torch.float32"', '"torch.int32"  ', 1)  # same size, other dtype
    meta_file.write_text(text[:at] + rews)
    assert json.loads(meta_file.read_text())["rews"]["dtype"] == "torch.int32"
    with pytest.raises(CorruptSaveError, match=r"meta\.json: sha256 mismatch"):
        io.load(saved)
    assert io.load(saved, verify=False).rews.dtype == torch.float32
    doc = json.loads((saved / "manifest.json").read_text())
    doc["body"]["fields"]["rews"]["dtype"] = "torch.float64"
    (saved / "manifest.json").write_text(manifest.text(doc["body"]))
    with pytest.raises(
        CorruptSaveError, match=r"rews\.memmap \(field 'rews'\): 80 bytes, its torch\.float64"
    ):
        io.load(saved, verify=False)


def test_a_corrupt_manifest_is_reported(saved):
    manifest = saved / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"shape": [\n     20', '"shape": [\n     21', 1))
    with pytest.raises(CorruptSaveError, match="manifest checksum mismatch"):
        io.load(saved)
    manifest.write_text(manifest.read_text()[:100])
    with pytest.raises(CorruptSaveError, match="unreadable manifest"):
        io.load(saved)


def test_loading_nothing_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing"):
        io.load(tmp_path / "nothing")


def test_saving_without_a_parent_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        io.save(tmp_path / "missing" / "save", _big_batch(3))


def _make_read_only(directory):
    """Makes ``directory`` unwritable, even for root (via the immutable flag); ``None`` if it cannot."""
    directory.chmod(0o555)
    if not _writable(directory):
        return lambda: directory.chmod(0o755)
    chattr = shutil.which("chattr")
    if chattr and subprocess.run([chattr, "+i", str(directory)], capture_output=True).returncode == 0:
        return lambda: (subprocess.run([chattr, "-i", str(directory)]), directory.chmod(0o755))
    directory.chmod(0o755)
    return None


def _writable(directory):
    try:
        (directory / "probe").touch()
    except OSError:
        return False
    (directory / "probe").unlink()
    return True


def test_saving_into_a_read_only_directory_raises_and_keeps_the_old_save(tmp_path):
    parent = tmp_path / "ro"
    parent.mkdir()
    io.save(parent / "save", _big_batch(4, value=1.0))
    undo = _make_read_only(parent)
    if undo is None:
        pytest.skip("cannot make a directory read-only here (root without chattr)")
    try:
        with pytest.raises(PermissionError, match=str(parent / "save")):
            io.save(parent / "save", _big_batch(5))
    finally:
        undo()
    assert_batches_equal(io.load(parent / "save"), _big_batch(4, value=1.0))


def test_saving_where_the_os_refuses_to_write_raises_and_keeps_the_old_save(tmp_path, monkeypatch):
    """The read-only case where the test runs as root (which a mode cannot stop): the
    OS's refusal is emulated where the save first writes, its temporary directory."""
    path = tmp_path / "save"
    io.save(path, _big_batch(4, value=1.0))

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(tmp_path))

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    with pytest.raises(PermissionError, match=f"cannot save to {path}"):
        io.save(path, _big_batch(5))
    monkeypatch.undo()
    assert not _temp_dirs(path)
    assert_batches_equal(io.load(path), _big_batch(4, value=1.0))


def test_state_dict_restores_a_wrapper_in_memory_and_save_checkpoint_rejects_other_objects(tmp_path):
    make = lambda: BufferingWrapper(_sb3_env("dict", "discrete", [([2, 3], [False, True])] * 2))  # noqa: E731
    venv = make()
    venv.reset()
    for _ in range(4):
        venv.step(np.zeros(2, dtype=np.int64))
    other = make()
    other.load_state_dict(venv.state_dict())
    assert other.n_transitions == venv.n_transitions == 8
    assert_batches_equal(other.pop_transitions(), venv.pop_transitions())
    with pytest.raises(TypeError, match="BufferingWrapper or VectorBufferingWrapper"):
        io.save_checkpoint(tmp_path / "ck", venv.venv)


def test_a_trajectory_index_that_does_not_add_up_is_reported_even_without_checksums(tmp_path):
    venv = BufferingWrapper(_sb3_env("box", "discrete", [([2, 3], [False, True])] * 2))
    venv.reset()
    for _ in range(7):
        venv.step(np.zeros(2, dtype=np.int64))
    io.save(tmp_path / "t", venv.pop_trajectories()[0])
    file = tmp_path / "t" / "data" / "index" / "lengths.memmap"
    lengths = np.frombuffer(file.read_bytes(), dtype=np.int64).copy()
    lengths[0] += 1  # same size: only the checksum or the index check can tell
    file.write_bytes(lengths.tobytes())
    with pytest.raises(CorruptSaveError, match=r"lengths\.memmap \(field 'index/lengths'\): sha256 mismatch"):
        io.load(tmp_path / "t")
    with pytest.raises(CorruptSaveError, match=r"index/lengths'\): add up to"):
        io.load(tmp_path / "t", verify=False)
