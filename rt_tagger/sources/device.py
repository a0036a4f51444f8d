"""Live input from any PortAudio device (sounddevice), with reopen-on-loss.

The PortAudio callback does one thing: push the block into the native ring (downmixing inside
the push). A supervisor thread watches the stream; when the device stops delivering (unplugged,
server restarted) it reports ``reconnecting`` and reopens it with exponential backoff: first the
same device as it was, then, if that fails, after PortAudio re-scanned its devices, looking the
device up again by name. A re-scan closes every PortAudio stream of the process, so it waits
while another device source is running: one lost device never interrupts the others.
"""
from __future__ import annotations

import threading
import time
import weakref
from typing import Any

from ..errors import DeviceError
from .base import Source
from .decode import check_sample_rate


def _sd():
    try:
        import sounddevice as sd
    except OSError as exc:  # libportaudio missing
        raise DeviceError(f"PortAudio is not available ({exc}); install it (Debian/Ubuntu: "
                          "apt-get install libportaudio2)") from None
    return sd


def rescan_devices() -> bool:
    """Makes PortAudio enumerate its devices again (it does so only when initialised); this
    closes every PortAudio stream of the process. Returns False, having done nothing, where
    sounddevice offers no way to do it.

    sounddevice has no public call for this: its maintainer's advice (python-sounddevice
    issues #125, #516) is its private ``_terminate`` and ``_initialize``. They are used here
    only, and only if this sounddevice has them; without them a reconnecting source keeps
    looking its device up by name in the old list, which finds one that comes back under its
    old index (a restarted sound server) but not a re-plugged one."""
    sd = _sd()
    terminate, initialize = getattr(sd, "_terminate", None), getattr(sd, "_initialize", None)
    if not (callable(terminate) and callable(initialize)):
        return False
    terminate()
    initialize()
    return True


def input_devices() -> list[dict[str, Any]]:
    """Every device with input channels: index, name, channels, default rate, host API."""
    sd = _sd()
    apis = sd.query_hostapis()
    out = []
    for d in sd.query_devices():
        if d["max_input_channels"] > 0:
            out.append({"index": d["index"], "name": d["name"], "channels": d["max_input_channels"],
                        "sample_rate": int(d["default_samplerate"]),
                        "hostapi": apis[d["hostapi"]]["name"]})
    return out


def format_devices(devices: list[dict[str, Any]] | None = None) -> str:
    devices = input_devices() if devices is None else devices
    if not devices:
        return "no audio input devices found"
    sd = _sd()
    try:
        default_in = sd.default.device[0]
    except Exception:  # pragma: no cover
        default_in = -1
    lines = ["input devices (use --device INDEX or a part of the name):"]
    for d in devices:
        mark = "*" if d["index"] == default_in else " "
        lines.append(f" {mark}{d['index']:3d}  {d['name']}  ({d['channels']} ch, "
                     f"{d['sample_rate']} Hz, {d['hostapi']})")
    return "\n".join(lines)


def resolve_device(spec: int | str | None) -> dict[str, Any]:
    """The input device for ``--device``: index, exact name or a case-insensitive substring."""
    devices = input_devices()
    if not devices:
        raise DeviceError("no audio input devices found (is a sound server running?)")
    if spec is None:
        sd = _sd()
        idx = sd.default.device[0]
        for d in devices:
            if d["index"] == idx:
                return d
        return devices[0]
    text = str(spec).strip()
    if text.lstrip("-").isdigit():
        for d in devices:
            if d["index"] == int(text):
                return d
        raise DeviceError(f"no input device with index {text}\n{format_devices(devices)}")
    exact = [d for d in devices if d["name"].lower() == text.lower()]
    matches = exact or [d for d in devices if text.lower() in d["name"].lower()]
    if not matches:
        raise DeviceError(f"no input device matches {text!r}\n{format_devices(devices)}")
    if len(matches) > 1:  # never guess between two devices
        listed = "; ".join(f"{d['index']}: {d['name']}" for d in matches)
        raise DeviceError(f"--device {text!r} matches {len(matches)} input devices ({listed}): "
                          "give the index or more of the name")
    return matches[0]


#: Every device source of this process (weakly held): a reconnecting one re-scans PortAudio's
#: device list only while no other one is delivering audio, since a re-scan (terminate and
#: initialise PortAudio) closes every stream of the process.
_SOURCES: "weakref.WeakSet[DeviceSource]" = weakref.WeakSet()
_RESCAN_LOCK = threading.Lock()


def _others_running(me: "DeviceSource") -> bool:
    return any(s is not me and s._stream is not None and not s._lost.is_set() and s.state == "running"
               for s in list(_SOURCES))


class DeviceSource(Source):
    kind = "device"

    def __init__(self, device: int | str | None = None, *, name: str = "main",
                 channel: int | None = None, blocksize: int = 0, ring_seconds: float = 8.0,
                 stall_timeout: float = 2.0) -> None:
        super().__init__(name=name, channel=channel, ring_seconds=ring_seconds)
        self.spec = device
        info = resolve_device(device)
        self.device_name = info["name"]
        self.device_index = info["index"]
        self.sample_rate = info["sample_rate"]
        check_sample_rate(self.sample_rate, f"input device {self.device_name!r}", DeviceError)
        # Stereo at most (ALSA's "pulse"/"default" devices claim 32 channels); --channel N
        # opens N+1 channels and keeps channel N.
        self.channels = min(info["channels"], 2) if channel is None else channel + 1
        if channel is not None and channel >= info["channels"]:
            raise DeviceError(f"--channel {channel} requested but {self.device_name!r} has "
                              f"{info['channels']} input channel(s)")
        self.blocksize = blocksize
        self.stall_timeout = stall_timeout
        self.finite = False
        self.callback_overflows = 0  # PortAudio's own input-overflow flags
        self.callbacks = 0
        self._last_callback = 0.0
        self._stream = None
        self._lost = threading.Event()
        self._supervisor: threading.Thread | None = None
        self.rescans = 0  # PortAudio re-initialisations this source asked for
        _SOURCES.add(self)

    @property
    def description(self) -> str:
        return f"device {self.device_index}: {self.device_name} ({self.sample_rate} Hz, {self.channels} ch)"

    # The real-time callback: nothing but the push (and two counters).
    def _callback(self, indata, frames, time_info, status) -> None:
        if status.input_overflow:
            self.callback_overflows += 1
        self.ring.push(indata, self._ch)
        self.callbacks += 1
        self._last_callback = time.monotonic()

    def _open(self) -> None:
        sd = _sd()
        self._ch = self.channel_index() if self.channels > 1 else -1
        self._lost.clear()
        self._stream = sd.InputStream(
            device=self.device_index, channels=self.channels, samplerate=self.sample_rate,
            dtype="float32", blocksize=self.blocksize, latency="low", callback=self._callback,
            finished_callback=self._lost.set)
        self._last_callback = time.monotonic()
        self._stream.start()

    def _close_stream(self) -> None:
        s, self._stream = self._stream, None
        if s is not None:
            try:
                s.abort(ignore_errors=True)
                s.close(ignore_errors=True)
            except Exception:  # pragma: no cover - the device is already gone
                pass

    def _start(self) -> None:
        try:
            self._open()
        except Exception as exc:
            raise DeviceError(f"cannot open input device {self.description}: {exc}") from None
        self.set_state("starting", self.description)
        self._supervisor = threading.Thread(target=self._supervise, daemon=True,
                                            name=f"rt-tagger-device-{self.name}")
        self._supervisor.start()

    def _find_again(self) -> None:
        """After PortAudio re-enumerated: the device's new index (looked up by name)."""
        info = resolve_device(self.device_name)
        self.device_index = info["index"]
        if info["sample_rate"] != self.sample_rate:
            raise DeviceError("device came back with a different sample rate")

    def _reopen(self, *, rescan: bool) -> None:
        """Opens the stream again: first as it was (a restarted sound server is back under the
        same device), then, if that fails or ``rescan``, after PortAudio re-scanned its devices
        (a re-plugged device has a new index) - but only while no other device source of this
        process is delivering audio, because a re-scan closes every stream."""
        if not rescan:
            try:
                self._find_again()
                self._open()
                return
            except Exception:
                self._close_stream()
        with _RESCAN_LOCK:
            if _others_running(self):
                raise DeviceError("not found again yet (a device re-scan waits until no other "
                                  "device source of this process is running)")
            if rescan_devices():
                self.rescans += 1
        self._find_again()
        self._open()

    def _supervise(self) -> None:
        retries = 0
        rescan_next = False
        while not self._stop.is_set():
            if self._stop.wait(0.1):
                break
            stalled = time.monotonic() - self._last_callback > self.stall_timeout
            if self.callbacks and self.state == "starting" and not stalled:
                self.set_state("running", self.description)
                rescan_next = False
            if not (self._lost.is_set() or stalled):
                retries = 0
                continue
            # The device stopped delivering: reopen it (found again by name) with backoff.
            self._close_stream()
            retries += 1
            delay = min(10.0, 0.5 * 2 ** (retries - 1))
            why = "stream stopped" if self._lost.is_set() else f"no audio for {self.stall_timeout:g} s"
            self.set_state("reconnecting", f"{self.device_name}: {why}; retry {retries} in {delay:g} s")
            if self._stop.wait(delay):
                break
            try:
                self._reopen(rescan=rescan_next)
                # opened: if it stalls again before it runs, the next attempt re-scans
                rescan_next = True
                self.set_state("starting", f"reopened {self.description}")
            except Exception as exc:
                self._lost.set()
                self.set_state("reconnecting", f"{self.device_name}: {exc}".splitlines()[0])
        self._close_stream()
        self._done.set()

    def _stop_producer(self) -> None:
        if self._supervisor is not None and self._supervisor is not threading.current_thread():
            self._supervisor.join(timeout=5)
        self._close_stream()
