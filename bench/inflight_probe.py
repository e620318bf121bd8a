#!/usr/bin/env python3
"""Does the broker keep a QoS 1 subscriber to `max_inflight_messages` unacknowledged frames?

mqimg buffers every QoS 1 frame it receives until its file and record are durable, and counts on the
broker's in-flight window (Mosquitto's max_inflight_messages, default 20) to bound how many that is. This
probe checks the window with a bare MQTT 3.1.1 client (standard library only): it queues --count messages for
a subscriber, then acknowledges them one at a time and counts how many PUBLISH packets the broker has sent.
A broker that keeps the window sends 20, then one more per PUBACK (20, 21, 22, 23).

Mosquitto 2.0.11 (Debian 12) answers 20, 40, 60, 80: every PUBACK releases up to another 20 queued
messages, so a client that acks keeps receiving the whole queue. Before a42e7ad (intake paused when mqimg's
backlog is full) mqimg's memory grew with the broker's backlog: ~450 MB peak RSS in bench/e2e.py's drain of
600 queued 1920x1080 frames.

  python3 bench/inflight_probe.py            # private broker on a free loopback port, 300 messages
  python3 bench/inflight_probe.py --count 100 --acks 5
"""
import argparse
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e import _mqtt_str, _remaining, freeport, waitport  # noqa: E402


def connect(port, cid, clean):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    body = _mqtt_str("MQTT") + bytes([4, 0x02 if clean else 0x00]) + struct.pack("!H", 60) + _mqtt_str(cid)
    s.sendall(b"\x10" + _remaining(len(body)) + body)
    if s.recv(4)[:1] != b"\x20":
        raise SystemExit("no CONNACK")
    return s


def publishes(buf):
    """Packet ids of the complete QoS 1 PUBLISH packets in buf."""
    i, out = 0, []
    while i < len(buf):
        t, j, mult, n = buf[i], i + 1, 1, 0
        while j < len(buf):
            c = buf[j]
            j += 1
            n += (c & 127) * mult
            mult *= 128
            if not c & 128:
                break
        if j + n > len(buf):
            break
        if t >> 4 == 3:
            tl = struct.unpack("!H", buf[j:j + 2])[0]
            out.append(buf[j + 2 + tl:j + 4 + tl])
        i = j + n
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=300)
    ap.add_argument("--acks", type=int, default=3)
    ap.add_argument("--inflight", type=int, help="max_inflight_messages for the broker (default: Mosquitto's)")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="inflight-probe-")
    port = freeport()
    conf = os.path.join(work, "mosquitto.conf")
    extra = f"max_inflight_messages {a.inflight}\n" if a.inflight is not None else ""
    open(conf, "w").write(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                          f"max_queued_messages 100000\n{extra}")
    broker = subprocess.Popen(["mosquitto", "-c", conf], stderr=subprocess.DEVNULL)
    try:
        if not waitport(port):
            raise SystemExit("mosquitto did not start")
        s = connect(port, "probe-sub", clean=True)
        body = struct.pack("!H", 1) + _mqtt_str("probe/t") + b"\x01"
        s.sendall(b"\x82" + _remaining(len(body)) + body)
        s.recv(5)
        pub = connect(port, "probe-pub", clean=True)
        payload = b"x" * 1000
        for mid in range(1, a.count + 1):
            body = _mqtt_str("probe/t") + struct.pack("!H", mid) + payload
            pub.sendall(b"\x32" + _remaining(len(body)) + body)
        time.sleep(0.5)
        s.settimeout(0.5)
        buf = b""

        def drain():
            nonlocal buf
            try:
                while True:
                    d = s.recv(1 << 20)
                    if not d:
                        break
                    buf += d
            except socket.timeout:
                pass
            return publishes(buf)

        p = drain()
        counts = [len(p)]
        print(f"{a.count} QoS 1 messages queued for the subscriber; PUBLISH received before any PUBACK: {len(p)}")
        for k in range(a.acks):
            s.sendall(b"\x40\x02" + p[k])
            p = drain()
            counts.append(len(p))
            print(f"after {k + 1} PUBACK: {len(p)} received, {len(p) - k - 1} unacknowledged")
        window = counts[0]
        kept = all(c == window + i for i, c in enumerate(counts))
        print(f"in-flight window {'kept' if kept else 'NOT kept'} "
              f"({'+1' if kept else f'+{counts[1] - counts[0]}'} per PUBACK)")
        return 0 if kept else 1
    finally:
        broker.terminate()
        broker.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
