"""The vendored test file is imitation 1.0.1's, and it runs against torchbuf's drop-in."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

imitation = pytest.importorskip(
    "imitation", reason="imitation is not installed (the compat environment has 1.0.1)"
)

# sha256 of tests/data/test_wrappers.py in imitation 1.0.1's source distribution.
IMITATION_1_0_1_TEST_WRAPPERS_SHA256 = "c9fcad1f9d0a99f1da31d5443b336ac5a3870f7b1df286e2871cae06474b50b6"


def test_vendored_file_is_imitation_1_0_1s_byte_for_byte():
    data = Path(__file__).with_name("test_wrappers.py").read_bytes()
    assert hashlib.sha256(data).hexdigest() == IMITATION_1_0_1_TEST_WRAPPERS_SHA256


def test_installed_imitation_is_1_0_1():
    assert imitation.__version__ == "1.0.1"


def test_vendored_tests_run_against_the_dropin(vendored_module):
    from torchbuf.compat.imitation import BufferingWrapper

    assert vendored_module.BufferingWrapper is BufferingWrapper


def test_swap_is_undone_for_other_modules():
    import imitation.data.wrappers as im_wrappers

    assert im_wrappers.BufferingWrapper.__module__ == "imitation.data.wrappers"
