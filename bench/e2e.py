#!/usr/bin/env python3
"""End-to-end benchmark of the mqimg daemon against a plain paho-mqtt + OpenCV consumer (the reference).

One run, one machine, one private Mosquitto on a free loopback port (never 1883):

  drain   N base64 frames queued at QoS 1 in a persistent session while the consumer is offline, then the
          consumer is started and timed from its first to its last record (frames/s, MP/s, CPU, peak RSS).
          Rows: mqimg as a user runs it (records on, frames stored as original JPEG bytes, at-least-once),
          records-only (output.dir unset), one decode worker, and the reference consumer
          (bench/reference/consumer.py) draining the same queue.
  live    frames published at a fixed rate (50 % of mqimg's drain rate) as JSON envelopes; latency =
          record arrival - envelope ts (p50/p99/max). Optionally per durability mode (--live-sync) and
          while another process writes 2 GB to the same filesystem (--live-writer).
  burst   10,000 frames at QoS 0 far beyond capacity: peak RSS, no crash, every frame either decoded or
          dropped with a `queue` failure record; published vs received by mqimg.
  ceiling the project's criterion bench (`cargo bench --bench decode`), run in this run for the daemon's
          decoder (decode.backend, --backend): single-core base64 -> RGB8 rate x cores; the bench's CPU ms per
          frame (one thread) beside the CPU ms per frame of mqimg and the reference in the drain.
  viewers the 720p drain again, back to back without and with 20 viewers of the drained topic's MJPEG
          stream (/stream/{topic}), each reading at most 10 frames/s: the drain rate they cost, mqimg's peak
          RSS with them, what they received.

Only the standard library is needed for mqimg's cases (records are observed by a tiny MQTT 3.1.1
subscriber below). The reference consumer needs paho-mqtt, numpy and opencv-python-headless in the Python
given by --ref-python (bench/run.sh installs bench/reference/requirements.txt into bench/.venv); without
them its rows are skipped with a notice.

  python3 bench/e2e.py                 # full run (~10 min on 2 cores)
  python3 bench/e2e.py --quick         # smoke run (~2 min)
  python3 bench/e2e.py --sizes 1280x720 --only drain

Writes a markdown report to stdout and bench-results/<UTC stamp>/{results.json,report.md}.
"""
import argparse
import base64
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

from viewers import Viewer, viewer_stats

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FIXTURES = os.path.join(ROOT, "fixtures", "frames")
REFERENCE = os.path.join(HERE, "reference", "consumer.py")
# cargo's target directory (CARGO_TARGET_DIR, relative to the repository like cargo's) and criterion's output
TARGET = os.path.join(ROOT, os.environ.get("CARGO_TARGET_DIR") or "target")
CRITERION_DIR = os.path.join(ROOT, os.environ["CRITERION_HOME"]) if os.environ.get("CRITERION_HOME") \
    else os.path.join(TARGET, "criterion")
CLK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1

ALL_SIZES = ["640x480", "1280x720", "1920x1080", "3840x2160"]
FRAMES_FULL = {"640x480": 2000, "1280x720": 1000, "1920x1080": 600, "3840x2160": 200}
# Sizes with the extra mqimg rows (records-only, one decode worker); the targets are stated for these.
EXTRA_SIZES = ["1280x720", "1920x1080"]
TARGET_SIZES = ["1280x720", "1920x1080"]


def log(msg=""):
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ machine helpers

def freeport():
    for _ in range(50):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        p = s.getsockname()[1]
        s.close()
        if p != 1883:
            return p
    raise SystemExit("no free port")


def waitport(port, secs=10.0):
    end = time.time() + secs
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def sys_cpu():
    """(busy, irq) CPU seconds since boot, all CPUs: busy = user+nice+system (processes)."""
    with open("/proc/stat") as f:
        c = [int(x) for x in f.readline().split()[1:]]
    return (c[0] + c[1] + c[2]) / CLK, (c[5] + c[6]) / CLK


def pid_cpu_split(pid):
    """(utime, stime) of a process (all its threads, live and ended), seconds; None when gone."""
    try:
        st = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return int(st[11]) / CLK, int(st[12]) / CLK
    except (OSError, IndexError, ValueError):
        return None


def pid_cpu(pid):
    """utime+stime of a process (all threads), seconds; None when gone."""
    us = pid_cpu_split(pid)
    return us[0] + us[1] if us else None


def pid_rss_mb(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def bench_process(cargo_pid):
    """The pid of the bench executable `cargo bench --bench decode` runs (target/.../deps/decode-HASH)."""
    todo, seen = [cargo_pid], set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            argv0 = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        if pid != cargo_pid and re.search(r"/deps/decode-[0-9a-f]+$", argv0):
            return pid
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                todo += [int(k) for k in open(f"/proc/{pid}/task/{task}/children").read().split()]
        except OSError:
            pass
    return None


def loadavg():
    return open("/proc/loadavg").read().split()[:3]


def snap(pids):
    busy, irq = sys_cpu()
    t = os.times()
    split = {str(p): pid_cpu_split(p) for p in pids if p}
    return {"t": time.monotonic(), "busy": busy, "irq": irq, "self": time.process_time(),
            "children": t.children_user + t.children_system,
            "pids": {k: (v[0] + v[1] if v else None) for k, v in split.items()}, "split": split}


def other_pct(s0, s1, own_pids):
    """CPU% (of one core) used by processes outside this run between two snapshots.

    own_pids: pids whose CPU is ours (consumer, broker). This script's own CPU (the record observer) and
    that of its children reaped in between (the publisher) are subtracted too."""
    wall = s1["t"] - s0["t"]
    if wall <= 0:
        return None
    used = s1["busy"] - s0["busy"]
    ours = s1["self"] - s0["self"] + s1.get("children", 0) - s0.get("children", 0)
    for p in own_pids:
        a, b = s0["pids"].get(str(p)), s1["pids"].get(str(p))
        if a is not None and b is not None:
            ours += b - a
    return round(100 * max(used - ours, 0) / wall, 1)


def dirty_mb():
    """Page cache waiting to be written back (Dirty + Writeback), MB."""
    total = 0
    for line in open("/proc/meminfo"):
        k, _, v = line.partition(":")
        if k in ("Dirty", "Writeback"):
            total += int(v.split()[0])
    return total // 1024


def waitidle(pct, maxsecs):
    """Wait until all CPUs together stay below pct % of one core for 2 s; False after maxsecs."""
    end = time.time() + maxsecs
    quiet = 0
    b0, t0 = sys_cpu()[0], time.monotonic()
    while time.time() < end:
        time.sleep(0.5)
        b1, t1 = sys_cpu()[0], time.monotonic()
        quiet = quiet + 1 if 100 * (b1 - b0) / (t1 - t0) < pct else 0
        b0, t0 = b1, t1
        if quiet >= 4:
            return True
    return False


def timev(path):
    d = {}
    try:
        for line in open(path):
            line = line.strip()
            if line.startswith("User time (seconds):"):
                d["user_s"] = float(line.split(":")[1])
            elif line.startswith("System time (seconds):"):
                d["sys_s"] = float(line.split(":")[1])
            elif line.startswith("Percent of CPU this job got:"):
                d["cpu_pct"] = float(line.split(":")[1].strip().rstrip("%") or 0)
            elif line.startswith("Maximum resident set size (kbytes):"):
                d["max_rss_mb"] = round(int(line.split(":")[1]) / 1024, 1)
            elif line.startswith("Elapsed (wall clock) time"):
                v = line.split("):", 1)[1].strip().split(":")
                d["wall_s"] = sum(float(x) * 60 ** i for i, x in enumerate(reversed(v)))
            elif line.startswith("Minor (reclaiming a frame) page faults:"):
                d["minor_faults"] = int(line.split(":")[1])
            elif line.startswith("Voluntary context switches:"):
                d["vol_ctx"] = int(line.split(":")[1])
            elif line.startswith("Exit status:"):
                d["exit"] = int(line.split(":")[1])
            elif line.startswith("Command terminated by signal"):
                d["signal"] = int(line.rsplit(" ", 1)[1])
    except OSError:
        pass
    return d


def child_of(pid, timeout=5.0):
    """The first child of pid (the program /usr/bin/time runs)."""
    end = time.time() + timeout
    while time.time() < end:
        try:
            kids = open(f"/proc/{pid}/task/{pid}/children").read().split()
            if kids:
                return int(kids[0])
        except OSError:
            return None
        time.sleep(0.005)
    return None


def pct(values, p):
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def rfc3339_ms(text):
    """Unix ms of an RFC 3339 UTC timestamp such as 2026-11-26T03:05:18.123Z; None if unparsable."""
    if not isinstance(text, str):
        return None
    try:
        dt = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt.timestamp() * 1000


def per_second_max(samples):
    """Coarse timeline of (t, value) samples: the max per second."""
    tl = {}
    for t, r in samples:
        tl[int(t)] = max(tl.get(int(t), 0), r)
    return [tl[k] for k in sorted(tl)]


def toml_value(text, section, key):
    """The string value of `key = "..."` in [section] of a TOML text (enough for mqimg's printed configs)."""
    m = re.search(rf"^\[{re.escape(section)}\][ \t]*$(.*?)(?=^\[|\Z)", text, re.S | re.M)
    v = re.search(rf'^[ \t]*{re.escape(key)}[ \t]*=[ \t]*"([^"]*)"', m.group(1), re.M) if m else None
    return v.group(1) if v else None


def fmt(v, nd=1):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    return str(v)


# ------------------------------------------------------------------ a minimal MQTT 3.1.1 subscriber

def _mqtt_str(s):
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def _remaining(n):
    out = bytearray()
    while True:
        d, n = n % 128, n // 128
        out.append(d | (0x80 if n else 0))
        if not n:
            return bytes(out)


class Observer(threading.Thread):
    """Subscribes (QoS 0, clean session) and timestamps every PUBLISH it receives.

    Keeps (unix time, perf_counter, topic, payload bytes) per message; parsing happens afterwards so the
    observer stays cheap. When `expect` messages have arrived it snapshots the watched pids' CPU and sets
    `done`. `first_snap` is taken at the first message."""

    def __init__(self, port, topics, expect=None, watch=()):
        super().__init__(daemon=True)
        self.port, self.topics, self.expect = port, topics, expect
        self.watch = list(watch)
        self.msgs = []
        self.first_snap = self.last_snap = None
        self.done = threading.Event()
        self.ready = threading.Event()
        self.error = None
        self.sock = None
        self.closing = False

    def run(self):
        try:
            self._run()
        except Exception as e:  # noqa: BLE001 - reported by the caller
            if not self.closing:
                self.error = f"{type(e).__name__}: {e}"
        finally:
            self.ready.set()
            self.done.set()

    def _read(self, f, n):
        b = f.read(n)
        if len(b) != n:
            raise EOFError("broker closed the connection")
        return b

    def _run(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock = s
        cid = f"bench-observer-{os.getpid()}-{id(self) & 0xffff:x}"
        body = _mqtt_str("MQTT") + bytes([4, 0x02]) + struct.pack("!H", 0) + _mqtt_str(cid)
        s.sendall(b"\x10" + _remaining(len(body)) + body)
        f = s.makefile("rb", buffering=1 << 20)
        hdr = self._read(f, 4)
        if hdr[0] != 0x20 or hdr[3] != 0:
            raise RuntimeError(f"CONNACK refused: {hdr!r}")
        body = struct.pack("!H", 1) + b"".join(_mqtt_str(t) + b"\x00" for t in self.topics)
        s.sendall(b"\x82" + _remaining(len(body)) + body)
        s.settimeout(None)
        append = self.msgs.append
        while True:
            b0 = self._read(f, 1)[0]
            mult, n = 1, 0
            while True:
                d = self._read(f, 1)[0]
                n += (d & 0x7F) * mult
                mult *= 128
                if not d & 0x80:
                    break
            body = self._read(f, n)
            kind = b0 >> 4
            if kind == 3:
                now, pc = time.time(), time.perf_counter()
                tl = struct.unpack("!H", body[:2])[0]
                off = 2 + tl + (2 if (b0 >> 1) & 3 else 0)
                append((now, pc, body[2:2 + tl], body[off:]))
                k = len(self.msgs)
                if k == 1:
                    self.first_snap = snap(self.watch)
                if self.expect is not None and k == self.expect:
                    self.last_snap = snap(self.watch)
                    self.done.set()
            elif kind == 9:
                if any(c >= 0x80 for c in body[2:]):
                    raise RuntimeError("SUBACK refused a subscription")
                self.ready.set()

    def last_arrival(self):
        return self.msgs[-1][1] if self.msgs else None

    def close(self):
        self.closing = True
        try:
            self.sock.sendall(b"\xe0\x00")
            self.sock.shutdown(socket.SHUT_RDWR)
            self.sock.close()
        except (OSError, AttributeError):
            pass
        self.join(5)

    def records(self):
        out = []
        for t, pc, topic, payload in self.msgs:
            try:
                rec = json.loads(payload)
            except ValueError:
                rec = {"_unparsable": payload[:80].decode("latin-1")}
            out.append((t, pc, topic.decode("utf-8", "replace"), rec))
        return out


class RssSampler(threading.Thread):
    def __init__(self, pid, every=0.05):
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.samples = []
        self.stop = threading.Event()

    def run(self):
        t0 = time.monotonic()
        while not self.stop.is_set():
            r = pid_rss_mb(self.pid)
            if r is None:
                break
            self.samples.append((round(time.monotonic() - t0, 2), round(r, 1)))
            self.stop.wait(self.every)


# ------------------------------------------------------------------ the bench

class Bench:
    def __init__(self, args):
        self.a = args
        self.mqimg = args.mqimg
        self.stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        self.out = args.out or os.path.join(ROOT, "bench-results", self.stamp)
        os.makedirs(self.out, exist_ok=True)
        self.work = tempfile.mkdtemp(prefix="mqimg-bench-")
        self.logdir = os.path.join(self.out, "logs")
        os.makedirs(self.logdir, exist_ok=True)
        self.broker = None
        self.port = None
        self.seq = 0
        self.results = {"stamp": self.stamp, "drain": [], "live": [], "burst": None, "ceiling": {},
                        "viewers": [], "notices": [], "targets": []}
        self.ref_ok = False
        self.idle_spent = 0.0
        self.metrics_port = {}
        dflt = subprocess.run([self.mqimg, "print-default-config"], capture_output=True, text=True).stdout
        # [http] replaced [metrics] (which older binaries have); the bench sets whichever the binary lists
        self.http_section = "http" if "[http]" in dflt else "metrics" if "[metrics]" in dflt else None
        self.has_metrics = self.http_section is not None
        self.has_verify = "verify_entropy" in dflt
        try:
            self.decoder = self.detect_decoder(dflt)
        except SystemExit:
            shutil.rmtree(self.work, ignore_errors=True)
            raise
        self.results["decoder"] = self.decoder

    def detect_decoder(self, dflt):
        """The daemon's JPEG decoder: decode.backend as --backend sets it (MQIMG__DECODE__BACKEND), else the
        binary's default; backend None when the binary has no such key (a build with one decoder).

        With --backend, `mqimg check-config` is run with the override first: a build that cannot use that
        backend (no such key, or built without its cargo feature) stops the run here, before any case."""
        default = toml_value(dflt, "decode", "backend")
        d = {"backend": self.a.backend or default, "default": default, "has_key": default is not None,
             "set_by": "--backend (MQIMG__DECODE__BACKEND)" if self.a.backend else
                       "the binary's default" if default else "no decode.backend key: the build's only decoder",
             "cargo_features": self.a.cargo_features or None}
        if not self.a.backend:
            return d
        if default is None:
            raise SystemExit(f"--backend {self.a.backend}: {self.mqimg} has no decode.backend key "
                             "(`mqimg print-default-config` lists none)")
        cfg = os.path.join(self.work, "backend-check.toml")
        open(cfg, "w").write(dflt)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MQIMG__")}
        env["MQIMG__DECODE__BACKEND"] = self.a.backend
        r = subprocess.run([self.mqimg, "check-config", "-c", cfg], capture_output=True, text=True, env=env)
        eff = toml_value(r.stdout, "decode", "backend")
        if r.returncode != 0 or eff != self.a.backend:
            raise SystemExit(f"--backend {self.a.backend}: `MQIMG__DECODE__BACKEND={self.a.backend} mqimg "
                             f"check-config` " + (f"failed (exit {r.returncode}): {r.stderr.strip()[-400:]}"
                                                  if r.returncode else f"shows decode.backend = {eff!r}")
                             + " (a backend other than the default needs a build with its cargo feature: "
                             "BENCH_CARGO_FEATURES=... bench/run.sh)")
        return d

    # ---------------- broker

    def start_broker(self):
        self.port = freeport()
        conf = os.path.join(self.work, "mosquitto.conf")
        text = (
            "# private benchmark broker: loopback only, anonymous, nothing on disk\n"
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"
            "# queue every frame of a drain for the offline consumer (the default 1000 would drop)\n"
            f"max_queued_messages {self.a.max_queued}\n"
            "max_queued_bytes 0\n"
            "# 4K base64 frames are ~2.2 MB (the default limit is MQTT's max; stated for clarity)\n"
            "message_size_limit 33554432\n"
            "# max_inflight_messages: Mosquitto's default (20)\n"
            "log_dest stderr\nlog_type error\nlog_type warning\n"
        )
        if self.a.broker_nodelay:
            text += "set_tcp_nodelay true\n"
        open(conf, "w").write(text)
        shutil.copy(conf, os.path.join(self.out, "mosquitto.conf"))
        self.broker_log = open(os.path.join(self.logdir, "mosquitto.log"), "w")
        self.broker = subprocess.Popen(["mosquitto", "-c", conf], stdout=self.broker_log,
                                       stderr=subprocess.STDOUT)
        if not waitport(self.port, 10):
            raise SystemExit("mosquitto did not start; see " + self.broker_log.name)
        log(f"mosquitto pid {self.broker.pid} on 127.0.0.1:{self.port}; results in {self.out}")
        self.results["broker"] = {"port": self.port, "pid": self.broker.pid, "conf": text,
                                  "version": subprocess.run(["mosquitto", "-h"], capture_output=True,
                                                            text=True).stdout.splitlines()[0]}

    def stop_broker(self):
        if self.broker and self.broker.poll() is None:
            self.broker.send_signal(signal.SIGTERM)
            try:
                self.broker.wait(10)
            except subprocess.TimeoutExpired:
                self.broker.kill()
                self.broker.wait()
            self.results["broker"]["exit"] = self.broker.returncode
        self.broker = None

    def broker_alive(self):
        return self.broker is not None and self.broker.poll() is None

    @property
    def url(self):
        return f"mqtt://127.0.0.1:{self.port}"

    # ---------------- helpers

    def next_tag(self, kind):
        self.seq += 1
        return f"{self.seq:03d}-{kind}"

    def wait_idle(self):
        """Waits for an idle machine before a case: up to --idle-wait s, within a total of --idle-budget s per
        run (then only 3 s), so a box busy with other work still finishes in bounded time."""
        if self.a.idle_wait <= 0:
            return True
        left = self.a.idle_budget - self.idle_spent
        wait = min(self.a.idle_wait, left) if left > 3 else 3
        t0 = time.time()
        ok = waitidle(self.a.idle_pct, wait)
        self.idle_spent += time.time() - t0
        if not ok:
            log(f"   (machine not idle after {wait:.0f}s: load {' '.join(loadavg())}; running anyway)")
        return ok

    def write_config(self, tag, topic, client_id, *, store=True, workers=0, sub_qos=1, encoding="auto",
                     verify_entropy=None, sync=None):
        """mqimg's config as a user would write it; only the bench-specific keys differ from the defaults."""
        outdir = os.path.join(self.work, f"frames-{tag}") if store else None
        lines = [
            "# written by bench/e2e.py",
            "[broker]",
            f'url = "{self.url}"',
            f'client_id = "{client_id}"',
            "clean_session = false",
            "",
            "[[subscriptions]]",
            f'topic = "{topic}"',
            f"qos = {sub_qos}",
            f'encoding = "{encoding}"',
            "",
            "[output]",
        ]
        if outdir:
            lines += [f'dir = "{outdir}"', 'format = "original"']
            if sync:
                lines.append(f'sync = "{sync}"')
        else:
            lines += ["# dir unset: no frame files, records only"]
        lines += ['results_topic = "mqimg/results/{topic}"', 'errors_topic = "mqimg/errors/{topic}"', "qos = 1",
                  "", "[decode]", f"workers = {workers}"]
        if verify_entropy is not None:
            lines.append(f"verify_entropy = {'true' if verify_entropy else 'false'}")
        lines.append("")
        if self.has_metrics:
            # the endpoint stays on as by default, on a free port instead of the fixed 9464
            port = freeport()
            self.metrics_port[tag] = port
            lines += [f"[{self.http_section}]", f'listen = "127.0.0.1:{port}"', ""]
        path = os.path.join(self.work, f"{tag}.toml")
        open(path, "w").write("\n".join(lines))
        shutil.copy(path, os.path.join(self.logdir, f"{tag}.toml"))
        return path, outdir

    def start_mqimg(self, cfg, logpath, timefile=None):
        """Starts `mqimg run` (under /usr/bin/time -v when timefile is given); returns (popen, mqimg pid)."""
        env = dict(os.environ)
        env.pop("RUST_LOG", None)
        env = {k: v for k, v in env.items() if not k.startswith("MQIMG__")}
        if self.a.backend:
            env["MQIMG__DECODE__BACKEND"] = self.a.backend
        for kv in self.a.mqimg_env or []:
            k, v = kv.split("=", 1)
            env[k] = v
        cmd = [self.mqimg, "run", "-c", cfg]
        if timefile:
            cmd = ["/usr/bin/time", "-v", "-o", timefile] + cmd
        lf = open(logpath, "ab")
        p = subprocess.Popen(cmd, stdout=lf, stderr=lf, env=env)
        lf.close()
        pid = child_of(p.pid) if timefile else p.pid
        return p, pid

    @staticmethod
    def wait_log(logpath, pattern, timeout, proc=None):
        rx = re.compile(pattern)
        end = time.time() + timeout
        while time.time() < end:
            try:
                with open(logpath, errors="replace") as f:
                    if any(rx.search(line) for line in f):
                        return True
            except OSError:
                pass
            if proc is not None and proc.poll() is not None:
                return False
            time.sleep(0.05)
        return False

    @staticmethod
    def stop_proc(p, pid, timeout=30):
        """SIGTERM to pid (mqimg itself, not /usr/bin/time), then wait for the Popen p."""
        if p.poll() is None:
            try:
                os.kill(pid, signal.SIGTERM)
            except (ProcessLookupError, TypeError):
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"   !! pid {pid} did not exit {timeout}s after SIGTERM: killing it")
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, TypeError):
                    pass
                p.wait(10)
                return "killed after SIGTERM timeout"
        return None

    def scrape(self, tag):
        """mqimg's Prometheus counters (mqimg_* samples) when its metrics endpoint is on."""
        port = self.metrics_port.get(tag)
        if not port:
            return None
        import urllib.request
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3).read().decode()
        except OSError as e:
            return {"error": str(e)}
        out = {}
        for line in text.splitlines():
            if line.startswith("mqimg_"):
                k, _, v = line.rpartition(" ")
                try:
                    out[k] = float(v)
                except ValueError:
                    pass
        return out

    @staticmethod
    def stopped_line(logpath):
        """Counters of mqimg's final `stopped` log line."""
        out = None
        with open(logpath, errors="replace") as f:
            for line in f:
                if re.search(r"\bstopped\b", line) and "received=" in line:
                    out = {k: int(v) for k, v in re.findall(r"\b(received|ok|failed)=(\d+)", line)}
        return out

    @staticmethod
    def log_problems(logpath, limit=5):
        """ERROR/panic lines of a log (first few)."""
        out = []
        with open(logpath, errors="replace") as f:
            for line in f:
                if " ERROR " in line or "panicked" in line or "WARN" in line and "frame failed" not in line:
                    out.append(line.strip()[:300])
                    if len(out) >= limit:
                        break
        return out

    def publish(self, fixture, topic, n, qos=1, encoding="base64", rate=None, logname=None):
        cmd = [self.mqimg, "publish", "--broker", self.url, "--topic", topic, "--encoding", encoding,
               "--qos", str(qos), "--count", str(n)]
        if rate:
            cmd += ["--rate", f"{rate:.3f}"]
        cmd.append(fixture)
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True)
        dt = time.perf_counter() - t0
        if logname:
            open(os.path.join(self.logdir, logname), "w").write(" ".join(cmd) + "\n" + r.stdout + r.stderr)
        if r.returncode != 0:
            raise RuntimeError(f"mqimg publish failed ({r.returncode}): {r.stderr.strip()[-400:]}")
        m = re.search(r"\(([\d.]+) msg/s\)", r.stderr)
        return {"cmd": " ".join(cmd), "seconds": round(dt, 3), "msg_per_s": float(m.group(1)) if m else None}

    # ---------------- ceiling

    # criterion groups of benches/decode.rs, best first: the payload the drain sends (base64) -> RGB8 with its
    # record, then JPEG bytes -> RGB8 alone.
    CRIT_GROUPS = [("frame/base64-to-rgb", "base64 payload → RGB8 + record"), ("decode/jpeg-to-rgb", "JPEG → RGB8")]

    def ceiling(self, sizes):
        """Runs the criterion bench in this run (unless --criterion read/skip) for the daemon's decoder and reads
        its estimates: per size, the first group found is the ceiling's ("others" hold the rest).

        With a decode.backend (--backend, or the binary's default when it has the key) the estimates of
        `<group>/<backend>/<size>` are taken; `<group>/<size>` only when no backend is named or it is the
        default one, so a ceiling is never that of another decoder. `this_run` says whether criterion wrote the
        estimate during this run."""
        mode = self.a.criterion
        if mode == "skip":
            self.notice("decode ceiling skipped (--criterion skip)")
            return {}
        if mode == "auto":
            mode = "run"
        backend = self.decoder["backend"]
        t_run = None
        cpu = {}
        if mode == "run":
            log("== decode ceiling: cargo bench --bench decode (criterion, one thread)")
            self.wait_idle()
            groups = "|".join(re.escape(g) for g, _ in self.CRIT_GROUPS)
            bk = f"({re.escape(backend)}/)?" if backend else ""
            rx = f"^({groups})/{bk}(" + "|".join(re.escape(s) for s in sizes) + ")$"
            feats = ["--features", self.a.cargo_features] if self.a.cargo_features else []
            cmd = ["cargo", "bench"] + feats + ["--bench", "decode", "--", rx]
            env = dict(os.environ)
            if self.a.backend:
                env["MQIMG__DECODE__BACKEND"] = self.a.backend
            self.results["ceiling_cmd"] = ("MQIMG__DECODE__BACKEND=" + self.a.backend + " " if self.a.backend
                                           else "") + " ".join(cmd)
            self.results["ceiling_loadavg"] = loadavg()
            t_run = time.time()
            with open(os.path.join(self.logdir, "criterion.log"), "w") as lf:
                r = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                     text=True, errors="replace", bufsize=1)
                cpu = self._criterion_cpu(r, lf)
                r.wait()
            if r.returncode != 0:
                self.notice(f"`{' '.join(cmd)}` failed (exit {r.returncode}, see logs/criterion.log); "
                            f"estimates already under {os.path.relpath(CRITERION_DIR, ROOT)} are shown, marked as "
                            "from an earlier run")
            else:
                log(f"   done in {time.time() - t_run:.0f}s")
        out = {}
        for s in sizes:
            for group, what in self.CRIT_GROUPS:
                found = self._crit_estimate(group, s, backend)
                if not found:
                    continue
                f, bench_id = found
                try:
                    est = json.load(open(f))
                except (OSError, ValueError):
                    continue
                key = "slope" if est.get("slope") else "mean"
                ns = est[key]["point_estimate"]
                mtime = os.path.getmtime(f)
                c = {"group": group, "what": what, "id": bench_id, "backend": backend,
                     "ns_per_frame": ns, "ms_per_frame": round(ns / 1e6, 3), "single_core_fps": round(1e9 / ns, 1),
                     "cpu_ms_per_frame": None, "cpu_share": None, "iterations": None,
                     "cores": NCPU, "ceiling_fps": round(NCPU * 1e9 / ns, 1), "estimate": key,
                     "file": os.path.relpath(f, ROOT), "this_run": t_run is not None and mtime >= t_run - 1,
                     "measured_at": datetime.datetime.fromtimestamp(mtime).isoformat(timespec="seconds")}
                cm = cpu.get(bench_id) if c["this_run"] else None
                if cm:
                    c.update(cm)
                # One decode runs on more than one thread (the entropy check beside the decoder), so
                # its wall time x cores overstates what the cores can do: the ceiling is cores / CPU
                # time per frame when this run measured it.
                c["ceiling_basis"] = "wall"
                if c.get("cpu_ms_per_frame"):
                    c["ceiling_fps_wall"] = c["ceiling_fps"]
                    c["ceiling_fps"] = round(NCPU * 1000 / c["cpu_ms_per_frame"], 1)
                    c["ceiling_basis"] = "cpu"
                if s not in out:
                    out[s] = c
                    out[s]["others"] = []
                else:
                    out[s]["others"].append(c)
            if s in out and not out[s]["this_run"]:
                self.notice(f"decode ceiling {s}: `{out[s]['id']}` estimate from an earlier criterion run "
                            f"({out[s]['measured_at']}), not this one: its ratios are marked † and the ceiling "
                            "target is not judged")
        missing = [s for s in sizes if s not in out]
        if missing:
            ids = ", ".join(f"`{g}/{backend + '/' if backend else ''}<size>`" for g, _ in self.CRIT_GROUPS)
            self.notice(f"no decode ceiling for {', '.join(missing)}: no criterion estimate {ids} under "
                        f"{os.path.relpath(CRITERION_DIR, ROOT)}"
                        + (f" for decode.backend = {backend}" if backend else ""))
        self.results["ceiling"] = out
        return out

    @staticmethod
    def _criterion_cpu(proc, logfile):
        """Copies criterion's output to logfile and measures, per benchmark, the bench process's CPU (user +
        system, /proc/PID/stat) over its collection phase, from the line `Benchmarking ID: Collecting ... (N
        iterations)` to `Benchmarking ID: Analyzing`: CPU ms per iteration, and the CPU share of the wall time
        (below 1 when other processes took the core: criterion's times are wall times)."""
        col = re.compile(r"^Benchmarking (\S+): Collecting \d+ samples in estimated [\d.]+ s \((\d+) iterations\)")
        ana = re.compile(r"^Benchmarking (\S+): Analyzing")
        out, cur = {}, None
        for line in proc.stdout:
            m = col.match(line)
            m2 = ana.match(line) if not m else None
            if m:
                bpid = bench_process(proc.pid)
                cur = (m.group(1), int(m.group(2)), bpid, pid_cpu_split(bpid) if bpid else None, time.monotonic())
            elif m2 and cur and cur[0] == m2.group(1):
                c1, t1 = pid_cpu_split(cur[2]), time.monotonic()
                if cur[3] and c1 and cur[1] > 0 and t1 > cur[4]:
                    used = c1[0] + c1[1] - cur[3][0] - cur[3][1]
                    out[cur[0]] = {"cpu_ms_per_frame": round(1000 * used / cur[1], 3), "iterations": cur[1],
                                   "cpu_share": round(used / (t1 - cur[4]), 2)}
                cur = None
            logfile.write(line)
        return out

    def _crit_estimate(self, group, size, backend):
        """(estimates.json path, benchmark id) of group at size for the decoder, or None."""
        parts = []  # criterion's folders: the group with "/" as "_", then the function id, then the parameter
        if backend:
            parts.append([backend, size])
        if not backend or backend == self.decoder["default"]:
            parts.append([size])
        for p in parts:
            f = os.path.join(CRITERION_DIR, group.replace("/", "_"), *p, "new", "estimates.json")
            if os.path.exists(f):
                return f, "/".join([group] + p)
        return None

    def ceiling_of(self, size):
        """The ceiling's criterion estimate at size (None when not measured)."""
        return self.results["ceiling"].get(size)

    def crit_group(self, size, group):
        """The criterion estimate of group at size (None when not measured)."""
        c = self.ceiling_of(size)
        for e in ([c] + c.get("others", [])) if c else []:
            if e["group"] == group:
                return e
        return None

    def notice(self, msg):
        log("NOTICE: " + msg)
        self.results["notices"].append(msg)

    # ---------------- drain: mqimg

    def drain_mqimg(self, size, n, variant, viewers=0):
        store = variant != "records-only"
        workers = 1 if variant == "1-worker" else 0
        tag = self.next_tag(f"drain-mqimg-{variant}-{size}")
        topic = f"cameras/bench/{tag}"
        cid = f"mqimg-bench-{tag}"
        fixture = os.path.join(FIXTURES, f"photo-{size}.jpg")
        cfg, outdir = self.write_config(tag, topic, cid, store=store, workers=workers,
                                        verify_entropy=(False if variant == "no-verify" else None))
        logpath = os.path.join(self.logdir, f"{tag}.log")
        row = {"tag": tag, "consumer": "mqimg", "variant": variant, "size": size, "frames": n,
               "workers": workers or NCPU, "store": store, "decode_backend": self.decoder["backend"]}
        log(f"== {tag}: {n} frames")
        # 1. prime: mqimg connects once so the broker records its persistent session and subscription.
        p, pid = self.start_mqimg(cfg, logpath)
        if not self.wait_log(logpath, r"\bsubscribed\b", 20, p):
            row["error"] = "mqimg did not subscribe while priming (see log)"
            self.stop_proc(p, pid)
            return self._fail(row, logpath)
        self.stop_proc(p, pid)
        # 2. queue N frames while it is offline.
        row["publish"] = self.publish(fixture, topic, n, qos=1, logname=f"{tag}.publish.log")
        # 3. observe records, start mqimg again, time first -> last record.
        self.wait_idle()
        row["loadavg"] = loadavg()
        obs = Observer(self.port, [f"mqimg/results/{topic}", f"mqimg/errors/{topic}"], expect=n)
        obs.start()
        if not obs.ready.wait(10):
            row["error"] = "observer not subscribed"
            return self._fail(row, logpath)
        timefile = os.path.join(self.logdir, f"{tag}.time")
        with open(logpath, "a") as lf:
            lf.write("----- timed run -----\n")
        s_start = snap([self.broker.pid])
        p, pid = self.start_mqimg(cfg, logpath, timefile)
        obs.watch = [pid, self.broker.pid]
        rss = RssSampler(pid)
        rss.start()
        stop_viewers = threading.Event()
        watching = [Viewer(self.metrics_port[tag], topic, self.a.viewer_rate, stop_viewers) for _ in range(viewers)]
        for v in watching:
            v.start()
        deadline = time.time() + self.a.timeout
        stall = None
        while not obs.done.wait(0.2):
            if p.poll() is not None:
                stall = f"mqimg exited early (code {p.returncode})"
                break
            la = obs.last_arrival()
            if la is None and time.time() - (deadline - self.a.timeout) > 2 * self.a.idle_timeout:
                stall = f"no record within {2 * self.a.idle_timeout:.0f}s of starting mqimg"
                break
            if la is not None and time.perf_counter() - la > self.a.idle_timeout:
                stall = f"no record for {self.a.idle_timeout:.0f}s after {len(obs.msgs)} of {n}"
                break
            if time.time() > deadline:
                stall = f"timeout after {self.a.timeout:.0f}s with {len(obs.msgs)} of {n} records"
                break
        time.sleep(0.3)  # late duplicates, if any
        stop_viewers.set()
        for v in watching:
            v.join(5)
        if watching:
            row["viewers"] = self._viewer_stats(watching, obs)
        row["metrics"] = self.scrape(tag)
        killed = self.stop_proc(p, pid)
        rss.stop.set()
        obs.close()
        s_end = snap([self.broker.pid])
        return self._finish_mqimg_row(row, obs, logpath, timefile, stall, killed, rss, outdir, n, size,
                                      s_start, s_end, pid)

    def _viewer_stats(self, watching, obs):
        out = viewer_stats(watching, obs.records(), self.a.viewer_rate)
        log(f"   viewers: {out['count']} × ≤{out['max_rate']} fps: mean {out['fps_mean']} fps each, "
            f"{out['parts_min']}-{out['parts_max']} frames each, {out.get('mb_per_s', '-')} MB/s served")
        return out

    def viewers(self, size, n):
        """The drain without, then with, viewers of its topic's stream (back to back, same conditions)."""
        log(f"== viewers: {size} drain of {n} frames without and with {self.a.viewers} stream viewers")
        if not self.has_metrics:
            self.notice("viewers skipped: this mqimg has no HTTP listener key")
            return None
        without = self.drain_best(self.drain_mqimg, size, n, "user")
        with_ = self.drain_best(self.drain_mqimg, size, n, "viewers", self.a.viewers)
        with_["variant"] = "viewers"
        out = {"size": size, "frames": n, "viewers": self.a.viewers, "viewer_rate": self.a.viewer_rate,
               "without": without, "with": with_}
        if without.get("fps") and with_.get("fps"):
            out["drop_pct"] = round(100 * (1 - with_["fps"] / without["fps"]), 1)
            log(f"   drain {without['fps']} → {with_['fps']} frames/s with viewers ({out['drop_pct']} % lower); "
                f"peak RSS {without.get('peak_rss_mb')} → {with_.get('peak_rss_mb')} MB")
        return out

    def _fail(self, row, logpath):
        row["log_tail"] = open(logpath, errors="replace").read()[-2000:] if os.path.exists(logpath) else ""
        log(f"   !! {row['error']}")
        return row

    def _finish_mqimg_row(self, row, obs, logpath, timefile, stall, killed, rss, outdir, n, size, s_start, s_end,
                          pid):
        w, h = (int(x) for x in size.split("x"))
        recs = obs.records()
        ok = [r for r in recs if "stage" not in r[3] and "width" in r[3]]
        bad = [r for r in recs if "stage" in r[3]]
        row["records"] = len(recs)
        row["ok_records"] = len(ok)
        row["failure_records"] = len(bad)
        if bad:
            row["failure_stages"] = sorted({r[3]["stage"] for r in bad})
            row["failure_example"] = bad[0][3].get("error")
        if stall:
            row["stall"] = stall
        if killed:
            row["shutdown"] = killed
        if obs.error:
            row["observer_error"] = obs.error
        if len(recs) >= 2:
            t_first, t_last = recs[0][1], recs[min(n, len(recs)) - 1][1]
            window = t_last - t_first
            frames_in_window = min(n, len(recs)) - 1
            fps = frames_in_window / window if window > 0 else None
            row["window_s"] = round(window, 3)
            row["fps"] = round(fps, 1) if fps else None
            row["mp_per_s"] = round(fps * w * h / 1e6, 1) if fps else None
            row["frames_in_window"] = frames_in_window
            # CPU over the same window: /proc/PID/stat read by the observer as the first and the n-th record
            # arrive, so the CPU spent on records 2..n is divided by the n - 1 frames the rate counts.
            fs, ls = obs.first_snap, obs.last_snap
            if fs and ls and len(recs) >= n:
                c0, c1 = fs["split"].get(str(pid)), ls["split"].get(str(pid))
                if c0 is not None and c1 is not None and window > 0:
                    self._cpu_fields(row, c1[0] - c0[0], c1[1] - c0[1], window, frames_in_window)
                row["other_cpu_pct"] = other_pct(fs, ls, [pid, self.broker.pid])
                b0, b1 = fs["pids"].get(str(self.broker.pid)), ls["pids"].get(str(self.broker.pid))
                if b0 is not None and b1 is not None and window > 0:
                    row["broker_cpu_pct"] = round(100 * (b1 - b0) / window, 1)
                row["irq_cpu_pct"] = round(100 * (ls["irq"] - fs["irq"]) / window, 1) if window > 0 else None
        else:
            row["other_cpu_pct"] = other_pct(s_start, s_end, [pid, self.broker.pid])
        dms = [r[3].get("decode_ms") for r in ok if isinstance(r[3].get("decode_ms"), (int, float))]
        if dms:
            row["decode_ms_p50"] = round(statistics.median(dms), 2)
            row["decode_ms_p99"] = round(pct(dms, 99), 2)
        row["time_v"] = timev(timefile)
        row["peak_rss_mb"] = row["time_v"].get("max_rss_mb")
        row["cpu_s_total"] = round(row["time_v"].get("user_s", 0) + row["time_v"].get("sys_s", 0), 2)
        if rss.samples:
            row["rss_end_mb"] = rss.samples[-1][1]
            row["rss_mb_per_second"] = per_second_max(rss.samples)
        row["stopped"] = self.stopped_line(logpath)
        row["exit"] = row["time_v"].get("exit")
        problems = self.log_problems(logpath)
        if problems:
            row["log_problems"] = problems
        if outdir and os.path.isdir(outdir):
            files = sum(len(fs_) for _, _, fs_ in os.walk(outdir))
            row["files_in_output_dir"] = files
            shutil.rmtree(outdir, ignore_errors=True)
        if row["records"] != n or row["failure_records"]:
            row["anomaly"] = f"{row['ok_records']} ok + {row['failure_records']} failure records for {n} frames queued"
        self._print_row(row)
        return row

    @staticmethod
    def _cpu_fields(row, user_s, sys_s, window, frames):
        """CPU fields of a drain row from user and system CPU seconds over the rate's window of `frames` frames."""
        cpu = user_s + sys_s
        row["cpu_user_s_window"] = round(user_s, 3)
        row["cpu_sys_s_window"] = round(sys_s, 3)
        row["cpu_s_window"] = round(cpu, 3)
        row["cpu_pct_window"] = round(100 * cpu / window, 1)
        row["cores_busy"] = round(cpu / window, 2)
        if frames > 0:
            row["cpu_ms_per_frame"] = round(1000 * cpu / frames, 2)
            row["cpu_user_ms_per_frame"] = round(1000 * user_s / frames, 2)
            row["cpu_sys_ms_per_frame"] = round(1000 * sys_s / frames, 2)

    def _print_row(self, row):
        parts = [f"{row.get('fps', '-')} frames/s", f"{row.get('cpu_ms_per_frame', '-')} CPU ms/frame",
                 f"{row.get('mp_per_s', '-')} MP/s",
                 f"CPU {row.get('cpu_pct_window', '-')}%", f"peak RSS {row.get('peak_rss_mb', '-')} MB",
                 f"other {row.get('other_cpu_pct', '-')}%"]
        log("   " + ", ".join(parts))
        for k in ("anomaly", "stall", "shutdown", "observer_error", "error"):
            if row.get(k):
                log(f"   !! {k}: {row[k]}")

    # ---------------- drain: reference

    def drain_reference(self, size, n):
        tag = self.next_tag(f"drain-reference-{size}")
        topic = f"cameras/bench/{tag}"
        cid = f"ref-bench-{tag}"
        fixture = os.path.join(FIXTURES, f"photo-{size}.jpg")
        w, h = (int(x) for x in size.split("x"))
        row = {"tag": tag, "consumer": "reference", "variant": "reference/consumer.py", "size": size, "frames": n}
        log(f"== {tag}: {n} frames")
        py = self.a.ref_python
        base = [py, REFERENCE, "--port", str(self.port), "--topic", topic, "--qos", "1",
                "--client-id", cid, "--persistent-session"]
        r = subprocess.run(base + ["--subscribe-only"], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            row["error"] = f"priming failed: {r.stderr.strip()[-300:]}"
            log("   !! " + row["error"])
            return row
        row["publish"] = self.publish(fixture, topic, n, qos=1, logname=f"{tag}.publish.log")
        self.wait_idle()
        row["loadavg"] = loadavg()
        jout = os.path.join(self.logdir, f"{tag}.json")
        timefile = os.path.join(self.logdir, f"{tag}.time")
        cmd = ["/usr/bin/time", "-v", "-o", timefile] + base + [
            "--count", str(n), "--timeout", str(int(self.a.timeout)), "--idle-timeout", str(int(self.a.idle_timeout)),
            "--json-out", jout]
        row["cmd"] = " ".join(cmd[4:])
        s0 = snap([self.broker.pid])
        with open(os.path.join(self.logdir, f"{tag}.log"), "w") as lf:
            p = subprocess.Popen(cmd, stdout=lf, stderr=subprocess.STDOUT)
            cpid = child_of(p.pid)
            s0["pids"][str(cpid)] = pid_cpu(cpid)
            p.wait(self.a.timeout + 60)
        s1 = snap([self.broker.pid])
        try:
            c = json.load(open(jout))
        except (OSError, ValueError):
            c = {}
        tv = timev(timefile)
        row["time_v"] = tv
        s1["pids"][str(cpid)] = s0["pids"][str(cpid)] + tv.get("user_s", 0) + tv.get("sys_s", 0) \
            if s0["pids"].get(str(cpid)) is not None else None
        row["other_cpu_pct"] = other_pct(s0, s1, [cpid, self.broker.pid])
        row["records"] = c.get("frames")
        row["ok_records"] = c.get("decoded_ok")
        row["fps"] = c.get("fps")
        row["mp_per_s"] = round(c["fps"] * w * h / 1e6, 1) if c.get("fps") else None
        row["window_s"] = c.get("window_s")
        row["frames_in_window"] = c.get("frames_in_window")
        # CPU over the same window: the consumer's getrusage (user, system; every thread) after its first and
        # its last counted frame, divided by the frames its rate counts
        if c.get("fps") and c.get("window_s") and c.get("cpu_user_s_window") is not None:
            self._cpu_fields(row, c["cpu_user_s_window"], c["cpu_sys_s_window"], c["window_s"],
                             c.get("frames_in_window") or 0)
        row["peak_rss_mb"] = tv.get("max_rss_mb")
        row["cpu_s_total"] = round(tv.get("user_s", 0) + tv.get("sys_s", 0), 2)
        row["exit"] = tv.get("exit")
        row["stop_reason"] = c.get("stop_reason")
        if (c.get("frames") or 0) < n:
            row["anomaly"] = f"only {c.get('frames')} of {n} frames ({c.get('stop_reason')})"
        self._print_row(row)
        return row

    def drain_best(self, fn, *args):
        """Runs a drain, again (up to --retries) when other processes used > --other-max % of a core."""
        best = None
        for attempt in range(self.a.retries + 1):
            row = fn(*args)
            if best is None or (row.get("other_cpu_pct") or 0) < (best.get("other_cpu_pct") or 0):
                best = row
            if (row.get("other_cpu_pct") or 0) <= self.a.other_max or row.get("error") or attempt == self.a.retries:
                break
            log(f"   other processes used {row.get('other_cpu_pct')}% of a core; attempt {attempt + 2} "
                f"of {self.a.retries + 1}")
        if best is not row:
            best["note"] = "kept the attempt with least interference"
        return best

    # ---------------- live

    def live(self, size, rate, seconds, variant="user", sync=None, writer=False):
        kind = f"live-{variant}-{size}" if variant != "user" else f"live-{size}"
        if sync:
            kind += f"-sync-{sync}"
        if writer:
            kind += "-writer"
        tag = self.next_tag(kind)
        topic = f"cameras/bench/{tag}"
        cid = f"mqimg-bench-{tag}"
        fixture = os.path.join(FIXTURES, f"photo-{size}.jpg")
        n = max(20, int(rate * seconds))
        cfg, outdir = self.write_config(tag, topic, cid, store=(variant != "records-only"), sync=sync)
        logpath = os.path.join(self.logdir, f"{tag}.log")
        row = {"tag": tag, "size": size, "variant": variant, "rate_hz": round(rate, 1), "frames": n,
               "sync": sync or "default", "writer": bool(writer)}
        log(f"== {tag}: {n} JSON frames at {rate:.1f}/s" + (f", {self.a.writer_mb} MB written alongside" if writer else ""))
        self.wait_idle()
        row["loadavg"] = loadavg()
        obs = Observer(self.port, [f"mqimg/results/{topic}", f"mqimg/errors/{topic}"], expect=n)
        obs.start()
        obs.ready.wait(10)
        timefile = os.path.join(self.logdir, f"{tag}.time")
        p, pid = self.start_mqimg(cfg, logpath, timefile)
        if not self.wait_log(logpath, r"\bsubscribed\b", 20, p):
            row["error"] = "mqimg did not subscribe"
            self.stop_proc(p, pid)
            obs.close()
            return self._fail(row, logpath)
        s0 = snap([pid, self.broker.pid])
        wproc = self.start_writer(tag) if writer else None
        row["publish"] = self.publish(fixture, topic, n, qos=1, encoding="json", rate=rate,
                                      logname=f"{tag}.publish.log")
        obs.done.wait(self.a.idle_timeout)
        s1 = snap([pid, self.broker.pid])
        own = [pid, self.broker.pid] + ([wproc[0].pid] if wproc else [])
        s1["pids"].update({str(p): pid_cpu(p) for p in own[2:]})
        s0["pids"].update({str(p): 0.0 for p in own[2:]})
        row["other_cpu_pct"] = other_pct(s0, s1, own)
        if wproc:
            row["writer_run"] = self.stop_writer(wproc)
        killed = self.stop_proc(p, pid)
        obs.close()
        recs = obs.records()
        lat, seqs, dms, to_mqimg, in_mqimg = [], [], [], [], []
        for t, _, _, r in recs:
            meta = r.get("meta") or {}
            if isinstance(meta.get("ts"), (int, float)):
                lat.append(t * 1000 - meta["ts"])
                rx = rfc3339_ms(r.get("received_at"))
                if rx is not None:
                    to_mqimg.append(rx - meta["ts"])
                    in_mqimg.append(t * 1000 - rx)
            if "seq" in meta:
                seqs.append(meta["seq"])
            if isinstance(r.get("decode_ms"), (int, float)):
                dms.append(r["decode_ms"])
        row["records"] = len(recs)
        row["failure_records"] = sum(1 for r in recs if "stage" in r[3])
        row["duplicates"] = len(seqs) - len(set(seqs))
        row["missing"] = n - len(set(seqs))
        if lat:
            row["latency_ms"] = {"p50": round(pct(lat, 50), 1), "p90": round(pct(lat, 90), 1),
                                 "p99": round(pct(lat, 99), 1), "max": round(max(lat), 1),
                                 "min": round(min(lat), 1), "mean": round(statistics.mean(lat), 1)}
        if dms:
            row["decode_ms_p50"] = round(statistics.median(dms), 2)
            row["decode_ms_p99"] = round(pct(dms, 99), 2)
        if to_mqimg:
            # where the latency goes: publish -> mqimg's received_at, and received_at -> record arrival
            row["publish_to_received_ms"] = {"p50": round(pct(to_mqimg, 50), 1), "p99": round(pct(to_mqimg, 99), 1),
                                             "max": round(max(to_mqimg), 1)}
            row["received_to_record_ms"] = {"p50": round(pct(in_mqimg, 50), 1), "p99": round(pct(in_mqimg, 99), 1),
                                            "max": round(max(in_mqimg), 1)}
        c0, c1 = s0["pids"].get(str(pid)), s1["pids"].get(str(pid))
        if c0 is not None and c1 is not None:
            row["cpu_pct"] = round(100 * (c1 - c0) / (s1["t"] - s0["t"]), 1)
        tv = timev(timefile)
        row["peak_rss_mb"] = tv.get("max_rss_mb")
        row["exit"] = tv.get("exit")
        row["stopped"] = self.stopped_line(logpath)
        if killed:
            row["shutdown"] = killed
        if outdir:
            shutil.rmtree(outdir, ignore_errors=True)
        lm = row.get("latency_ms", {})
        log(f"   {len(recs)}/{n} records, latency p50 {lm.get('p50')} p99 {lm.get('p99')} max {lm.get('max')} ms, "
            f"mqimg CPU {row.get('cpu_pct')}%")
        if row["missing"] or row["duplicates"] or row["failure_records"]:
            row["anomaly"] = (f"{row['missing']} missing, {row['duplicates']} duplicate, "
                              f"{row['failure_records']} failure records")
            log("   !! " + row["anomaly"])
        return row

    def start_writer(self, tag):
        """Another process writing --writer-mb MB to the filesystem the frames go to (buffered, as a build
        or a copy would): what a syncfs per batch must then flush too."""
        path = os.path.join(self.work, f"writer-{tag}.bin")
        p = subprocess.Popen(["dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={self.a.writer_mb}", "status=none"])
        return (p, path, time.time())

    @staticmethod
    def stop_writer(w):
        """Stops the writer, removes its file, and waits (up to 60 s) for the kernel's dirty pages to be
        written back, so that the next case does not inherit them."""
        p, path, t0 = w
        finished = p.poll() is not None
        if not finished:
            p.terminate()
        p.wait()
        try:
            os.remove(path)
        except OSError:
            pass
        settle0 = time.time()
        while time.time() - settle0 < 60 and dirty_mb() > 64:
            time.sleep(0.5)
        return {"finished_within_case": finished, "seconds": round(settle0 - t0, 1),
                "settle_s": round(time.time() - settle0, 1), "dirty_mb_after": dirty_mb()}

    def live_best(self, *args):
        """A live case, again (up to --retries) when other processes used > --other-max % of a core."""
        return self.drain_best(self.live, *args)

    # ---------------- burst

    def burst(self, size, n):
        tag = self.next_tag(f"burst-qos0-{size}")
        topic = f"cameras/bench/{tag}"
        cid = f"mqimg-bench-{tag}"
        fixture = os.path.join(FIXTURES, f"photo-{size}.jpg")
        cfg, outdir = self.write_config(tag, topic, cid, sub_qos=0)
        logpath = os.path.join(self.logdir, f"{tag}.log")
        row = {"tag": tag, "size": size, "published": n}
        log(f"== {tag}: {n} frames at QoS 0, max rate")
        self.wait_idle()
        row["loadavg"] = loadavg()
        obs = Observer(self.port, [f"mqimg/results/{topic}", f"mqimg/errors/{topic}"])
        obs.start()
        obs.ready.wait(10)
        timefile = os.path.join(self.logdir, f"{tag}.time")
        p, pid = self.start_mqimg(cfg, logpath, timefile)
        if not self.wait_log(logpath, r"\bsubscribed\b", 20, p):
            row["error"] = "mqimg did not subscribe"
            self.stop_proc(p, pid)
            obs.close()
            return self._fail(row, logpath)
        rss = RssSampler(pid)
        rss.start()
        brss = RssSampler(self.broker.pid, 0.1)
        brss.start()
        t0 = time.perf_counter()
        try:
            row["publish"] = self.publish(fixture, topic, n, qos=0, logname=f"{tag}.publish.log")
        except RuntimeError as e:
            row["publish_error"] = str(e)
        # mqimg keeps working through what it kept; wait until records stop coming.
        while True:
            time.sleep(0.5)
            la = obs.last_arrival()
            if p.poll() is not None:
                row["crash"] = f"mqimg exited during the burst (code {p.returncode})"
                break
            if (la is None and time.perf_counter() - t0 > 30) or (la is not None and time.perf_counter() - la > 5):
                break
            if time.perf_counter() - t0 > self.a.timeout:
                row["stall"] = "timeout"
                break
        row["busy_s"] = round((obs.last_arrival() or time.perf_counter()) - t0, 2)
        row["metrics"] = self.scrape(tag)
        killed = self.stop_proc(p, pid)
        rss.stop.set()
        brss.stop.set()
        obs.close()
        recs = obs.records()
        ok = sum(1 for r in recs if "stage" not in r[3])
        stages = {}
        for r in recs:
            if "stage" in r[3]:
                stages[r[3]["stage"]] = stages.get(r[3]["stage"], 0) + 1
        row["ok_records"] = ok
        row["failure_records_by_stage"] = stages
        row["dropped_queue_records"] = stages.get("queue", 0)
        st = self.stopped_line(logpath)
        row["stopped"] = st
        tv = timev(timefile)
        row["time_v"] = tv
        row["peak_rss_mb"] = tv.get("max_rss_mb")
        row["exit"] = tv.get("exit")
        if killed:
            row["shutdown"] = killed
        if tv.get("signal"):
            row["crash"] = f"mqimg terminated by signal {tv['signal']}"
        if rss.samples:
            row["rss_mb_samples"] = len(rss.samples)
            row["rss_mb_end"] = rss.samples[-1][1]
            row["rss_mb_max_sampled"] = max(s[1] for s in rss.samples)
            row["rss_mb_per_second"] = per_second_max(rss.samples)
        if brss.samples:
            row["broker_rss_mb_max"] = max(s[1] for s in brss.samples)
        if st:
            row["received"] = st.get("received")
            row["decoded"] = st.get("ok")
            row["failed"] = st.get("failed")
            row["check_decoded_plus_dropped_eq_received"] = (ok + stages.get("queue", 0) == st.get("received"))
            row["check_records_match_counters"] = (ok == st.get("ok") and sum(stages.values()) == st.get("failed"))
        m = row.get("metrics") or {}
        row["dropped_counter"] = m.get('mqimg_frames_failed_total{stage="queue"}')
        row["lost_between_broker_and_mqimg"] = (n - st["received"]) if st else None
        problems = self.log_problems(logpath)
        if problems:
            row["log_problems"] = problems
        if outdir:
            shutil.rmtree(outdir, ignore_errors=True)
        log(f"   published {n}, mqimg received {row.get('received')}, decoded {ok}, dropped (queue records) "
            f"{stages.get('queue', 0)}, other failures {sum(v for k, v in stages.items() if k != 'queue')}; "
            f"peak RSS {row.get('peak_rss_mb')} MB; check decoded+dropped==received: "
            f"{row.get('check_decoded_plus_dropped_eq_received')}")
        return row

    # ---------------- reference availability

    def check_reference(self):
        if self.a.no_reference:
            self.notice("reference consumer skipped (--no-reference)")
            return False
        if not os.path.exists(REFERENCE):
            self.notice(f"reference consumer not found at {REFERENCE}: its rows and the ratios are skipped")
            return False
        r = subprocess.run([self.a.ref_python, "-c", "import paho.mqtt, numpy, cv2; "
                            "print(paho.mqtt.__version__, numpy.__version__, cv2.__version__)"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            self.notice(f"reference consumer skipped: {self.a.ref_python} cannot import paho-mqtt, numpy, cv2 "
                        "(pip install -r bench/reference/requirements.txt, or let bench/run.sh make its venv)")
            return False
        v = r.stdout.split()
        self.results["reference"] = {"path": REFERENCE, "python": self.a.ref_python, "paho_mqtt": v[0],
                                     "numpy": v[1], "opencv": v[2]}
        return True

    # ---------------- main flow

    def run(self):
        a = self.a
        sizes = a.sizes
        frames = {s: max(4, int(FRAMES_FULL.get(s, 500) * a.scale)) for s in sizes}
        info = {
            "nproc": NCPU,
            "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?"),
            "kernel": platform.release(),
            "mqimg": subprocess.run([self.mqimg, "--version"], capture_output=True, text=True).stdout.strip(),
            "mqimg_binary": self.mqimg,
            "mqimg_binary_mtime": datetime.datetime.fromtimestamp(os.path.getmtime(self.mqimg)).isoformat(timespec="seconds"),
            "git_head": subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                                       text=True).stdout.strip(),
            "git_dirty": bool(subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                                             capture_output=True, text=True).stdout.strip()),
            "loadavg_start": loadavg(),
            "args": vars(a),
            "frames_per_size": frames,
        }
        self.results["machine"] = info
        log(f"mqimg {info['mqimg']} ({info['git_head']}{' + uncommitted changes' if info['git_dirty'] else ''}), "
            f"{NCPU} CPUs, load {' '.join(info['loadavg_start'])}")
        self.ref_ok = self.check_reference()
        only = set(a.only.split(",")) if a.only else {"ceiling", "drain", "live", "burst", "viewers"}

        if "ceiling" in only:
            self.ceiling(sizes)
        elif a.criterion != "skip":
            a.criterion = "read"  # no bench run, but existing estimates still give the ratios
            self.ceiling(sizes)
        self.start_broker()
        try:
            if "drain" in only or "live" in only:
                for s in sizes:
                    if "drain" not in only:
                        break
                    if self.ref_ok:
                        self.results["drain"].append(self.drain_best(self.drain_reference, s, frames[s]))
                    self.results["drain"].append(self.drain_best(self.drain_mqimg, s, frames[s], "user"))
                    if (s in EXTRA_SIZES or a.all_variants) and not a.no_drain_variants:
                        for v in ("records-only", "1-worker") + (("no-verify",) if self.has_verify else ()):
                            self.results["drain"].append(self.drain_best(self.drain_mqimg, s, frames[s], v))
                    self.save()
            if "live" in only:
                for s in (a.live_sizes or sizes):
                    fps = self._drain_fps(s, "mqimg", "user") or a.live_rate
                    if not fps:
                        self.notice(f"live {s}: no drain rate to take 50 % of (pass --live-rate)")
                        continue
                    rate = fps * a.live_load if self._drain_fps(s, "mqimg", "user") else fps
                    syncs = a.live_sync.split(",") if a.live_sync else [None]
                    writers = {"off": [False], "on": [True], "both": [False, True]}[a.live_writer]
                    # Every mode alone first, then with the writer (whose dirty pages are written back before the next case).
                    for v in a.live_variants.split(","):
                        for w in writers:
                            # records-only writes no files: one row per writer setting is enough.
                            for sync in (syncs if v == "user" else [None]):
                                self.results["live"].append(self.live_best(s, rate, a.live_seconds, v, sync, w))
                    self.save()
            if "burst" in only:
                self.results["burst"] = self.burst(a.burst_size, a.burst_frames)
            if "viewers" in only and a.viewers > 0:
                v = self.viewers(a.viewer_size, a.viewer_frames)
                if v:
                    self.results["viewers"].append(v)
                self.save()
        finally:
            alive = self.broker_alive()
            self.stop_broker()
            if not alive:
                self.notice("mosquitto was not running at the end of the run")
            shutil.rmtree(self.work, ignore_errors=True)
        self.results["machine"]["loadavg_end"] = loadavg()
        self.evaluate()
        self.save()
        report = self.report()
        open(os.path.join(self.out, "report.md"), "w").write(report)
        print(report)
        log(f"results: {os.path.join(self.out, 'results.json')}")

    def _drain_row(self, size, consumer, variant=None):
        for r in self.results["drain"]:
            if r["size"] == size and r["consumer"] == consumer and (variant is None or r["variant"] == variant):
                return r
        return None

    def _drain_fps(self, size, consumer, variant=None):
        r = self._drain_row(size, consumer, variant)
        return r.get("fps") if r else None

    def decode_ms(self, size):
        c = self.results["ceiling"].get(size)
        if c:
            return c["ns_per_frame"] / 1e6, f"criterion {c['group']}, one thread"
        r = self._drain_row(size, "mqimg", "user")
        if r and r.get("decode_ms_p50"):
            return r["decode_ms_p50"], "median decode_ms of drain records"
        for r in self.results["live"]:
            if r["size"] == size and r.get("decode_ms_p50"):
                return r["decode_ms_p50"], "median decode_ms of live records"
        return None, None

    def cpu_per_frame(self):
        """Per size: CPU per frame of the reference and of mqimg (as configured) in the drain, against the CPU
        per frame of the criterion benchmarks of the same decoder (their collection phase in this run, one
        thread), and mqimg's fraction of the ceiling: by criterion's times (wall, as the target), and of the CPU
        ceiling (cores × 1000 / criterion CPU ms), which splits into two factors:
        fps / CPU ceiling = (cores busy / cores) × (criterion CPU ms / mqimg CPU ms)."""
        out = []
        for s in self.a.sizes:
            u = self._drain_row(s, "mqimg", "user") or {}
            ref = self._drain_row(s, "reference") or {}
            c = self.ceiling_of(s)
            if not (u or ref or c):
                continue
            e = {"size": s, "decoder": self.decoder["backend"], "cores": NCPU,
                 "reference_fps": ref.get("fps"), "reference_cpu_ms_per_frame": ref.get("cpu_ms_per_frame"),
                 "reference_cores_busy": ref.get("cores_busy"),
                 "mqimg_fps": u.get("fps"), "mqimg_cpu_ms_per_frame": u.get("cpu_ms_per_frame"),
                 "mqimg_cpu_user_ms_per_frame": u.get("cpu_user_ms_per_frame"),
                 "mqimg_cpu_sys_ms_per_frame": u.get("cpu_sys_ms_per_frame"), "mqimg_cores_busy": u.get("cores_busy"),
                 "ceiling_id": None, "ceiling_this_run": None, "ceiling_ms": None, "ceiling_fps": None,
                 "ceiling_cpu_ms": None, "ceiling_cpu_share": None, "ceiling_cpu_fps": None}
            for group, key in (("frame/base64-to-rgb", "criterion_frame"), ("decode/jpeg-to-rgb", "criterion_decode")):
                g = self.crit_group(s, group)
                e[key + "_ms"] = round(g["ns_per_frame"] / 1e6, 3) if g else None
                e[key + "_cpu_ms"] = g.get("cpu_ms_per_frame") if g else None
                e[key + "_this_run"] = g["this_run"] if g else None
            cpu, fps, busy = e["mqimg_cpu_ms_per_frame"], e["mqimg_fps"], e["mqimg_cores_busy"]
            if busy is not None:
                e["cores_busy_fraction"] = round(busy / NCPU, 3)
            if c:
                e.update(ceiling_id=c["id"], ceiling_this_run=c["this_run"], ceiling_ms=round(c["ns_per_frame"] / 1e6, 3),
                         ceiling_fps=c["ceiling_fps"], ceiling_cpu_ms=c.get("cpu_ms_per_frame"),
                         ceiling_cpu_share=c.get("cpu_share"))
                if fps:
                    e["mqimg_fraction_of_ceiling"] = round(fps / c["ceiling_fps"], 3)
                if e["ceiling_cpu_ms"]:
                    e["ceiling_cpu_fps"] = round(NCPU * 1000 / e["ceiling_cpu_ms"], 1)
                    if fps:
                        e["mqimg_fraction_of_cpu_ceiling"] = round(fps / e["ceiling_cpu_fps"], 3)
                    if cpu:
                        e["mqimg_minus_ceiling_cpu_ms"] = round(cpu - e["ceiling_cpu_ms"], 2)
                        e["ceiling_cpu_ms_over_mqimg_cpu_ms"] = round(e["ceiling_cpu_ms"] / cpu, 3)
            out.append(e)
        return out

    # ---------------- targets

    def evaluate(self):
        self.results["cpu_per_frame"] = self.cpu_per_frame()
        t = []

        def add(name, size, value, goal, ok, detail):
            t.append({"target": name, "size": size, "value": value, "goal": goal,
                      "status": ("n/a" if ok is None else "PASS" if ok else "MISS"), "detail": detail})

        for v in self.results["viewers"]:
            drop = v.get("drop_pct")
            add(f"{v['viewers']} stream viewers at ≤ {v['viewer_rate']} fps lower the drain by ≤ 10 %", v["size"],
                drop, 10, None if drop is None else drop <= 10,
                f"{v['without'].get('fps')} → {v['with'].get('fps')} frames/s, same run, back to back")

        for s in TARGET_SIZES:
            u = self._drain_row(s, "mqimg", "user")
            ref = self._drain_row(s, "reference")
            one = self._drain_row(s, "mqimg", "1-worker")
            c = self.results["ceiling"].get(s)
            ufps = u.get("fps") if u else None
            rfps = ref.get("fps") if ref else None
            if ufps and rfps:
                x = ufps / rfps
                add("drain ≥ 3× reference (records on, frames stored)", s, round(x, 2), 3.0, x >= 3.0,
                    f"{ufps} vs {rfps} frames/s")
            else:
                add("drain ≥ 3× reference (records on, frames stored)", s, None, 3.0, None, "not measured")
            if ufps and c:
                x = ufps / c["ceiling_fps"]
                add("drain ≥ 85 % of decode ceiling", s, round(x, 3), 0.85, x >= 0.85 if c["this_run"] else None,
                    f"{ufps} vs {c['ceiling_fps']} frames/s ("
                    + (f"{c['cores']} cores / {c['cpu_ms_per_frame']} CPU ms, " if c["ceiling_basis"] == "cpu"
                       else f"{c['single_core_fps']} × {c['cores']} cores, ")
                    + f"`{c['id']}`" + (")" if c["this_run"] else
                                      f", from an earlier criterion run {c['measured_at']}: not judged)"))
            else:
                add("drain ≥ 85 % of decode ceiling", s, None, 0.85, None, "not measured")
            ofps = one.get("fps") if one else None
            if ofps and rfps:
                x = ofps / rfps
                add("one decode worker ≥ 1.5× reference", s, round(x, 2), 1.5, x >= 1.5, f"{ofps} vs {rfps} frames/s")
            else:
                add("one decode worker ≥ 1.5× reference", s, None, 1.5, None, "not measured")
        u = self._drain_row("1920x1080", "mqimg", "user")
        ref = self._drain_row("1920x1080", "reference")
        if u and ref and u.get("peak_rss_mb") and ref.get("peak_rss_mb"):
            add("peak RSS ≤ reference (1920x1080 drain)", "1920x1080", u["peak_rss_mb"], ref["peak_rss_mb"],
                u["peak_rss_mb"] <= ref["peak_rss_mb"], f"{u['peak_rss_mb']} vs {ref['peak_rss_mb']} MB")
        else:
            add("peak RSS ≤ reference (1920x1080 drain)", "1920x1080", None, None, None, "not measured")
        for lv in self.results["live"]:
            if lv.get("variant", "user") != "user" or lv.get("writer"):
                continue
            dm, src = self.decode_ms(lv["size"])
            p99 = (lv.get("latency_ms") or {}).get("p99")
            label = lv["size"] + (f" sync={lv['sync']}" if lv.get("sync", "default") != "default" else "")
            if dm is None or p99 is None:
                add("live p99 ≤ 3× decode + 10 ms", label, p99, None, None, "no decode time or no latency")
                continue
            goal = round(3 * dm + 10, 1)
            add("live p99 ≤ 3× decode + 10 ms", label, p99, goal, p99 <= goal,
                f"decode {dm:.2f} ms ({src}); rate {lv['rate_hz']}/s")
        b = self.results.get("burst")
        if b:
            ok = (not b.get("crash") and b.get("exit") == 0
                  and b.get("check_decoded_plus_dropped_eq_received") is True)
            add("QoS 0 burst: no crash, decoded + dropped == received", b["size"],
                f"{b.get('decoded')}+{b.get('dropped_queue_records')}={b.get('received')}", None, ok,
                f"published {b['published']}, received {b.get('received')}; peak RSS {b.get('peak_rss_mb')} MB; "
                f"exit {b.get('exit')}")
        self.results["targets"] = t

    # ---------------- report

    def report(self):
        R = self.results
        m = R["machine"]
        L = []
        L.append(f"## mqimg end-to-end benchmark {R['stamp']}")
        L.append("")
        L.append(f"Machine: {m['nproc']} CPUs ({m['cpu']}), kernel {m['kernel']}; {R.get('broker', {}).get('version', '')}; "
                 f"load average at start {' '.join(m['loadavg_start'])}, at end {' '.join(m.get('loadavg_end', []))}.  ")
        L.append(f"mqimg: {m['mqimg']} at {m['git_head']}{' (+ uncommitted changes)' if m['git_dirty'] else ''}, "
                 f"binary built {m['mqimg_binary_mtime']}.  ")
        if R.get("reference"):
            rf = R["reference"]
            L.append(f"Reference: bench/reference/consumer.py (paho-mqtt {rf['paho_mqtt']}, numpy {rf['numpy']}, "
                     f"opencv {rf['opencv']}).  ")
        for n in R["notices"]:
            L.append(f"NOTICE: {n}  ")
        L.append("")
        stale = False
        if R["drain"]:
            L.append("### Drain: N base64 frames queued at QoS 1 while the consumer was offline; first → last record")
            L.append("")
            L.append("| frame | consumer | config | frames | frames/s | CPU ms/frame (user + sys) | MP/s | × ref | % ceiling | "
                     "CPU s (window) | CPU % | decode ms p50 | peak RSS MB | other CPU % | load 1m | notes |")
            L.append("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
            for r in R["drain"]:
                ref = self._drain_fps(r["size"], "reference")
                c = R["ceiling"].get(r["size"])
                xref = f"{r['fps'] / ref:.2f}" if r.get("fps") and ref and r["consumer"] == "mqimg" else "-"
                xc = "-"
                if r.get("fps") and c and r["consumer"] == "mqimg":
                    xc = f"{100 * r['fps'] / c['ceiling_fps']:.0f} %" + ("" if c["this_run"] else " †")
                    stale = stale or not c["this_run"]
                cfg = {"user": f"records + stored, {r.get('workers')} workers",
                       "records-only": f"records only, {r.get('workers')} workers",
                       "1-worker": "records + stored, 1 worker",
                       "no-verify": f"records + stored, verify_entropy = false, {r.get('workers')} workers",
                       }.get(r["variant"], "decode only (b64decode + cv2.imdecode)")
                notes = "; ".join(str(r[k]) for k in ("error", "anomaly", "stall", "shutdown", "note") if r.get(k))
                cpf = (f"{fmt(r.get('cpu_ms_per_frame'), 2)} ({fmt(r.get('cpu_user_ms_per_frame'), 2)} + "
                       f"{fmt(r.get('cpu_sys_ms_per_frame'), 2)})" if r.get("cpu_ms_per_frame") is not None else "-")
                L.append(f"| {r['size']} | {r['consumer']} | {cfg} | {r.get('records', '-')}/{r['frames']} | "
                         f"{fmt(r.get('fps'))} | {cpf} | {fmt(r.get('mp_per_s'))} | {xref} | {xc} | "
                         f"{fmt(r.get('cpu_s_window'), 2)} | {fmt(r.get('cpu_pct_window'), 0)} | "
                         f"{fmt(r.get('decode_ms_p50'), 2)} | {fmt(r.get('peak_rss_mb'), 0)} | "
                         f"{fmt(r.get('other_cpu_pct'), 0)} | {(r.get('loadavg') or ['-'])[0]} | {notes} |")
            L.append("")
            L.append("CPU = the consumer process's user + system time (all threads) from its first to its last record "
                     "(mqimg: /proc/PID/stat as the observer receives them; reference: its getrusage after the first "
                     "and last frame), divided by the frames the rate counts (N − 1).")
            L.append("")
        dec = R.get("decoder") or {}
        decname = (f"decode.backend = `{dec['backend']}` ({dec.get('set_by')})" if dec.get("backend")
                   else "the build's only JPEG decoder (no decode.backend key)")
        if dec.get("cargo_features"):
            decname += f", cargo features `{dec['cargo_features']}`"
        if R["ceiling"]:
            L.append("### Decode ceiling (criterion, `cargo bench --bench decode`: one decode at a time; ceiling = cores / its CPU ms per frame, or single-core rate × cores when CPU was not measured)")
            L.append("")
            L.append(f"Decoder: {decname}.  ")
            if R.get("ceiling_cmd"):
                L.append(f"Command: `{R['ceiling_cmd']}`, load average {' '.join(R.get('ceiling_loadavg') or [])}.  ")
            L.append("single-core ms/frame: criterion's estimate (wall time). CPU ms/frame: the bench process's user + "
                     "system CPU over the benchmark's collection phase / its iterations; CPU share = that CPU / the "
                     "phase's wall time (below 1: other processes took the core, and the wall times are inflated).")
            L.append("")
            L.append("| frame | criterion benchmark | single-core ms/frame | CPU ms/frame (CPU share) | single-core frames/s | "
                     "cores | ceiling frames/s | mqimg drain frames/s | mqimg / ceiling | measured |")
            L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
            for s, c0 in R["ceiling"].items():
                u = self._drain_fps(s, "mqimg", "user")
                for i, c in enumerate([c0] + c0.get("others", [])):
                    ratio = f"{u / c['ceiling_fps']:.2f}" + ("" if c["this_run"] else " †") if u else "-"
                    stale = stale or not c["this_run"]
                    tag = " (the ceiling)" if i == 0 else ""
                    when = "this run" if c["this_run"] else f"{c['measured_at']} (earlier run) †"
                    cpu_c = (f"{c['cpu_ms_per_frame']:.2f} ({c['cpu_share']:.2f})" if c.get("cpu_ms_per_frame") is not None
                             else "-")
                    L.append(f"| {s} | `{c['id']}`{tag} | {c['ns_per_frame'] / 1e6:.2f} | {cpu_c} | {c['single_core_fps']} | {c['cores']} | "
                             f"{c['ceiling_fps']} | {fmt(u)} | {ratio} | {when} |")
            L.append("")
        cpf = [e for e in R.get("cpu_per_frame", []) if e.get("mqimg_cpu_ms_per_frame") or e.get("reference_cpu_ms_per_frame")]
        if cpf:
            L.append("### CPU per frame: the drain (user + system, first → last record) against the decode ceiling's "
                     "CPU per frame")
            L.append("")
            L.append(f"Decoder: {decname}. Criterion: CPU ms per iteration of its collection phase in this run (one "
                     "decode at a time, the entropy check on a second thread beside it; its wall-time estimate in brackets). "
                     f"CPU ceiling = {NCPU} × 1000 / criterion CPU ms; mqimg / CPU ceiling = (cores busy / {NCPU}) × "
                     "(criterion CPU ms / mqimg CPU ms): the first factor is the share of the cores mqimg kept busy "
                     "(the rest idle or taken by other processes: the drain's other CPU %), the second the CPU it "
                     "spends per frame beyond the worker's decode path.")
            L.append("")
            L.append("| frame | reference CPU ms/frame | mqimg CPU ms/frame (user + sys) | criterion `frame/base64-to-rgb` CPU ms (wall) | "
                     "criterion `decode/jpeg-to-rgb` CPU ms (wall) | mqimg − ceiling CPU ms | mqimg cores busy | "
                     f"mqimg / ceiling | mqimg / CPU ceiling | = cores busy / {NCPU} | × criterion CPU ms / mqimg CPU ms |")
            L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            for e in cpf:
                mark = "" if e.get("ceiling_this_run") in (True, None) else " †"
                fmark = "" if e.get("criterion_frame_this_run") in (True, None) else " †"
                dmark = "" if e.get("criterion_decode_this_run") in (True, None) else " †"
                stale = stale or bool(mark or fmark or dmark)
                mq = (f"{fmt(e['mqimg_cpu_ms_per_frame'], 2)} ({fmt(e['mqimg_cpu_user_ms_per_frame'], 2)} + "
                      f"{fmt(e['mqimg_cpu_sys_ms_per_frame'], 2)})" if e.get("mqimg_cpu_ms_per_frame") is not None else "-")
                frac = e.get("mqimg_fraction_of_ceiling")
                cfrac = e.get("mqimg_fraction_of_cpu_ceiling")
                L.append(f"| {e['size']} | {fmt(e.get('reference_cpu_ms_per_frame'), 2)} | {mq} | "
                         f"{fmt(e.get('criterion_frame_cpu_ms'), 2)} ({fmt(e.get('criterion_frame_ms'), 2)}){fmark} | "
                         f"{fmt(e.get('criterion_decode_cpu_ms'), 2)} ({fmt(e.get('criterion_decode_ms'), 2)}){dmark} | "
                         f"{fmt(e.get('mqimg_minus_ceiling_cpu_ms'), 2)} | {fmt(e.get('mqimg_cores_busy'), 2)} | "
                         f"{(f'{100 * frac:.0f} %' + mark) if frac is not None else '-'} | "
                         f"{f'{100 * cfrac:.0f} %' if cfrac is not None else '-'} | "
                         f"{fmt(e.get('cores_busy_fraction'), 2)} | {fmt(e.get('ceiling_cpu_ms_over_mqimg_cpu_ms'), 2)} |")
            L.append("")
        if stale:
            L.append("† the criterion estimate is from an earlier run (`--criterion read`, or the bench failed), not "
                     "measured in this run: possibly another build or decoder.")
            L.append("")
        if R["live"]:
            L.append("### Live: JSON envelopes at a fixed rate (50 % of mqimg's drain rate); latency = record arrival − envelope ts")
            L.append("")
            L.append("| frame | rate /s | records | p50 ms | p90 ms | p99 ms | max ms | publish→received p50/p99 | received→record p50/p99 | decode ms p50/p99 | mqimg CPU % | other CPU % | peak RSS MB | notes |")
            L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
            for r in R["live"]:
                lm = r.get("latency_ms") or {}
                a_, b_ = r.get("publish_to_received_ms") or {}, r.get("received_to_record_ms") or {}
                notes = "; ".join(str(r[k]) for k in ("error", "anomaly", "shutdown", "note") if r.get(k))
                vname = "" if r.get("variant", "user") == "user" else f" ({r['variant']})"
                if r.get("sync", "default") != "default":
                    vname += f" sync={r['sync']}"
                if r.get("writer"):
                    vname += " +writer"
                L.append(f"| {r['size']}{vname} | {r['rate_hz']} | {r.get('records', '-')}/{r['frames']} | {fmt(lm.get('p50'))} | "
                         f"{fmt(lm.get('p90'))} | {fmt(lm.get('p99'))} | {fmt(lm.get('max'))} | "
                         f"{fmt(a_.get('p50'))} / {fmt(a_.get('p99'))} | {fmt(b_.get('p50'))} / {fmt(b_.get('p99'))} | "
                         f"{fmt(r.get('decode_ms_p50'), 1)} / {fmt(r.get('decode_ms_p99'), 1)} | "
                         f"{fmt(r.get('cpu_pct'), 0)} | {fmt(r.get('other_cpu_pct'), 0)} | {fmt(r.get('peak_rss_mb'), 0)} | {notes} |")
            L.append("")
            modes = [r for r in R["live"] if r.get("variant", "user") == "user"
                     and (r.get("sync", "default") != "default" or r.get("writer"))]
            if modes:
                L.append("### Durability modes (`output.sync`): live latency alone and while another process writes "
                         f"{self.a.writer_mb} MB to the same filesystem")
                L.append("")
                L.append("| frame | sync | rate /s | alone p50 / p99 / max ms | with writer p50 / p99 / max ms | goal p99 ms |")
                L.append("|---|---|---:|---:|---:|---:|")
                seen = []
                for r in modes:
                    key = (r["size"], r.get("sync", "default"))
                    if key in seen:
                        continue
                    seen.append(key)
                    cells = []
                    for w in (False, True):
                        m = next((x for x in modes if (x["size"], x.get("sync", "default")) == key
                                  and bool(x.get("writer")) == w), None)
                        lm = (m or {}).get("latency_ms") or {}
                        cells.append(f"{fmt(lm.get('p50'))} / {fmt(lm.get('p99'))} / {fmt(lm.get('max'))}" if m else "-")
                    dm, _ = self.decode_ms(r["size"])
                    goal = fmt(round(3 * dm + 10, 1)) if dm is not None else "-"
                    L.append(f"| {key[0]} | {key[1]} | {r['rate_hz']} | {cells[0]} | {cells[1]} | {goal} |")
                L.append("")
        b = R.get("burst")
        if b:
            L.append(f"### QoS 0 burst: {b['published']} × {b['size']} frames published at max rate (subscription qos 0)")
            L.append("")
            L.append("| published | received by mqimg | decoded | dropped (queue records) | dropped (/metrics) | other failures | decoded + dropped = received | "
                     "peak RSS MB | RSS at end MB | broker peak RSS MB | busy s | crash |")
            L.append("|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|")
            other = sum(v for k, v in (b.get("failure_records_by_stage") or {}).items() if k != "queue")
            L.append(f"| {b['published']} | {fmt(b.get('received'))} | {fmt(b.get('ok_records'))} | "
                     f"{fmt(b.get('dropped_queue_records'))} | {fmt(b.get('dropped_counter'), 0)} | {other} | {b.get('check_decoded_plus_dropped_eq_received')} | "
                     f"{fmt(b.get('peak_rss_mb'), 0)} | {fmt(b.get('rss_mb_end'), 0)} | {fmt(b.get('broker_rss_mb_max'), 0)} | "
                     f"{fmt(b.get('busy_s'))} | {b.get('crash') or b.get('error') or 'no'} |")
            if b.get("rss_mb_per_second"):
                L.append("")
                L.append("mqimg RSS (max per second, MB): " + ", ".join(f"{x:.0f}" for x in b["rss_mb_per_second"]))
            L.append("")
        if R["viewers"]:
            L.append("### Viewers: the drain without and with MJPEG viewers of the drained topic (each reads ≤ the stated fps)")
            L.append("")
            L.append("| frame | frames | viewers × max fps | drain frames/s without | with | lower by | viewer fps (mean) | "
                     "frames per viewer | MB/s served | mqimg CPU % without / with | peak RSS MB without / with | notes |")
            L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
            for v in R["viewers"]:
                wo, w = v["without"], v["with"]
                vs = w.get("viewers") or {}
                notes = "; ".join(str(r[k]) for r in (wo, w) for k in ("error", "anomaly", "stall") if r.get(k))
                if vs.get("errors"):
                    notes += "; viewer errors: " + "; ".join(vs["errors"])
                L.append(f"| {v['size']} | {v['frames']} | {v['viewers']} × {v['viewer_rate']} | {fmt(wo.get('fps'))} | "
                         f"{fmt(w.get('fps'))} | {fmt(v.get('drop_pct'))} % | {fmt(vs.get('fps_mean'))} | "
                         f"{vs.get('parts_min', '-')}-{vs.get('parts_max', '-')} | {fmt(vs.get('mb_per_s'))} | "
                         f"{fmt(wo.get('cpu_pct_window'), 0)} / {fmt(w.get('cpu_pct_window'), 0)} | "
                         f"{fmt(wo.get('peak_rss_mb'), 0)} / {fmt(w.get('peak_rss_mb'), 0)} | {notes} |")
            L.append("")
        if R["targets"]:
            L.append("### Targets")
            L.append("")
            L.append("| target | frame | measured | goal | result | detail |")
            L.append("|---|---|---:|---:|---|---|")
            for t in R["targets"]:
                L.append(f"| {t['target']} | {t['size']} | {fmt(t['value'], 2)} | {fmt(t['goal'], 2)} | "
                         f"**{t['status']}** | {t['detail']} |")
            L.append("")
        return "\n".join(L)

    def save(self):
        with open(os.path.join(self.out, "results.json"), "w") as f:
            json.dump(self.results, f, indent=1, default=str)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 1280x720 and 1920x1080 only, 20 %% of the frames, 4 s live, 2000-frame burst")
    ap.add_argument("--sizes", help="comma list (default: 640x480,1280x720,1920x1080,3840x2160)")
    ap.add_argument("--scale", type=float, help="multiply the frame counts (2000/1000/600/200)")
    ap.add_argument("--only", help="comma list of sections: ceiling,drain,live,burst,viewers (default: all)")
    ap.add_argument("--all-variants", action="store_true", help="records-only and 1-worker rows at every size")
    ap.add_argument("--mqimg", default=os.path.join(TARGET, "release", "mqimg"))
    ap.add_argument("--ref-python", default=sys.executable, help="Python with paho-mqtt, numpy, cv2 for the reference")
    ap.add_argument("--mqimg-env", action="append", metavar="K=V",
                    help="extra environment for `mqimg run` (diagnosis, e.g. MALLOC_ARENA_MAX=2); repeatable")
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--backend", help="decode.backend for the daemon (MQIMG__DECODE__BACKEND), e.g. zune or "
                                      "libjpeg-turbo, and the decode ceiling from the criterion benchmarks "
                                      "<group>/<backend>/<size>; only with a build that has the key and, for "
                                      "libjpeg-turbo, the turbojpeg feature (BENCH_CARGO_FEATURES=turbojpeg)")
    ap.add_argument("--cargo-features", default=os.environ.get("BENCH_CARGO_FEATURES") or None,
                    help="cargo features of the criterion bench run, the same as the daemon's build "
                         "(default: $BENCH_CARGO_FEATURES, which bench/run.sh also builds the daemon with)")
    ap.add_argument("--criterion", choices=("auto", "run", "read", "skip"), default="auto",
                    help="decode ceiling: run `cargo bench --bench decode` in this run (auto, run), read "
                         "existing estimates (marked as from an earlier run), or skip")
    ap.add_argument("--live-sizes", help="comma list (default: the drain sizes)")
    ap.add_argument("--live-load", type=float, default=0.5, help="live rate as a fraction of the drain rate")
    ap.add_argument("--live-rate", type=float, help="live rate when there is no drain row")
    ap.add_argument("--live-seconds", type=float)
    ap.add_argument("--live-variants", default="user",
                    help="comma list: user (records + stored, the target) and/or records-only (output.dir unset)")
    ap.add_argument("--live-sync", help="comma list of output.sync modes (batch,file,none) to run each live case "
                                         "with (default: the daemon's default only)")
    ap.add_argument("--live-writer", choices=("off", "on", "both"), default="off",
                    help="run live cases while another process (dd) writes --writer-mb MB to the frames' filesystem")
    ap.add_argument("--writer-mb", type=int, default=2048)
    ap.add_argument("--no-drain-variants", action="store_true",
                    help="drain only mqimg as configured (and the reference): no records-only, 1-worker, no-verify rows")
    ap.add_argument("--viewers", type=int, default=20, help="MJPEG viewers in the viewers section (0 = skip it)")
    ap.add_argument("--viewer-rate", type=float, default=10, help="frames per second each viewer takes at most")
    ap.add_argument("--viewer-size", default="1280x720")
    ap.add_argument("--viewer-frames", type=int, default=600,
                    help="frames of each viewers-section drain (not scaled by --quick: shorter is noise)")
    ap.add_argument("--burst-frames", type=int)
    ap.add_argument("--burst-size", default="640x480")
    ap.add_argument("--broker-nodelay", action="store_true", help="set_tcp_nodelay true in the broker")
    ap.add_argument("--max-queued", type=int, default=100000)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--idle-timeout", type=float, default=20, help="give up a case after this long without a record")
    ap.add_argument("--idle-pct", type=float, default=15, help="machine idle = below this %% of one core busy")
    ap.add_argument("--idle-wait", type=float, help="wait up to this long for idle before each case (0 = don't)")
    ap.add_argument("--idle-budget", type=float, default=120,
                    help="total seconds of idle waiting per run; after that each case waits 3 s at most")
    ap.add_argument("--other-max", type=float, default=25, help="re-run a drain when others used more %% of a core")
    ap.add_argument("--retries", type=int)
    ap.add_argument("--out", help="results folder (default bench-results/<UTC stamp>)")
    a = ap.parse_args()
    a.sizes = a.sizes.split(",") if a.sizes else (["1280x720", "1920x1080"] if a.quick else ALL_SIZES)
    for s in a.sizes:
        if s not in FRAMES_FULL:
            ap.error(f"unknown size {s}")
    a.live_sizes = a.live_sizes.split(",") if a.live_sizes else None
    a.scale = a.scale if a.scale is not None else (0.2 if a.quick else 1.0)
    a.live_seconds = a.live_seconds if a.live_seconds is not None else (4 if a.quick else 8)
    a.burst_frames = a.burst_frames if a.burst_frames is not None else (2000 if a.quick else 10000)
    a.idle_wait = a.idle_wait if a.idle_wait is not None else (20 if a.quick else 90)
    a.retries = a.retries if a.retries is not None else (0 if a.quick else 1)
    if not os.access(a.mqimg, os.X_OK):
        sys.exit(f"{a.mqimg} not found: build it with `cargo build --release` (bench/run.sh does)")
    for tool in ("mosquitto", "/usr/bin/time"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found: apt-get install -y mosquitto time")
    Bench(a).run()


if __name__ == "__main__":
    main()
