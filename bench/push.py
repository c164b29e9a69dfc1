#!/usr/bin/env python3
"""Push speed against skopeo, side by side in one run, each into its own empty local registry.

usage: bench/push.py CONF [--compression gzip|zstd]

CONF is a stream conf (../shared/tools/make_bench_store.sh OUTDIR writes one over ~3 GB of
real files). Measured, each as a user runs it (whole command, wall time):
  skopeo first    `skopeo copy docker-archive:IMAGE.tar docker://…` into an empty registry
                  (what nix2container's copyToRegistry runs; the archive streamed beforehand)
  ours first      `layered-image push CONF docker://…` into another empty registry, with an
                  empty layer digest cache
  skopeo again / ours again      the same, nothing changed
  ours +1 path    CONF with one small new store path added as a layer of its own
Starts Debian's docker-registry on free 127.0.0.1 ports; needs skopeo and nix-store.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE / "tests"))

from registry_fixtures import start_registry  # noqa: E402


def timed(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def with_one_more_path(conf: Path, scratch: Path) -> Path:
    """CONF plus a small new store path (a file added with nix-store --add), in a layer of its own."""
    extra = scratch / "extra-notes"
    extra.write_text(f"a small addition made at {time.time()}\n")
    path = subprocess.run(["nix-store", "--add", str(extra)], capture_output=True, text=True, check=True)
    data = json.loads(conf.read_text())
    data["store_layers"] = [*data["store_layers"], [path.stdout.strip()]]
    added = scratch / "conf-plus-one.json"
    added.write_text(json.dumps(data))
    return added


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("conf", type=Path)
    parser.add_argument("--compression", default="gzip", choices=["gzip", "zstd"])
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench-push-"))
    env = os.environ | {"XDG_CACHE_HOME": str(scratch / "cache")}
    archive = scratch / "image.tar"
    ours = [sys.executable, "-m", "layered_image"]
    subprocess.run([*ours, "stream", str(args.conf), "-q", "-o", str(archive)], check=True, env=env)
    registries = [start_registry(scratch / name) for name in ("skopeo-registry", "our-registry")]
    try:
        skopeo_target = f"docker://{registries[0].host}/bench:1"
        our_target = f"docker://{registries[1].host}/bench:1"
        skopeo = ["skopeo", "copy", "--dest-tls-verify=false", f"--dest-compress-format={args.compression}",
                  f"docker-archive:{archive}", skopeo_target]  # fmt: skip
        push = [*ours, "push", "--tls-verify=false", "--compression", args.compression, "-q"]
        figures = {
            "skopeo first": timed(skopeo, env),
            "ours first": timed([*push, str(args.conf), our_target], env),
            "skopeo again": timed(skopeo, env),
            "ours again": timed([*push, str(args.conf), our_target], env),
            "ours +1 path": timed([*push, str(with_one_more_path(args.conf, scratch)), our_target], env),
        }
    finally:
        for registry in registries:
            registry.stop()
    size = archive.stat().st_size
    print(f"image: {size / 1e9:.2f} GB uncompressed, {args.compression}, {os.cpu_count()} cores")
    for name, seconds in figures.items():
        print(f"{name:<14} {seconds:8.2f} s")
    first = figures["ours first"]
    print(f"ours first / skopeo first: {first / figures['skopeo first']:.2f}x")
    print(f"ours again / ours first: {figures['ours again'] / first:.1%}")
    print(f"ours +1 path / ours first: {figures['ours +1 path'] / first:.1%}")
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
