"""The main job with tiny budgets: every stage runs, and its numbers add up."""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest
import torch

from torchbuf.app import config
from torchbuf.app.config import Budgets, JobConfig
from torchbuf.app.demo import POLICIES, run_job
from torchbuf.app.report import policy_rows, results_table, stages_table, write_outputs
from torchbuf.envs import TorchCartPole
from torchbuf.envs.experts import scripted_cartpole
from torchbuf.rollout import generate_trajectories, make_sample_until, rollout_stats

TINY = Budgets(expert_episodes=2, bc_epochs=2, gail_steps=0, eval_episodes=2)


@pytest.fixture(scope="module")
def cartpole():
    config = JobConfig(device="cpu", n_envs=2, seeds=(0, 1), budgets=TINY)
    return run_job(config, progress=False)


def test_recording_keeps_what_the_expert_generated(cartpole):
    for s in cartpole.seeds:
        rec = s.recording
        assert len(rec.trajs) == 2 and rec.transitions == sum(len(t) for t in rec.trajs)
        # The same seeded run outside the job: the same episodes, the same env steps.
        alone = generate_trajectories(
            scripted_cartpole, TorchCartPole(2, seed=s.seed), make_sample_until(min_episodes=2), seed=s.seed
        )
        assert rec.env_steps == sum(len(t) for t in alone)  # 2 envs both finish: nothing partial
        kept = {float(t.obs[0, 0]) for t in rec.trajs}
        assert kept <= {float(t.obs[0, 0]) for t in alone}
        assert rec.stats == rollout_stats(rec.trajs)
        # CartPole pays 1 per step: the returns add up to the transitions recorded.
        assert rec.stats["return_mean"] * rec.stats["n_traj"] == rec.transitions == 1000


def test_bc_trained_on_the_recording(cartpole):
    bc = cartpole.seeds[0].bc
    assert bc is not None and len(bc.epoch_losses) == 2
    assert bc.batches == 2 * (1000 // 64) and bc.transitions == bc.batches * 64
    assert all(np.isfinite(bc.epoch_losses))


def test_every_policy_evaluated_on_enough_episodes(cartpole):
    d = cartpole.to_dict()
    for s in d["seeds"]:
        assert set(s["eval"]) == {"expert", "BC", "random"}  # GAIL skipped: gail_steps=0
        for e in s["eval"].values():
            lens = e["stats"]["len_mean"] * e["stats"]["n_traj"]
            assert e["stats"]["n_traj"] >= 2 and e["env_steps"] >= lens and e["env_steps"] % 2 == 0
            assert np.mean(e["returns"]) == pytest.approx(e["stats"]["return_mean"])
    rows = policy_rows(d)
    assert rows["expert"]["return_mean"] == 500.0 and rows["expert"]["episodes"] >= 4
    assert rows["random"]["return_mean"] < 100
    assert rows["GAIL"] == {"missing": "skipped: gail_steps=0"}


def test_table_has_the_four_rows(cartpole):
    table = results_table(cartpole.to_dict())
    lines = table.splitlines()
    assert [line.split("|")[1].strip() for line in lines[2:]] == list(POLICIES)
    assert "| expert | 500.0 ± 0.0 |" in table
    assert "record expert" in stages_table(cartpole.to_dict())


def test_outputs_written(cartpole, tmp_path):
    pytest.importorskip("matplotlib", reason="the plot needs the demo extra")
    files = write_outputs(cartpole.to_dict(), tmp_path / "out")
    assert json.loads(files["json"].read_text()) == json.loads(json.dumps(cartpole.to_dict()))
    assert files["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| BC |" in files["markdown"].read_text()


def test_outputs_without_matplotlib(cartpole, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    files = write_outputs(cartpole.to_dict(), tmp_path)
    assert set(files) == {"json", "markdown"} and not (tmp_path / "learning_curves.png").exists()


@pytest.mark.parametrize(("backend", "steps", "per_round"), [("torch", 1024, 2 * 64), ("sb3", 512, 2 * 128)])
def test_gail_stage(backend, steps, per_round, tmp_path):
    budgets = Budgets(expert_episodes=2, bc_epochs=0, gail_steps=steps, eval_episodes=2)
    result = run_job(JobConfig(backend=backend, device="cpu", n_envs=2, budgets=budgets), progress=False)
    gail = result.seeds[0].gail
    assert gail.status == "done" and len(gail.rounds) == steps // per_round
    assert gail.env_steps == steps == sum(r["gen_timesteps"] for r in gail.rounds)
    d = result.to_dict()
    rows = policy_rows(d)
    assert rows["GAIL"]["episodes"] >= 2 and rows["BC"] == {"missing": "skipped: bc_epochs=0"}
    assert f"{steps // per_round} rounds, {steps:,} generator env steps" in stages_table(d)
    if importlib.util.find_spec("matplotlib"):
        assert "plot" in write_outputs(d, tmp_path)


def test_no_gail_preset_skips_gail(monkeypatch):
    monkeypatch.setattr(config, "GAIL_PRESETS", {})
    budgets = Budgets(expert_episodes=1, bc_epochs=0, eval_episodes=1)
    assert JobConfig("Pendulum-v1", "sb3", budgets=budgets).gail_steps == 0  # skipped, not failed
    result = run_job(JobConfig("Pendulum-v1", "sb3", device="cpu", n_envs=1, budgets=budgets), progress=False)
    assert result.seeds[0].gail.reason == "no GAIL preset for Pendulum-v1/sb3"
    assert "| GAIL | skipped: no GAIL preset for Pendulum-v1/sb3 |" in results_table(result.to_dict())
    with pytest.raises(ValueError, match="gail_steps=100: no GAIL preset for Pendulum-v1 on the sb3 backend"):
        JobConfig("Pendulum-v1", "sb3", budgets=Budgets(gail_steps=100))


def test_pendulum_on_sb3_backend():
    budgets = Budgets(expert_episodes=2, bc_epochs=1, gail_steps=0, eval_episodes=2)
    result = run_job(JobConfig("Pendulum-v1", "sb3", device="cpu", n_envs=2, budgets=budgets), progress=False)
    s = result.seeds[0]
    assert s.gail.status == "skipped" and "GAIL" not in s.evals
    assert s.recording.transitions == 400 and s.recording.env_steps == 400
    assert s.recording.trajs[0].acts.dtype == torch.float32 and s.recording.trajs[0].acts.shape == (200, 1)
    rows = policy_rows(result.to_dict())
    assert rows["expert"]["return_mean"] > rows["random"]["return_mean"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"env_id": "MountainCar-v0"}, "env_id"),
        ({"backend": "jax"}, "backend"),
        ({"n_envs": 0}, "n_envs"),
        ({"seeds": ()}, "seeds"),
        ({"budgets": Budgets(eval_episodes=0)}, "eval_episodes"),
        ({"budgets": Budgets(gail_steps=-1)}, "gail_steps"),
    ],
)
def test_bad_config_names_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        JobConfig(**kwargs)
