"""The ManiSkill recording benchmark's read-back check fails on a file that differs from ``RecordEpisode``'s.

The benchmark (``benchmarks/maniskill_bench.py``) reports "0 of N datasets differ" after reading
torchbuf's file with ManiSkill's reader; these tests record one real PickCube run with both
recorders, as the benchmark does, and show that the check passes on the files as written and
stops the run, naming the dataset, once one value in torchbuf's file is changed.
"""

from __future__ import annotations

import shutil

import pytest

from tests.sims.maniskill_env import require_maniskill

require_maniskill()

import h5py  # noqa: E402

from benchmarks import maniskill_bench as bench  # noqa: E402

STEPS = 2 * bench.EPISODE


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """One round of RecordEpisode and torchbuf on the same actions, as the benchmark's last round."""
    last = tmp_path_factory.mktemp("round")
    acts = bench.actions(STEPS)
    for name in (bench.OWN, bench.TORCHBUF):
        bench.timed(name, acts, last / str(bench.RECORDERS.index(name)))
    return acts, last


def copy_of(recorded, tmp_path):
    acts, last = recorded
    shutil.copytree(last, tmp_path / "round")
    return acts, tmp_path / "round"


def test_the_check_passes_on_the_files_as_written(recorded, tmp_path):
    acts, last = copy_of(recorded, tmp_path)
    checked = bench.check_files(acts, last)
    assert (checked["transitions"], checked["episodes"]) == (STEPS, 2)
    assert checked["datasets_differing"] == 0 and checked["datasets_compared"] >= 2 * 6


@pytest.mark.parametrize("dataset", ["traj_1/rewards", "traj_0/obs", "traj_0/actions"])
def test_one_changed_value_in_torchbufs_file_stops_the_run_naming_the_dataset(recorded, tmp_path, dataset):
    acts, last = copy_of(recorded, tmp_path)
    ours = last / str(bench.RECORDERS.index(bench.TORCHBUF)) / bench.FILES[bench.TORCHBUF]
    with h5py.File(ours, "r+") as f:
        values = f[dataset][()]
        values.flat[3] += 0.5
        f[dataset][...] = values
    with pytest.raises(SystemExit, match=f"{dataset} differs from RecordEpisode's"):
        bench.check_files(acts, last)


def test_without_a_vulkan_device_the_benchmark_says_why_and_writes_nothing(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(bench, "vulkan_problem", lambda: "no Vulkan device")
    bench.main(["--quick", "--out", str(tmp_path / "out")])
    assert "skipped: ManiSkill cannot make a CPU env here (no Vulkan device)" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()
