#!/usr/bin/env python3
"""Writes the small hand-made fuzz seeds in this folder (run it here; needs Pillow).

fixtures/ holds the real frames, but most of its unusual JPEGs are 300-660 KB: slow to mutate and
to decode thousands of times a second. These seeds are tiny siblings (40x24 and smaller, cut from
fixtures/seed/seed-frame.jpg) with the same structures: progressive, restart markers, 4:2:2, 4:4:4,
gray, CMYK, EXIF orientation, optimised Huffman tables; plus PNG colour types and bit depths the
fixtures lack (16-bit, alpha, palette, 1-bit, interlaced, eXIf), JSON envelopes and data URIs of
the probed shapes, and configs with environment overrides. `fuzz/seed.sh` copies them into the
corpora next to the fixtures.
"""

import base64
import io
import json
import os
import struct
import zlib

from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "..", "fixtures")

src = Image.open(os.path.join(FIXTURES, "seed", "seed-frame.jpg")).convert("RGB")
small = src.resize((40, 24))


def save(name, data):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)


def jpeg(image, **kw):
    out = io.BytesIO()
    image.save(out, "JPEG", **kw)
    return out.getvalue()


def png(image, **kw):
    out = io.BytesIO()
    image.save(out, "PNG", **kw)
    return out.getvalue()


# JPEG structures (all baseline unless named).
save("jpeg-420.jpg", jpeg(small, quality=75))
save("jpeg-422.jpg", jpeg(small, quality=75, subsampling=1))
save("jpeg-444.jpg", jpeg(small, quality=75, subsampling=0))
save("jpeg-progressive.jpg", jpeg(small, quality=75, progressive=True))
save("jpeg-restart.jpg", jpeg(small, quality=75, restart_marker_blocks=1))
save("jpeg-optimized.jpg", jpeg(small, quality=75, optimize=True))
save("jpeg-odd-17x9.jpg", jpeg(src.resize((17, 9)), quality=60))
save("jpeg-gray.jpg", jpeg(small.convert("L"), quality=75))
save("jpeg-cmyk.jpg", jpeg(small.convert("CMYK"), quality=75))
exif = Image.Exif()
exif[0x0112] = 6  # Orientation: rotate 90° clockwise
save("jpeg-exif-orientation6.jpg", jpeg(small, quality=75, exif=exif.tobytes()))

# PNG colour types and bit depths.
save("png-rgb8.png", png(small))
save("png-rgba8.png", png(small.convert("RGBA")))
save("png-gray8.png", png(small.convert("L")))
save("png-gray-alpha8.png", png(small.convert("LA")))
save("png-palette.png", png(small.convert("P", palette=Image.Palette.ADAPTIVE, colors=16), transparency=0))
save("png-gray1.png", png(small.convert("1")))
save("png-gray16.png", png(small.convert("L").convert("I;16")))
save("png-exif-orientation6.png", png(small, exif=exif.tobytes()))


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def raw_png(width, height, color_type, depth, rows, interlace=0):
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, interlace)
    data = b"".join(b"\x00" + row for row in rows)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(data))
            + chunk(b"IEND", b""))


tiny = small.resize((8, 6))
px = [tiny.getpixel((x, y)) for y in range(6) for x in range(8)]
# 16-bit RGB and RGBA (Pillow cannot write them).
rows16 = [b"".join(struct.pack(">HHH", r * 257, g * 257, b * 257) for r, g, b in px[y * 8:(y + 1) * 8])
          for y in range(6)]
save("png-rgb16.png", raw_png(8, 6, 2, 16, rows16))
rows16a = [b"".join(struct.pack(">HHHH", r * 257, g * 257, b * 257, 0x8000) for r, g, b in px[y * 8:(y + 1) * 8])
           for y in range(6)]
save("png-rgba16.png", raw_png(8, 6, 6, 16, rows16a))


def adam7(width, height, pixel):
    """The filtered (filter 0) scanlines of an Adam7-interlaced image, pass by pass."""
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
    rows = []
    for x0, y0, dx, dy in passes:
        for y in range(y0, height, dy):
            row = b"".join(pixel(x, y) for x in range(x0, width, dx))
            if row:
                rows.append(row)
    return rows


interlaced = adam7(8, 6, lambda x, y: bytes(px[y * 8 + x]))
ihdr = struct.pack(">IIBBBBB", 8, 6, 8, 2, 0, 0, 1)
data = b"".join(b"\x00" + row for row in interlaced)
save("png-rgb8-interlaced.png", b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
     + chunk(b"IDAT", zlib.compress(data)) + chunk(b"IEND", b""))

# Payload shapes around a small JPEG.
image = jpeg(src.resize((16, 16)), quality=50)
b64 = base64.b64encode(image).decode()
url = base64.urlsafe_b64encode(image).decode().rstrip("=")
save("payload-base64-unpadded-urlsafe.txt", url.encode())
save("payload-mime-wrapped.b64", "\r\n".join(b64[i:i + 76] for i in range(0, len(b64), 76)).encode() + b"\r\n")
save("payload-datauri-params.txt", f"data:image/jpeg;name=cam1.jpg;base64,{b64}".encode())
save("payload-json-probed.json", json.dumps({"camera": "gate-1", "ts": 1764600000.5, "imageBase64": b64,
                                             "tags": ["a", {"b": None}], "ok": True}).encode())
save("payload-json-field-datauri.json", json.dumps({"image": f"data:image/jpeg;base64,{b64}",
                                                    "seq": 42}).encode())
save("payload-json-escaped.json", ('{"img":"' + "\\/".join(b64.split("/")) + '","note":"\\u00e9\\n"}').encode())
save("payload-json-not-string.json", b'{"snapshot": 123, "frame": [1, 2], "data": null}')
save("payload-json-array.json", b'["' + b64.encode()[:64] + b'"]')
save("payload-python-bytes-repr.txt", repr(image[:48]).encode())
save("payload-mixed-alphabets.txt", (b64[:40] + "-_" + b64[40:80]).encode())

# Configs: TOML, then after a line `%%env`, environment variables NAME=VALUE (see config.rs).
save("config-env.toml", b"""[broker]
url = "tcp://[::1]:1884"
client_id = "cam-7"
username = "u"
password = "p"

[[subscriptions]]
topic = "$share/g/cameras/+/jpeg"
qos = 2
encoding = "json"
json_field = "snapshot"

[[subscriptions]]
topic = "raw/#"
qos = 0
encoding = "base64"

[output]
dir = "/var/lib/mqimg"
format = "ppm"
results_topic = "r/{topic}"
errors_topic = ""
%%env
MQIMG__DECODE__MAX_PIXELS=1000000
MQIMG__BROKER__KEEP_ALIVE_SECS=60
MQIMG__LOG__FORMAT=json
MQIMG__METRICS__LISTEN=
""")
save("config-minimal.toml", b"""[decode]
max_width = 640
max_height = 480
workers = 2
verify_entropy = false
""")

# Images as large as the fuzz limits allow (4096x2048 = 2^23 pixels, fuzz/src/lib.rs) in a few KB:
# they take the decoders' largest allocations and longest loops, where limits must hold.
save("png-gray8-4096x2048-zeros.png", raw_png(4096, 2048, 0, 8, [bytes(4096)] * 2048))
save("png-rgba16-2048x2048-zeros.png", raw_png(2048, 2048, 6, 16, [bytes(2048 * 8)] * 2048))


def segment(marker, payload):
    return b"\xff" + bytes([marker]) + struct.pack(">H", len(payload) + 2) + payload


def flat_jpeg(width, height, components):
    """A baseline JPEG whose every block is DC difference 0 then end-of-block: 2 bits a block, with
    one-code Huffman tables (DC category 0 and AC end-of-block, each the code `0`)."""
    sampling = [0x22, 0x11, 0x11][:components]
    sof = struct.pack(">BHHB", 8, height, width, components) + b"".join(
        bytes([i + 1, s, 0]) for i, s in enumerate(sampling))
    one_code = bytes([1] + [0] * 15)
    dht = segment(0xC4, b"\x00" + one_code + b"\x00" + b"\x10" + one_code + b"\x00")
    sos = segment(0xDA, bytes([components]) + b"".join(bytes([i + 1, 0x00]) for i in range(components))
                  + b"\x00\x3f\x00")
    h_max = 2 if components > 1 else 1
    mcus = -(-width // (8 * h_max)) * -(-height // (8 * h_max))
    blocks = mcus * (4 + components - 1 if components > 1 else 1)
    return (b"\xff\xd8" + segment(0xDB, b"\x00" + bytes([1] * 64)) + segment(0xC0, sof) + dht + sos
            + bytes(-(-blocks * 2 // 8)) + b"\xff\xd9")


save("jpeg-gray-4096x2048-flat.jpg", flat_jpeg(4096, 2048, 1))
save("jpeg-420-4096x2048-flat.jpg", flat_jpeg(4096, 2048, 3))
