"""Shared fixtures: seeded synthetic signals and real music clips (tests/data)."""
from __future__ import annotations

import numpy as np
import pytest

from signals import MUSIC_CLIPS, SYNTHETIC, load_music, synthetic


@pytest.fixture(params=MUSIC_CLIPS)
def music(request) -> np.ndarray:
    return load_music(request.param)


@pytest.fixture(params=SYNTHETIC)
def synth(request) -> np.ndarray:
    return synthetic(request.param)


@pytest.fixture(scope="module")
def torch_two_threads():
    """torch's intra-op threads set to 2 for a module, restored afterwards."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(old)
