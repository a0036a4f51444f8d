#!/usr/bin/env bash
# Starts a PulseAudio daemon with a 16 kHz mono float32 null sink named rt_tagger_sink and makes
# its monitor the default source, then writes the environment tests need to
# /tmp/rt-tagger-pulse.env. Safe to run twice.
set -euo pipefail
command -v pulseaudio >/dev/null || { echo "pulseaudio not installed" >&2; exit 1; }
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp/rt-tagger-xdg}
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
export PULSE_SERVER="unix:$XDG_RUNTIME_DIR/pulse/native"
if ! pactl info >/dev/null 2>&1; then
  args=(--daemonize=yes -n --exit-idle-time=-1 --disallow-exit
        --load=module-native-protocol-unix
        "--load=module-null-sink sink_name=rt_tagger_sink rate=16000 channels=1 format=float32le")
  [ "$(id -u)" = 0 ] && args+=(--system=false)
  pulseaudio "${args[@]}" >/dev/null 2>&1 || pulseaudio "${args[@]}"
  for _ in $(seq 1 50); do pactl info >/dev/null 2>&1 && break; sleep 0.2; done
fi
pactl info >/dev/null
pactl set-default-sink rt_tagger_sink
pactl set-default-source rt_tagger_sink.monitor
cat > /tmp/rt-tagger-pulse.env <<ENV
export XDG_RUNTIME_DIR=$XDG_RUNTIME_DIR
export PULSE_SERVER=$PULSE_SERVER
ENV
echo "PulseAudio ready at $PULSE_SERVER (default source rt_tagger_sink.monitor)"
