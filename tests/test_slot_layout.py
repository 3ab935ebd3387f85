"""The slot layout: checkpoints of the first layout still load and resume exactly.

The first layout marked each episode end with its length (an ``ep_len`` field); the
current one reads ends from the done flags (see ``torchbuf/buffer/storage.py``). The
checkpoints in ``tests/data/slot_layout_v1/`` were written by the first layout's code
at the end of :func:`tests.checkpoint_v1.scenario`; each is loaded into a wrapper that
ran the same scenario, then stepped on and popped in every way, every transition
checked against the envs' own record.
"""

from __future__ import annotations

import gymnasium as gym
import pytest

from tests.checkpoint_v1 import CASES, DATA, finish, make, scenario
from torchbuf import io


@pytest.mark.parametrize("case", CASES)
def test_a_first_layout_checkpoint_resumes_as_the_run_that_wrote_it(case):
    if case.startswith("vector") and not hasattr(gym.vector, "AutoresetMode"):
        pytest.skip("this checkpoint was written through gymnasium 1.x's AutoresetMode, which 0.29 lacks")
    assert (DATA / case / "data" / "storage" / "ep_len.memmap").exists(), "not a first-layout checkpoint"
    wrapper, truth = make(case)
    scenario(case, wrapper, truth)
    io.load_checkpoint(DATA / case, wrapper)  # the same state, in the first layout
    finish(case, wrapper, truth)
