"""Other tools' on-disk formats: imitation's trajectory files and Minari datasets.

- :func:`save_imitation` / :func:`load_imitation`: imitation's HuggingFace
  ``datasets`` directories (``imitation.data.serialize.save``) and its legacy npz
  and pickle files, read back through ``imitation.data.serialize.load``
  (``pip install 'torchbuf[imitation]'``).
- :func:`save_minari` / :func:`load_minari`: Minari datasets, read back through
  ``minari.load_dataset`` (``pip install 'torchbuf[minari]'``).
- :func:`save_lerobot` / :func:`load_lerobot`: LeRobot datasets (codebase version
  3.0), read back through ``lerobot``'s ``LeRobotDataset``
  (``pip install 'torchbuf[lerobot]'``).
- :func:`save_robomimic` / :func:`load_robomimic`: robomimic HDF5 files (and Isaac
  Lab's variant with a per-demo ``success``), read back by robomimic's
  ``SequenceDataset`` (``pip install 'torchbuf[robomimic]'``).
- :func:`save_maniskill` / :func:`load_maniskill`: ManiSkill 3 trajectory files
  (``.h5`` and its ``.json``, as ``RecordEpisode`` writes them), read back by
  ManiSkill's ``ManiSkillTrajectoryDataset`` (``pip install 'torchbuf[maniskill]'``).
- :func:`to_torchrl` / :func:`from_torchrl` / :func:`transitions_from_torchrl`:
  torchrl's flat TensorDict of steps, for its replay buffers, samplers and losses
  (needs only tensordict).

- :func:`select_trajectories` / :func:`info_flag`: keep only some episodes on export
  (e.g. the successful ones), for every format.

Neither dependency is needed to import this package: each is imported on first use,
and a missing one raises an :class:`ImportError` that names the extra to install.
What each format can carry, and what it refuses, is listed in ``docs/io.md``.
torchbuf's own format (:mod:`torchbuf.io`) carries everything.
"""

from torchbuf.formats.imitation_files import IMITATION_FORMATS, load_imitation, save_imitation
from torchbuf.formats.lerobot import load_lerobot, save_lerobot
from torchbuf.formats.maniskill import load_maniskill, load_maniskill_env_states, save_maniskill
from torchbuf.formats.minari_datasets import load_minari, save_minari
from torchbuf.formats.robomimic import load_robomimic, save_robomimic
from torchbuf.formats.select import info_flag, select_trajectories
from torchbuf.formats.torchrl_layout import TRAJ_KEY, from_torchrl, to_torchrl, transitions_from_torchrl

__all__ = [
    "IMITATION_FORMATS",
    "TRAJ_KEY",
    "from_torchrl",
    "info_flag",
    "load_imitation",
    "load_lerobot",
    "load_maniskill",
    "load_maniskill_env_states",
    "load_minari",
    "load_robomimic",
    "save_imitation",
    "save_lerobot",
    "save_maniskill",
    "save_minari",
    "save_robomimic",
    "select_trajectories",
    "to_torchrl",
    "transitions_from_torchrl",
]
