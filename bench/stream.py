#!/usr/bin/env python3
"""Streaming speed and memory against the read+hash floor.

usage: bench/stream.py CONF [--runs N] [--to-file] [--with-base]

CONF is a stream conf (../shared/tools/make_bench_store.sh OUTDIR writes one over ~3 GB
of real files). The floor, measured in the same run: one process reading every
regular file of the conf's store layers once and hashing it with hashlib. Then
`layered-image stream CONF` piped into a hash sink (another process hashing stdin),
as `docker load` would read it. After one warm-up read, floor and stream run N times
each, interleaved (default 3); the medians are reported, with the stream's peak RSS
and whether every run gave the same digest. --to-file: also `-o FILE` beside CONF (as a
build writes $out), interleaved with the others.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

SINK = """
import hashlib, sys
h, buf, n = hashlib.sha256(), bytearray(1 << 20), 0
with open(0, "rb", buffering=0) as f:
    while k := f.readinto(buf):
        h.update(memoryview(buf)[:k]); n += k
print(h.hexdigest(), n)
"""


def floor(conf: dict) -> tuple[float, int]:
    start, total, buffer = time.perf_counter(), 0, bytearray(1 << 20)
    digest = hashlib.sha256()
    for layer in conf["store_layers"]:
        for path in layer:
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    file = os.path.join(root, name)
                    if os.path.islink(file):
                        continue
                    with open(file, "rb", buffering=0) as handle:
                        while count := handle.readinto(buffer):
                            digest.update(memoryview(buffer)[:count])
                            total += count
    return time.perf_counter() - start, total


def stream(conf_path: str) -> tuple[float, int, str]:
    start = time.perf_counter()
    command = [sys.executable, "-m", "layered_image", "stream", conf_path, "-q"]
    producer = subprocess.Popen(command, stdout=subprocess.PIPE)
    sink = subprocess.run([sys.executable, "-c", SINK], stdin=producer.stdout, capture_output=True, text=True)
    _, status, usage = os.wait4(producer.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0 or sink.returncode != 0:
        sys.exit("stream failed")
    return seconds, usage.ru_maxrss // 1024, sink.stdout.split()[0]


def to_file(conf_path: str) -> float:
    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(conf_path))) as scratch:
        start = time.perf_counter()
        target = os.path.join(scratch, "image.tar")
        command = [sys.executable, "-m", "layered_image", "stream", conf_path, "-q", "-o", target]
        subprocess.run(command, check=True)
        return time.perf_counter() - start


def through_base(conf: dict, conf_path: str, compress: bool) -> None:
    """The whole image as the base of a one-file image: the base is checked (read and
    hashed) and streamed through; memory must not grow with its size."""
    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(conf_path))) as scratch:
        base = os.path.join(scratch, "base.tar")
        subprocess.run(
            [sys.executable, "-m", "layered_image", "stream", conf_path, "-q", "-o", base], check=True
        )
        if compress:
            subprocess.run(["gzip", "-1", base], check=True)
            base += ".gz"
        top = dict(conf, from_image=base, store_layers=[conf["store_layers"][0]])
        top_path = os.path.join(scratch, "top.json")
        with open(top_path, "w") as file:
            json.dump(top, file)
        start = time.perf_counter()
        command = [sys.executable, "-m", "layered_image", "stream", top_path, "-q"]
        producer = subprocess.Popen(command, stdout=subprocess.PIPE)
        sink = subprocess.run([sys.executable, "-c", SINK], stdin=producer.stdout, capture_output=True)
        _, status, usage = os.wait4(producer.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0 or sink.returncode != 0:
            sys.exit("stream with a base image failed")
        size = os.path.getsize(base) / 1e9
        print(
            f"with a {size:.2f} GB {'gzip ' if compress else ''}base image: "
            f"{time.perf_counter() - start:6.2f} s, peak RSS {usage.ru_maxrss // 1024} MB"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("conf")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--to-file", action="store_true", help="also time writing the image to a file")
    parser.add_argument(
        "--with-base", action="store_true", help="also stream an image whose from_image is this whole image"
    )
    args = parser.parse_args()
    with open(args.conf) as file:
        conf = json.load(file)
    floor(conf)  # warm the page cache
    floors, streams, files = [], [], []
    for _ in range(args.runs):  # interleaved, so that the machine's mood hits all alike
        floors.append(floor(conf))
        streams.append(stream(args.conf))
        if args.to_file:
            files.append(to_file(args.conf))
    floor_time = statistics.median(seconds for seconds, _ in floors)
    stream_time = statistics.median(seconds for seconds, _, _ in streams)
    gigabytes = floors[0][1] / 1e9
    print(f"files read: {gigabytes:.2f} GB; medians of {args.runs} interleaved runs")
    print(f"floor (read + sha256, one process): {floor_time:6.2f} s  {gigabytes / floor_time:.2f} GB/s")
    print(
        f"layered-image stream | hash sink:   {stream_time:6.2f} s  {stream_time / floor_time:.2f}x the floor"
    )
    print(f"  runs: floor {[round(s, 1) for s, _ in floors]}, stream {[round(s, 1) for s, _, _ in streams]}")
    if files:
        file_time = statistics.median(files)
        ratio = file_time / floor_time
        print(f"layered-image stream -o FILE:      {file_time:6.2f} s  {ratio:.2f}x the floor")
        print(f"  runs: to a file {[round(seconds, 1) for seconds in files]}")
    print(f"stream peak RSS: {max(rss for _, rss, _ in streams)} MB")
    digests = {digest for _, _, digest in streams}
    print(f"same bytes every run: {'yes' if len(digests) == 1 else 'NO'} ({digests.pop()[:16]}...)")
    if args.with_base:
        through_base(conf, args.conf, compress=False)
        through_base(conf, args.conf, compress=True)


if __name__ == "__main__":
    main()
