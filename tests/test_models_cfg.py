"""ModelCfg: every model's description, computed from its arguments without building it."""
from __future__ import annotations

import pytest
import torch

from rt_tagger.checkpoint import load_checkpoint, save_checkpoint
from rt_tagger.errors import ConfigError, ModelError
from rt_tagger.factory import create_model, model_cfg, pretrained_path
from rt_tagger.features.config import MUSICNN, SPEC_ATT_DB
from rt_tagger.models import ModelCfg, get_arch, list_models, registry
from rt_tagger.models.tags import MSD_TAGS, MTT_TAGS

torch.set_num_threads(2)

# Arguments that change what the description says (length, outputs, mel bands), kept small.
ARGS = {
    "spec_att": dict(input_length=48, n_mels=40, width=32, heads=4, n_tags=7),
    "raw_att": dict(input_length=243 * 4, width=32, heads=4, n_tags=7),
    "raw_cnn_l": dict(n_tags=7),
    "short_res": dict(input_length=40, n_mels=32, channels=[4, 4, 4, 4, 4, 4, 8], n_tags=7),
    "q2l": dict(input_length=64, n_mels=32, channels=[4, 4, 4, 4, 4], width=16, heads=2,
                ffn_dim=32, n_tags=7),
    "musicnn": dict(input_length=50, n_mels=40, frontend_scale=0.1, midend_filters=4,
                    backend_units=8, n_tags=7),
    "musicnn_vgg": dict(input_length=96, n_mels=64, filters=4, n_tags=7),
    "musicnn_att": dict(input_length=50, width=16, heads=2, layers=1, n_tags=7),
}


def test_every_architecture_has_arguments_for_a_test():
    assert set(ARGS) == set(list_models(pretrained=False))


@pytest.mark.parametrize("arch", sorted(ARGS))
@pytest.mark.parametrize("which", ["defaults", "small"])
def test_cfg_from_arguments_describes_the_built_model(arch, which):
    kwargs = {} if which == "defaults" else ARGS[arch]
    cfg = get_arch(arch).cfg(**kwargs)
    model = create_model(arch, **kwargs)
    assert model.cfg == cfg and isinstance(cfg, ModelCfg)
    assert cfg.arch == arch and cfg.args == kwargs and cfg.tags is None
    assert (cfg.input_kind, cfg.input_length, cfg.n_tags) == \
        (model.input_kind, model.input_length, model.n_tags)
    if cfg.input_kind == "logmel":
        assert cfg.n_mels == getattr(model, "n_mels", cfg.n_mels)
        assert cfg.logmel == get_arch(arch).logmel.replace(n_mels=cfg.n_mels)
        assert cfg.sample_rate == cfg.logmel.sample_rate
    else:
        assert cfg.logmel is None and cfg.sample_rate == 16000
    # the description really is the model's input: a chunk of that shape runs
    with torch.no_grad():
        y = model.eval()(torch.zeros(2, *cfg.input_shape))
    assert y.shape == (2, cfg.n_tags)


def test_cfg_builds_no_network(monkeypatch):
    """model_cfg of an architecture instantiates no torch module at all."""
    def refuse(*a, **kw):
        raise AssertionError("a network was built")

    monkeypatch.setattr(torch.nn.Module, "__init__", refuse)
    for arch, kwargs in ARGS.items():
        assert model_cfg(arch, **kwargs).input_length == kwargs.get(
            "input_length", get_arch(arch).cfg().input_length)
    with pytest.raises(AssertionError, match="built"):
        create_model("raw_cnn_l")  # control: building does call it


def test_bad_arguments_fail_before_building():
    with pytest.raises(ConfigError, match=r"bad arguments for model 'spec_att'.*input_length"):
        model_cfg("spec_att", colour="red")
    with pytest.raises(ConfigError, match="musicnn: n_tags must be a positive integer"):
        model_cfg("musicnn", n_tags=0)
    with pytest.raises(ConfigError, match="q2l: n_mels must be a positive integer"):
        model_cfg("q2l", n_mels=0)
    with pytest.raises(ModelError, match="takes no architecture arguments"):
        model_cfg("musicnn.mtat", n_tags=3)
    with pytest.raises(ModelError, match="unknown model 'nope'"):
        model_cfg("nope")


def test_checkpoint_models_carry_their_checkpoints_cfg(tmp_path):
    mtat = create_model("musicnn.mtat")
    assert mtat.cfg == load_checkpoint(pretrained_path("musicnn.mtat")).cfg
    assert mtat.cfg.tags == MTT_TAGS and mtat.cfg.logmel == MUSICNN
    assert model_cfg("musicnn.mtat") == mtat.cfg  # read from the file, nothing built
    assert model_cfg("musicnn.msd").tags == MSD_TAGS
    assert model_cfg("musicnn").tags is None

    torch.manual_seed(0)
    model = create_model("spec_att", **ARGS["spec_att"]).eval()
    path = save_checkpoint(tmp_path / "s.safetensors", model, arch="spec_att",
                           arch_args=ARGS["spec_att"], tags=[f"t{i}" for i in range(7)],
                           sample_rate=16000, input_kind="logmel", input_length=48,
                           logmel=SPEC_ATT_DB.replace(n_mels=40), thresholds=[0.5] * 7)
    loaded = create_model(path)
    assert loaded.cfg == model_cfg(path) == load_checkpoint(path).cfg
    assert loaded.cfg.replace(tags=None, thresholds=None) == model.cfg
    assert loaded.cfg.thresholds == (0.5,) * 7 and loaded.cfg.tags[-1] == "t6"
    assert loaded.cfg.unit_seconds == 256 / 16000


def test_model_cfg_validates_itself():
    with pytest.raises(ConfigError, match="x: 2 tag names for 3 outputs"):
        ModelCfg("x", {}, "waveform", 100, 16000, None, 3, tags=("a", "b"))
    with pytest.raises(ConfigError, match="log-mel sample_rate 16000 != sample_rate 22050"):
        ModelCfg("x", {}, "logmel", 100, 22050, MUSICNN, 3)
    with pytest.raises(ConfigError, match="a log-mel model needs its log-mel settings"):
        ModelCfg("x", {}, "logmel", 100, 16000, None, 3)


def test_an_architecture_must_follow_the_argument_convention(monkeypatch):
    monkeypatch.setattr(registry, "_ARCHS", dict(registry._ARCHS))

    def no_length(*, n_tags: int = 5):
        raise AssertionError("never called")

    with pytest.raises(ModelError, match="needs keyword argument.*input_length with defaults"):
        registry.register_model("no_length")(no_length)
    assert "no_length" not in list_models()


def test_tag_vocabularies_have_their_own_module():
    from rt_tagger.models import musicnn

    assert musicnn.MTT_TAGS is MTT_TAGS and musicnn.MSD_TAGS is MSD_TAGS
    assert len(MTT_TAGS) == len(set(MTT_TAGS)) == 50 and MTT_TAGS[0] == "guitar"
