#!/usr/bin/env bash
# Proves the container image, the compose stack and the systemd unit on this machine:
#   1. installs what is missing (docker.io, docker-compose, mosquitto-clients, systemd's tools) and starts
#      dockerd when none runs (and stops it at the end);
#   2. uses the Dockerfile's base images, or pulls them, or, where no image registry is reachable, builds
#      local stand-ins under the same tags (debian:bookworm-slim from debootstrap, eclipse-mosquitto:2
#      from it plus Debian's mosquitto, rust:1.95-bookworm from it plus this machine's Rust toolchain);
#      stand-ins stay in Docker's image store for the next run;
#   3. builds the image (cargo runs inside the build stage, trusting the host's local CA certificates
#      through a BuildKit secret), checks deploy/mqimg.service with `systemd-analyze verify`;
#   4. brings deploy/compose.yaml up on free loopback ports, publishes a frame from the host through the
#      broker's published port, checks its record and its file in the frames volume, the container's
#      health, a clean `stop` (exit 0), and tears everything down.
# Prints one line per step and ends with `deploy: passed in …` (or `deploy: FAILED …`, exit 1).
#
# Environment: MQIMG_DEPLOY_BINARY=prebuilt builds the image from the host's `cargo build --release --features turbojpeg`
# (in target/) instead of compiling in the build stage, whose crates and compiled dependencies stay in
# BuildKit's cache between runs. MQIMG_DEPLOY_KEEP=1 leaves the stack (and a dockerd started here) up
# for a look, and prints the command that tears it down.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$SECONDS
image=mqimg:deploy-test
binary_mode=${MQIMG_DEPLOY_BINARY:-compile}
fixture=fixtures/frames/photo-640x480.jpg
work=$(mktemp -d "${TMPDIR:-/tmp}/mqimg-deploy.XXXXXX")
dockerd_pid=""
compose=()
project=""

say() { printf 'deploy: %s\n' "$*"; }
elapsed() { local s=$((SECONDS - started)); printf '%dm%02ds' $((s / 60)) $((s % 60)); }
fail() {
  say "FAILED after $(elapsed): $*"
  exit 1
}

cleanup() {
  local status=$?
  set +e
  if [ -n "$project" ] && [ "${#compose[@]}" -gt 0 ]; then
    if [ "${MQIMG_DEPLOY_KEEP:-}" = 1 ]; then
      say "left up (MQIMG_DEPLOY_KEEP=1): ${compose[*]} down -v"
    else
      if [ "$status" -ne 0 ]; then
        say "logs of the stack:"
        "${compose[@]}" logs --no-color --tail=40 2>&1 | sed 's/^/  /'
      fi
      "${compose[@]}" down -v --remove-orphans >"$work/down.log" 2>&1 ||
        { say "tear-down failed:"; sed 's/^/  /' "$work/down.log"; }
    fi
  fi
  if [ -n "$dockerd_pid" ] && [ "${MQIMG_DEPLOY_KEEP:-}" = 1 ]; then
    say "left dockerd running (pid $dockerd_pid)"
  elif [ -n "$dockerd_pid" ]; then
    say "stopping the dockerd this script started (pid $dockerd_pid)"
    kill "$dockerd_pid" 2>/dev/null
    for _ in $(seq 60); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.5; done
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

# --- 1. tools --------------------------------------------------------------------------------------

apt_updated=""
apt_install() {
  local prefix=()
  [ "$(id -u)" -eq 0 ] || prefix=(sudo -n)
  if [ -z "$apt_updated" ]; then
    DEBIAN_FRONTEND=noninteractive "${prefix[@]}" apt-get -o DPkg::Lock::Timeout=600 update -qq ||
      fail "apt-get update failed; install $* by hand (Debian: apt-get install $*)"
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive "${prefix[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends "$@" >"$work/apt.log" 2>&1 || {
    tail -20 "$work/apt.log"
    fail "could not install $* (Debian: apt-get install $*); this test needs a Docker engine and does not skip"
  }
}

missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null 2>&1; then
  missing+=(docker-compose)
fi
command -v mosquitto_sub >/dev/null 2>&1 || missing+=(mosquitto-clients)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing ${missing[*]} from Debian's packages"
  apt_install "${missing[@]}"
fi

if docker compose version >/dev/null 2>&1; then
  compose_cli=(docker compose)
else
  compose_cli=(docker-compose)
fi

# --- 2. engine -------------------------------------------------------------------------------------

if docker info >/dev/null 2>&1; then
  say "using the running Docker engine ($(docker version --format '{{.Server.Version}}'))"
else
  say "no Docker engine answers: starting dockerd (log: /var/log/mqimg-deploy-dockerd.log)"
  [ "$(id -u)" -eq 0 ] || fail "starting dockerd needs root; start the Docker service (systemctl start docker) and rerun"
  setsid dockerd >/var/log/mqimg-deploy-dockerd.log 2>&1 </dev/null &
  dockerd_pid=$!
  for _ in $(seq 120); do
    docker info >/dev/null 2>&1 && break
    kill -0 "$dockerd_pid" 2>/dev/null || {
      tail -20 /var/log/mqimg-deploy-dockerd.log
      dockerd_pid=""
      fail "dockerd exited at startup (log above)"
    }
    sleep 0.5
  done
  docker info >/dev/null 2>&1 || fail "dockerd did not answer within 60 s"
fi

# A docker client that builds with BuildKit (the Dockerfile uses RUN --mount): buildx if present, else a
# client older than 23 (such as Debian 12's docker.io, /usr/bin/docker) with DOCKER_BUILDKIT=1.
build_cmd=()
for client in docker /usr/bin/docker; do
  command -v "$client" >/dev/null 2>&1 || continue
  if "$client" buildx version >/dev/null 2>&1; then
    build_cmd=("$client" buildx build --load)
    break
  fi
  version=$("$client" version --format '{{.Client.Version}}' 2>/dev/null || echo 0)
  if [ "${version%%.*}" -lt 23 ] 2>/dev/null; then
    build_cmd=(env DOCKER_BUILDKIT=1 "$client" build)
    break
  fi
done
[ "${#build_cmd[@]}" -gt 0 ] ||
  fail "no docker client here builds with BuildKit: install docker-buildx (Docker's apt repository) or Debian's docker.io"

# The host's local CA certificates (what update-ca-certificates reads): a TLS-intercepting egress
# signs with one of them. Given to builds as a BuildKit secret, never copied into an image.
ca_secret=()
if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
  cat /usr/local/share/ca-certificates/*.crt >"$work/extra-ca.pem"
  chmod 600 "$work/extra-ca.pem"
  ca_secret=(--secret "id=extra_ca,src=$work/extra-ca.pem")
fi

# --- base images: present, pulled, or built here ---------------------------------------------------

dockerfile_default() { sed -n "s/^ARG $1=//p" Dockerfile | head -1; }
build_image=$(dockerfile_default BUILD_IMAGE)
runtime_image=$(dockerfile_default RUNTIME_IMAGE)
mosquitto_image=$(sed -n 's/^ *image: \(eclipse-mosquitto:.*\)$/\1/p' deploy/compose.yaml | head -1)
stand_in_label=org.mqimg.stand-in

# Succeeds when $1 is in the image store, saying whether it is a stand-in; else tries to pull it.
have_or_pull() {
  local tag=$1 note
  if docker image inspect "$tag" >/dev/null 2>&1; then
    note=$(docker image inspect --format "{{index .Config.Labels \"$stand_in_label\"}}" "$tag" 2>/dev/null || true)
    if [ -n "$note" ] && [ "$note" != "<no value>" ]; then
      say "$tag: cached local stand-in ($note)"
    else
      say "$tag: present"
    fi
    return 0
  fi
  if timeout 120 docker pull -q "$tag" >"$work/pull.log" 2>&1; then
    say "$tag: pulled"
    return 0
  fi
  say "$tag: cannot be pulled ($(head -c 160 "$work/pull.log" | tr '\n' ' ')): building a local stand-in under that tag"
  return 1
}

stand_in_runtime() {
  command -v debootstrap >/dev/null 2>&1 || { say "installing debootstrap"; apt_install debootstrap; }
  local root="$work/rootfs" t=$SECONDS
  say "debootstrap --variant=minbase bookworm (about 2 minutes)"
  debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 || {
    tail -20 "$work/debootstrap.log"
    fail "debootstrap failed"
  }
  # As the official image: updates and security sources, no package caches or docs kept.
  cat >"$root/etc/apt/sources.list" <<'EOF'
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
  printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
    'path-exclude /usr/share/man/*' 'path-exclude /usr/share/locale/*' 'path-exclude /usr/share/info/*' \
    >"$root/etc/dpkg/dpkg.cfg.d/docker-slim"
  printf '%s\n' 'Dir::Cache::pkgcache "";' 'Dir::Cache::srcpkgcache "";' 'Acquire::Languages "none";' \
    >"$root/etc/apt/apt.conf.d/docker-clean"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/* \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/* "$root"/usr/share/info/*
  tar -C "$root" -c . | docker import \
    --change "LABEL $stand_in_label=\"debootstrap minbase bookworm, $(date -u +%F)\"" \
    --change 'CMD ["bash"]' - "$runtime_image" >/dev/null
  rm -rf "$root"
  say "$runtime_image: stand-in imported in $((SECONDS - t)) s ($(docker image inspect --format '{{.Size}}' "$runtime_image" | numfmt --to=iec-i --suffix=B))"
}

stand_in_mosquitto() {
  local t=$SECONDS
  # The same paths as the real image: /mosquitto/config/mosquitto.conf, /mosquitto/data, /mosquitto/log.
  "${build_cmd[@]}" --network host -q -t "$mosquitto_image" - >"$work/build-mosquitto.log" 2>&1 <<EOF || {
FROM $runtime_image
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends mosquitto mosquitto-clients \\
 && rm -rf /var/lib/apt/lists/* \\
 && mkdir -p /mosquitto/config /mosquitto/data /mosquitto/log \\
 && printf 'listener 1883\npersistence true\npersistence_location /mosquitto/data/\nlog_dest stderr\n' \\
      > /mosquitto/config/mosquitto.conf \\
 && chown -R mosquitto:mosquitto /mosquitto
LABEL $stand_in_label="Debian's mosquitto on $runtime_image, $(date -u +%F)"
EXPOSE 1883
VOLUME ["/mosquitto/data", "/mosquitto/log"]
CMD ["/usr/sbin/mosquitto", "-c", "/mosquitto/config/mosquitto.conf"]
EOF
    tail -20 "$work/build-mosquitto.log"
    fail "building the $mosquitto_image stand-in failed"
  }
  say "$mosquitto_image: stand-in built from Debian's mosquitto in $((SECONDS - t)) s"
}

stand_in_rust() {
  # This machine's toolchain (cargo, rustc and their libraries, without docs) on the runtime base
  # plus gcc for linking. Laid out like the official image: CARGO_HOME=/usr/local/cargo.
  local sysroot ctx="$work/rust-context" version t=$SECONDS
  sysroot=$(rustc --print sysroot) || fail "no rustc on this machine for the $build_image stand-in"
  version=$(rustc --version)
  mkdir -p "$ctx/rust/bin"
  cp -al "$sysroot/lib" "$ctx/rust/lib" 2>/dev/null || cp -a "$sysroot/lib" "$ctx/rust/lib"
  cp -a "$sysroot/bin/cargo" "$sysroot/bin/rustc" "$ctx/rust/bin/"
  cat >"$ctx/Dockerfile" <<EOF
FROM $runtime_image
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gcc libc6-dev ca-certificates \\
 && rm -rf /var/lib/apt/lists/*
COPY rust /usr/local/rust
ENV CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
LABEL $stand_in_label="$version from this machine on $runtime_image, $(date -u +%F)"
EOF
  case $build_image in
    *"$(rustc --version | cut -d' ' -f2 | cut -d. -f1,2)"*) ;;
    *) say "note: the $build_image stand-in holds this machine's $version" ;;
  esac
  "${build_cmd[@]}" --network host -q -t "$build_image" "$ctx" >"$work/build-rust.log" 2>&1 || {
    tail -20 "$work/build-rust.log"
    fail "building the $build_image stand-in failed"
  }
  rm -rf "$ctx"
  say "$build_image: stand-in built in $((SECONDS - t)) s ($version)"
}

have_or_pull "$runtime_image" || stand_in_runtime
have_or_pull "$mosquitto_image" || stand_in_mosquitto
build_args=()
if [ "$binary_mode" = prebuilt ]; then
  say "MQIMG_DEPLOY_BINARY=prebuilt: cargo build --release --features turbojpeg on the host, copied into the image"
  cargo build --release --locked --bin mqimg --features turbojpeg >"$work/cargo.log" 2>&1 || {
    tail -30 "$work/cargo.log"
    fail "cargo build --release failed"
  }
  build_args+=(--build-arg BINARY=prebuilt)
else
  have_or_pull "$build_image" || stand_in_rust
fi

# --- 3. the image and the systemd unit ------------------------------------------------------------

say "building $image (${build_cmd[*]}; BINARY=$binary_mode)"
t0=$SECONDS
"${build_cmd[@]}" --network host "${ca_secret[@]}" "${build_args[@]}" -t "$image" . >"$work/build.log" 2>&1 || {
  tail -40 "$work/build.log"
  fail "docker build failed"
}
size=$(docker image inspect --format '{{.Size}}' "$image")
say "built $image in $((SECONDS - t0)) s: $(numfmt --to=iec-i --suffix=B "$size") ($size bytes)"

uid=$(docker run --rm --entrypoint /bin/sh "$image" -c 'id -u; stat -c %u /frames')
[ "$uid" = "$(printf '10001\n10001')" ] || fail "expected uid 10001 owning /frames, got: $uid"

# The binary, for the systemd check below; and the image's files, which must not hold the CA certificates
# the build stage was given.
docker create --name "mqimg-deploy-cp-$$" "$image" >/dev/null
docker cp "mqimg-deploy-cp-$$:/usr/local/bin/mqimg" "$work/mqimg" >/dev/null
if [ -s "$work/extra-ca.pem" ]; then
  ca_line=$(sed -n '2p' "$work/extra-ca.pem")
  if [ "$(docker export "mqimg-deploy-cp-$$" | grep -acF "$ca_line" || true)" != 0 ]; then
    docker rm -v "mqimg-deploy-cp-$$" >/dev/null
    fail "a local CA certificate given to the build ended up in $image"
  fi
fi
docker rm -v "mqimg-deploy-cp-$$" >/dev/null

# systemd-analyze verify checks that ExecStart's binary exists: point it at the image's binary.
sed "s#^ExecStart=/usr/local/bin/mqimg #ExecStart=$work/mqimg #" deploy/mqimg.service >"$work/mqimg.service"
systemd-analyze verify "$work/mqimg.service" >"$work/verify.log" 2>&1 || {
  cat "$work/verify.log"
  fail "systemd-analyze verify deploy/mqimg.service"
}
exposure=$(systemd-analyze security --offline=yes "$work/mqimg.service" 2>/dev/null | sed -n 's/.*Overall exposure level for [^:]*: //p')
say "deploy/mqimg.service: systemd-analyze verify passed${exposure:+; exposure $exposure}"

# --- 4. the compose stack --------------------------------------------------------------------------

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
MQTT_PORT=$(free_port)
HTTP_PORT=$(free_port)
export MQTT_PORT HTTP_PORT MQTT_BIND=127.0.0.1 HTTP_BIND=127.0.0.1 MQIMG_IMAGE=$image
project="mqimg-deploy-test-$$"
compose=("${compose_cli[@]}" -f deploy/compose.yaml -p "$project")

"${compose[@]}" config -q || fail "${compose_cli[*]} rejects deploy/compose.yaml"
say "${compose_cli[*]} up -d (project $project, broker on 127.0.0.1:$MQTT_PORT)"
up_started=$SECONDS
"${compose[@]}" up -d --no-build >"$work/up.log" 2>&1 || {
  cat "$work/up.log"
  fail "${compose_cli[*]} up"
}
cid=$("${compose[@]}" ps -q mqimg)
[ -n "$cid" ] || fail "no mqimg container"

# Ready: the image's HEALTHCHECK (`mqimg health`, which probes /readyz) says `healthy`.
docker exec "$cid" mqimg health --help >/dev/null 2>&1 ||
  fail "the image's mqimg has no \`health\` subcommand, which its HEALTHCHECK runs"
status=starting
for _ in $(seq 90); do
  status=$(docker inspect --format '{{.State.Health.Status}}' "$cid")
  [ "$status" = healthy ] && break
  [ "$status" = unhealthy ] &&
    fail "mqimg container unhealthy: $(docker inspect --format '{{json .State.Health.Log}}' "$cid" | tail -c 400)"
  sleep 1
done
[ "$status" = healthy ] || fail "mqimg container not healthy after 90 s (status $status)"
say "mqimg container: healthy (HEALTHCHECK mqimg health) $((SECONDS - up_started)) s after up"

# A frame from the host through the broker's published port; its record on the results topic. The
# subscriber first leaves a persistent session holding the subscription (-E: exit once subscribed), so
# the record waits in it even if it arrives before the subscriber reconnects to read it.
topic="cameras/deploy-test-$$"
sub=(mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -i "deploy-test-$$" -c -q 1 -t "mqimg/results/$topic")
"${sub[@]}" -E >"$work/sub.log" 2>&1 || fail "subscribing on 127.0.0.1:$MQTT_PORT: $(cat "$work/sub.log")"
mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -t "$topic" -f "$fixture" ||
  fail "mosquitto_pub to 127.0.0.1:$MQTT_PORT"
"${sub[@]}" -C 1 -W 60 >"$work/sub.log" 2>&1 ||
  fail "no record on mqimg/results/$topic within 60 s: $(tail -5 "$work/sub.log")"
record=$(tail -1 "$work/sub.log")
expected_sha=$(sha256sum "$fixture" | cut -d' ' -f1)
path=$(RECORD="$record" SHA="$expected_sha" TOPIC="$topic" python3 -c '
import json, os, sys
r = json.loads(os.environ["RECORD"])
want = {"topic": os.environ["TOPIC"], "format": "jpeg", "width": 640, "height": 480, "sha256": os.environ["SHA"]}
bad = {k: r.get(k) for k, v in want.items() if r.get(k) != v}
path = r.get("path") or ""
if bad or not path.startswith("/frames/"):
    sys.exit(f"unexpected record fields {bad}, path {path!r}: {r}")
print(r["path"])
') || fail "record check"
say "record on mqimg/results/$topic: 640x480 jpeg, sha256 ${expected_sha:0:12}…, path $path"

# The file in the frames volume: same bytes, owned by the image's user.
# shellcheck disable=SC2016 # $1 is expanded by the container's shell
stored=$("${compose[@]}" exec -T mqimg sh -c 'sha256sum "$1" | cut -d" " -f1; stat -c %u "$1"' sh "$path") ||
  fail "no $path in the frames volume"
[ "$stored" = "$(printf '%s\n10001' "$expected_sha")" ] || fail "stored file $path: $stored"
say "frames volume ${project}_frames holds $path (same sha256, uid 10001)"

# A clean stop: SIGTERM, exit 0, the daemon's last line.
"${compose[@]}" stop mqimg >"$work/stop.log" 2>&1 || { cat "$work/stop.log"; fail "${compose_cli[*]} stop mqimg"; }
code=$(docker inspect --format '{{.State.ExitCode}}' "$cid")
logs=$(docker logs "$cid" 2>&1)
[ "$code" = 0 ] || fail "mqimg exited with $code after stop: $(tail -5 <<<"$logs")"
# The image decodes JPEGs with libjpeg-turbo (Dockerfile: FEATURES, DECODE_BACKEND).
grep -q 'jpeg_decoder=libjpeg-turbo' <<<"$logs" ||
  fail "mqimg in the image does not decode with libjpeg-turbo: $(grep -m1 'mqimg starting' <<<"$logs")"
{ grep -q 'message="shutdown requested"' <<<"$logs" && grep -q 'message=stopped' <<<"$logs"; } ||
  fail "no 'shutdown requested' / 'stopped' lines in mqimg's logs: $(tail -5 <<<"$logs")"
say "${compose_cli[*]} stop: mqimg exited 0 ($(grep -o 'message=stopped.*' <<<"$logs" | tail -1))"

"${compose[@]}" down -v --remove-orphans >"$work/down.log" 2>&1 || { cat "$work/down.log"; fail "down -v"; }
project=""
say "passed in $(elapsed) (image $(numfmt --to=iec-i --suffix=B "$size"))"
