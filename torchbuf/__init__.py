"""torchbuf: a PyTorch-native rollout buffer for imitation learning."""

from torchbuf.data.trajectories import Trajectories
from torchbuf.data.types import Trajectory, TrajectoryWithRew, Transitions, TransitionsWithRew
from torchbuf.loader import TransitionLoader
from torchbuf.rollout import flatten_trajectories, generate_trajectories, make_sample_until, rollout_stats
from torchbuf.wrappers.sb3 import BufferingWrapper, RolloutInfoWrapper
from torchbuf.wrappers.vector import VectorBufferingWrapper

__all__ = [
    "BufferingWrapper",
    "RolloutInfoWrapper",
    "Trajectories",
    "TransitionLoader",
    "flatten_trajectories",
    "generate_trajectories",
    "make_sample_until",
    "rollout_stats",
    "Trajectory",
    "TrajectoryWithRew",
    "Transitions",
    "TransitionsWithRew",
    "VectorBufferingWrapper",
]
__version__ = "0.1.0"
