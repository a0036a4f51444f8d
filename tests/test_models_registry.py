"""Model registry: names, errors, kwargs, pretrained entries."""
from __future__ import annotations

import re

import pytest
import torch

from rt_tagger.checkpoint import save_checkpoint
from rt_tagger.errors import ConfigError, ModelError
from rt_tagger.features.config import SPEC_ATT_DB
from rt_tagger import factory
from rt_tagger.factory import create_model, default_logmel
from rt_tagger.models import list_models, registry
from rt_tagger.models.short_res import SHORT_RES_LOGMEL

OURS = {"spec_att", "raw_att", "raw_cnn_l", "short_res", "q2l"}


def test_list_models_partitions_archs_and_pretrained() -> None:
    archs, pre, both = list_models(False), list_models(True), list_models()
    assert OURS <= set(archs)
    assert not set(archs) & set(pre)
    assert both == sorted(archs + pre)
    assert archs == sorted(archs)


def test_unknown_name_lists_known_ones() -> None:
    with pytest.raises(ModelError) as info:
        create_model("spec_attt")
    msg = str(info.value)
    assert "spec_attt" in msg and "\n" not in msg
    for name in list_models():
        assert re.search(rf"\b{re.escape(name)}\b", msg), name


def test_create_by_name_with_kwargs() -> None:
    model = create_model("spec_att", n_tags=10, input_length=32, width=32, heads=4, layers=1)
    assert model.n_tags == 10 and model.input_length == 32
    assert len(model.backend.layers) == 1
    assert model.training  # a fresh architecture is returned in train mode
    with torch.no_grad():
        assert model.eval()(torch.randn(2, 32, 96)).shape == (2, 10)


def test_bad_kwargs_name_the_accepted_ones() -> None:
    with pytest.raises(ConfigError, match=r"bad arguments for model 'raw_att'.*input_length"):
        create_model("raw_att", n_mels=96)
    with pytest.raises(ConfigError, match="divisible"):
        create_model("spec_att", width=100, heads=8)


def test_default_logmel() -> None:
    assert default_logmel("spec_att") == SPEC_ATT_DB
    assert default_logmel("short_res") == SHORT_RES_LOGMEL == default_logmel("q2l")
    assert SHORT_RES_LOGMEL.n_mels == 128 and SHORT_RES_LOGMEL.log == "db"
    assert default_logmel("raw_att") is None and default_logmel("raw_cnn_l") is None
    with pytest.raises(ModelError, match="unknown architecture"):
        default_logmel("nope")


def test_pretrained_without_weights_is_an_error() -> None:
    with pytest.raises(ModelError, match="no pretrained weights"):
        create_model("raw_cnn_l", pretrained=True)


def test_pretrained_entry_roundtrip(tmp_path, monkeypatch) -> None:
    torch.manual_seed(0)
    model = create_model("raw_cnn_l", n_tags=3).eval()
    path = save_checkpoint(tmp_path / "w.safetensors", model, arch="raw_cnn_l",
                           arch_args={"n_tags": 3}, tags=["a", "b", "c"], sample_rate=16000,
                           input_kind="waveform", input_length=59049)
    monkeypatch.setattr(registry, "_PRETRAINED", dict(registry._PRETRAINED))
    registry.register_pretrained("raw_cnn_l.test", arch="raw_cnn_l", filename="w.safetensors")
    registry.register_pretrained("raw_cnn_l.gone", arch="raw_cnn_l", filename="gone.safetensors")
    assert "raw_cnn_l.test" in list_models(pretrained=True)
    real = factory.pretrained_path
    assert real("raw_cnn_l.test").parts[-2:] == ("weights", "w.safetensors")
    monkeypatch.setattr(factory, "pretrained_path",
                        lambda n: path if n == "raw_cnn_l.test" else real(n))

    x = torch.randn(2, 59049)
    for loaded in (create_model("raw_cnn_l.test"), create_model("raw_cnn_l", pretrained=True)):
        assert not loaded.training
        assert loaded.checkpoint.tags == ["a", "b", "c"]
        with torch.no_grad():
            assert torch.equal(loaded(x), model(x))
    with pytest.raises(ModelError, match="takes no architecture arguments"):
        create_model("raw_cnn_l.test", n_tags=4)
    with pytest.raises(ModelError, match="weights of pretrained model 'raw_cnn_l.gone' are missing"):
        create_model("raw_cnn_l.gone")
    with pytest.raises(ModelError, match="already an architecture"):
        registry.register_pretrained("spec_att", arch="spec_att", filename="x.safetensors")


def test_duplicate_registration_is_refused(monkeypatch) -> None:
    monkeypatch.setattr(registry, "_ARCHS", dict(registry._ARCHS))

    def other_factory():  # a different function under an existing name
        raise AssertionError("never called")

    with pytest.raises(ModelError, match="already registered"):
        registry.register_model("spec_att")(other_factory)


def test_threads_that_resolve_architectures_at_once_all_find_them() -> None:
    """In a fresh interpreter, eight threads ask for the default's architecture at the same
    moment, while the built-in modules are still being imported by the first: each gets it
    (a second thread used to return early and see a half-filled registry: 'unknown model
    musicnn_att', seen with two inference workers in a Ray actor)."""
    import subprocess
    import sys

    code = (
        "import threading\n"
        "from rt_tagger.models import registry\n"
        "start = threading.Barrier(8); errors = []\n"
        "def ask():\n"
        "    start.wait()\n"
        "    try:\n"
        "        registry.get_arch('musicnn_att')\n"
        "    except Exception as exc:\n"
        "        errors.append(str(exc))\n"
        "threads = [threading.Thread(target=ask) for _ in range(8)]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "print(len(errors), errors[:1])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-800:]
    assert out.stdout.startswith("0 "), out.stdout
