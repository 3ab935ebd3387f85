"""Small torch-native batched envs that behave like GPU simulators.

All state lives in torch tensors on one device, ``step`` never synchronises with the host,
and episodes auto-reset on the same step (``info["final_obs"]`` / ``info["_final_obs"]``).
"""

from torchbuf.envs._base import AUTORESET_MODE, TorchVectorEnv
from torchbuf.envs.cartpole import TorchCartPole
from torchbuf.envs.pendulum import TorchPendulum

__all__ = ["AUTORESET_MODE", "TorchCartPole", "TorchPendulum", "TorchVectorEnv"]
