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


@pytest.fixture
def opened_sessions(monkeypatch) -> list[str]:
    """The paths of the onnxruntime sessions opened during the test (real sessions, counted)."""
    import onnxruntime as ort

    opened: list[str] = []
    real = ort.InferenceSession

    class Counting(real):
        def __init__(self, path, *args, **kwargs):
            opened.append(str(path))
            super().__init__(path, *args, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", Counting)
    return opened
