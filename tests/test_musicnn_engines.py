"""The converted musicnn on every inference backend against the original TensorFlow outputs.

Same reference and tolerances as ``test_musicnn_port.py`` (logits 1e-4, taggram 1e-5), run
through :func:`rt_tagger.engines.create_engine`; a backend is skipped only when this machine
cannot run it, with the reason it reports.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rt_tagger.engines import available_backends, create_engine

REF = Path(__file__).parent / "data" / "musicnn_ref.npz"


@pytest.fixture(scope="module")
def ref():
    torch.set_num_threads(1)
    return dict(np.load(REF))


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_backend_matches_tensorflow(ref, backend, tmp_path_factory):
    missing = available_backends()[backend]
    if missing:
        pytest.skip(f"{backend} unavailable: {missing}")
    x = ref["logmel"].reshape(-1, 187, 96)
    with create_engine("musicnn.mtat", backend=backend, device="cpu", threads=1,
                       cache=tmp_path_factory.mktemp("engine_cache")) as engine:
        assert engine.tags == list(ref["mtt_tags"]) and engine.input_shape == (187, 96)
        out = engine.run(x)
    want_logits = ref["mtt_logits"].reshape(-1, 50)
    err_logits = np.abs(out.logits - want_logits).max()
    err_probs = np.abs(out.probs - ref["mtt_taggram"].reshape(-1, 50)).max()
    print(f"{backend}: max |logit error| {err_logits:.2e}, max |taggram error| {err_probs:.2e}")
    assert err_logits < 1e-4 and err_probs < 1e-5


def test_batched_equals_single(ref):
    # the eager port tags a batch one patch at a time in its front-end; the batch must not matter
    x = ref["logmel"].reshape(-1, 187, 96)[::2]  # 8 patches from 4 clips
    with create_engine("musicnn.mtat", backend="torch", device="cpu", threads=1) as engine:
        batched = engine.run(x).logits
        single = np.concatenate([engine.run(x[i:i + 1]).logits for i in range(len(x))])
    # float re-association only (oneDNN blocks batched matmuls differently): far below 1e-4
    np.testing.assert_allclose(batched, single, atol=2e-5, rtol=0)
