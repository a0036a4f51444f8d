"""System-audio (loopback) capture: tag what the computer is playing.

Linux: every PulseAudio/PipeWire sink (output) has a *monitor* source carrying what it plays.
``pactl`` names the sinks and their monitors; PortAudio opens the ALSA ``pulse`` device, and the
ALSA PulseAudio plugin connects its record stream to the source named by ``PULSE_SOURCE``
(libpulse reads the variable when the plugin creates its context, i.e. when the stream opens).
So :class:`PulseLoopbackSource` is a :class:`DeviceSource` that sets ``PULSE_SOURCE`` around
the open, at the monitor's own rate and channel count (no resampling inside the sound server),
and keeps the device source's reopen-on-loss supervisor; a watcher asks ``pactl`` every 2 s
whether the monitor is still there (PulseAudio would silently move the stream to the default
source, perhaps a microphone) and, without a name, whether the default output changed.

Windows: WASAPI loopback, which sounddevice does not expose, through the ``soundcard`` package
(``pip install 'rt-tagger[loopback]'``): :class:`SoundcardLoopbackSource` records the default
(or named) speaker's loopback microphone in a thread and pushes into the same ring.

macOS has no loopback API PortAudio can use: a virtual device (BlackHole) is the way, selected
with ``--device``; :func:`loopback_source` says so in one line.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass

import numpy as np

from ..errors import DeviceError
from .base import Source
from .decode import MIN_SAMPLE_RATE
from .device import DeviceSource, input_devices

PULSE_DEVICE = "pulse"  # the ALSA PulseAudio plugin's PCM, as PortAudio lists it
MACOS_HINT = ("macOS cannot capture system audio directly: install a virtual loopback device "
              "such as BlackHole (brew install blackhole-2ch), add it to a Multi-Output Device in "
              "Audio MIDI Setup, then run rt-tagger --device BlackHole")
WATCH_SECONDS = 2.0  # how often pactl is asked whether the monitor (or default output) changed
_ENV_LOCK = threading.Lock()  # PULSE_SOURCE is process-wide: one open at a time


@dataclass(frozen=True)
class Monitor:
    """A sink (output) and the monitor source that carries what it plays."""

    index: int
    sink: str
    source: str
    sample_rate: int
    channels: int


# --- PulseAudio / PipeWire through pactl -------------------------------------------------------

def _pactl(*args: str) -> str:
    if shutil.which("pactl") is None:
        raise DeviceError("--loopback needs pactl to find the PulseAudio/PipeWire monitor source "
                          "(Debian/Ubuntu: apt-get install pulseaudio-utils)")
    try:
        proc = subprocess.run(["pactl", *args], capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        raise DeviceError(f"pactl {' '.join(args)} did not answer within 10 s") from None
    if proc.returncode != 0:
        why = (proc.stderr.strip() or f"exit status {proc.returncode}").splitlines()[0]
        raise DeviceError(f"pactl {' '.join(args)} failed: {why} (is a sound server running?)")
    return proc.stdout


def _spec(text: str) -> tuple[int, int]:
    """``'float32le 2ch 48000Hz'`` -> (48000, 2)."""
    rate = channels = 0
    for word in text.split():
        if word.endswith("Hz") and word[:-2].isdigit():
            rate = int(word[:-2])
        elif word.endswith("ch") and word[:-2].isdigit():
            channels = int(word[:-2])
    return rate, channels


def monitors() -> list[Monitor]:
    """Every sink that has a monitor source (``pactl list short sinks`` / ``sources``)."""
    sources = {}
    for line in _pactl("list", "short", "sources").splitlines():
        cols = line.split("\t")
        if len(cols) >= 4:
            sources[cols[1]] = _spec(cols[3])
    out = []
    for line in _pactl("list", "short", "sinks").splitlines():
        cols = line.split("\t")
        if len(cols) < 4 or not cols[0].isdigit():
            continue
        name = cols[1]
        mon = name + ".monitor"  # the naming of both PulseAudio and PipeWire
        if mon in sources:
            rate, channels = sources[mon]
            out.append(Monitor(int(cols[0]), name, mon, rate or 48000, channels or 2))
    return out


def default_sink() -> str:
    try:
        name = _pactl("get-default-sink").strip()
    except DeviceError:  # pactl < 15 has no get-default-sink
        name = ""
    if not name:
        for line in _pactl("info").splitlines():
            if line.startswith("Default Sink:"):
                name = line.split(":", 1)[1].strip()
    return name


def find_monitor(name: str | None = None) -> Monitor:
    """The monitor of the default sink, or of the sink given by index, name or name part."""
    found = monitors()
    if not found:
        raise DeviceError("the sound server has no output with a monitor source "
                          "(pactl list short sinks shows none)")
    if name is None:
        want = default_sink()
        for m in found:
            if m.sink == want:
                return m
        raise DeviceError(f"the default output {want!r} has no monitor source; available: "
                          + ", ".join(m.sink for m in found))
    text = name.strip()
    for m in found:
        if text in (m.sink, m.source) or (text.isdigit() and int(text) == m.index):
            return m
    part = [m for m in found if text.lower() in m.sink.lower()]
    if part:
        return part[0]
    raise DeviceError(f"no output matches {text!r} for --loopback; available: "
                      + ", ".join(m.sink for m in found))


def format_monitors() -> str:
    """The ``--list-devices`` block for loopback; empty when there is no sound server."""
    try:
        found = monitors()
        default = default_sink()
    except DeviceError as exc:
        return f"outputs: none listed ({exc})"
    if not found:
        return ""
    lines = ["outputs (use --loopback for the default *, or --loopback NAME):"]
    for m in found:
        mark = "*" if m.sink == default else " "
        lines.append(f" {mark}{m.index:3d}  {m.sink}  -> {m.source}  ({m.channels} ch, "
                     f"{m.sample_rate} Hz, loopback)")
    return "\n".join(lines)


class PulseLoopbackSource(DeviceSource):
    """The monitor of a PulseAudio/PipeWire sink, captured through PortAudio's ``pulse`` device."""

    kind = "loopback"

    def __init__(self, sink: str | None = None, *, name: str = "main", channel: int | None = None,
                 blocksize: int = 0, ring_seconds: float = 8.0, stall_timeout: float = 2.0) -> None:
        self.sink_spec = sink
        self.monitor = find_monitor(sink)
        pulse = [d for d in input_devices() if d["name"] == PULSE_DEVICE]
        if not pulse:
            raise DeviceError("PortAudio has no 'pulse' device for --loopback: install the ALSA "
                              "PulseAudio plugin (Debian/Ubuntu: apt-get install libasound2-plugins)")
        super().__init__(pulse[0]["index"], name=name, channel=None, blocksize=blocksize,
                         ring_seconds=ring_seconds, stall_timeout=stall_timeout)
        if channel is not None and not 0 <= channel < self.monitor.channels:
            raise DeviceError(f"--channel {channel} requested but {self.monitor.source} has "
                              f"{self.monitor.channels} channel(s)")
        self.channel = channel
        # The monitor's own format: PulseAudio then hands the samples over unresampled (a sink
        # slower than rt-tagger accepts is upsampled by PulseAudio instead of refused).
        self.sample_rate = max(self.monitor.sample_rate, MIN_SAMPLE_RATE)
        self.channels = min(self.monitor.channels, 2) if channel is None else channel + 1

    @property
    def description(self) -> str:
        m = self.monitor
        return f"loopback {m.source} (output {m.sink}, {self.sample_rate} Hz, {self.channels} ch)"

    def _open(self) -> None:
        with _ENV_LOCK:
            before = os.environ.get("PULSE_SOURCE")
            os.environ["PULSE_SOURCE"] = self.monitor.source
            try:
                super()._open()
            finally:
                if before is None:
                    os.environ.pop("PULSE_SOURCE", None)
                else:
                    os.environ["PULSE_SOURCE"] = before

    def _start(self) -> None:
        super()._start()
        self._watcher = threading.Thread(target=self._watch, daemon=True,
                                         name=f"rt-tagger-loopback-watch-{self.name}")
        self._watcher.start()

    def _watch(self) -> None:
        """Every ``WATCH_SECONDS``: is the monitor still there (and, without a name, still the
        default output's)? If not, mark the stream lost so the supervisor reopens it. Needed
        because PulseAudio quietly moves a stream whose source vanished to the default source,
        which may be a microphone."""
        while not self._stop.wait(WATCH_SECONDS):
            if self.state not in ("starting", "running") or self._lost.is_set():
                continue
            try:
                names = {ln.split("\t")[1] for ln in _pactl("list", "short", "sources").splitlines()
                         if ln.count("\t") >= 1}
                moved = self.sink_spec is None and default_sink() != self.monitor.sink
            except DeviceError:
                continue  # pactl hiccup: the stall timeout still catches a dead server
            if self.monitor.source not in names or moved:
                self._lost.set()

    def _stop_producer(self) -> None:
        super()._stop_producer()
        watcher = getattr(self, "_watcher", None)
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join(timeout=WATCH_SECONDS + 11)

    def _find_again(self) -> None:
        # The sink may be gone (USB headset unplugged): look it up again; without a name, follow
        # the new default output. The rate stays (PulseAudio resamples if the new one differs).
        self.monitor = find_monitor(self.sink_spec)
        pulse = [d for d in input_devices() if d["name"] == PULSE_DEVICE]
        if not pulse:
            raise DeviceError("PortAudio lost its 'pulse' device")
        self.device_index = pulse[0]["index"]


# --- Windows: WASAPI loopback through soundcard -------------------------------------------------

def _soundcard():
    try:
        import soundcard
    except ImportError:
        raise DeviceError("--loopback on Windows needs the soundcard package "
                          "(pip install 'rt-tagger[loopback]')") from None
    return soundcard


class SoundcardLoopbackSource(Source):
    """A speaker's loopback recorded with ``soundcard`` (WASAPI on Windows) in a thread.

    Uses the package's documented API only: ``default_speaker()`` / ``get_speaker(id)``,
    ``all_microphones(include_loopback=True)`` or ``get_microphone(id=speaker.name,
    include_loopback=True)``,
    ``microphone.recorder(samplerate=..., channels=..., blocksize=...)`` and
    ``recorder.record(numframes=None)`` (whatever the backend has, waiting for at least a block).
    """

    kind = "loopback"

    def __init__(self, speaker: str | None = None, *, name: str = "main",
                 channel: int | None = None, sample_rate: int = 48000, blocksize: int = 480,
                 ring_seconds: float = 8.0) -> None:
        super().__init__(name=name, channel=channel, ring_seconds=ring_seconds)
        sc = _soundcard()
        try:
            spk = sc.default_speaker() if speaker is None else sc.get_speaker(speaker)
        except Exception as exc:
            names = ", ".join(str(s.name) for s in sc.all_speakers())
            raise DeviceError(f"no output matches {speaker!r} for --loopback ({exc}); "
                              f"available: {names}") from None
        self.speaker_name = str(spk.name)
        # The loopback "microphone" of this speaker: same id on Windows, "<id>.monitor" on
        # PulseAudio; else the name match of soundcard's README.
        ids = (spk.id, f"{spk.id}.monitor")
        mics = [m for m in sc.all_microphones(include_loopback=True)
                if m.isloopback and m.id in ids]
        self._mic = mics[0] if mics else sc.get_microphone(id=self.speaker_name,
                                                           include_loopback=True)
        n = int(self._mic.channels)
        if channel is not None and not 0 <= channel < n:
            raise DeviceError(f"--channel {channel} requested but {self.speaker_name!r} has "
                              f"{n} channel(s)")
        self.channels = min(n, 2) if channel is None else channel + 1
        self.sample_rate = sample_rate
        self.blocksize = blocksize
        self.finite = False
        self.callback_overflows = 0  # read by the pipeline's summary; soundcard only warns
        self._thread: threading.Thread | None = None

    @property
    def description(self) -> str:
        return (f"loopback of {self.speaker_name} (soundcard, {self.sample_rate} Hz, "
                f"{self.channels} ch)")

    def _start(self) -> None:
        self.set_state("starting", self.description)
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"rt-tagger-loopback-{self.name}")
        self._thread.start()

    def _run(self) -> None:
        ring = self.ring
        assert ring is not None
        ch = self.channel_index() if self.channels > 1 else -1
        try:
            with self._mic.recorder(samplerate=self.sample_rate,
                                    channels=list(range(self.channels)),
                                    blocksize=self.blocksize) as rec:
                while not self._stop.is_set():
                    block = rec.record(numframes=None)
                    if block.shape[0]:
                        ring.push(np.ascontiguousarray(block, dtype=np.float32), ch)
                        self.set_state("running", self.description)
        except Exception as exc:  # reported to the pipeline, never lost
            self.error = DeviceError(f"loopback of {self.speaker_name}: {type(exc).__name__}: {exc}")
            self.set_state("failed", str(self.error))
        finally:
            self._done.set()

    def _stop_producer(self) -> None:
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)


def loopback_source(output: str | None = None, *, name: str = "main",
                    channel: int | None = None) -> Source:
    """The loopback source of this platform for ``--loopback [OUTPUT]``."""
    if sys.platform == "darwin":
        raise DeviceError(MACOS_HINT)
    if sys.platform == "win32":
        return SoundcardLoopbackSource(output, name=name, channel=channel)
    return PulseLoopbackSource(output, name=name, channel=channel)


def format_loopback() -> str:
    """The outputs ``--loopback`` can capture, marked "loopback", for ``--list-devices``."""
    if sys.platform == "win32":
        try:
            speakers = _soundcard().all_speakers()
        except DeviceError as exc:
            return f"outputs: {exc}"
        return "\n".join(["outputs (use --loopback for the default, or --loopback NAME):"]
                         + [f"       {s.name}  (loopback)" for s in speakers])
    if sys.platform == "darwin":
        return ""
    return format_monitors()
