"""Compact learners that train from torchbuf's device batches.

- :class:`BC`: behaviour cloning with imitation's loss, from a
  :class:`~torchbuf.loader.TransitionLoader` or any iterable of batch mappings.
- :class:`PPO`: on-device PPO for torch-native vector envs (GAIL's generator
  there), with an optional ``reward_fn`` that replaces the env's rewards.
- :class:`GAIL`: imitation's GAIL, its generator rollouts popped from the
  buffering wrappers (SB3 PPO on an SB3 ``VecEnv``, or :class:`PPO` on a
  torch-native env, where the whole loop stays on the device).
"""

from torchbuf.learners.bc import BC, BCMetrics
from torchbuf.learners.gail import GAIL
from torchbuf.learners.ppo import PPO, ActorCritic
from torchbuf.learners.reward_nets import BasicRewardNet

__all__ = ["BC", "GAIL", "PPO", "ActorCritic", "BCMetrics", "BasicRewardNet"]
