#!/usr/bin/env bash
# End-to-end benchmark of mqimg vs a plain paho-mqtt + OpenCV consumer: one command from a clean checkout.
#
#   bench/run.sh            # full run, ~10 min on 2 cores
#   bench/run.sh --quick    # smoke run, ~2-3 min (plus the first build and venv)
#   BENCH_CARGO_FEATURES=turbojpeg bench/run.sh --backend libjpeg-turbo   # the other decoder, same tables
#   bench/run.sh --help     # every option of bench/e2e.py
#
# 1. checks mosquitto and /usr/bin/time (apt-get install -y mosquitto time);
# 2. builds the daemon: cargo build --release, and the decode-ceiling criterion bench (cargo bench --no-run),
#    which e2e.py runs in the same run, unless --criterion read|skip or --only without ceiling; both with
#    --features "$BENCH_CARGO_FEATURES" when set (e.g. BENCH_CARGO_FEATURES=turbojpeg for --backend
#    libjpeg-turbo); skip building with BENCH_NO_BUILD=1;
# 3. sets up the reference consumer (bench/reference/consumer.py): a venv in bench/.venv (BENCH_VENV
#    overrides) with the pinned bench/reference/requirements.txt, created on first use and reinstalled
#    when that file changes. BENCH_NO_INSTALL=1 installs nothing: the system python3 is used if it
#    already has paho-mqtt, numpy and cv2, else the reference rows are skipped;
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

CRIT=auto; ONLY=""
for a in "$@"; do
  case "$a" in --criterion=*) CRIT="${a#--criterion=}" ;; --only=*) ONLY="${a#--only=}" ;; esac
done
prev=""
for a in "$@"; do
  [ "$prev" = --criterion ] && CRIT="$a"
  [ "$prev" = --only ] && ONLY="$a"
  prev="$a"
done
FEATURES=()
[ -n "${BENCH_CARGO_FEATURES:-}" ] && FEATURES=(--features "$BENCH_CARGO_FEATURES")
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
  echo "building: cargo build --release${FEATURES[*]:+ ${FEATURES[*]}}" >&2
  cargo build --release "${FEATURES[@]}" >&2
  # the decode-ceiling bench (run by e2e.py, same features) is compiled here, so its build time stays out of
  # the measurements
  if { [ "$CRIT" = run ] || [ "$CRIT" = auto ]; } && { [ -z "$ONLY" ] || [[ ",$ONLY," == *,ceiling,* ]]; }; then
    echo "building: cargo bench${FEATURES[*]:+ ${FEATURES[*]}} --bench decode --no-run" >&2
    cargo bench "${FEATURES[@]}" --bench decode --no-run >&2
  fi
fi

REF_PY=""
DEPS_CHECK='import paho.mqtt, numpy, cv2'
REQ="$HERE/reference/requirements.txt"
VENV="${BENCH_VENV:-$HERE/.venv}"
STAMP="$VENV/.requirements.sha256"
want="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [ "${BENCH_NO_INSTALL:-0}" = 1 ]; then
  if "$PY" -c "$DEPS_CHECK" 2>/dev/null; then
    REF_PY="$(command -v "$PY")"
    echo "BENCH_NO_INSTALL=1: reference consumer runs on $REF_PY (versions not pinned)" >&2
  else
    echo "NOTICE: BENCH_NO_INSTALL=1 and $PY lacks paho-mqtt/numpy/cv2: reference rows skipped" >&2
  fi
elif [ -x "$VENV/bin/python" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ] \
     && "$VENV/bin/python" -c "$DEPS_CHECK" 2>/dev/null; then
  REF_PY="$VENV/bin/python"
else
  echo "setting up the reference consumer in $VENV: pip install -r bench/reference/requirements.txt" >&2
  if { "$VENV/bin/python" -m pip --version >/dev/null 2>&1 || "$PY" -m venv --clear "$VENV" >&2; } \
     && "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQ" >&2 \
     && "$VENV/bin/python" -c "$DEPS_CHECK"; then
    echo "$want" > "$STAMP"
    REF_PY="$VENV/bin/python"
  else
    echo "NOTICE: could not install the reference consumer's packages (python3-venv missing or PyPI" \
         "unreachable?): reference rows skipped" >&2
  fi
fi

if [ -n "$REF_PY" ]; then
  exec "$PY" "$HERE/e2e.py" --ref-python "$REF_PY" "$@"
else
  exec "$PY" "$HERE/e2e.py" --no-reference "$@"
fi
