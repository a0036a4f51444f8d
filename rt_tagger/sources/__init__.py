"""Audio sources: live devices (PortAudio), system audio (loopback), files and network streams
(soundfile / PyAV)."""
from __future__ import annotations

import os

from .base import Source
from .decode import Decoder, is_url, read_audio

__all__ = ["Decoder", "DeviceSource", "FileSource", "Source", "format_devices", "input_devices",
           "is_url", "loopback_source", "open_source", "read_audio"]


def __getattr__(name: str):
    if name in ("DeviceSource", "format_devices", "input_devices", "resolve_device"):
        from . import device

        return getattr(device, name)
    if name in ("PulseLoopbackSource", "SoundcardLoopbackSource", "loopback_source"):
        from . import loopback

        return getattr(loopback, name)
    if name == "FileSource":
        from .file import FileSource

        return FileSource
    raise AttributeError(name)


def open_source(spec: str | os.PathLike[str], *, name: str = "main", realtime: bool = False,
                channel: int | None = None) -> Source:
    """``device:NAME`` / ``loopback:[OUTPUT]`` / ``file:PATH`` / ``url:URL`` or a bare path/URL
    -> a Source."""
    from .device import DeviceSource
    from .file import FileSource

    text = os.fspath(spec)
    kind, _, target = text.partition(":")
    if kind == "device":
        return DeviceSource(target or None, name=name, channel=channel)
    if kind == "loopback":
        from .loopback import loopback_source

        return loopback_source(target or None, name=name, channel=channel)
    if kind in ("file", "url"):
        return FileSource(target, name=name, realtime=realtime, channel=channel)
    return FileSource(text, name=name, realtime=realtime, channel=channel)
