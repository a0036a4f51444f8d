"""Build the distillation corpus inside the repository: ``python -m rt_tagger.training corpus
DEST`` (see docs/training.md, "The embedded default model"). Sources and the reserved packages
are in :mod:`.sources`; the manifest format is the one :mod:`training.data.corpus` reads."""
from __future__ import annotations

from .sources import RESERVED, CorpusError, check_allowed

__all__ = ["RESERVED", "CorpusError", "build_corpus", "check_allowed"]


def build_corpus(*args, **kwargs):
    from .build import build_corpus as _build

    return _build(*args, **kwargs)
