"""Sources sharded over Ray actors (rt_tagger.cluster) against a real local Ray cluster on
127.0.0.1 (started once for the module, shut down at the end): the messages equal the
one-process monitor's, with the model in the actors or in one Ray Serve deployment; an actor
killed mid-run is restarted by Ray, its sources report the gap and go on; the HTTP status says
where each source runs, also after adding and removing sources; the CLI and the TOML config
reach it; without Ray, ``--cluster`` names the extra in one line."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from rt_tagger.cluster import ClusterMonitor, ClusterSettings
from rt_tagger.config import StreamConfig
from rt_tagger.errors import ConfigError
from rt_tagger.monitor import Monitor, SourceSpec
from rt_tagger.sinks import validate_message
from rt_tagger.sinks.http_status import StatusServer
from rt_tagger.tagger import Tagger
from signals import DATA, MUSIC_CLIPS

ROOT = Path(__file__).resolve().parents[1]
CONFIG = StreamConfig().replace(hop=0.5, threads=1)
TOL = 1e-5  # probabilities and loudness readings, absolute
# Three actors' worth of resources on the 2 CPUs of a CI machine: two source actors and a
# Serve replica (or a third actor) at half a CPU each; Ray only books them, nothing is pinned.
SETTINGS = ClusterSettings(actors=2, actor_cpus=0.5, serve_cpus=0.5)


@pytest.fixture(scope="module")
def ray_local():
    from rt_tagger.cluster.connect import connect

    try:
        connect("local", num_cpus=2)
    except ConfigError as exc:  # the [cluster] extra is part of the test extra
        pytest.skip(str(exc))
    import ray

    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Path]:
    """The three music clips cut to 6 s (short realtime runs)."""
    d = tmp_path_factory.mktemp("clips")
    out = []
    for name in MUSIC_CLIPS[:3]:
        y, sr = sf.read(DATA / name, dtype="float32")
        out.append(d / (Path(name).stem + ".wav"))
        sf.write(out[-1], y[: 6 * sr], sr)
    return out


def specs(files, realtime: bool) -> list[SourceSpec]:
    return [SourceSpec(f"s{i}", f"file:{f}", realtime=realtime) for i, f in enumerate(files)]


def by_source(msgs) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for m in msgs:
        validate_message(m)
        out.setdefault(m["source"], []).append(m)
    return out


#: Not compared: wall-clock latency, and the meter's reading attached to an update, which is
#: the reading when the update is made (a file decoded ahead of the model: timing, even in one
#: process). The summary's and the events' loudness are compared.
TIMING = {"latency_ms", "loudness"}


def assert_close(a, b, where: str) -> None:
    """Equal JSON values, numbers within TOL (:data:`TIMING` keys of updates left out)."""
    if isinstance(a, dict):
        skip = TIMING if a.get("type") == "update" else set()
        keys = set(a) - skip
        assert keys == set(b) - skip, f"{where}: keys {sorted(keys ^ (set(b) - skip))}"
        for k in keys:
            assert_close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), f"{where}: {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert abs(a - b) <= TOL, f"{where}: {a} != {b}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.fixture(scope="module")
def reference(clips):
    """The one-process monitor's messages over the clips (as fast as they decode)."""
    with Monitor(Tagger(None, CONFIG), specs(clips, realtime=False)) as mon:
        mon.start()
        return by_source(mon.messages())


def cluster_messages(clips, settings: ClusterSettings) -> tuple[dict, dict]:
    with ClusterMonitor(CONFIG, specs(clips, realtime=False), settings) as mon:
        mon.start()
        msgs = list(mon.messages())
        return by_source(msgs), mon.status()


@pytest.mark.slow
def test_two_actors_give_the_messages_of_one_process(ray_local, clips, reference):
    got, status = cluster_messages(clips, SETTINGS)
    assert sorted(got) == sorted(reference) == ["s0", "s1", "s2"]
    for name, msgs in reference.items():
        assert [m["type"] for m in got[name]] == [m["type"] for m in msgs], name
        assert_close([dict(m) for m in got[name]], [dict(m) for m in msgs], name)
        assert sum(m["type"] == "update" for m in msgs) >= 5
    actors = {row["actor"] for row in status["sources"].values()}
    assert len(actors) == 2 and status["cluster"]["inference"] == "actor"
    assert {row["node_ip"] for row in status["sources"].values()} == {"127.0.0.1"}


@pytest.mark.slow
def test_four_paced_sources_on_two_actors_give_the_monitors_summaries(ray_local, clips):
    """Four file sources paced in real time (as live ones arrive), two per actor: each summary
    equals the one-process monitor's on the same files within 1e-5."""
    files = [*clips, clips[0]]  # the fourth source plays the first clip again
    with Monitor(Tagger(None, CONFIG), specs(files, realtime=False)) as mon:
        mon.start()
        ref = by_source(mon.messages())
    t0 = time.monotonic()
    with ClusterMonitor(CONFIG, specs(files, realtime=True), SETTINGS) as mon:
        mon.start()
        got = by_source(list(mon.messages()))
        status = mon.status()
    assert time.monotonic() - t0 >= 6.0  # paced: at least the clips' 6 s
    assert sorted(got) == sorted(ref) == ["s0", "s1", "s2", "s3"]
    for name in ref:
        g, r = got[name][-1], ref[name][-1]
        assert g["type"] == r["type"] == "summary", name
        assert_close(g, r, name)
    per_actor: dict[str, int] = {}
    for row in status["sources"].values():
        per_actor[row["actor"]] = per_actor.get(row["actor"], 0) + 1
    assert sorted(per_actor.values()) == [2, 2]


@pytest.mark.slow
def test_serve_inference_gives_the_same_messages(ray_local, clips, reference):
    got, status = cluster_messages(clips, ClusterSettings(**{**SETTINGS.__dict__, "inference": "serve"}))
    assert status["cluster"]["inference"] == "serve"
    for name, msgs in reference.items():
        assert_close([dict(m) for m in got[name]], [dict(m) for m in msgs], name)


@pytest.mark.slow
def test_a_killed_actor_is_restarted_and_its_sources_report_the_gap(ray_local, clips):
    files = clips[:2]
    msgs = []
    with ClusterMonitor(CONFIG, specs(files, realtime=True), SETTINGS) as mon:
        mon.start()
        victim = mon.shard("s0")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # 2 s of s0's updates, then its actor dies
            m = mon.poll(0.2)
            if m is not None:
                msgs.append(m)
                if m["source"] == "s0" and m["type"] == "update" and m["t"] >= 2.0:
                    break
        killed_at = time.monotonic()
        ray_local.kill(victim.handle, no_restart=False)
        seen_restarting = False
        when: dict[int, float] = {}  # message -> when the driver gave it out (after the kill)
        while True:
            try:
                m = mon.poll(0.2)
            except StopIteration:
                break
            if victim.state == "recovering" and not seen_restarting:
                seen_restarting = mon.status()["sources"]["s0"]["state"] == "restarting"
            if m is not None:
                msgs.append(m)
                when[id(m)] = time.monotonic()
            assert time.monotonic() - killed_at < 90, "the run did not finish after the kill"
        status = mon.status()
    src = by_source(msgs)
    s0 = src["s0"]
    kinds = [(m["type"], m.get("event")) for m in s0]
    failed = next(i for i, m in enumerate(s0) if m.get("event") == "source_state" and m["state"] == "failed")
    assert "Ray actor died" in s0[failed]["detail"]
    restart = kinds.index(("event", "source_restart"))
    assert restart > failed
    ev = s0[restart]
    assert ev["restarts"] == 1 and 0 < ev["gap_s"] < 60 and ev["actor"] == victim.place["actor"]
    assert ev["lost_samples"] == pytest.approx(ev["gap_s"] * 16000, abs=16)
    # the gap runs from s0's last delivery before the kill, so it covers the whole restart
    assert ev["gap_s"] >= when[id(ev)] - when[id(s0[failed])] - 0.05
    assert kinds[restart + 1] == ("status", None) and s0[restart + 1]["t"] == ev["t"]
    t_before = max(m["t"] for m in s0[:failed] if m["type"] == "update")
    after = [m["t"] for m in s0[restart:] if m["type"] == "update"]
    assert after and min(after) > t_before  # the timeline goes on
    assert s0[-1]["type"] == "summary"
    # the other actor's source never noticed
    s1 = src["s1"]
    assert not [m for m in s1 if m.get("event") == "source_restart" or m.get("state") == "failed"]
    assert s1[-1]["type"] == "summary"
    assert seen_restarting
    assert status["sources"]["s0"]["restarts"] == 1 and status["sources"]["s1"]["restarts"] == 0


@pytest.mark.slow
def test_http_status_says_where_each_source_runs_also_after_add_and_remove(ray_local, clips):
    with ClusterMonitor(CONFIG, specs(clips[:2], realtime=True), SETTINGS) as mon:
        mon.start()
        server = StatusServer(mon.status, "127.0.0.1:0").start()
        try:
            def get() -> dict:
                with urllib.request.urlopen(f"{server.url}/status", timeout=10) as r:
                    return json.loads(r.read())

            seen = set()
            while len(seen) < 2:  # until both sources have tagged something
                m = mon.poll(0.2)
                if m is not None and m["type"] == "update":
                    seen.add(m["source"])
            body = get()
            rows = body["sources"]
            assert sorted(rows) == ["s0", "s1"]
            assert rows["s0"]["actor"] != rows["s1"]["actor"]
            for row in rows.values():
                assert row["node_ip"] == "127.0.0.1" and row["node"] and row["pid"] > 0
                assert row["state"] == "running" and row["t"] > 0
            assert body["model"] == "musicnn_att.mtat" and len(body["cluster"]["actors"]) == 2
            mon.remove("s1")
            mon.add(SourceSpec("s2", f"file:{clips[2]}", realtime=True))
            rows = get()["sources"]
            assert sorted(rows) == ["s0", "s2"]
            assert rows["s2"]["actor"] == body["sources"]["s1"]["actor"]  # the actor with room
            mon.end_input()
            rest = by_source(mon.messages())
            assert "s2" in rest and rest["s2"][0]["type"] == "status"
        finally:
            server.close()


@pytest.mark.slow
def test_the_cli_runs_on_the_cluster(ray_local, clips, tmp_path, capsys):
    from rt_tagger.cli import main

    out = tmp_path / "out.jsonl"
    toml = tmp_path / "m.toml"
    toml.write_text(f'cluster = "local"\ncluster_actors = 2\ncluster_actor_cpus = 0.5\nhop = 0.5\n'
                    f'[sources]\na = {{input = "file:{clips[0]}", realtime = false}}\n'
                    f'b = {{input = "file:{clips[1]}", realtime = false}}\n')
    assert main(["--config", str(toml), "--jsonl", str(out), "-q"]) == 0
    msgs = [json.loads(line) for line in out.read_text().splitlines()]
    for m in msgs:
        validate_message(m)
    assert {m["source"] for m in msgs if m["type"] == "summary"} == {"a", "b"}


@pytest.mark.slow
def test_the_command_starts_its_own_local_cluster_and_drains_on_sigterm(clips, tmp_path):
    """``rt-tagger --cluster local`` in its own process: Ray on 127.0.0.1 (the status says where),
    SIGTERM drains (summaries written, status 143) and Ray is shut down with the run."""
    import signal
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "out.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "rt_tagger", "--source", f"a=file:{clips[0]}",
                             "--source", f"b=file:{clips[1]}", "--cluster", "local", "--jsonl", str(out),
                             "-q", "--hop", "0.5", "--http", f"127.0.0.1:{port}"],
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        body = None
        while time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as r:
                    body = json.loads(r.read())
            except OSError:
                continue
            if all(row.get("t", 0) > 0 for row in body["sources"].values()):
                break
        assert body is not None and sorted(body["sources"]) == ["a", "b"]
        assert {row["node_ip"] for row in body["sources"].values()} == {"127.0.0.1"}
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err
    msgs = [json.loads(line) for line in out.read_text().splitlines()]
    assert {m["source"] for m in msgs if m["type"] == "summary"} == {"a", "b"}


def test_cluster_settings_and_config_keys_are_checked(tmp_path):
    from rt_tagger.monitor.config import load_config

    for text, why in (('cluster = "nowhere"', "cluster must be"),
                      ('cluster = "local"\ncluster_inference = "gpu"', "cluster_inference must be"),
                      ('cluster = "local"\ncluster_actors = 0', "cluster_actors must be")):
        p = tmp_path / "c.toml"
        p.write_text(text + '\n[sources]\na = "file:x.wav"\n')
        with pytest.raises(ConfigError, match=why):
            load_config(p)
    p.write_text('cluster = "ray://head:10001"\ncluster_inference = "serve"\n[sources]\na = "file:x.wav"\n')
    assert load_config(p).options["cluster_inference"] == "serve"
    with pytest.raises(ConfigError, match="only one|unique"):
        ClusterMonitor(CONFIG, [SourceSpec("a", "file:x"), SourceSpec("a", "file:y")])


def test_without_ray_names_the_extra():
    code = ("import sys; sys.modules['ray'] = None; from rt_tagger.cli import main; "
            f"sys.exit(main([{str(DATA / MUSIC_CLIPS[0])!r}, '-q', '--cluster', 'local']))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert lines[0].startswith("rt-tagger: ") and "pip install 'rt-tagger[cluster]'" in lines[0]


def test_nothing_outside_the_cluster_package_imports_ray():
    found = []
    for path in sorted((ROOT / "rt_tagger").rglob("*.py")):
        if "cluster" in path.relative_to(ROOT / "rt_tagger").parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            found += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "ray"]
    assert not found
