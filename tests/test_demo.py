from torchbuf.cli import main
from torchbuf.demo import run_demo


def test_demo_accounts_for_every_step():
    summary = run_demo(n_envs=3, steps=620, device="cpu")
    assert summary.transitions == 3 * 620  # finished episodes + the rest, nothing lost
    assert summary.episodes == 3 and summary.mean_len == 500.0


def test_cli_demo_prints_summary(capsys):
    assert main(["demo", "--n-envs", "2", "--steps", "50"]) == 0
    out = capsys.readouterr().out
    assert "transitions recorded   100" in out
