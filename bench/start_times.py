#!/usr/bin/env python3
"""Size and start time of the echo plugin of each language (BENCHMARKS.md,
README's language table).

    python3 bench/start_times.py [WASP_BINARY]

Builds each echo example from source (a language whose toolchain is missing
is skipped with the reason), then starts it under `wasp run` three times with
a fresh compile cache: the first start compiles the plugin, the next ones
load it compiled. A start is the time from launching `wasp run` to the echo
server's first accepted connection on loopback. Medians are printed.
"""

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "target", "start-times")


def build_rust():
    subprocess.run(
        ["cargo", "build", "-q", "--release", "--target", "wasm32-wasip2", "-p", "rust-event-echo"],
        cwd=ROOT, check=True)
    return os.path.join(ROOT, "target/wasm32-wasip2/release/rust-event-echo.wasm")


def build_with(command):
    def build():
        out = os.path.join(OUT, command[-1])
        result = subprocess.run(command[:-1] + [out], cwd=ROOT, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(result.stderr.strip().splitlines()[-1] if result.stderr else "build failed")
        return out
    return build


def build_c():
    subprocess.run(["make", "-s", "-C", "examples/c-echo"], cwd=ROOT, check=True, capture_output=True)
    return os.path.join(ROOT, "examples/c-echo/echo.wasm")


LANGUAGES = [
    ("Rust", build_rust, "examples/policies/event-echo.toml"),
    ("C", build_c, "examples/c-echo/policy.toml"),
    ("Python", build_with(["sh", "examples/python-echo/build.sh", "python-echo.wasm"]),
     "examples/python-echo/policy.toml"),
    ("JavaScript", build_with(["sh", "examples/js-echo/build.sh", "js-echo.wasm"]),
     "examples/js-echo/policy.toml"),
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_time(wasp, plugin, policy, cache):
    """Seconds from launching wasp to the first echoed byte."""
    port = free_port()
    began = time.monotonic()
    child = subprocess.Popen(
        [wasp, "run", plugin, "--policy", policy, "--cache-dir", cache, "--", f"127.0.0.1:{port}"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.monotonic() - began < 300:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                    c.sendall(b"x")
                    if c.recv(1) == b"x":
                        return time.monotonic() - began
            except OSError:
                time.sleep(0.005)
        raise RuntimeError("the plugin never served")
    finally:
        child.kill()
        child.wait()


def main():
    wasp = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else os.path.join(ROOT, "target/release/wasp")
    os.makedirs(OUT, exist_ok=True)
    print("| language | plugin size | first start (compiles) | later start (cached) |")
    print("| --- | ---: | ---: | ---: |")
    for name, build, policy in LANGUAGES:
        try:
            plugin = build()
        except (RuntimeError, subprocess.CalledProcessError, FileNotFoundError) as e:
            print(f"| {name} | SKIPPED: {e} | | |")
            continue
        cache = tempfile.mkdtemp(prefix="wasp-cache-")
        try:
            first = start_time(wasp, plugin, policy, cache)
            later = statistics.median(start_time(wasp, plugin, policy, cache) for _ in range(5))
        finally:
            shutil.rmtree(cache)
        size = os.path.getsize(plugin) / (1 << 20)
        print(f"| {name} | {size:.2f} MiB | {first:.2f} s | {later * 1000:.0f} ms |")


if __name__ == "__main__":
    main()
