"""Chaos soak: one monitor process kept busy for an hour while everything around it fails.

One ``rt-tagger --config soak.toml`` process monitors four sources:

- ``live``   a PulseAudio device (a private PulseAudio daemon with a null sink, fed by ``paplay``
             in a loop); the daemon is killed and restarted every few minutes;
- ``file``   a long file paced in real time;
- ``radio1``, ``radio2``  two local HTTP "stations" (MP3 paced at real time, positioned by the
             wall clock like a live station) that drop the connection at random and sometimes
             stay down for several seconds.

Around it: the event log lives on a small tmpfs that a filler fills completely and frees again;
hostile HTTP clients hit ``/status`` (early close, connection reset, unfinished headers,
slowloris, idle sockets) next to normal status reads. The monitor's JSON Lines go to stdout,
read here. Every 10 s the process's RSS, threads and open file descriptors are sampled. At
the end the process gets SIGTERM and must drain and write a summary per source.

Everything binds 127.0.0.1; every loop is bounded in time. Needs root for the tmpfs (without
it the disk part is skipped and the report says so), ``pulseaudio``, ``paplay`` and ``pactl``.

    .venv/bin/python bench/chaos_soak.py --minutes 60 --out bench/results/chaos.md
"""
from __future__ import annotations

import argparse
import datetime as dt
import http.server
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
SR = 16000


def log(*a) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}]", *a, file=sys.stderr, flush=True)


def music(seconds: float, seed: int) -> np.ndarray:
    import soundfile as sf

    clips = sorted(DATA.glob("*.flac")) + sorted(DATA.glob("*.wav"))
    parts, n = [], 0
    rng = np.random.default_rng(seed)
    while n < seconds * SR:
        y, sr = sf.read(clips[int(rng.integers(len(clips)))], dtype="float32", always_2d=True)
        y = y.mean(axis=1)
        if sr != SR:
            import soxr

            y = soxr.resample(y, sr, SR).astype(np.float32)
        parts.append(y)
        n += y.size
    return np.concatenate(parts)[: int(seconds * SR)]


# ---- PulseAudio: a private daemon, killed and restarted ---------------------------------------
class Pulse:
    def __init__(self, runtime: Path, clip: Path) -> None:
        self.env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime),
                        PULSE_SERVER=f"unix:{runtime}/pulse/native")
        runtime.mkdir(parents=True, exist_ok=True)
        runtime.chmod(0o700)
        self.clip, self.player, self.kills = clip, None, 0
        self._stop = threading.Event()

    def pactl(self, *args) -> bool:
        return subprocess.run(["pactl", *args], env=self.env, capture_output=True).returncode == 0

    def start(self) -> None:
        args = ["pulseaudio", "--daemonize=yes", "-n", "--exit-idle-time=-1", "--disallow-exit",
                "--load=module-native-protocol-unix",
                f"--load=module-null-sink sink_name=chaos_sink rate={SR} channels=1 format=float32le"]
        if os.getuid() == 0:
            args.append("--system=false")
        subprocess.run(args, env=self.env, capture_output=True)
        for _ in range(50):
            if self.pactl("info"):
                break
            time.sleep(0.2)
        self.pactl("set-default-sink", "chaos_sink")
        self.pactl("set-default-source", "chaos_sink.monitor")

    def kill(self) -> None:
        subprocess.run(["pulseaudio", "-k"], env=self.env, capture_output=True)
        self.kills += 1

    def play_forever(self) -> None:
        """paplay in a loop (it dies with the daemon and is started again)."""
        while not self._stop.is_set():
            self.player = subprocess.Popen(["paplay", "--device=chaos_sink", str(self.clip)],
                                           env=self.env, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL)
            while self.player.poll() is None and not self._stop.is_set():
                time.sleep(0.5)
            if self.player.poll() is None:
                self.player.terminate()
            time.sleep(0.5)

    def stop(self) -> None:
        self._stop.set()
        self.kill()


# ---- two live "stations" that drop ------------------------------------------------------------
class Station:
    """MP3 paced at real time, positioned by the wall clock; drops every 15-90 s, and one drop
    in three stays down (503) for 2-12 s."""

    def __init__(self, mp3: bytes, seconds: float, rng: random.Random) -> None:
        self.mp3, self.rate = mp3, len(mp3) / seconds
        self.t0, self.rng, self.drops, self.down_until = time.monotonic(), rng, 0, 0.0
        self.lock = threading.Lock()
        station = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                if time.monotonic() < station.down_until:
                    self.send_error(503)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "audio/mpeg")
                self.end_headers()
                life = station.rng.uniform(15, 90)
                end = time.monotonic() + life
                pos = int((time.monotonic() - station.t0) * station.rate) % len(station.mp3)
                step = int(station.rate / 10)
                try:
                    while time.monotonic() < end:
                        self.wfile.write(station.mp3[pos:pos + step])
                        pos = (pos + step) % len(station.mp3)
                        time.sleep(0.1)
                    with station.lock:
                        station.drops += 1
                        if station.rng.random() < 1 / 3:
                            station.down_until = time.monotonic() + station.rng.uniform(2, 12)
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.srv.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}/live.mp3"
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.srv.shutdown()
        self.srv.server_close()


# ---- a disk that fills and frees --------------------------------------------------------------
class Disk:
    def __init__(self, path: Path, size_kb: int) -> None:
        self.path, self.fills, self.mounted = path, 0, False
        path.mkdir(parents=True, exist_ok=True)
        if os.getuid() == 0:
            r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path)],
                               capture_output=True, text=True)
            self.mounted = r.returncode == 0
            self.why = r.stderr.strip()
        else:
            self.why = "not root"

    def fill(self) -> None:
        try:
            with open(self.path / "filler", "wb") as f:
                while True:
                    f.write(b"\0" * 65536)
        except OSError:
            pass
        self.fills += 1

    def free(self) -> None:
        (self.path / "filler").unlink(missing_ok=True)

    def unmount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


# ---- hostile and normal HTTP clients ----------------------------------------------------------
def hostile(port: int, kind: str) -> None:
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
    except OSError:  # the server is not up yet
        return
    try:
        if kind == "early_close":
            s.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
        elif kind == "reset":
            s.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif kind == "half_headers":
            s.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n")
            time.sleep(1)
        elif kind == "slowloris":
            s.sendall(b"GET /status HTTP/1.1\r\n")
            for _ in range(6):
                time.sleep(5)
                s.sendall(b"X-a: b\r\n")
        elif kind == "idle":
            time.sleep(60)
    except OSError:
        pass
    finally:
        s.close()


def read_status(port: int) -> dict | None:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as r:
            return json.loads(r.read())
    except Exception:  # noqa: BLE001 - counted by the caller
        return None


# ---- the soak ---------------------------------------------------------------------------------
def proc_sample(pid: int) -> dict | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    vals = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {"rss_mb": int(vals["VmRSS"].split()[0]) / 1024, "threads": int(vals["Threads"]), "fds": fds}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def soak(minutes: float, work: Path, seed: int, scale: float = 1.0) -> dict:
    import soundfile as sf

    rng = random.Random(seed)
    seconds = minutes * 60
    long_file = work / "long.wav"
    sf.write(long_file, music(seconds + 120, seed), SR, subtype="PCM_16")
    mp3s = []
    for i in range(2):
        p = work / f"station{i}.mp3"
        sf.write(p, music(600, seed + 1 + i), SR, format="MP3")
        mp3s.append(p.read_bytes())
    clip = work / "live.wav"
    sf.write(clip, music(120, seed + 9), SR, subtype="PCM_16")

    pulse = Pulse(work / "xdg", clip)
    pulse.start()
    threading.Thread(target=pulse.play_forever, daemon=True).start()
    stations = [Station(m, 600, random.Random(seed + i)) for i, m in enumerate(mp3s)]
    disk = Disk(work / "disk", 2048)
    http_port = free_port()
    cfg = work / "soak.toml"
    cfg.write_text(f"""
http = "127.0.0.1:{http_port}"
event_log = "{disk.path / 'events.jsonl'}"
event_log_max_bytes = 400000
event_log_backups = 2
restart_delay = 5
quiet = true

[sources]
live = "device:pulse"
file = "file:{long_file}"
radio1 = "url:{stations[0].url}"
radio2 = "url:{stations[1].url}"
""")
    env = dict(pulse.env, PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "rt_tagger", "--config", str(cfg), "--jsonl", "-"]
    log("starting", " ".join(cmd))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=open(work / "stderr.txt", "wb"),
                            text=True, cwd=work)
    counts: Counter = Counter()
    states: dict[str, list] = defaultdict(list)
    summaries, sink_events, latencies, other_events = {}, [], [], Counter()

    def reader() -> None:
        for line in proc.stdout:
            try:
                m = json.loads(line)
            except json.JSONDecodeError:
                counts["bad_lines"] += 1
                continue
            counts[m["type"]] += 1
            if m["type"] == "update" and "latency_ms" in m:
                latencies.append(m["latency_ms"])
            elif m["type"] == "event":
                other_events[m["event"]] += 1
                if m["event"] == "source_state":
                    states[m["source"]].append((time.monotonic(), m["state"], m.get("detail", "")))
                elif m["event"].startswith("sink"):
                    sink_events.append(m)
            elif m["type"] == "summary":
                summaries[m["source"]] = m

    threading.Thread(target=reader, daemon=True).start()
    t_start = time.monotonic()
    t_end = t_start + seconds
    samples, statuses, status_fail, hostile_counts = [], 0, 0, Counter()
    sink_in_status = False
    next_pulse_kill = t_start + scale * rng.uniform(180, 300)
    next_fill = t_start + scale * rng.uniform(240, 420)
    free_at = None
    next_sample = t_start
    hostile_threads: list[threading.Thread] = []
    while time.monotonic() < t_end:
        if proc.poll() is not None:
            log("monitor exited early with", proc.returncode)
            break
        now = time.monotonic()
        if now >= next_sample:
            s = proc_sample(proc.pid)
            if s:
                samples.append({"t": now - t_start, **s})
            st = read_status(http_port)
            if st is None:
                status_fail += statuses > 0  # before the first answer the server is not up yet
            else:
                statuses += 1
                sink_in_status |= "sink" in json.dumps(st).lower() and "error" in json.dumps(st).lower()
            next_sample = now + 10
        if now >= next_pulse_kill:
            log("killing PulseAudio")
            pulse.kill()
            time.sleep(rng.uniform(3, 10))
            pulse.start()
            next_pulse_kill = time.monotonic() + scale * rng.uniform(180, 300)
        if disk.mounted and free_at is None and now >= next_fill:
            log("filling the disk")
            disk.fill()
            free_at = now + scale * rng.uniform(60, 120)
        if free_at is not None and now >= free_at:
            log("freeing the disk")
            disk.free()
            free_at, next_fill = None, now + scale * rng.uniform(300, 480)
        hostile_threads = [t for t in hostile_threads if t.is_alive()]
        if len(hostile_threads) < 12:
            kind = rng.choice(["early_close", "reset", "half_headers", "slowloris", "idle"])
            t = threading.Thread(target=hostile, args=(http_port, kind), daemon=True)
            t.start()
            hostile_threads.append(t)
            hostile_counts[kind] += 1
        time.sleep(1.0)
    crashed = proc.poll() is not None
    log("SIGTERM")
    t_term = time.monotonic()
    last_state = {name: (st[-1][1] if st else "-") for name, st in states.items()}
    if not crashed:
        proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = "hung"
    drain_s = time.monotonic() - t_term
    time.sleep(1)
    disk.free()
    pulse.stop()
    for s in stations:
        s.stop()
    disk.unmount()
    return {"minutes": minutes, "crashed": crashed, "rc": rc, "drain_s": drain_s, "counts": counts,
            "states": states, "last_state": last_state, "summaries": summaries, "sink_events": sink_events,
            "latencies": latencies, "events": other_events, "samples": samples,
            "statuses": statuses, "status_fail": status_fail, "hostile": hostile_counts,
            "pulse_kills": pulse.kills, "drops": [s.drops for s in stations], "disk_fills": disk.fills,
            "disk": "tmpfs 2 MiB" if disk.mounted else f"skipped ({disk.why})",
            "sink_in_status": sink_in_status,
            "stderr_tail": (work / "stderr.txt").read_text(errors="replace")[-2000:]}


def report(r: dict, command: str) -> str:
    samples = r["samples"]
    warm = [s for s in samples if s["t"] >= 300] or samples
    rss0, rss1 = (warm[0]["rss_mb"], warm[-1]["rss_mb"]) if warm else (float("nan"),) * 2
    lat = np.array(r["latencies"] or [np.nan])
    lines = [
        f"## Chaos soak ({dt.date.today().isoformat()}, {r['minutes']:g} min)",
        "",
        f"Command: `{command}`",
        "",
        "| what | figure |",
        "|---|---|",
        f"| crashes (monitor exited before SIGTERM) | {int(r['crashed'])} |",
        f"| pulse kills during the run (not counting the final stop) | {r['pulse_kills'] - 1} |",
        f"| exit status after SIGTERM / drain time | {r['rc']} / {r['drain_s']:.1f} s |",
        f"| summaries written (of 4 sources) | {len(r['summaries'])} ({', '.join(sorted(r['summaries']))}) |",
        f"| station drops caused (radio1, radio2) | {r['drops'][0]}, {r['drops'][1]} |",
        f"| disk fills (event log on {r['disk']}) | {r['disk_fills']} |",
        f"| hostile HTTP clients | {sum(r['hostile'].values())} ({', '.join(f'{k} {v}' for k, v in sorted(r['hostile'].items()))}) |",
        f"| /status reads ok / failed | {r['statuses']} / {r['status_fail']} |",
        f"| sink errors reported (events) / seen in /status | {len(r['sink_events'])} / {r['sink_in_status']} |",
        f"| updates / update latency p50, p99 | {r['counts'].get('update', 0)} / {np.nanpercentile(lat, 50):.1f}, {np.nanpercentile(lat, 99):.1f} ms |",
        f"| RSS after 5 min -> end | {rss0:.0f} -> {rss1:.0f} MB ({100 * (rss1 - rss0) / rss0:+.1f} %) |",
        f"| threads after 5 min: min / max / end | {min(s['threads'] for s in warm)} / {max(s['threads'] for s in warm)} / {warm[-1]['threads']} |" if warm else "| threads | - |",
        f"| open fds after 5 min: min / max / end | {min(s['fds'] for s in warm)} / {max(s['fds'] for s in warm)} / {warm[-1]['fds']} |" if warm else "| fds | - |",
        "",
        "Per source: state changes reported (reconnecting -> running cycles), summary fields:",
        "",
        "| source | reconnecting | running again | failed | state at SIGTERM | summary duration s | dropped chunks | overrun samples |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in ("live", "file", "radio1", "radio2"):
        st = [s for _, s, _ in r["states"].get(name, [])]
        summ = r["summaries"].get(name, {})
        lines.append(f"| {name} | {st.count('reconnecting')} | {max(0, st.count('running') - 1)} | "
                     f"{st.count('failed')} | {r['last_state'].get(name, '-')} | "
                     f"{summ.get('duration', float('nan')):.0f} | {summ.get('dropped_chunks', '-')} | "
                     f"{summ.get('overrun_samples', '-')} |")
    lines += ["", f"Events: {dict(r['events'])}", ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--fault-scale", type=float, default=1.0,
                    help="multiplies the intervals between PulseAudio kills and disk fills (smoke runs)")
    args = ap.parse_args()
    for tool in ("pulseaudio", "paplay", "pactl"):
        if shutil.which(tool) is None:
            print(f"chaos_soak: {tool} is not installed", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory(prefix="rt-chaos-") as d:
        r = soak(args.minutes, Path(d), args.seed, args.fault_scale)
    text = report(r, "python " + " ".join(sys.argv))
    print(text)
    if r["crashed"]:
        print("stderr tail:\n" + r["stderr_tail"], file=sys.stderr)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
        raw = Path(tempfile.gettempdir()) / f"{args.out.stem}.json"  # the samples, not committed
        raw.write_text(json.dumps({k: v for k, v in r.items()
                                   if k in ("samples", "states", "summaries", "sink_events")},
                                  default=str, indent=1))
    return 0 if not r["crashed"] and r["rc"] != "hung" else 1


if __name__ == "__main__":
    sys.exit(main())
