#!/usr/bin/env python3
"""Reference consumer: the paho-mqtt + OpenCV script an operator would write instead of running mqimg.

Written for this repository (bench/e2e.py's "reference" rows). What it represents: subscribe with
paho-mqtt, and in on_message (which paho runs on its network thread after client.loop_start())

    jpeg  = base64.b64decode(msg.payload)                       # skipped with --raw
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)

then optionally write the frame to disk (--write-dir) and publish a small JSON record about it
(--record-topic). Both are off by default: bench/e2e.py measures the decode path alone.
Around that the script only counts frames and takes timestamps; it adds no batching, threads or
buffer reuse, so it is the plain approach, not a tuned one.

Stops after --count frames, after --timeout seconds in all, or --idle-timeout seconds after the last
message. frames/s = (frames - 1) / (time of the last frame - time of the first frame), both taken
after decoding. CPU per frame = the process's user + system CPU (getrusage, every thread) between
those two points / (frames - 1), i.e. over the frames the rate counts. An exception in on_message
(bad base64, empty payload, a header too large for OpenCV) is left to paho, as a plain script would:
paho re-raises it and its network thread stops; the consumer then reports it and exits 3. --keep-going counts such frames instead.

Output: 'READY' on stdout (flushed) once subscribed (or once the broker confirms a persistent
session), a human summary, then 'RESULT {json}'; the same JSON with --json-out FILE.
Exit status: 0 when --count frames arrived, 2 when it stopped earlier, 3 after an exception.

  python3 bench/reference/consumer.py --port 18830 --topic cam/door --count 500
  python3 bench/reference/consumer.py --port 18830 --topic cam/door --client-id ref --persistent-session \
      --subscribe-only
  python3 bench/reference/consumer.py --port 18830 --topic cam/door --count 10 --write-dir /tmp/out \
      --record-topic 'ref/results/{topic}'
"""
import argparse
import base64
import json
import os
import resource
import sys
import threading
import time

import cv2
import numpy as np
import paho.mqtt.client as mqtt


def decode(payload, raw):
    """The operator's decode: base64 text -> JPEG/PNG bytes -> BGR array (None when OpenCV can't)."""
    data = payload if raw else base64.b64decode(payload)
    return cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)


class Meter:
    """Frame counts and the first/last-frame clocks (perf_counter, wall time, process CPU user, system)."""

    def __init__(self):
        self.frames = 0  # messages handled, whatever the outcome
        self.ok = 0  # cv2.imdecode returned an image
        self.none = 0  # cv2.imdecode returned None
        self.exceptions = 0
        self.pixels = 0
        self.payload_bytes = 0
        self.shape = None
        self.first = None  # (perf_counter, time, process_time) after the first frame
        self.last = None
        self.last_arrival = None  # perf_counter when the latest message arrived
        self.error = None

    def tick(self):
        ru = resource.getrusage(resource.RUSAGE_SELF)  # the whole process: every thread, user and system
        clocks = (time.perf_counter(), time.time(), ru.ru_utime, ru.ru_stime)
        if self.first is None:
            self.first = clocks
        self.last = clocks

    def summary(self, args, stop):
        window = self.last[0] - self.first[0] if self.first else 0.0
        counted = self.ok + self.none
        fps = (counted - 1) / window if window > 0 and counted > 1 else None
        mp = self.pixels / self.ok / 1e6 if self.ok else 0.0
        # CPU between the first and the last tick: the work on frames 2..last, the frames fps counts
        user = self.last[2] - self.first[2] if self.first else 0.0
        system = self.last[3] - self.first[3] if self.first else 0.0
        cpu = 100.0 * (user + system) / window if window > 0 else None
        in_window = counted - 1 if counted > 1 else 0
        return {
            "topic": args.topic, "qos": args.qos, "raw": args.raw,
            "write_dir": args.write_dir, "record_topic": args.record_topic,
            "frames": self.frames, "decoded_ok": self.ok, "decode_none": self.none,
            "exceptions": self.exceptions, "exception": self.error, "stop_reason": stop,
            "frame_shape": list(self.shape) if self.shape else None,
            "window_s": round(window, 3),
            "fps": round(fps, 2) if fps else None,
            "mp_per_s": round(fps * mp, 2) if fps else None,
            "payload_mb_per_s": round(self.payload_bytes / window / 1e6, 2) if window > 0 else None,
            "frames_in_window": in_window,
            "cpu_pct_window": round(cpu, 1) if cpu is not None else None,
            "cpu_user_s_window": round(user, 4),
            "cpu_sys_s_window": round(system, 4),
            "cpu_ms_per_frame": round(1000 * (user + system) / in_window, 3) if in_window else None,
            "wall_first": self.first[1] if self.first else None,
            "wall_last": self.last[1] if self.last else None,
        }


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--topic", default="bench/frames", help="subscription filter")
    ap.add_argument("--qos", type=int, choices=(0, 1, 2), default=0, help="subscription QoS (default 0)")
    ap.add_argument("--count", "-n", type=int, default=1000, help="stop after this many frames (default 1000)")
    ap.add_argument("--timeout", type=float, default=120.0, help="overall limit in seconds (default 120)")
    ap.add_argument("--idle-timeout", type=float, default=10.0,
                    help="stop this long after the last message, once one arrived (default 10)")
    ap.add_argument("--raw", action="store_true", help="payloads are image bytes, not base64")
    ap.add_argument("--write-dir", help="write each decoded frame here (cv2.imwrite, --write-format)")
    ap.add_argument("--write-format", choices=("png", "jpg"), default="png")
    ap.add_argument("--record-topic",
                    help="publish a JSON record per frame on this topic ('{topic}' = the message's topic)")
    ap.add_argument("--keep-going", action="store_true", help="count exceptions in on_message instead of stopping")
    ap.add_argument("--client-id", default="")
    ap.add_argument("--persistent-session", action="store_true",
                    help="clean_session=False (needs --client-id): the broker queues frames while we are away")
    ap.add_argument("--subscribe-only", action="store_true",
                    help="subscribe, print READY, disconnect and exit (primes a persistent session)")
    ap.add_argument("--json-out", help="also write the RESULT JSON to this file")
    args = ap.parse_args()
    if args.persistent_session and not args.client_id:
        ap.error("--persistent-session needs --client-id")
    return args


def main():
    args = parse_args()
    if args.write_dir:
        os.makedirs(args.write_dir, exist_ok=True)
    meter = Meter()
    subscribed = threading.Event()
    finished = threading.Event()

    def on_connect(client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            meter.error = f"connect refused: {reason_code}"
            finished.set()
        elif args.persistent_session and flags.session_present:
            subscribed.set()  # the broker kept our subscription; queued frames follow
        else:
            client.subscribe(args.topic, qos=args.qos)

    def on_subscribe(client, userdata, mid, reason_code_list, properties):
        subscribed.set()

    def on_message(client, userdata, msg):
        meter.last_arrival = time.perf_counter()
        seq = meter.frames
        meter.frames += 1
        try:
            image = decode(msg.payload, args.raw)
            path = None
            if args.write_dir and image is not None:
                path = os.path.join(args.write_dir, f"{seq:07d}.{args.write_format}")
                cv2.imwrite(path, image)
            if args.record_topic:
                record = {"topic": msg.topic, "seq": seq, "bytes": len(msg.payload), "ok": image is not None}
                if image is not None:
                    record.update(width=int(image.shape[1]), height=int(image.shape[0]), file=path)
                client.publish(args.record_topic.replace("{topic}", msg.topic), json.dumps(record), qos=args.qos)
        except Exception as e:  # a plain script has no handler here; paho re-raises unless --keep-going
            meter.exceptions += 1
            if args.keep_going:
                return
            meter.error = f"{type(e).__name__}: {str(e).strip()[:200]}"
            finished.set()
            raise
        meter.payload_bytes += len(msg.payload)
        if image is None:
            meter.none += 1
        else:
            meter.ok += 1
            meter.pixels += image.shape[0] * image.shape[1]
            meter.shape = image.shape
        meter.tick()
        if meter.frames >= args.count:
            finished.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=args.client_id,
                         protocol=mqtt.MQTTv311, clean_session=not args.persistent_session)
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    started = time.perf_counter()
    client.connect(args.host, args.port, keepalive=60)
    client.loop_start()
    if not subscribed.wait(10):
        client.loop_stop()
        sys.exit(meter.error or "not subscribed within 10 s")
    print("READY", flush=True)
    if args.subscribe_only:
        client.disconnect()
        client.loop_stop()
        return 0

    stop = "count"
    while not finished.wait(0.05):
        now = time.perf_counter()
        if now - started > args.timeout:
            stop = "timeout"
            break
        if meter.last_arrival is not None and now - meter.last_arrival > args.idle_timeout:
            stop = "idle-timeout"
            break
    if meter.error:
        stop = "exception in on_message (paho's network thread stopped)"
    client.disconnect()
    client.loop_stop()

    res = meter.summary(args, stop)
    print(f"frames {res['frames']} (ok {res['decoded_ok']}, None {res['decode_none']}, "
          f"exceptions {res['exceptions']}); stop: {stop}")
    if res["fps"]:
        print(f"{res['fps']} frames/s, {res['mp_per_s']} MP/s, {res['payload_mb_per_s']} MB/s payload, "
              f"CPU {res['cpu_pct_window']} % over {res['window_s']} s, {res['cpu_ms_per_frame']} ms/frame")
    if meter.error:
        print(f"on_message raised {meter.error}", file=sys.stderr)
    print("RESULT " + json.dumps(res), flush=True)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(res, f)
    if meter.error:
        return 3
    return 0 if meter.frames >= args.count else 2


if __name__ == "__main__":
    sys.exit(main())
