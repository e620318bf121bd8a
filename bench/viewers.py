"""Viewers of mqimg's live view for bench/e2e.py's `viewers` section: MJPEG clients that take at most a
given number of frames per second, and what they received. Standard library only."""
import socket
import statistics
import threading
import time
import urllib.parse


class Viewer(threading.Thread):
    """One viewer of mqimg's MJPEG stream (/stream/{topic}) taking at most `rate` frames per second, as a
    browser tab on a slow link would: it reads a frame, then waits its turn (TCP backpressure holds the rest).
    Until mqimg listens and the topic has a frame (the stream answers 404) the viewer asks again every 20 ms.
    Counts the parts (boundaries) and bytes it received."""

    BOUNDARY = b"--mqimg-frame"

    def __init__(self, port, topic, rate, stop):
        super().__init__(daemon=True)
        self.port, self.rate, self.stop_event = port, rate, stop
        self.path = "/stream/" + "/".join(urllib.parse.quote(level, safe="") for level in topic.split("/"))
        self.parts = 0
        self.bytes = 0
        self.first = self.last = None
        self.refused = 0
        self.error = None

    def run(self):
        try:
            self._run()
        except OSError as e:
            if not self.stop_event.is_set():
                self.error = f"{type(e).__name__}: {e}"

    def _run(self):
        while not self.stop_event.is_set():
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            except ConnectionRefusedError:
                # mqimg is starting: its listener is not up yet
                self.refused += 1
                self.stop_event.wait(0.02)
                continue
            # a small window, as over a real link: the pace is set by what this viewer takes
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 << 10)
            s.sendall(f"GET {self.path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                more = s.recv(4096)
                if not more:
                    break
                head += more
            status = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b"?"
            if status != b"200":
                self.refused += 1
                s.close()
                self.stop_event.wait(0.02)
                continue
            self._read(s, head.split(b"\r\n\r\n", 1)[1])
            s.close()
            return

    def _read(self, s, data):
        s.settimeout(1.0)
        tail = b""
        while not self.stop_event.is_set():
            found = (tail + data).count(self.BOUNDARY)
            tail = (tail + data)[-(len(self.BOUNDARY) - 1):]
            self.bytes += len(data)
            if found:
                now = time.perf_counter()
                if self.first is None:
                    self.first = now
                self.parts += found
                self.last = now
                # at most `rate` frames a second: wait until this frame's turn is over
                due = self.first + self.parts / self.rate
                if due > now:
                    self.stop_event.wait(due - now)
            try:
                data = s.recv(65536)
            except socket.timeout:
                data = b""
                continue
            if not data:
                return


def viewer_stats(watching, recs, max_rate):
    """What the viewers received while the drain ran; `recs` are the drain's records (arrival first)."""
    window = (recs[-1][1] - recs[0][1]) if len(recs) >= 2 else None
    rates = [(v.parts - 1) / (v.last - v.first) for v in watching if v.parts >= 2 and v.last > v.first]
    out = {"count": len(watching), "max_rate": max_rate,
           "parts_min": min(v.parts for v in watching), "parts_max": max(v.parts for v in watching),
           "fps_mean": round(statistics.mean(rates), 2) if rates else None,
           "mb_total": round(sum(v.bytes for v in watching) / 1e6, 1),
           "refused_until_first_frame": sum(v.refused for v in watching),
           "errors": [v.error for v in watching if v.error][:3]}
    if window:
        out["mb_per_s"] = round(out["mb_total"] / window, 1)
        joined = [v.first - recs[0][1] for v in watching if v.first]
        # how long after the drain's first record the last viewer got its first frame
        out["joined_after_s_max"] = round(max(joined), 2) if joined else None
    return out
