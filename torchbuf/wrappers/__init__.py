r"""The buffering wrappers: what a user puts around an env to record it.

:mod:`torchbuf.wrappers.sb3` holds the drop-ins for imitation's wrappers over SB3
``VecEnv``\ s; :mod:`torchbuf.wrappers.vector` the wrapper for gymnasium vector envs,
envpool and torch-native envs.
"""

from torchbuf.wrappers.sb3 import BufferingWrapper, RolloutInfoWrapper
from torchbuf.wrappers.vector import VectorBufferingWrapper

__all__ = ["BufferingWrapper", "RolloutInfoWrapper", "VectorBufferingWrapper"]
