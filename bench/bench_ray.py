"""N live sources sharded over Ray actors (rt_tagger.cluster) on one Ray node vs two Ray nodes
(two raylets on this machine), with the one-process monitor on the same files for comparison,
and the recovery from one killed actor.

Each source is a realtime-paced file (music clips from tests/data tiled to --seconds, as
bench/bench_sources.py). Ray runs as ``ray.cluster_utils.Cluster`` on 127.0.0.1: "1 node" = one
head with 2 CPUs and two source actors; "2 nodes" = a head and a worker node with 1 CPU each,
one source actor on each. The one-process monitor ("monitor") is bench_sources' ``shared-2w``
worker: one process, one engine, two inference threads (the same two inference threads the
two actors have between them).

    nice -n 10 .venv/bin/python bench/bench_ray.py --n 8 32 64 --seconds 30 --out bench/results/ray.md
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # every Ray process on 127.0.0.1

import bench_sources  # noqa: E402  (bench/ is sys.path[0] when run as a script)

ROOT = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")


# ---- the process tree of this bench (driver + every Ray process it started) -------------------
def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for p in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(p.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def _cpu(pid: int) -> float:
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / TICK
    except (OSError, IndexError):
        return 0.0


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class TreeMeter:
    """CPU seconds and peak summed RSS of this process and its descendants, sampled each second
    (a process that ends between samples loses its last second)."""

    def __init__(self) -> None:
        self.base: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.peak_rss = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> "TreeMeter":
        self.base = {p: _cpu(p) for p in _tree(os.getpid())}
        self._thread.start()
        return self

    def _sample(self) -> None:
        pids = _tree(os.getpid())
        self.last.update({p: _cpu(p) for p in pids})
        self.peak_rss = max(self.peak_rss, sum(_rss_mb(p) for p in pids))

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            self._sample()

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def cpu_s(self) -> float:
        return sum(c - self.base.get(p, 0.0) for p, c in self.last.items())


# ---- one Ray configuration --------------------------------------------------------------------
def start_cluster(nodes: int):
    from ray.cluster_utils import Cluster

    head = {"num_cpus": 2 if nodes == 1 else 1, "include_dashboard": False, "node_ip_address": "127.0.0.1"}
    cluster = Cluster(initialize_head=True, head_node_args=head)
    for _ in range(nodes - 1):
        cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
    import ray

    ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
    cluster.wait_for_nodes()
    return cluster


def stop_cluster(cluster) -> None:
    import ray

    ray.shutdown()
    cluster.shutdown()


def config(args):
    from rt_tagger.config import StreamConfig

    return StreamConfig().replace(model=args.model, hop=args.hop, threads=args.threads)


def run_ray(nodes: int, files: list[Path], args) -> dict:
    from rt_tagger.cluster import ClusterMonitor, ClusterSettings
    from rt_tagger.monitor import SourceSpec

    cluster = start_cluster(nodes)
    try:
        specs = [SourceSpec(f"s{i}", f"file:{f}") for i, f in enumerate(files)]
        load0 = os.getloadavg()[0]
        with ClusterMonitor(config(args), specs, ClusterSettings(actors=2, actor_cpus=1)) as mon:
            mon.start()  # the models load here, before the meter starts
            placed = {r["node"] for r in mon.status()["sources"].values()}
            w0 = time.perf_counter()
            with TreeMeter() as meter:
                msgs = list(mon.messages())
            wall = time.perf_counter() - w0
    finally:
        stop_cluster(cluster)
    lat = np.array([m["latency_ms"] for m in msgs if m["type"] == "update" and "latency_ms" in m])
    sums = [m for m in msgs if m["type"] == "summary"]
    return {"cpu_pct": 100 * meter.cpu_s / wall, "p50": float(np.percentile(lat, 50)),
            "p99": float(np.percentile(lat, 99)), "updates": int(lat.size),
            "dropped": sum(m["dropped_chunks"] for m in sums), "overruns": sum(m["overrun_samples"] for m in sums),
            "rss_mb": meter.peak_rss, "nodes_used": len(placed), "loadavg": (load0 + os.getloadavg()[0]) / 2}


def run_monitor(files: list[Path], args) -> dict:
    r = bench_sources.run_config("shared-2w", files, args)
    r["nodes_used"] = 1
    return r


def run_kill(nodes: int, files: list[Path], args, after_s: float) -> dict:
    """Kills the actor of source s0 ``after_s`` into the run; how long its sources went silent,
    what they reported lost, and whether the other actor's sources noticed."""
    import ray

    from rt_tagger.cluster import ClusterMonitor, ClusterSettings
    from rt_tagger.monitor import SourceSpec

    cluster = start_cluster(nodes)
    try:
        specs = [SourceSpec(f"s{i}", f"file:{f}") for i, f in enumerate(files)]
        with ClusterMonitor(config(args), specs, ClusterSettings(actors=2, actor_cpus=1)) as mon:
            mon.start()
            victim = mon.shard("s0")
            mine = set(victim.specs)
            t0 = time.monotonic()
            killed = None
            first_back = None
            events = []
            others_during = 0
            while True:
                try:
                    m = mon.poll(0.1)
                except StopIteration:
                    break
                now = time.monotonic()
                if killed is None and now - t0 >= after_s:
                    ray.kill(victim.handle, no_restart=False)
                    killed = now
                if m is None:
                    continue
                if m["type"] == "event" and m["event"] in ("source_state", "source_restart") \
                        and m["source"] in mine and m.get("state") in (None, "failed"):
                    events.append((now, m))
                if killed is not None and m["type"] == "update":
                    restarted = any(e[1]["event"] == "source_restart" for e in events)
                    if m["source"] in mine and restarted and first_back is None:
                        first_back = now
                    elif m["source"] not in mine and not restarted:
                        others_during += 1
    finally:
        stop_cluster(cluster)
    restarts = [m for _, m in events if m["event"] == "source_restart"]
    failed_at = min((t for t, m in events if m["event"] == "source_state"), default=None)
    restart_at = min((t for t, m in events if m["event"] == "source_restart"), default=None)
    return {"sources_on_victim": len(mine), "detected_s": failed_at - killed if failed_at else None,
            "restarted_s": restart_at - killed if restart_at else None,
            "first_update_s": first_back - killed if first_back else None,
            "gap_s_mean": float(np.mean([m["gap_s"] for m in restarts])) if restarts else None,
            "gap_s_max": max((m["gap_s"] for m in restarts), default=None),
            "lost_samples": sum(m["lost_samples"] for m in restarts), "restart_events": len(restarts),
            "other_updates_meanwhile": others_during}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, nargs="+", default=[8, 32, 64])
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--model", default="musicnn_att.mtat")
    p.add_argument("--threads", type=int, default=1, help="engine threads per actor / per process")
    p.add_argument("--hop", type=float, default=0.5)
    p.add_argument("--kill-n", type=int, default=8, help="sources in the kill-one-actor run")
    p.add_argument("--kill-after", type=float, default=10.0)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        files = bench_sources.make_files(max(args.n + [args.kill_n]), args.seconds, Path(d))
        for n in args.n:
            for mode, run in (("monitor (1 process)", lambda f: run_monitor(f, args)),
                              ("ray, 1 node", lambda f: run_ray(1, f, args)),
                              ("ray, 2 nodes", lambda f: run_ray(2, f, args))):
                r = run(files[:n])
                rows.append((n, mode, r))
                print(f"N={n} {mode:20s} CPU {r['cpu_pct']:6.1f}%  p50 {r['p50']:7.1f} ms  p99 {r['p99']:7.1f} ms  "
                      f"updates {r['updates']}  dropped {r['dropped']}  overruns {r['overruns']}  "
                      f"RSS {r['rss_mb']:.0f} MB ({r['rss_mb'] / n:.1f}/source)  nodes {r['nodes_used']}  "
                      f"load {r['loadavg']:.1f}", flush=True)
        kill = run_kill(2, files[: args.kill_n], args, args.kill_after)
        print(f"kill: {kill}", flush=True)
    if args.out:
        write_md(Path(args.out), rows, kill, args)


def _s(x) -> str:
    return "-" if x is None else f"{x:.2f}"


def write_md(path: Path, rows, kill, args) -> None:
    cmd = (f"nice -n 10 .venv/bin/python bench/bench_ray.py --n {' '.join(map(str, args.n))} "
           f"--seconds {args.seconds:g} --model {args.model} --threads {args.threads} --hop {args.hop:g} "
           f"--kill-n {args.kill_n} --kill-after {args.kill_after:g} --out {args.out}")
    import ray

    lines = [
        "## N live sources on Ray actors: one node vs two raylets, and the one-process monitor",
        "",
        f"Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC. Machine: {os.cpu_count()} CPU cores, "
        f"no GPU, {platform.python_implementation()} {platform.python_version()}, Ray {ray.__version__}.",
        "",
        f"Command: `{cmd}`",
        "",
        f"Each source: a {args.seconds:g} s music file paced in real time, model `{args.model}`, hop "
        f"{args.hop:g} s, {args.threads} engine thread per engine. **monitor** = the one-process monitor "
        "(bench_sources' `shared-2w`: one engine, two inference threads); **ray, 1 node** = "
        "`rt_tagger.cluster.ClusterMonitor` with two source actors (a Monitor and an onnxruntime engine "
        "each, one inference thread each) on one Ray node (2 CPUs); **ray, 2 nodes** = the same two "
        "actors on two Ray nodes started on this machine (`ray.cluster_utils.Cluster`: two raylets, "
        "1 CPU each, one actor per node). CPU = CPU time of every process involved (for Ray: the "
        "driver and every Ray process: GCS, raylets, agents, actors) during the streaming phase / "
        "wall time (100 % = one core; model loading excluded); latency = last sample of a chunk read "
        "from the ring -> its probabilities available, measured where the chunk is tagged (in the "
        "actors: the hop to the driver is not in it); RSS = peak sum of the resident memory of "
        "those processes (for Ray this includes its fixed daemons and the object store's mapped "
        "pages); per source = RSS / N. Other jobs share these 2 cores (load column).",
        "",
        "| N | mode | nodes used | CPU % | latency p50 (ms) | latency p99 (ms) | updates | dropped chunks | overrun samples | RSS (MB) | RSS / source (MB) | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, mode, r in rows:
        lines.append(f"| {n} | {mode} | {r['nodes_used']} | {r['cpu_pct']:.1f} | {r['p50']:.1f} | {r['p99']:.1f} | "
                     f"{r['updates']} | {r['dropped']} | {r['overruns']} | {r['rss_mb']:.0f} | "
                     f"{r['rss_mb'] / n:.1f} | {r['loadavg']:.1f} |")
    lines += [
        "",
        f"**Kill one actor** (2 nodes, {args.kill_n} sources, `ray.kill(actor, no_restart=False)` "
        f"{args.kill_after:g} s into the run, {kill['sources_on_victim']} sources on that actor): "
        f"the driver saw it {_s(kill['detected_s'])} s after the kill (`source_state` failed); Ray "
        f"had restarted it and its sources were started again {_s(kill['restarted_s'])} s after the "
        f"kill (`source_restart`, {kill['restart_events']} events); the first update of a restarted "
        f"source came {_s(kill['first_update_s'])} s after the kill. Reported gap per source: mean "
        f"{_s(kill['gap_s_mean'])} s, max {_s(kill['gap_s_max'])} s; samples reported lost: "
        f"{kill['lost_samples']} in all (16 kHz, the model's rate). The other actor's sources "
        f"delivered {kill['other_updates_meanwhile']} updates meanwhile and reported nothing.",
    ]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
