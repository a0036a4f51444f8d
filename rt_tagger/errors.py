"""The one exception hierarchy of rt-tagger.

Every error a user can cause (bad audio, bad parameters, a missing device, a broken model file)
is an :class:`RtTaggerError` subclass with a message that stands on its own as one line.
The CLI prints ``rt-tagger: <message>`` for these and exits non-zero, never a traceback.
"""
from __future__ import annotations


class RtTaggerError(Exception):
    """Base class of every error rt-tagger raises on purpose."""


class ConfigError(RtTaggerError, ValueError):
    """Invalid parameters (log-mel settings, model arguments, CLI options)."""


class AudioInputError(RtTaggerError, ValueError):
    """Audio that cannot be processed: wrong dtype/layout, empty, NaN where not allowed."""


class AudioFileError(RtTaggerError, OSError):
    """A file or stream that is missing, corrupt or in an unsupported format."""


class DeviceError(RtTaggerError, OSError):
    """An audio device that does not exist, cannot be opened or vanished."""


class ModelError(RtTaggerError):
    """Unknown model name, or a checkpoint that is corrupt, truncated or mismatched."""


class BackendError(RtTaggerError):
    """An inference backend that is unavailable or failed."""


class OverrunError(RtTaggerError):
    """Audio was lost because a consumer fell behind (raised only when asked to be strict)."""
