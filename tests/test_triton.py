"""Triton Inference Server: the model-repository exporter and the ``triton://`` engine.

The repository's ``config.pbtxt`` is parsed with the ``ModelConfig`` protobuf shipped in
tritonclient. The engine runs against a REAL server on 127.0.0.1: PyTriton (a ``tritonserver``
with its Python backend) serving the project's own onnxruntime engine, started in its own venv
(PyTriton 0.7 pins numpy<2; ``python -m rt_tagger.deploy.pytriton_serve --setup`` makes it).
Without that venv the server tests skip and say so.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from signals import DATA

pytest.importorskip("tritonclient.grpc", reason="tritonclient not installed (rt-tagger[triton])")
from google.protobuf import text_format  # noqa: E402
from tritonclient.grpc import model_config_pb2  # noqa: E402

from rt_tagger.cli import main  # noqa: E402
from rt_tagger.deploy import validate_config  # noqa: E402
from rt_tagger.deploy.pytriton_serve import free_port, server_python, start_server  # noqa: E402
from rt_tagger.engines import create_engine  # noqa: E402
from rt_tagger.engines.triton_engine import TritonEngine  # noqa: E402
from rt_tagger.errors import BackendError, ModelError  # noqa: E402

TOL = 1e-5  # probabilities, server vs local onnxruntime engine
CLIP = DATA / "render_piano_monteverdi_12s.flac"
SERVER_PY, WHY_NO_SERVER = server_python()
needs_server = pytest.mark.skipif(SERVER_PY is None, reason=WHY_NO_SERVER)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    from checkpoints import make_checkpoint

    args = {"width": 64, "layers": 1, "heads": 4, "input_length": 32, "n_tags": 10}
    return make_checkpoint(tmp_path_factory.mktemp("small") / "small.safetensors", "spec_att", args)


@pytest.fixture(scope="module")
def repo(small, tmp_path_factory):
    root = tmp_path_factory.mktemp("repo")
    assert main(["export", str(small.path), "--triton", str(root), "--max-batch", "8"]) == 0
    return root / "small"


def test_config_parses_with_triton_protobuf_and_matches_checkpoint(repo, small):
    cfg = text_format.Parse((repo / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert cfg.name == "small" and cfg.platform == "onnxruntime_onnx" and cfg.max_batch_size == 8
    inputs = {t.name: t for t in cfg.input}
    outputs = {t.name: t for t in cfg.output}
    assert list(inputs["features"].dims) == [small.input_length, small.logmel["n_mels"]]
    assert inputs["features"].data_type == model_config_pb2.TYPE_FP32
    assert list(outputs["logits"].dims) == [len(small.tags)]
    assert cfg.dynamic_batching.max_queue_delay_microseconds > 0
    assert cfg.dynamic_batching.default_queue_policy.max_queue_size > 0  # bounded queue
    assert [g.kind for g in cfg.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_CPU]
    carried = json.loads(cfg.parameters["rt_tagger"].string_value)
    assert carried["tags"] == small.tags and carried["sha256"] == small.sha256
    side = json.loads((repo / "rt_tagger.json").read_text())
    assert side["checkpoint"]["tags"] == small.tags
    # the dims in the config are those of the graph Triton will load: run it with a batch of 3
    import onnxruntime as ort

    sess = ort.InferenceSession(str(repo / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    x = np.zeros((3, *inputs["features"].dims), np.float32)
    got = {o.name: v.shape for o, v in zip(sess.get_outputs(), sess.run(None, {"features": x}))}
    for name, t in outputs.items():
        assert got[name] == (3, *t.dims)
    assert validate_config(repo, small).name == "small"


def test_validate_config_refuses_other_checkpoint(repo, small, tmp_path):
    import dataclasses

    relabelled = dataclasses.replace(small, tags=[f"other{i}" for i in range(len(small.tags))])
    with pytest.raises(ModelError, match="tags differ"):
        validate_config(repo, relabelled)
    bad = tmp_path / "small"
    (bad / "1").mkdir(parents=True)
    (bad / "config.pbtxt").write_text((repo / "config.pbtxt").read_text().replace(
        f"dims: [ {len(small.tags)} ]", "dims: [ 7 ]"))
    with pytest.raises(ModelError, match="7"):
        validate_config(bad, small)
    (bad / "config.pbtxt").write_text("name: \"small\"\nmax_batch_size: [\n")
    with pytest.raises(ModelError, match="not a valid Triton model config"):
        validate_config(bad, small)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="has a GPU: a plan can be built")
def test_plan_says_it_needs_a_gpu(small, tmp_path, capsys):
    assert main(["export", str(small.path), "--triton", str(tmp_path / "r"), "--plan"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rt-tagger: ") and "CUDA GPU" in err[0]
    assert not (tmp_path / "r").exists()  # refused before writing anything


def test_bad_backend_urls(small, capsys):
    for url in ("triton://", "triton://host:notaport", "triton://h:1/a/b"):
        with pytest.raises(BackendError, match="triton://HOST:PORT"):
            create_engine(small, url)
    with pytest.raises(SystemExit):
        main(["x.wav", "--backend", "tritonx://h:1"])
    assert "invalid choice" in capsys.readouterr().err


def test_unreachable_server_is_one_clear_error(small):
    port = free_port()  # nothing listens there
    with pytest.raises(BackendError) as info:
        TritonEngine(small, f"triton+grpc://127.0.0.1:{port}/small", retries=2, backoff=0.01,
                     timeout=2.0)
    msg = str(info.value)
    assert "unreachable after 3 attempts" in msg and "\n" not in msg


def test_without_tritonclient_names_the_extra(tmp_path):
    # tritonclient is installed here; the subprocess hides it (sys.modules entry None) to see
    # what a user without the extra gets.
    code = ("import sys; sys.modules['tritonclient'] = None; from rt_tagger.cli import main; "
            f"sys.exit(main([{str(DATA / 'render_drums_70bpm_12s.flac')!r}, '-q', "
            "'--backend', 'triton://127.0.0.1:1/m']))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert lines[0].startswith("rt-tagger: ") and "pip install 'rt-tagger[triton]'" in lines[0]


def test_ready_is_read_from_the_ready_file_not_from_interleaved_stdout(tmp_path):
    """tritonserver logs to the server's stdout and its text can split our ready line mid-line
    (seen on CI); the client waits on the ready file, and a server that exits is not waited for."""
    from rt_tagger.deploy.pytriton_serve import _wait_ready

    ready = tmp_path / "ready.json"
    code = ("import sys, time, os, json; sys.stdout.write('I1130 model_lifecycle.cc:839'); "
            "print(json.dumps({'ready': ['m']}), flush=True); time.sleep(0.3); "
            f"open({str(ready)!r} + '.part', 'w').write(json.dumps({{'ready': ['m']}})); "
            f"os.replace({str(ready)!r} + '.part', {str(ready)!r}); time.sleep(30)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL)
    try:
        assert _wait_ready(proc, ready, 20.0) == {"ready": ["m"]}
    finally:
        proc.kill()
        proc.wait()
    dead = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    t0 = time.monotonic()
    assert _wait_ready(dead, tmp_path / "never.json", 20.0) is None
    assert time.monotonic() - t0 < 10


# ---- against a real PyTriton server -----------------------------------------------------------
@pytest.fixture(scope="module")
def served(small, tmp_path_factory):
    """The default model (musicnn_att.mtat), spec_att.w256, musicnn.mtat (another input
    shape) and the small 10-tag model."""
    if SERVER_PY is None:
        pytest.skip(WHY_NO_SERVER)
    from rt_tagger.engines.ort_engine import cached_onnx
    from rt_tagger.factory import DEFAULT_MODEL

    models = {"default": cached_onnx(DEFAULT_MODEL)[0],
              "spec_att_w256": cached_onnx("spec_att.w256")[0],
              "musicnn": cached_onnx("musicnn.mtat")[0],
              "ten_tags": cached_onnx(small)[0]}
    with start_server(models, threads=1) as srv:
        yield srv


@needs_server
@pytest.mark.slow
@pytest.mark.parametrize("scheme, model, served_as", [
    ("triton", "musicnn_att.mtat", "default"), ("triton+grpc", "musicnn_att.mtat", "default"),
    ("triton", "spec_att.w256", "spec_att_w256"), ("triton+grpc", "spec_att.w256", "spec_att_w256")])
def test_same_probabilities_as_local_engine(served, scheme, model, served_as):
    from rt_tagger.tagger import Tagger

    port = served.http_port if scheme == "triton" else served.grpc_port
    with Tagger(model, backend="onnxruntime") as local:
        ref = local.tag_file(CLIP)
    with Tagger(model, backend=f"{scheme}://127.0.0.1:{port}/{served_as}") as remote:
        assert remote.engine.name == "triton"
        got = remote.tag_file(CLIP)
    assert got.taggram.shape == ref.taggram.shape and len(ref.taggram) >= 10
    np.testing.assert_allclose(got.taggram, ref.taggram, rtol=0, atol=TOL)


@needs_server
@pytest.mark.slow
def test_cli_stream_through_triton(served, tmp_path):
    out = tmp_path / "t.jsonl"
    url = f"triton+grpc://127.0.0.1:{served.grpc_port}"  # model name from the model: spec_att_w256
    assert main([str(CLIP), "-q", "--model", "spec_att.w256", "--backend", url, "--jsonl", str(out)]) == 0
    msgs = [json.loads(line) for line in out.read_text().splitlines()]
    assert msgs[0]["type"] == "status" and msgs[0]["backend"] == "triton"
    assert sum(m["type"] == "update" for m in msgs) >= 10 and msgs[-1]["type"] == "summary"


@needs_server
@pytest.mark.slow
@pytest.mark.parametrize("name, why", [("musicnn", r"input 'features' has dims \[187, 96\]"),
                                       ("ten_tags", "the checkpoint has 50 tags")])
def test_mismatched_server_model_is_refused(served, name, why, capsys):
    url = f"triton://127.0.0.1:{served.http_port}/{name}"
    with pytest.raises(BackendError, match=why):
        create_engine("spec_att.w256", url)
    assert main([str(CLIP), "-q", "--model", "spec_att.w256", "--backend", url]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rt-tagger: ") and "does not match" in err[0]


@needs_server
@pytest.mark.slow
def test_unreachable_server_is_one_error_and_a_full_queue_is_overload(small, tmp_path):
    from rt_tagger.engines.ort_engine import cached_onnx

    path = cached_onnx(small)[0]
    x = np.random.default_rng(0).standard_normal((2, 32, 96)).astype(np.float32)
    with start_server({"small": path}) as srv:
        eng = TritonEngine(small, f"triton://127.0.0.1:{srv.http_port}/small", retries=1,
                           backoff=0.05, timeout=10.0)
        eng.run(x)
    with pytest.raises(BackendError, match="unreachable after 2 attempts"):
        eng.run(x)  # the server is gone: retried with backoff, then one clear error
    eng.close()
    # a server queue of one request without batching: the excess is reported as overload
    with start_server({"small": path}, max_batch=1, max_queue_size=1) as srv:
        errors: list[str] = []
        strict = TritonEngine(small, f"triton+grpc://127.0.0.1:{srv.grpc_port}/small", retries=0,
                              max_batch=1)

        def hammer() -> None:
            for _ in range(3):
                try:
                    strict.run(x[:1])
                except BackendError as exc:
                    errors.append(str(exc))

        threads = [threading.Thread(target=hammer) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert strict.overloads >= 1 and any("overloaded (its queue is full)" in e for e in errors)
        strict.close()


@needs_server
@pytest.mark.slow
def test_reconnects_after_the_server_restarts_on_the_same_ports(small, tmp_path):
    from rt_tagger.engines.ort_engine import cached_onnx

    path = cached_onnx(small)[0]
    http, grpc = free_port(), free_port()
    x = np.random.default_rng(0).standard_normal((2, 32, 96)).astype(np.float32)
    with start_server({"small": path}, http_port=http, grpc_port=grpc) as srv:
        eng = TritonEngine(small, f"triton://127.0.0.1:{srv.http_port}/small", retries=1,
                           backoff=0.05, timeout=10.0)
        first = eng.run(x).probs
    with pytest.raises(BackendError, match="unreachable after 2 attempts"):
        eng.run(x)
    with start_server({"small": path}, http_port=http, grpc_port=grpc):
        np.testing.assert_allclose(eng.run(x).probs, first, rtol=0, atol=TOL)
        assert eng.reconnects >= 1
    eng.close()
