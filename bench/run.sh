#!/usr/bin/env bash
# End-to-end benchmark of mqimg vs the tutorial's Python consumer: one command from a clean checkout.
#
#   bench/run.sh            # full run, ~10 min on 2 cores
#   bench/run.sh --quick    # smoke run, ~2-3 min
#   bench/run.sh --help     # every option of bench/e2e.py
#
# 1. checks mosquitto and /usr/bin/time (apt-get install -y mosquitto time);
# 2. builds the daemon: cargo build --release, and the decode-ceiling criterion bench unless --quick
#    (skip both with BENCH_NO_BUILD=1);
# 3. finds a Python for the reference consumer (paho-mqtt, numpy, opencv-python-headless): the system
#    python3 when it has them, else a venv under bench-results/.venv (created with pip on first use; set
#    BENCH_NO_INSTALL=1 to skip this and the reference rows instead);
# 4. runs bench/e2e.py (standard library only), which prints a markdown report and writes
#    bench-results/<UTC stamp>/results.json and report.md.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
cd "$ROOT"
PY="${PYTHON:-python3}"

for a in "$@"; do
  case "$a" in -h|--help) exec "$PY" "$HERE/e2e.py" --help ;; esac
done

missing=()
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
[ -x /usr/bin/time ] || missing+=(time)
command -v "$PY" >/dev/null || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
  echo "missing: ${missing[*]} - install with: apt-get update && apt-get install -y mosquitto time python3 python3-venv" >&2
  exit 1
fi
export PATH="$PATH:/usr/sbin"

QUICK=0; CRIT=auto
for a in "$@"; do
  case "$a" in --quick) QUICK=1 ;; --criterion=*) CRIT="${a#--criterion=}" ;; esac
done
prev=""
for a in "$@"; do [ "$prev" = --criterion ] && CRIT="$a"; prev="$a"; done
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
  echo "building: cargo build --release" >&2
  cargo build --release >&2
  # the decode-ceiling bench is compiled here, so its build time stays out of the measurements
  if [ "$CRIT" = run ] || { [ "$CRIT" = auto ] && [ "$QUICK" = 0 ]; }; then
    echo "building: cargo bench --bench decode --no-run" >&2
    cargo bench --bench decode --no-run >&2
  fi
fi

REF_PY=""
DEPS_CHECK='import paho.mqtt, numpy, cv2'
REF_SCRIPT="$ROOT/../shared/bench/seed_consumer.py"
if [ ! -f "$REF_SCRIPT" ]; then
  echo "NOTICE: $REF_SCRIPT not present: reference rows will be skipped" >&2
elif "$PY" -c "$DEPS_CHECK" 2>/dev/null; then
  REF_PY="$(command -v "$PY")"
else
  VENV="$ROOT/bench-results/.venv"
  if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "$DEPS_CHECK" 2>/dev/null; then
    REF_PY="$VENV/bin/python"
  elif [ "${BENCH_NO_INSTALL:-0}" = 1 ]; then
    echo "NOTICE: no Python with paho-mqtt, numpy, opencv-python-headless (BENCH_NO_INSTALL=1): reference rows skipped" >&2
  else
    echo "setting up the reference consumer's Python deps in $VENV (pip install paho-mqtt numpy opencv-python-headless)" >&2
    mkdir -p "$ROOT/bench-results"
    if "$PY" -m venv "$VENV" >&2 && "$VENV/bin/pip" install -q paho-mqtt numpy opencv-python-headless >&2 \
       && "$VENV/bin/python" -c "$DEPS_CHECK"; then
      REF_PY="$VENV/bin/python"
    else
      echo "NOTICE: could not install the reference consumer's deps (python3-venv missing or PyPI unreachable): reference rows skipped" >&2
    fi
  fi
fi

if [ -n "$REF_PY" ]; then
  exec "$PY" "$HERE/e2e.py" --ref-python "$REF_PY" "$@"
else
  exec "$PY" "$HERE/e2e.py" --no-reference "$@"
fi
