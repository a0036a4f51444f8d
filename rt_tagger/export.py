"""Export a tagger to ONNX or TorchScript, carrying its checkpoint description along.

Exported graphs have one input, ``"features"`` (``(batch, frames, n_mels)`` float32 log-mel, or
``(batch, samples)`` for waveform models), and the outputs ``"logits"`` ``(batch, n_tags)`` and,
for attention models when asked, ``"attention"`` (the model's attention maps, e.g.
``(batch, layers, heads, T+1, T+1)`` for spec_att). The batch axis is dynamic unless ``batch``
fixes it.

The checkpoint description (the JSON a ``.safetensors`` checkpoint stores, see
:mod:`rt_tagger.checkpoint`) goes into the ONNX ``metadata_props`` under ``"rt_tagger"`` and into
a TorchScript archive as the extra file ``rt_tagger.json``, so an exported file describes itself:
:func:`read_onnx_metadata` and :func:`load_torchscript` give it back as a
:class:`~rt_tagger.checkpoint.Checkpoint` without weights.

ONNX uses PyTorch's ``torch.export``-based exporter (``dynamo=True``, needs onnxscript, a core
dependency): for the attention models it gives a graph about half the size of the legacy
TorchScript exporter's, and the legacy exporter is deprecated in torch 2.9+. ``exporter="legacy"``
selects the old one; ``"auto"`` (the default) takes the torch.export-based one when onnxscript
can be imported and falls back to the legacy one when it cannot (an install without it still
runs; tests/test_extras.py checks that graph against PyTorch). Neither needs a network or a
compiler.
"""
from __future__ import annotations

import contextlib
import importlib.util
import inspect
import json
import logging
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from .errors import ConfigError, ModelError
from .factory import resolve_model, supports_attention  # noqa: F401 - importable from here too

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from .checkpoint import Checkpoint

__all__ = ["DEFAULT_OPSET", "EXPORTERS", "FORMATS", "default_exporter", "export_frame_reuse",
           "export_graph", "export_model", "export_onnx", "frame_reuse_paths", "export_torchscript", "load_torchscript",
           "read_onnx_metadata", "resolve_model", "supports_attention"]

DEFAULT_OPSET = 18
EXPORTERS = ("dynamo", "legacy")
FORMATS = ("onnx", "torchscript")
INPUT_NAME = "features"
META_KEY = "rt_tagger"  # checkpoint description, same JSON as in the .safetensors header
EXPORT_KEY = "rt_tagger.export"  # how the file was made: versions, exporter, outputs, batch
_TS_META = "rt_tagger.json"
_TS_EXPORT = "rt_tagger_export.json"


def default_exporter() -> str:
    """The exporter ``exporter="auto"`` uses: "dynamo" if onnxscript is importable, else "legacy"."""
    try:
        found = importlib.util.find_spec("onnxscript") is not None
    except (ImportError, ValueError):  # a broken or half-removed install counts as absent
        found = False
    return "dynamo" if found else "legacy"


def export_graph(model: "nn.Module", with_attention: bool) -> "nn.Module":
    """Wrap ``model`` so the exported signature is ``features -> logits[, attention]``."""
    import torch

    class ExportGraph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, features: torch.Tensor) -> Any:
            if with_attention:
                logits, attention = self.model(features, return_attention=True)
                return logits, attention
            return self.model(features)

    return ExportGraph().eval()


def _example(ckpt: "Checkpoint", batch: int) -> "Any":
    import torch

    gen = torch.Generator().manual_seed(0)
    if ckpt.input_kind == "logmel":
        n_mels = int(ckpt.logmel["n_mels"])  # type: ignore[index]
        return torch.randn(batch, ckpt.input_length, n_mels, generator=gen)
    return torch.randn(batch, ckpt.input_length, generator=gen)


def _check_opts(model: "nn.Module", batch: int | None, with_attention: bool) -> bool:
    if batch is not None and (not isinstance(batch, int) or isinstance(batch, bool) or batch < 1):
        raise ConfigError(f"batch must be None (dynamic) or a positive integer, got {batch!r}")
    return bool(with_attention) and supports_attention(model)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporters' own chatter (deprecations inside torch, 'torchvision not installed')."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._export",
                                              "onnxscript")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lvl in zip(loggers, levels):
            lg.setLevel(lvl)


def _export_info(exporter: str, with_attention: bool, batch: int | None, **extra: Any) -> str:
    import torch

    info = {"exporter": exporter, "torch": torch.__version__, "input": INPUT_NAME,
            "outputs": ["logits", "attention"] if with_attention else ["logits"],
            "batch": batch, **extra}
    return json.dumps(info, sort_keys=True)


def _atomic_target(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    out = Path(path)
    if out.is_dir():
        raise ConfigError(f"output path {out} is a directory; give a file name")
    if not out.parent.exists():
        raise ConfigError(f"output directory {out.parent} does not exist")
    return out, out.with_name(f".{out.name}.{os.getpid()}.tmp")


def _resolve_exporter(exporter: str, opset: Any) -> str:
    """``exporter`` ("auto", "dynamo" or "legacy") as the one that will run; checks ``opset``."""
    if exporter not in ("auto", *EXPORTERS):
        raise ConfigError(f"unknown ONNX exporter {exporter!r}; choose one of auto, "
                          f"{', '.join(EXPORTERS)}")
    if exporter == "dynamo" and default_exporter() != "dynamo":
        raise ModelError("the torch.export-based ONNX exporter needs onnxscript (pip install "
                         "onnxscript), or use exporter='legacy'")
    if not isinstance(opset, int) or isinstance(opset, bool) or not 13 <= opset <= 23:
        raise ConfigError(f"ONNX opset must be an integer in [13, 23], got {opset!r}")
    return default_exporter() if exporter == "auto" else exporter


def export_onnx(
    source: Any,
    path: str | os.PathLike[str],
    *,
    batch: int | None = None,
    with_attention: bool = True,
    opset: int = DEFAULT_OPSET,
    exporter: str = "auto",
) -> Path:
    """Write ``source`` (see :func:`resolve_model`) as an ONNX file at ``path``; returns the path.

    ``batch=None`` makes the batch axis dynamic; an integer fixes it. ``with_attention`` adds the
    ``"attention"`` output for models that have attention maps (ignored for the others).
    ``exporter``: "auto" (see :func:`default_exporter`), "dynamo" or "legacy".
    """
    exporter = _resolve_exporter(exporter, opset)
    model, ckpt = resolve_model(source)
    attn = _check_opts(model, batch, with_attention)
    outputs = ["logits", "attention"] if attn else ["logits"]
    # (name, example, dynamic axes): the batch axis unless ``batch`` fixes it
    inputs = [(INPUT_NAME, _example(ckpt, batch or 2), {} if batch else {0: "batch"})]
    # Where the attention's time steps lie, so the runtime places it without the model.
    tm = getattr(model, "time_steps_to_frames", None) if attn else None
    extra = {"time_map": tm().to_dict()} if tm is not None else {}
    return _write_onnx(export_graph(model, attn), inputs, outputs, path, ckpt=ckpt,
                       exporter=exporter, opset=opset,
                       info=_export_info(exporter, attn, batch, opset=opset, **extra))


#: Suffixes of the two graphs :func:`export_frame_reuse` writes beside a model's ``.onnx``.
FRAME_STAGE_SUFFIX, FROM_STAGE_SUFFIX = ".stage.onnx", ".reuse.onnx"


def frame_reuse_paths(onnx_path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Where the frame-reuse graphs of the model in ``onnx_path`` live (beside it)."""
    p = Path(onnx_path)
    stem = p.name[:-5] if p.name.lower().endswith(".onnx") else p.name
    return p.with_name(stem + FRAME_STAGE_SUFFIX), p.with_name(stem + FROM_STAGE_SUFFIX)


def export_frame_reuse(source: Any, onnx_path: str | os.PathLike[str], *,
                       with_attention: bool = True, opset: int = DEFAULT_OPSET,
                       exporter: str = "auto") -> tuple[Path, Path] | None:
    """For a model whose overlapping chunks can share work (it has ``frame_stage``, e.g. the
    musicnn family), write its two halves beside ``onnx_path`` (:func:`frame_reuse_paths`):

    * ``*.stage.onnx``: ``features (batch, frames, n_mels)`` -> ``rows (batch, frames - l - r,
      dim)``, the per-frame stage on any stretch of a stream (``(l, r)`` frames of context);
    * ``*.reuse.onnx``: ``features`` (one chunk) + ``inner (batch, T - l - r, dim)`` (that
      chunk's rows) -> ``logits[, attention]``, equal to the whole model on the chunk.

    Returns the two paths, or None for a model without a frame stage."""
    import torch

    exporter = _resolve_exporter(exporter, opset)
    model, ckpt = resolve_model(source)
    if not callable(getattr(model, "frame_stage", None)):
        return None
    attn = _check_opts(model, None, with_attention)
    left, right = model.frame_stage_context
    stage_path, reuse_path = frame_reuse_paths(onnx_path)
    chunk = _example(ckpt, 2)
    with torch.no_grad():
        inner = model.frame_stage(chunk)
    context = {"frame_stage_context": [left, right], "inner_dim": int(inner.shape[2])}

    class Stage(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, features: torch.Tensor) -> torch.Tensor:
            return self.model.frame_stage(features)

    class FromStage(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, features: torch.Tensor, inner: torch.Tensor) -> Any:
            if attn:
                return self.model.from_frame_stage(features, inner, return_attention=True)
            return self.model.from_frame_stage(features, inner)

    outputs = ["logits", "attention"] if attn else ["logits"]
    _write_onnx(Stage().eval(), [(INPUT_NAME, chunk[:1], {0: "batch", 1: "frames"})], ["rows"],
                stage_path, ckpt=ckpt, exporter=exporter, opset=opset,
                info=_export_info(exporter, False, None, opset=opset, role="frame_stage",
                                  outputs=["rows"], **context))
    _write_onnx(FromStage().eval(), [(INPUT_NAME, chunk, {0: "batch"}), ("inner", inner, {0: "batch"})],
                outputs, reuse_path, ckpt=ckpt, exporter=exporter, opset=opset,
                info=_export_info(exporter, attn, None, opset=opset, role="from_frame_stage",
                                  **context))
    return stage_path, reuse_path


def _write_onnx(graph: Any, inputs: list[tuple[str, Any, dict[int, str]]], outputs: list[str],
                path: str | os.PathLike[str], *, ckpt: "Checkpoint", exporter: str, opset: int,
                info: str) -> Path:
    """Export ``graph`` (called with the ``inputs``' examples, in order) to ``path``, atomically,
    with the checkpoint description and ``info`` in its metadata. ``inputs``: ``(name, example,
    {axis: dynamic axis name})``; "frames" axes get a minimum of 7 (the widest kernel)."""
    import onnx
    import torch

    out, tmp = _atomic_target(path)
    names = [n for n, _, _ in inputs]
    examples = tuple(e for _, e, _ in inputs)
    try:
        with _quiet_exporter(), torch.no_grad():
            if exporter == "dynamo":
                dims = {"batch": torch.export.Dim("batch", max=65536),
                        "frames": torch.export.Dim("frames", min=7, max=1 << 20)}
                dyn = {n: {a: dims[d] for a, d in axes.items()} for n, _, axes in inputs}
                torch.onnx.export(graph, examples, str(tmp), input_names=names,
                                  output_names=outputs, opset_version=opset, dynamo=True,
                                  dynamic_shapes=dyn if any(dyn.values()) else None,
                                  verbose=False, report=False)
            else:
                axes = {n: dict(a) for n, _, a in inputs if a}
                if axes:  # outputs keep a dynamic batch axis
                    axes.update({n: {0: "batch"} for n in outputs})
                torch.onnx.export(graph, examples, str(tmp), input_names=names,
                                  output_names=outputs, opset_version=opset, dynamo=False,
                                  dynamic_axes=axes or None, do_constant_folding=True)
        proto = onnx.load(str(tmp))  # with any external weights the exporter wrote beside it
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        tmp.with_name(tmp.name + ".data").unlink(missing_ok=True)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"ONNX export ({exporter}) of {ckpt.arch!r} failed: {first}") from exc
    info = json.dumps({**json.loads(info), "onnx": onnx.__version__}, sort_keys=True)
    meta = {META_KEY: json.dumps(ckpt.metadata(), sort_keys=True), EXPORT_KEY: info}
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "rt-tagger"
    proto.doc_string = f"rt-tagger {ckpt.arch} tagger, {len(ckpt.tags)} tags"
    # The torch.export-based exporter may keep the weights in "<file>.data" beside the graph;
    # onnx.load above read them in, they are saved inside the one file here, so it goes.
    onnx.save(proto, str(tmp))  # small models: weights stay inside the one file
    tmp.with_name(tmp.name + ".data").unlink(missing_ok=True)
    os.replace(tmp, out)
    return out


def read_onnx_metadata(path: str | os.PathLike[str]) -> tuple["Checkpoint", dict[str, Any]]:
    """``(checkpoint description without weights, export info)`` stored in an rt-tagger .onnx."""
    import onnx

    from .checkpoint import checkpoint_from_metadata

    p = Path(path)
    if not p.is_file():
        raise ModelError(f"ONNX file not found: {p}")
    try:
        proto = onnx.load(str(p), load_external_data=False)
    except Exception as exc:
        raise ModelError(f"{p} is not a readable ONNX file: {str(exc).splitlines()[0]}") from None
    props = {m.key: m.value for m in proto.metadata_props}
    return checkpoint_from_metadata(props.get(META_KEY), str(p), p), \
        json.loads(props.get(EXPORT_KEY) or "{}")


def export_torchscript(
    source: Any,
    path: str | os.PathLike[str],
    *,
    batch: int | None = None,
    with_attention: bool = True,
) -> Path:
    """Trace ``source`` to a TorchScript archive at ``path`` (checkpoint JSON inside); returns it.

    Tracing keeps the batch axis symbolic for these models; ``batch`` only sets the example size.
    TorchScript is deprecated upstream but is still what C++ (libtorch) deployments load.
    """
    import torch

    model, ckpt = resolve_model(source)
    attn = _check_opts(model, batch, with_attention)
    out, tmp = _atomic_target(path)
    graph = export_graph(model, attn)
    try:
        with _quiet_exporter(), torch.no_grad():
            traced = torch.jit.trace(graph, (_example(ckpt, batch or 2),), check_trace=False)
            files = {_TS_META: json.dumps(ckpt.metadata(), sort_keys=True),
                     _TS_EXPORT: _export_info("torch.jit.trace", attn, batch)}
            torch.jit.save(traced, str(tmp), _extra_files=files)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"TorchScript export of {ckpt.arch!r} failed: {first}") from exc
    os.replace(tmp, out)
    return out


def load_torchscript(path: str | os.PathLike[str]) -> tuple[Any, "Checkpoint"]:
    """``(scripted module, checkpoint description)`` from :func:`export_torchscript`'s file."""
    import torch

    from .checkpoint import checkpoint_from_metadata

    p = Path(path)
    if not p.is_file():
        raise ModelError(f"TorchScript file not found: {p}")
    files = {_TS_META: "", _TS_EXPORT: ""}
    try:
        with _quiet_exporter():
            module = torch.jit.load(str(p), map_location="cpu", _extra_files=files)
    except Exception as exc:
        raise ModelError(f"{p} is not a TorchScript archive: {str(exc).splitlines()[0]}") from None
    return module.eval(), checkpoint_from_metadata(files[_TS_META] or None, str(p), p)


def export_model(name_or_path: Any, fmt: str | None, out_path: str | os.PathLike[str],
                 **opts: Any) -> Path:
    """CLI entry point: export a model name / checkpoint path as ``fmt`` ("onnx"|"torchscript",
    or None/"auto" to infer it from ``out_path``'s suffix: .onnx, .pt, .ts).

    ``opts`` go to :func:`export_onnx` or :func:`export_torchscript`; unknown ones are a
    :class:`ConfigError`, a bad model a :class:`ModelError`.
    """
    funcs = {"onnx": export_onnx, "torchscript": export_torchscript}
    if fmt in (None, "auto"):  # from the file name: .onnx, or .pt / .ts for TorchScript
        fmt = Path(out_path).suffix.lstrip(".") or "none"
    fmt = {"ts": "torchscript", "pt": "torchscript"}.get(str(fmt).lower(), str(fmt).lower())
    func = funcs.get(fmt)
    if func is None:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    allowed = [p for p in inspect.signature(func).parameters if p not in ("source", "path")]
    bad = sorted(set(opts) - set(allowed))
    if bad:
        raise ConfigError(f"unknown option(s) for {fmt} export: {', '.join(bad)}; accepted: "
                          f"{', '.join(allowed)}")
    return func(name_or_path, out_path, **opts)
