"""The demo job: record CartPole through torchbuf and summarise what was popped."""

from __future__ import annotations

import time
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.vec_env import DummyVecEnv
from tqdm import tqdm

from torchbuf.experts import scripted_cartpole
from torchbuf.wrappers import BufferingWrapper


@dataclass
class DemoSummary:
    """What the demo recorded."""

    episodes: int
    mean_len: float
    mean_return: float
    transitions: int
    seconds: float

    def lines(self) -> list[str]:
        """Human-readable summary lines."""
        return [
            f"episodes completed     {self.episodes}",
            f"mean episode length    {self.mean_len:.1f}",
            f"mean episode return    {self.mean_return:.1f}",
            f"transitions recorded   {self.transitions}",
            f"transitions/s          {self.transitions / self.seconds:,.0f}",
        ]


def run_demo(n_envs: int = 8, steps: int = 1200, device: str | None = None, seed: int = 0) -> DemoSummary:
    """Records ``steps`` steps of ``n_envs`` CartPole-v1 envs under a scripted policy.

    Pops finished trajectories every 100 steps and the rest as transitions at the end.

    Args:
        n_envs: Number of envs (SB3 ``DummyVecEnv``).
        steps: Steps to take.
        device: Storage device; the GPU when one is present, else CPU.
        seed: Env seed.

    Returns:
        The summary.
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    venv = BufferingWrapper(DummyVecEnv([lambda: gym.make("CartPole-v1")] * n_envs), device=device)
    venv.seed(seed)
    obs = venv.reset()
    returns: list[float] = []
    lens: list[int] = []
    n_transitions = 0
    start = time.perf_counter()
    for t in tqdm(range(1, steps + 1), desc=f"recording {n_envs} envs on {device}", unit="step"):
        obs, *_ = venv.step(scripted_cartpole(np.asarray(obs)))
        if t % 100 == 0:
            trajs, ep_lens = venv.pop_finished_trajectories()
            returns += [float(tr.rews.sum()) for tr in trajs]
            lens += ep_lens
            n_transitions += sum(len(tr) for tr in trajs)
    if venv.n_unpopped:
        n_transitions += int(venv.pop_transitions().batch_size[0])
    seconds = time.perf_counter() - start
    mean_len, mean_ret = (float(np.mean(lens)), float(np.mean(returns))) if lens else (0.0, 0.0)
    return DemoSummary(len(lens), mean_len, mean_ret, n_transitions, seconds)
