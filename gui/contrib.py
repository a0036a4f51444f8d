"""The selected tag's contribution strip, computed off the GUI thread.

The tag-wise contribution map (Won et al. 2019, section 5.3; :func:`rt_tagger.interpret.
contribution_map`) needs the PyTorch model, whatever engine tags the stream. A single worker
thread builds that model once per model spec and answers the latest request only (older ones
are dropped), so a slow map never queues up behind the live view. No Qt here: the window
posts requests and picks results up on its timer.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from rt_tagger.errors import ModelError, RtTaggerError


@dataclass(frozen=True)
class Request:
    model: str  # registry name or checkpoint path (create_model)
    chunk: np.ndarray  # (frames, n_mels): the model input of the chunk
    start: float  # seconds of the chunk's first frame
    tag: str
    key: tuple  # identifies what was asked (model, chunk end time, tag)


@dataclass(frozen=True)
class Strip:
    key: tuple
    tag: str
    values: np.ndarray | None  # (T,) probability of ``tag`` with [CLS] attending only to step t
    edges: np.ndarray | None  # (T + 1,) absolute seconds of the step boundaries
    prob: float | None  # the unmanipulated probability
    message: str | None = None  # why there is no map
    permanent: bool = False  # the model itself cannot give maps: do not ask again


class ContributionWorker:
    """``submit(request)`` from the GUI thread; ``take()`` returns the newest finished strip."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pending: Request | None = None
        self._result: Strip | None = None
        self._busy = False
        self._stop = False
        self._models: dict[str, object] = {}
        self._thread = threading.Thread(target=self._run, name="rt-tagger-gui-contribution",
                                        daemon=True)
        self._thread.start()

    def submit(self, request: Request) -> None:
        with self._cond:
            self._pending = request
            self._cond.notify_all()

    def take(self) -> Strip | None:
        with self._cond:
            out, self._result = self._result, None
            return out

    @property
    def idle(self) -> bool:
        with self._cond:
            return self._pending is None and not self._busy

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=10)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                req, self._pending = self._pending, None
                self._busy = True
            try:
                strip = self._compute(req)
            except RtTaggerError as exc:  # e.g. no [CLS] attention, or an .onnx-only model
                strip = Strip(req.key, req.tag, None, None, None, str(exc).splitlines()[0],
                              permanent=isinstance(exc, ModelError))
            except Exception as exc:  # shown in the strip, never kills the worker
                strip = Strip(req.key, req.tag, None, None, None, f"{type(exc).__name__}: {exc}")
            with self._cond:
                self._result = strip
                self._busy = False

    def _model(self, spec: str):
        model = self._models.get(spec)
        if model is None:
            from rt_tagger.factory import create_model

            self._models.clear()  # one model at a time
            model = self._models[spec] = create_model(spec)
        return model

    def _compute(self, req: Request) -> Strip:
        from rt_tagger.interpret import contribution_map

        model = self._model(req.model)
        m = contribution_map(model, req.chunk, tags=[req.tag], start=req.start)
        sec = m.steps.seconds
        edges = np.append(sec[:, 0], sec[-1, 1])
        return Strip(req.key, req.tag, np.asarray(m.values[0], np.float32), edges,
                     float(m.probs[0]))
