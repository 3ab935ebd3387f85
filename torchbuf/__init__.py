"""torchbuf: a PyTorch-native rollout buffer for imitation learning."""

from torchbuf.types import Trajectory, TrajectoryWithRew, Transitions, TransitionsWithRew
from torchbuf.vector import VectorBufferingWrapper
from torchbuf.wrappers import BufferingWrapper, RolloutInfoWrapper

__all__ = [
    "BufferingWrapper",
    "RolloutInfoWrapper",
    "Trajectory",
    "TrajectoryWithRew",
    "Transitions",
    "TransitionsWithRew",
    "VectorBufferingWrapper",
]
__version__ = "0.1.0"
