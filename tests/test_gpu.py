"""GPU paths against CPU onnxruntime: the parity half of bench/gpu_check.py as tests.

Every path of ``bench/gpu_check.py`` (torch CUDA fp32/fp16/bf16, CUDA graphs, torch.compile,
onnxruntime-CUDA, TensorRT) runs the shipped default ``musicnn_att.mtat`` and ``spec_att.w256``
(the check also times ``musicnn.mtat``, whose body the default contains) on random log-mel chunks and is compared with the runtime's CPU onnxruntime engine on the same chunks,
probabilities and attention maps, with the check's tolerances (``gpu_check.TOLERANCES``,
absolute: fp32 1e-4; fp16 1e-2 on probabilities, 5e-3 on attention; bf16 3e-2 / 3e-2). Those
tests are marked ``gpu`` and skip, saying what is missing, where the path cannot run. The tests
without the mark run on any machine: the comparison itself, a path that fails being reported
with no figures, the fp16 TensorRT graph keeping LayerNorm and softmax in fp32, and the whole
check on a machine without CUDA.
"""
from __future__ import annotations

import importlib.util
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from checkpoints import make_checkpoint

from rt_tagger.engines import create_engine
from rt_tagger.export import export_onnx
from rt_tagger.factory import create_model, pretrained_path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.py"
BATCHES = (1, 8)  # the check also runs 64; two sizes keep the compile paths' test time down
MODELS = ("musicnn_att.mtat", "spec_att.w256")  # the two attention models of gc.MODELS


def _load_check():
    spec = importlib.util.spec_from_file_location("gpu_check", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


gc = _load_check()


@pytest.fixture(scope="module")
def cuda():
    why = gc.cuda_missing()
    if why:
        pytest.skip(why)
    torch.backends.cuda.matmul.allow_tf32 = False  # as the check runs: fp32 is IEEE fp32
    torch.backends.cudnn.allow_tf32 = False
    return torch.device("cuda", 0)


def reference(source, inputs, cache):
    """{batch: (probabilities, attention or None)} from the CPU onnxruntime engine."""
    with create_engine(source, "onnxruntime", device="cpu", max_batch=64, cache=cache) as ref:
        outs = {b: ref.run(x) for b, x in inputs.items()}
    return {b: (o.probs, o.attention) for b, o in outs.items()}


@pytest.fixture(scope="module", params=MODELS)
def shipped(request, cuda, tmp_path_factory):
    """(name, model, {batch: chunks}, {batch: reference}, {batch: other chunks and reference})."""
    if not pretrained_path(request.param).is_file():
        pytest.skip(f"{request.param} weights are not shipped in this tree")
    model = create_model(request.param)
    inputs = {b: gc.chunks(model, b, seed=b) for b in BATCHES}
    other = {b: gc.chunks(model, b, seed=100 + b) for b in BATCHES}
    cache = tmp_path_factory.mktemp("ort")
    return (request.param, model, inputs, reference(model, inputs, cache),
            {b: (other[b], r) for b, r in reference(model, other, cache).items()})


def _param(path):
    marks = [pytest.mark.gpu]
    if path.name == "compile-max-autotune-fp32":
        marks.append(pytest.mark.slow)  # autotuning compiles many kernel variants per shape
    return pytest.param(path, id=path.name, marks=marks)


@pytest.mark.parametrize("path", [_param(p) for p in gc.PATHS])
def test_gpu_path_matches_cpu_onnxruntime(path, shipped, cuda):
    why = gc.missing(path)
    if why:
        pytest.skip(f"{path.name}: {why}")
    name, model, inputs, refs, other = shipped
    with warnings.catch_warnings():  # TF32 is off on purpose: inductor's advice to turn it on
        warnings.filterwarnings("ignore", message="TensorFloat32 tensor cores")
        # torch 2.11's own warnings on the compile paths (cudagraph trees' warm-up, inductor's
        # autotuning): the outputs below are what is checked
        warnings.filterwarnings("ignore", message="The CUDA Graph is empty")
        warnings.filterwarnings("ignore", message="TypedStorage is deprecated")
        _check_against_reference(path, name, model, cuda, inputs, refs, other)


def _check_against_reference(path, name, model, dev, inputs, refs, other):
    make = path.build(model, dev)
    for b, x in inputs.items():
        run = make(x)
        run.call()  # compile / capture / autotune first
        out = run.outputs(run.call())
        _, why = gc.compare((gc.sigmoid(out[0]), out[1]), refs[b], path.precision)
        assert why is None, f"{path.name} on {name}, batch {b}: {why}"
        assert (out[1] is None) == (name == "musicnn.mtat")
        # New chunks in the same buffer: a captured graph or compiled program must use them.
        run.feed(other[b][0])
        out = run.outputs(run.call())
        _, why = gc.compare((gc.sigmoid(out[0]), out[1]), other[b][1], path.precision)
        assert why is None, f"{path.name} on {name}, batch {b}, second input: {why}"


# ---- on any machine ---------------------------------------------------------------------------
def test_compare_reports_what_differs():
    rng = np.random.default_rng(0)
    probs = rng.uniform(size=(4, 50))
    attn = rng.dirichlet(np.ones(9), size=(4, 2, 8, 9))
    assert gc.compare((probs + 5e-5, attn), (probs, attn), "fp32")[1] is None
    errs, why = gc.compare((probs + 2e-4, attn), (probs, attn), "fp32")
    assert why == "probs: max |d| 2.00e-04 > tolerance 1e-04"
    assert errs["probs"] == pytest.approx(2e-4)
    assert gc.compare((probs + 2e-4, attn), (probs, attn), "fp16")[1] is None
    bad = attn.copy()
    bad[1, 0, 3, 2] += 6e-3
    assert gc.compare((probs, bad), (probs, attn), "fp16")[1].startswith("attention: max |d| 6")
    bad[0, 0, 0, 0] = np.nan
    assert gc.compare((probs, bad), (probs, attn), "bf16")[1] == "attention: non-finite values"
    assert "shape" in gc.compare((probs, None), (probs, attn), "fp32")[1]
    assert gc.compare((probs, None), (probs, None), "fp32") == ({"probs": 0.0}, None)


def _cpu_path(name, shift):
    """A CPU stand-in for a GPU path: eager fp32, its logits moved by ``shift``."""
    eager = gc.torch_path("fp32")

    def build(model, dev):
        make = eager(model, dev)

        def shifted(x):
            run = make(x)

            def outputs(result):
                logits, attention = run.outputs(result)
                return logits + shift, attention

            return gc.Runner(run.call, outputs, run.sync, run.feed)

        return shifted

    return gc.GpuPath(name, "fp32", build, ())


def test_check_path_gives_figures_only_to_paths_that_pass(tmp_path):
    args = {"width": 64, "layers": 1, "heads": 4, "input_length": 32}
    model = make_checkpoint(tmp_path / "s.safetensors", "spec_att", args).build_model()
    inputs = {b: gc.chunks(model, b, seed=b) for b in (1, 4)}
    # the legacy exporter: a faster export than the runtime's default, same reference role here
    refs = reference(export_onnx(model, tmp_path / "s.onnx", exporter="legacy"), inputs, tmp_path)
    cpu = torch.device("cpu")
    good = gc.check_path(_cpu_path("good", 0.0), "small", model, cpu, inputs, refs, warmup=1,
                         runs=3)
    assert good["status"] == "ok", good
    assert set(good["batches"]) == {"1", "4"} and good["batches"]["4"]["runs"] == 3
    assert 0 < good["batches"]["4"]["median_ms"] <= good["batches"]["4"]["p99_ms"]
    assert good["sources_per_gpu"] == int(4 / (good["batches"]["4"]["median_ms"] / 1e3) * 0.5)
    assert max(e["attention"] for e in good["max_abs_err"].values()) < 1e-4
    # logits + 0.01 moves each probability by p(1-p)*0.01: above 1e-4 for any p in [0.01, 0.99]
    bad = gc.check_path(_cpu_path("bad", 0.01), "small", model, cpu, inputs, refs, warmup=1,
                        runs=3)
    assert bad["status"] == "failed" and "batches" not in bad and "sources_per_gpu" not in bad
    assert bad["reason"].startswith("batch 1: probs: max |d|")


@pytest.mark.parametrize("islands", [True, False])
def test_fp16_tensorrt_graph_keeps_layernorm_and_softmax_fp32(islands):
    """The fp16 program the check hands torch-tensorrt computes LayerNorm and softmax in fp32
    (and, without :class:`gpu_check.Fp32Islands`, would not: the check can fail)."""
    name = "spec_att.w256"
    if not pretrained_path(name).is_file():
        pytest.skip(f"{name} weights are not shipped in this tree")
    model = create_model(name).half()
    x = torch.from_numpy(gc.chunks(model, 2, seed=0)).half()
    ep = gc.export_for_tensorrt(model, x, islands=islands)
    found = {}
    for node in ep.graph.nodes:
        kind = next((k for k in ("softmax", "layer_norm") if k in str(node.target)), None)
        if node.op == "call_function" and kind:
            found.setdefault(kind, set()).add(node.args[0].meta["val"].dtype)
    want = torch.float32 if islands else torch.float16
    assert found == {"softmax": {want}, "layer_norm": {want}}
    assert ep.graph_signature.user_outputs and all(
        n.meta["val"].dtype == torch.float16 for n in ep.graph.output_node().args[0])


def test_check_on_a_machine_without_cuda_skips_everything(tmp_path, capsys):
    if gc.cuda_missing() is None:
        pytest.skip("this machine has CUDA: the check runs its paths instead")
    assert gc.main(["--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    rows = result["results"]
    assert len(rows) == len(gc.PATHS) * len(gc.MODELS)
    assert all(r["status"] == "skipped" and r["reason"].startswith(gc.cuda_missing())
               for r in rows)
    trt = [r["reason"] for r in rows if r["path"].startswith("tensorrt")]
    assert all(("torch-tensorrt" in r) == (gc.trt_missing() is not None) for r in trt)
    table = (tmp_path / "gpu_check.md").read_text()
    assert table.count("| skipped |") == len(rows) and "| tensorrt-fp16 | spec_att.w256 |" in table
    assert "| tensorrt-fp16 | spec_att.w256 |" in capsys.readouterr().out
