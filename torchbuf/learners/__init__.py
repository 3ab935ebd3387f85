"""Compact learners that train from torchbuf's device batches.

- :class:`BC`: behaviour cloning with imitation's loss, from a
  :class:`~torchbuf.loader.TransitionLoader` or any iterable of batch mappings.
- :class:`PPO`: on-device PPO for torch-native vector envs (GAIL's generator
  there), with an optional ``reward_fn`` that replaces the env's rewards.
"""

from torchbuf.learners.bc import BC, BCMetrics
from torchbuf.learners.ppo import PPO, ActorCritic

__all__ = ["BC", "PPO", "ActorCritic", "BCMetrics"]
