"""Outputs on a full disk (issue #16, item 3): the failing output is switched off and reported
once, everything else goes on, and no file ends in a cut line.

"Full" is real: ``/dev/full`` (every write fails with ENOSPC) and a small tmpfs that fills
mid-run (mounted here when the tests run as root; skipped with the reason otherwise).
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from rt_tagger.sinks import JsonlWriter, Outputs, validate_message
from rt_tagger.sinks.eventlog import EventLog
from signals import DATA, MUSIC_CLIPS

FILE = str(DATA / MUSIC_CLIPS[2])
# One status-sized line: what a tag update with its probabilities weighs, roughly.
BIG = {"type": "status", "source": "main", "t": 0.0, "model": "m", "backend": "b", "sample_rate": 16000,
       "hop": 0.5, "chunk": 3.0, "tags": [f"tag{i:03d}" for i in range(300)]}


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs (mounted as root), unmounted afterwards."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {p.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


PAGE = 4096  # tmpfs hands out space in pages


def fill(disk, leave: int = 0) -> None:
    """Fills ``disk`` up to ``leave`` bytes (rounded down to whole pages) of free space."""
    st = os.statvfs(disk)
    free = st.f_bavail * st.f_frsize
    (disk / "ballast").write_bytes(b"\0" * max(0, free - leave // PAGE * PAGE))


def room_for(path, room: int) -> None:
    """Starts ``path`` with one old JSON line so that its last page has ``room`` bytes left;
    call before :func:`fill`, which then leaves no page for anything else."""
    line = {"type": "event", "event": "source_state", "source": "old", "t": 0.0, "state": "ended",
            "detail": ""}
    line["detail"] = "x" * ((PAGE - room) % PAGE - len(json.dumps(line, separators=(",", ":"))) - 1)
    path.write_text(json.dumps(line, separators=(",", ":")) + "\n")


def lines_of(path) -> list[dict]:
    """Every line of a JSON Lines file: each must be whole (parse) and valid."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    assert text == "" or text.endswith("\n"), "the file ends in a cut line"
    msgs = [json.loads(line) for line in text.splitlines()]
    for m in msgs:
        validate_message(m)
    return msgs


def test_jsonl_on_dev_full_is_reported_once_and_the_others_go_on():
    seen, said = [], []

    class Keep:
        def handle(self, msg):
            seen.append(msg)

    out = Outputs(report=said.append)
    out.add("jsonl", JsonlWriter("/dev/full"), "/dev/full")
    out.add("keep", Keep())
    for t in range(5):
        out.handle({"type": "event", "event": "tag_on", "source": "a", "t": float(t), "tag": "x", "p": 0.9})
    errors = [m for m in seen if m.get("event") == "sink_error"]
    assert len(errors) == 1 and len(said) == 1 and len(out.events) == 1
    validate_message(errors[0])
    assert errors[0]["sink"] == "jsonl" and "No space left" in errors[0]["detail"]
    assert sum(m.get("event") == "tag_on" for m in seen) == 5  # the other sink missed nothing
    assert out.sinks[0].status["state"] == "failed" and out.sinks[1].status["state"] == "ok"
    assert out.lost_line().startswith("rt-tagger: output lost: jsonl /dev/full")


def test_sink_error_is_part_of_the_schema():
    ev = {"type": "event", "event": "sink_error", "source": "main", "t": 1.0, "sink": "csv", "detail": "x"}
    validate_message(ev)
    with pytest.raises(ValueError, match="sink"):
        validate_message({**ev, "sink": ""})
    with pytest.raises(ValueError, match="detail"):
        validate_message({k: v for k, v in ev.items() if k != "detail"})


def test_jsonl_and_event_log_write_whole_lines_until_the_disk_is_full(small_disk):
    fill(small_disk, 20_000)
    for name, sink in (("jsonl", JsonlWriter(str(small_disk / "a.jsonl"))),
                       ("log", EventLog(small_disk / "b.jsonl"))):
        written = 0
        with pytest.raises(OSError) as err:
            for _ in range(1000):
                sink.write(BIG)
                written += 1
        assert err.value.errno == 28  # ENOSPC, after some lines went through
        sink.close()
        path = small_disk / ("a.jsonl" if name == "jsonl" else "b.jsonl")
        assert written > 0 and len(lines_of(path)) == written, name
        os.remove(path)


def test_a_file_created_for_nothing_is_removed(tmp_path):
    new = tmp_path / "new.jsonl"
    JsonlWriter(str(new)).close()
    assert not new.exists()
    old = tmp_path / "old.jsonl"
    old.write_text("")
    JsonlWriter(str(old)).close()
    assert old.exists()  # not ours: left alone


def rt(*args: str) -> list[str]:
    return [sys.executable, "-m", "rt_tagger", *args]


def test_single_source_jsonl_fills_mid_run(small_disk, tmp_path):
    fill(small_disk, 24_000)
    table = tmp_path / "taggram.csv"
    out = small_disk / "out.jsonl"
    p = subprocess.run(rt(FILE, "--jsonl", str(out), "--csv", str(table), "--hop", "0.25"),
                       capture_output=True, text=True, timeout=180)
    assert p.returncode == 1, p.stderr
    assert "Traceback" not in p.stderr
    err = p.stderr.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("rt-tagger: output") for line in err), p.stderr
    assert "jsonl" in err[0] and "No space left on device" in err[0]
    msgs = lines_of(out)  # whole lines only, up to where the disk filled
    assert msgs and msgs[0]["type"] == "status" and msgs[-1]["type"] != "summary"
    # the terminal view went on to the end, and saw the failure once
    assert p.stdout.count("sink_error") == 1 and "summary over" in p.stdout
    chunks = int(re.search(r"summary over (\d+) chunks", p.stdout).group(1))
    assert len(table.read_text().splitlines()) == 1 + chunks > 20  # the CSV has the whole run


def test_single_source_dev_full_with_jsonl_on_stdout():
    p = subprocess.run(rt(FILE, "--jsonl", "-", "--csv", "/dev/full"),
                       capture_output=True, text=True, timeout=180)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    msgs = [json.loads(line) for line in p.stdout.splitlines()]
    assert msgs[-1]["type"] == "event" and msgs[-1]["event"] == "sink_error"  # told after the summary
    assert msgs[-1]["sink"] == "csv" and msgs[-2]["type"] == "summary"
    assert "rt-tagger: output lost: csv /dev/full (No space left on device)" in p.stderr


@pytest.mark.slow
def test_monitor_event_log_fills_while_the_rest_goes_on(small_disk, tmp_path):
    """Two paced sources, HTTP status, JSON Lines on a good disk, the event log on a small
    one that fills: /status shows the failed log, the rest runs until SIGTERM drains it."""
    log = small_disk / "events.jsonl"
    room_for(log, 1500)  # room for the first source's status line, not for the second's
    fill(small_disk)
    out = tmp_path / "all.jsonl"
    proc = subprocess.Popen(rt("--source", f"a=file:{FILE}", "--source", f"b=file:{DATA / MUSIC_CLIPS[0]}",
                               "--http", "127.0.0.1:0", "--event-log", str(log), "--jsonl", str(out), "-q",
                               "--min-duration", "0"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    early = []  # stderr up to the status URL: the event log may fail before it is printed
    try:
        url = None
        for line in proc.stderr:
            early.append(line)
            if "status at" in line:
                url = line.split("status at ")[1].strip()
                break
        assert url, "no status URL"
        deadline, state = time.time() + 60, None
        while time.time() < deadline:
            status = json.load(urllib.request.urlopen(url, timeout=5))
            state = status["outputs"]["event_log"]["state"]
            if state == "failed":
                break
            time.sleep(0.3)
        assert state == "failed"
        assert status["outputs"]["jsonl"]["state"] == "ok"
        assert any(e.get("event") == "sink_error" for e in status["events"])
        while time.time() < deadline and min(s["t"] for s in status["sources"].values()) < 4.0:
            time.sleep(0.3)  # both sources, HTTP and the JSON Lines carry on
            status = json.load(urllib.request.urlopen(url, timeout=5))
        assert status["outputs"]["event_log"]["state"] == "failed"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)  # its few stderr lines never fill the pipe
        # The rest of stderr through the same file object: reading lines above may have pulled
        # the next ones into its buffer already, where communicate() would not see them.
        err = proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == 143, err
    err = "".join(early) + err
    assert "Traceback" not in err and err.count("output event_log") == 1
    msgs = lines_of(out)
    assert sum(m.get("event") == "sink_error" for m in msgs) == 1
    assert {m["source"] for m in msgs if m["type"] == "summary"} == {"a", "b"}
    after = msgs[[m.get("event") for m in msgs].index("sink_error"):]
    assert {m["source"] for m in after if m["type"] == "update" and m["t"] >= 4.0} == {"a", "b"}
    old, *new = lines_of(log)  # what reached the log: whole lines, and the failure came mid-run
    assert old["source"] == "old" and len(new) >= 1


def test_a_file_output_comes_back_when_the_disk_has_room_again(small_disk):
    """A full disk switches the JSON Lines file off; once space is freed, the next retry reopens
    it (appending), says how many messages were missed, and writing goes on in whole lines."""
    out = small_disk / "out.jsonl"
    seen = []
    outputs = Outputs(report=seen.append)
    g = outputs.add("jsonl", JsonlWriter(str(out)), str(out), reopen=lambda: JsonlWriter(str(out)))
    g.retry_s = 0.5  # the command line uses RETRY_S (30 s)
    msg = dict(BIG)
    outputs.handle(msg)
    fill(small_disk)
    for i in range(5):  # the first fails, the rest (and the sink_error event) are missed
        outputs.handle(dict(msg, t=float(i + 1)))
    time.sleep(0.6)
    outputs.handle(dict(msg, t=6.0))  # retried: reopens, but the disk is still full
    assert g.failed
    assert g.failed and len(seen) == 1 and "No space left" in seen[0]
    assert outputs.lost_line().startswith("rt-tagger: output lost: jsonl")
    (small_disk / "ballast").unlink()
    fill(small_disk, leave=8192)  # room for a line or two, not for a working log: no flapping
    time.sleep(0.6)
    outputs.handle(dict(msg, t=6.5, tags=["x"]))  # a small line that would fit
    assert g.failed and len(seen) == 1, seen
    (small_disk / "ballast").unlink()
    outputs.handle(dict(msg, t=7.0))  # too early for the next retry: missed
    time.sleep(0.6)
    outputs.handle(dict(msg, t=9.0))
    assert not g.failed
    assert len(seen) == 2 and "writing again (8 message(s) lost" in seen[1], seen
    ev = outputs.events[-1]
    validate_message(ev)
    assert ev["event"] == "sink_recovered" and ev["lost"] == 8 and ev["sink"] == "jsonl"
    outputs.close()
    msgs = lines_of(out)  # whole lines: the first status, then t = 9 and the recovery event
    assert [m.get("t") for m in msgs if m["type"] == "status"] == [0.0, 9.0]
    assert msgs[-1]["event"] == "sink_recovered"
    assert "recovered, 8 message(s) missed" in outputs.lost_line()
