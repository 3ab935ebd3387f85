"""``torchbuf demo``: flags reach the job, outputs are written, bad flags fail clearly."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from torchbuf.app.cli import main

TINY = ["--expert-episodes", "2", "--bc-epochs", "1", "--gail-steps", "0", "--eval-episodes", "2"]


def test_demo_prints_table_and_writes_files(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["demo", "--n-envs", "2", "--seeds", "3", "--out", str(out), "--no-progress", *TINY]) == 0
    printed = capsys.readouterr().out
    for row in ("| expert | 500.0 ± 0.0 |", "| BC |", "| GAIL | skipped", "| random |"):
        assert row in printed
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["seeds"] == [3] and results["config"]["n_envs"] == 2
    assert results["config"]["budgets"]["expert_episodes"] == 2
    assert results["config"]["gail_preset"]["ppo_kwargs"]["n_steps"] > 0  # the GAIL settings, recorded
    assert results["seeds"][0]["record"]["transitions"] == 1000
    assert (out / "results.md").read_text().count("| expert |") == 1
    assert str(out / "results.json") in printed


def test_demo_flags_choose_env_backend_device(tmp_path, capsys):
    args = ["demo", "--env", "Pendulum-v1", "--backend", "sb3", "--device", "cpu", "--n-envs", "1"]
    assert main([*args, "--out", str(tmp_path), "--no-progress", *TINY]) == 0
    config = json.loads((tmp_path / "results.json").read_text())["config"]
    assert (config["env_id"], config["backend"], config["device"]) == ("Pendulum-v1", "sb3", "cpu")
    assert "Pendulum-v1, sb3 backend, device cpu" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--env", "MountainCar-v0"], "argument --env: invalid choice: 'MountainCar-v0'"),
        (["--backend", "jax"], "argument --backend: invalid choice: 'jax'"),
        (["--eval-episodes", "0"], "argument --eval-episodes: must be a positive integer, got 0"),
        (["--n-envs", "-1"], "argument --n-envs: must be a positive integer, got -1"),
        (["--gail-steps", "-5"], "argument --gail-steps: must be 0 (skip the stage) or a positive integer"),
        (["--bc-epochs", "two"], "argument --bc-epochs: invalid _non_negative value: 'two'"),
        (["--device", "tpu9"], "argument --device: 'tpu9' is not a torch device"),
        (["--seeds"], "argument --seeds: expected at least one argument"),
        (["--episode-steps", "40"], "episode_steps=40: CartPole-v1 has its own episode length"),
        (
            ["--env", "mjlab:Mjlab-Cartpole-Balance", "--backend", "sb3"],
            "backend='sb3': mjlab:Mjlab-Cartpole-Balance runs on the torch backend only",
        ),
        (
            ["--gail-steps", "100", "--n-envs", "2"],
            "gail_steps=100 is less than one GAIL round (2 envs x 64 steps)",
        ),
    ],
)
def test_bad_flags_fail_clearly(flags, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", *flags])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_gpu_fails_clearly(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--device", "cuda"])
    assert "argument --device: 'cuda': CUDA is not available on this machine" in capsys.readouterr().err


def test_no_command_is_an_error(capsys):
    with pytest.raises(SystemExit):
        main([])
    assert "required: command" in capsys.readouterr().err


def test_mjlab_env_without_mjlab_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mjlab", None)  # import mjlab fails, installed or not
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--env", "mjlab:Mjlab-Cartpole-Balance", "--no-progress"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--env mjlab:Mjlab-Cartpole-Balance: the mjlab envs need mjlab" in err
    assert "pip install mjlab==1.6.0" in err


def test_mjlab_env_flags_reach_the_job(monkeypatch):
    seen = []

    def stop(config, progress):
        seen.append(config)
        raise KeyboardInterrupt

    monkeypatch.setattr("torchbuf.app.cli.require_simulator", lambda env_id: None)  # mjlab or not
    monkeypatch.setattr("torchbuf.app.demo.run_job", stop)
    with pytest.raises(KeyboardInterrupt):
        main(["demo", "--env", "mjlab:Mjlab-Cartpole-Balance", "--episode-steps", "40", "--no-progress"])
    (config,) = seen
    assert config.sim and config.episode_steps == 40 and config.rollout_envs == 16
    assert (config.b.expert_episodes, config.b.eval_episodes, config.gail_steps) == (16, 16, 0)
