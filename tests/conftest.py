"""Fixtures shared by every test module."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Tests run two at a time on two cores: more intra-op threads only contend."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
