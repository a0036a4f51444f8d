"""GPU check: every GPU path this machine has, checked against CPU onnxruntime, then timed.

For the shipped default model (``musicnn_att.mtat``), the previous default ``spec_att.w256`` and
the teacher ``musicnn.mtat``, each path below runs the
same random log-mel chunks (drawn at the scale the model's input BatchNorm was trained on, so
half precision sees realistic magnitudes) as the CPU onnxruntime engine, the runtime's plain
path. A path whose probabilities or attention maps differ from onnxruntime's by more than its
precision's tolerance (``TOLERANCES``), or are not finite, is reported as *failed* and gets no
figures. A path that passes is timed at batch 1, 8 and 64: the median and p99 of ``--runs``
forward passes after ``--warmup`` passes, each pass timed on the host between two
``torch.cuda.synchronize()`` calls, input already on the GPU (onnxruntime-CUDA: host arrays in
and out, copies included). *Sources per GPU* = chunks/s at batch 64 x the 0.5 s hop: the live
sources one GPU keeps up with (model only: log-mel and host copies not counted).

Paths (TF32 is switched off, so "fp32" is IEEE fp32 throughout):

* ``torch-fp32``, ``torch-fp16-autocast``, ``torch-bf16-autocast``: eager PyTorch; autocast
  keeps LayerNorm and softmax in fp32 (they are on its fp32 list).
* ``torch-fp16-half``: the whole model ``.half()``, what ``--backend torch --precision fp16``
  runs (LayerNorm and softmax in fp16 too).
* ``cudagraph-fp32``, ``cudagraph-fp16-autocast``: one ``torch.cuda.CUDAGraph`` captured per
  static batch shape, replayed.
* ``compile-reduce-overhead-fp32``, ``compile-reduce-overhead-fp16-autocast``,
  ``compile-max-autotune-fp32`` (``mode="max-autotune-no-cudagraphs"``): ``torch.compile``
  with static shapes (one compilation per batch size, Triton kernels).
* ``onnxruntime-cuda-fp32``: the runtime's OrtEngine on the GPU (needs onnxruntime-gpu).
* ``tensorrt-fp16``, ``tensorrt-fp32``: torch-tensorrt (dynamo) programs compiled from the
  ``torch.export`` graph of :func:`rt_tagger.export.export_graph` (what the tensorrt engine
  compiles); fp16 keeps LayerNorm and softmax in fp32 (:class:`Fp32Islands`).

What the machine lacks (CUDA, Triton, onnxruntime's CUDA provider, torch-tensorrt) is reported as
skipped with the reason; paths left when ``--deadline`` runs out are skipped as "time budget".
Results go to ``<out>/gpu_check.md`` and ``<out>/gpu_check.json``, rewritten after each path so
a killed run keeps what it measured.

    python bench/gpu_check.py --out bench/results/gpu      # bench/gpu_check.sh runs this
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import platform
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rt_tagger.engines import (
    sigmoid,  # the runtime's own (torch-free), as the reference uses
)

# The default first: paths left when the deadline runs out are the later models'.
MODELS = ("musicnn_att.mtat", "spec_att.w256", "musicnn.mtat")
BATCHES = (1, 8, 64)
HOP_S = 0.5
#: Absolute tolerances against CPU onnxruntime fp32: (probabilities, attention maps).
#: fp32: float32 rounding differences between kernels, far below 1e-4. fp16 (10-bit mantissa)
#: and bf16 (7-bit): matmuls and convolutions run in half precision; on this project's 2-core
#: CPU, bf16 autocast differed from onnxruntime by up to 4e-3 (probabilities) and 1e-2
#: (attention) at batch 8, and fp16 carries 3 more mantissa bits. The check reports the measured
#: maxima beside these bounds.
TOLERANCES = {"fp32": (1e-4, 1e-4), "fp16": (1e-2, 5e-3), "bf16": (3e-2, 3e-2)}


def have(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def cuda_missing() -> str | None:
    """None if torch sees a CUDA GPU, else why not."""
    import torch

    if torch.version.cuda is None:
        return f"no CUDA: torch {torch.__version__} is a CPU-only build"
    if not torch.cuda.is_available():
        return f"no CUDA device visible (torch {torch.__version__}, CUDA {torch.version.cuda})"
    return None


def triton_missing() -> str | None:
    return None if have("triton") else "Triton is not installed (torch.compile's GPU backend)"


def ort_cuda_missing() -> str | None:
    import onnxruntime as ort

    providers = ort.get_available_providers()
    if "CUDAExecutionProvider" not in providers:
        return (f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (providers: "
                f"{', '.join(providers)}); needs onnxruntime-gpu")
    return None


def trt_missing() -> str | None:
    if not have("torch_tensorrt"):
        return "torch-tensorrt is not installed (pip install 'rt-tagger[tensorrt]')"
    try:
        import torch_tensorrt  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - a broken CUDA/TensorRT install raises OSError
        return f"torch-tensorrt is not importable: {(str(exc).splitlines() or [repr(exc)])[0]}"
    return None


def chunks(model: Any, batch: int, seed: int) -> np.ndarray:
    """``(batch, frames, n_mels)`` random log-mel at the model's input BatchNorm statistics."""
    ck = model.checkpoint
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, ck.input_length, int(ck.logmel["n_mels"])))
    bn = getattr(model, "input_bn", None) or getattr(getattr(model, "frontend", None),
                                                     "input_bn", None)
    if bn is not None and bn.running_mean.numel() == 1:
        x = float(bn.running_mean) + np.sqrt(float(bn.running_var) + bn.eps) * x
    return x.astype(np.float32)


class Fp32Islands:
    """Context manager: while ``torch.export`` traces a half-precision model, LayerNorm and
    softmax compute in fp32 (inputs cast up, result cast back), so the exported graph, and the
    TensorRT engine built from it with explicit typing, keeps them in fp32."""

    def __init__(self) -> None:
        import torch
        import torch.nn.functional as F
        from torch.overrides import TorchFunctionMode

        funcs = {torch.softmax, F.softmax, torch.Tensor.softmax, F.layer_norm, torch.layer_norm}
        half = (torch.float16, torch.bfloat16)

        def up(a: Any) -> Any:
            return a.float() if isinstance(a, torch.Tensor) and a.dtype in half else a

        class Mode(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                if func in funcs and isinstance(args[0], torch.Tensor) and args[0].dtype in half:
                    out = func(*map(up, args), **{k: up(v) for k, v in kwargs.items()})
                    return out.to(args[0].dtype)
                return func(*args, **kwargs)

        self._mode = Mode()

    def __enter__(self) -> None:
        self._mode.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._mode.__exit__(*exc)


def export_for_tensorrt(model: Any, example: Any, *, islands: bool) -> Any:
    """The ``torch.export`` program of ``export_graph(model)`` that torch-tensorrt compiles
    (``model`` and ``example`` already on their device and dtype)."""
    import torch

    from rt_tagger.export import export_graph, supports_attention

    graph = export_graph(model, supports_attention(model))
    if not islands:
        return torch.export.export(graph, (example,))
    with Fp32Islands():
        return torch.export.export(graph, (example,))


# ---- paths: build(model, device) -> make(x numpy) -> Runner --------------------------------------
@dataclass
class Runner:
    """One path ready for one input: ``call()`` is the timed forward pass, ``outputs(result)``
    gives ``(logits, attention or None)`` as float32 numpy, ``sync`` waits for the device,
    ``feed(x)`` puts new chunks of the same shape where ``call`` reads them (a captured graph
    or compiled program then runs on the new data)."""

    call: Callable[[], Any]
    outputs: Callable[[Any], tuple[np.ndarray, np.ndarray | None]]
    sync: Callable[[], None]
    feed: Callable[[np.ndarray], None]


def _numpy_out(out: Any) -> tuple[np.ndarray, np.ndarray | None]:
    if isinstance(out, (tuple, list)):
        return out[0].detach().float().cpu().numpy(), out[1].detach().float().cpu().numpy()
    return out.detach().float().cpu().numpy(), None


def _graph_module(model: Any, dev: Any, dtype: Any = None) -> Any:
    from rt_tagger.export import export_graph, supports_attention

    m = copy.deepcopy(model).to(dev)
    if dtype is not None:
        m = m.to(dtype)
    return export_graph(m, supports_attention(m))


def torch_path(dtype_name: str, *, autocast: bool = True, mode: str | None = None,
               graph: bool = False) -> Callable[[Any, Any], Callable[[np.ndarray], Runner]]:
    """Eager (``mode=None``), ``torch.compile(mode=...)`` or CUDA-graph PyTorch on ``dev``;
    ``autocast=False`` with a half ``dtype_name`` casts the whole model instead."""

    def build(model: Any, dev: Any) -> Callable[[np.ndarray], Runner]:
        import torch

        dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype_name]
        amp = autocast and dtype != torch.float32
        in_dtype = torch.float32 if (amp or dtype == torch.float32) else dtype
        fn = _graph_module(model, dev, None if amp else dtype)
        if mode is not None:
            # every path compiles the same forward (export.py): without a reset, the recompiles of
            # earlier paths, models and batch sizes count towards dynamo's recompile limit (8),
            # which the H200 run hit on the 4th compiled (path, model)
            torch._dynamo.reset()
            fn = torch.compile(fn, mode=mode, dynamic=False, fullgraph=True)
        sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

        def forward(x: Any) -> Any:
            if mode == "reduce-overhead":
                torch.compiler.cudagraph_mark_step_begin()
            # no autocast weight cache across a graph capture (PyTorch's CUDA-graph notes)
            with torch.inference_mode(), torch.autocast(dev.type, dtype=dtype, enabled=amp,
                                                        cache_enabled=not graph):
                return fn(x)

        def make(x_np: np.ndarray) -> Runner:
            x = torch.from_numpy(x_np).to(dev, in_dtype, copy=True)  # feed() must not write x_np
            feed = lambda new: x.copy_(torch.from_numpy(new))
            if not graph:
                return Runner(lambda: forward(x), _numpy_out, sync, feed)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # warm-up off the capture stream, as CUDA graphs need
                for _ in range(3):
                    forward(x)
            torch.cuda.current_stream().wait_stream(side)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                out = forward(x)
            return Runner(lambda: (g.replay(), out)[1], _numpy_out, sync, feed)

        return make

    return build


def ort_cuda_path(model: Any, dev: Any) -> Callable[[np.ndarray], Runner]:
    from rt_tagger.engines import create_engine

    engine = create_engine(model, "onnxruntime", device=f"cuda:{dev.index or 0}", max_batch=64)

    def make(x_np: np.ndarray) -> Runner:
        held = [x_np]
        return Runner(lambda: engine.run(held[0]), lambda o: (o.logits, o.attention),
                      lambda: None, lambda new: held.__setitem__(0, new))

    return make


def tensorrt_path(dtype_name: str) -> Callable[[Any, Any], Callable[[np.ndarray], Runner]]:
    def build(model: Any, dev: Any) -> Callable[[np.ndarray], Runner]:
        import torch
        import torch_tensorrt

        dtype = torch.float16 if dtype_name == "fp16" else torch.float32
        m = copy.deepcopy(model).to(dev, dtype)

        def make(x_np: np.ndarray) -> Runner:
            x = torch.from_numpy(x_np).to(dev, dtype)
            ep = export_for_tensorrt(m, x, islands=dtype == torch.float16)
            try:
                prog = torch_tensorrt.dynamo.compile(ep, inputs=[x], min_block_size=1,
                                                     use_explicit_typing=True)
            except TypeError:  # torch-tensorrt < 2.5: no explicit typing, precision by flag
                prog = torch_tensorrt.dynamo.compile(ep, inputs=[x], min_block_size=1,
                                                     enabled_precisions={dtype})

            def call() -> Any:
                with torch.no_grad():
                    return prog(x)

            return Runner(call, _numpy_out, torch.cuda.synchronize,
                          lambda new: x.copy_(torch.from_numpy(new)))

        return make

    return build


@dataclass(frozen=True)
class GpuPath:
    name: str
    precision: str
    build: Callable[[Any, Any], Callable[[np.ndarray], Runner]]
    needs: tuple[Callable[[], str | None], ...]
    note: str = ""
    est_s: float = 10.0  # rough build + check + timing time per model, for the deadline


PATHS = (
    GpuPath("torch-fp32", "fp32", torch_path("fp32"), (cuda_missing,), "eager, TF32 off"),
    GpuPath("torch-fp16-autocast", "fp16", torch_path("fp16"), (cuda_missing,),
          "LayerNorm/softmax fp32 (autocast)"),
    GpuPath("torch-bf16-autocast", "bf16", torch_path("bf16"), (cuda_missing,),
          "LayerNorm/softmax fp32 (autocast)"),
    GpuPath("torch-fp16-half", "fp16", torch_path("fp16", autocast=False), (cuda_missing,),
          "model.half(), as --backend torch --precision fp16"),
    GpuPath("cudagraph-fp32", "fp32", torch_path("fp32", graph=True), (cuda_missing,),
          "torch.cuda.CUDAGraph per batch shape"),
    GpuPath("cudagraph-fp16-autocast", "fp16", torch_path("fp16", graph=True), (cuda_missing,),
          "CUDA graph of the autocast forward"),
    GpuPath("compile-reduce-overhead-fp32", "fp32", torch_path("fp32", mode="reduce-overhead"),
          (cuda_missing, triton_missing), "torch.compile, static shapes", 40),
    GpuPath("compile-reduce-overhead-fp16-autocast", "fp16",
          torch_path("fp16", mode="reduce-overhead"), (cuda_missing, triton_missing),
          "torch.compile of the autocast forward", 40),
    GpuPath("onnxruntime-cuda-fp32", "fp32", ort_cuda_path, (cuda_missing, ort_cuda_missing),
          "OrtEngine on the GPU; host copies included"),
    GpuPath("tensorrt-fp16", "fp16", tensorrt_path("fp16"), (cuda_missing, trt_missing),
          "LayerNorm/softmax fp32 (explicit typing)", 90),
    GpuPath("tensorrt-fp32", "fp32", tensorrt_path("fp32"), (cuda_missing, trt_missing), "", 90),
    GpuPath("compile-max-autotune-fp32", "fp32",
          torch_path("fp32", mode="max-autotune-no-cudagraphs"), (cuda_missing, triton_missing),
          "mode=max-autotune-no-cudagraphs; last: longest to compile", 120),
)
PATH_NAMES = tuple(p.name for p in PATHS)


def missing(path: GpuPath) -> str | None:
    """Why ``path`` cannot run here (everything it misses), or None."""
    whys = [why for why in (need() for need in path.needs) if why]
    return "; ".join(whys) or None


# ---- checking and timing ------------------------------------------------------------------------
def compare(out: tuple[np.ndarray, np.ndarray | None], ref: tuple[np.ndarray, np.ndarray | None],
            precision: str) -> tuple[dict[str, float], str | None]:
    """``({"probs": max|d|, "attention": max|d|}, None if within tolerance else why not)``;
    ``out``/``ref`` are ``(probabilities, attention or None)``."""
    tol = dict(zip(("probs", "attention"), TOLERANCES[precision]))
    errs: dict[str, float] = {}
    for key, got, want in zip(("probs", "attention"), out, ref):
        if want is None and got is None:
            continue
        if got is None or want is None or got.shape != want.shape:
            return errs, (f"{key}: shape {None if got is None else got.shape} != reference "
                          f"{None if want is None else want.shape}")
        if not np.isfinite(got).all():
            return errs, f"{key}: non-finite values"
        errs[key] = float(np.max(np.abs(got.astype(np.float64) - want)))
        if errs[key] > tol[key]:
            return errs, f"{key}: max |d| {errs[key]:.2e} > tolerance {tol[key]:.0e}"
    return errs, None


def time_runner(run: Runner, *, warmup: int, runs: int) -> dict[str, float]:
    for _ in range(warmup):
        run.call()
    run.sync()
    times = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter()
        run.call()
        run.sync()
        times[i] = time.perf_counter() - t0
    return {"median_ms": float(np.median(times) * 1e3),
            "p99_ms": float(np.percentile(times, 99) * 1e3), "runs": runs}


def check_path(path: GpuPath, name: str, model: Any, dev: Any, inputs: dict[int, np.ndarray],
               refs: dict[int, tuple[np.ndarray, np.ndarray | None]], *, warmup: int, runs: int,
               ) -> dict[str, Any]:
    """Build ``path`` for ``model``; check every batch against ``refs``; time them if all pass."""
    row: dict[str, Any] = {"path": path.name, "model": name, "precision": path.precision,
                           "note": path.note,
                           "tolerance": dict(zip(("probs", "attention"),
                                                 TOLERANCES[path.precision]))}
    try:
        make = path.build(model, dev)
        runners = {}
        errors: dict[str, dict[str, float]] = {}
        for b, x in inputs.items():
            runners[b] = run = make(x)
            for _ in range(2):  # compile, autotune, record graphs before the checked pass
                run.call()
            logits, attn = run.outputs(run.call())
            errors[str(b)], why = compare((sigmoid(logits), attn), refs[b], path.precision)
            if why:
                return {**row, "status": "failed", "reason": f"batch {b}: {why}",
                        "max_abs_err": errors}
        row["max_abs_err"] = errors
        row["batches"] = {str(b): time_runner(r, warmup=warmup, runs=runs)
                          for b, r in runners.items()}
    except Exception as exc:  # noqa: BLE001 - a path that does not build or run is a failure
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return {**row, "status": "failed", "reason": f"{type(exc).__name__}: {first[:300]}"}
    big = row["batches"].get(str(max(inputs)))
    if big:
        row["sources_per_gpu"] = int(max(inputs) / (big["median_ms"] / 1e3) * HOP_S)
    return {**row, "status": "ok"}


# ---- the run ------------------------------------------------------------------------------------
def environment() -> dict[str, Any]:
    import onnxruntime as ort
    import torch

    env: dict[str, Any] = {
        "when_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "python": platform.python_version(), "machine": platform.machine(),
        "torch": torch.__version__, "torch_cuda_build": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "onnxruntime": ort.__version__, "ort_providers": ort.get_available_providers(),
    }
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
        env["gpu_capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
    for mod in ("triton", "torch_tensorrt", "tensorrt"):
        if have(mod):
            try:
                env[mod] = str(getattr(__import__(mod), "__version__", "unknown"))
            except Exception as exc:  # noqa: BLE001 - present but broken: say so
                env[mod] = f"broken ({type(exc).__name__})"
        else:
            env[mod] = None
    return env


def _ms(b: dict[str, float] | None) -> str:
    return "" if not b else f"{b['median_ms']:.3f} / {b['p99_ms']:.3f}"


def render(result: dict[str, Any]) -> str:
    env = result["environment"]
    gpu = env.get("gpu") or "none"
    lines = [
        "# GPU check (bench/gpu_check.py)", "",
        (f"{env['when_utc']} UTC; GPU: {gpu}; torch {env['torch']} (CUDA build "
        f"{env['torch_cuda_build']}), Triton {env['triton']}, onnxruntime {env['onnxruntime']} "
        f"({', '.join(env['ort_providers'])}), torch-tensorrt {env['torch_tensorrt']}; "
        f"Python {env['python']} on {env['machine']}."), "",
        (f"Latency: median / p99 ms of {result['runs']} forward passes per batch after "
        f"{result['warmup']} warm-up passes, CUDA-synchronised, input already on the GPU. "
        f"Sources/GPU: chunks/s at batch {max(BATCHES)} x hop {HOP_S} s (model only). Each path's "
        "probabilities and attention maps are checked against CPU onnxruntime (fp32) on the same "
        "inputs first; max |d| is the largest absolute difference over all batches."), "",
        "Tolerances (absolute; probabilities / attention): "
        + "; ".join(f"{k} {p:.0e} / {a:.0e}" for k, (p, a) in TOLERANCES.items()) + ".", "",
        ("| path | model | status | b1 ms | b8 ms | b64 ms | sources/GPU | max abs diff probs / attn "
        "| note |"),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["results"]:
        errs = r.get("max_abs_err") or {}
        p = max((e.get("probs", 0.0) for e in errs.values()), default=None)
        a = max((e.get("attention", -1.0) for e in errs.values()), default=-1.0)
        diff = "" if p is None else f"{p:.1e} / " + (f"{a:.1e}" if a >= 0 else "-")
        b = r.get("batches") or {}
        note = r.get("reason") if r["status"] != "ok" else r.get("note", "")
        lines.append(f"| {r['path']} | {r['model']} | {r['status']} | {_ms(b.get('1'))} | "
                     f"{_ms(b.get('8'))} | {_ms(b.get('64'))} | {r.get('sources_per_gpu', '')} | "
                     f"{diff} | {note} |")
    if result.get("running"):
        lines += ["", f"Stopped while running: {result['running']}."]
    return "\n".join(lines) + "\n"


def write(out: Path, result: dict[str, Any]) -> None:
    (out / "gpu_check.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "gpu_check.md").write_text(render(result))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench/results/gpu"))
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--paths", default=",".join(PATH_NAMES), help="comma-separated subset")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--deadline", type=float, default=270.0,
                    help="seconds; paths not started by then are skipped as 'time budget'")
    args = ap.parse_args(argv)
    start = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    unknown = set(args.paths.split(",")) - set(PATH_NAMES)
    if unknown:
        ap.error(f"unknown path(s) {sorted(unknown)}; known: {', '.join(PATH_NAMES)}")
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means IEEE fp32 on every path
    warnings.filterwarnings("ignore", message="TensorFloat32 tensor cores")  # inductor: we know
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True  # fastest convolution per static shape (in warm-up)
    models = [m for m in args.models.split(",") if m]
    paths = [p for p in PATHS if p.name in args.paths.split(",")]
    result: dict[str, Any] = {"environment": environment(), "runs": args.runs,
                              "warmup": args.warmup, "tolerances": TOLERANCES, "results": []}
    print(json.dumps(result["environment"]), flush=True)
    reasons = {p.name: missing(p) for p in paths}
    loaded: dict[str, Any] = {}
    if any(r is None for r in reasons.values()):
        from rt_tagger.engines import create_engine
        from rt_tagger.factory import create_model

        for name in models:  # the reference: the runtime's CPU onnxruntime engine, fp32
            model = create_model(name)
            ref = create_engine(model, "onnxruntime", device="cpu", max_batch=max(BATCHES))
            inputs = {b: chunks(model, b, seed=b) for b in BATCHES}
            outs = {b: ref.run(x) for b, x in inputs.items()}
            loaded[name] = (model, inputs, {b: (o.probs, o.attention) for b, o in outs.items()})
            ref.close()
    dev = torch.device("cuda", 0) if torch.cuda.is_available() else None
    for path in paths:
        for name in models:
            if reasons[path.name]:
                row = {"status": "skipped", "reason": reasons[path.name]}
            elif time.monotonic() - start + path.est_s > args.deadline:
                row = {"status": "skipped", "reason": f"time budget: under {path.est_s:g} s of "
                                                      f"--deadline {args.deadline:g} s left"}
            else:
                result["running"] = f"{path.name} on {name}"
                write(args.out, result)
                model, inputs, refs = loaded[name]
                row = check_path(path, name, model, dev, inputs, refs, warmup=args.warmup,
                                 runs=args.runs)
                result.pop("running")
                torch.cuda.empty_cache()
            row = {"path": path.name, "model": name, "precision": path.precision, **row}
            result["results"].append(row)
            print(f"{path.name:40s} {name:14s} {row['status']:8s} "
                  f"{row.get('sources_per_gpu', '')} {row.get('reason', '')}", flush=True)
            write(args.out, result)
    result["elapsed_s"] = round(time.monotonic() - start, 1)
    write(args.out, result)
    print(render(result))
    return 1 if any(r["status"] == "failed" for r in result["results"]) else 0


if __name__ == "__main__":
    sys.exit(main())
