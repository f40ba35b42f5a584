"""Benchmark of the data checks and of hashing on a generated alpaca file (default 1 GB); prints, asserts nothing.

    .venv/bin/python bench/bench_data.py [--size-mb 100 1024] [--keep DIR] [--repeat 3]

Figures: rows/s and MB/s of parsing alone (JSON array and JSON Lines) and of the full scan (schema + PII + leakage +
duplicates in one pass; a file of 32 MB or more is shared with a helper process), each in a fresh child
process with its peak RSS and CPU seconds (its helper's included: on a busy machine the wall time says less);
SHA-256 speed of pytest-ftgate's ``sha256_file`` against coreutils ``sha256sum`` and ``openssl dgst -sha256`` on
the same file (page cache warm).
Parse and scan run ``--repeat`` times in turn (default 3); the least wall time of each counts (a busy machine
only ever adds time), the peak RSS is the largest of the runs.
The file is generated into a temporary directory and deleted afterwards (unless --keep).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORDS = ("apple river stone cloud green music tiger paper light ocean bread chair dream earth flame glass heart house "
         "lemon money night plant queen sugar model adapter answer question context summary").split()
PII = ("write to jan.kowalski@example.com", "call +48 601 234 567", "card 4111 1111 1111 1111", "PESEL 44051401359")


def generate(path: Path, size_mb: int, jsonl: bool, seed: int = 0) -> int:
    """An alpaca file of about ``size_mb`` MB: ~450-byte rows, 1 in 1000 with PII, 1 in 200 duplicated."""
    rng = random.Random(seed)
    target, n, written = size_mb * 1_000_000, 0, 0
    with open(path, "w", encoding="utf-8") as f:
        f.write("" if jsonl else "[\n")
        while written < target:
            words = rng.choices(WORDS, k=40)
            row = {"instruction": "Summarise the text in one sentence.",
                   "input": f"In {rng.randint(1900, 2030)} there were {rng.randint(1, 999)} " + " ".join(words),
                   "output": " ".join(words[:12])}
            if n % 1000 == 7:
                row["input"] += " " + PII[(n // 1000) % len(PII)]
            if n % 200 == 3 and n > 3:
                row = {"instruction": "Summarise the text in one sentence.", "input": "a repeated row", "output": "x"}
            line = json.dumps(row, ensure_ascii=False)
            sep = "\n" if jsonl else ("" if n == 0 else ",\n")
            f.write(sep + line)
            written += len(sep) + len(line)
            n += 1
        f.write("\n" if jsonl else "\n]\n")
    return n


CHILD = r"""
import json, os, sys, time
sys.path.insert(0, {root!r})
from pytest_ftgate import data, jsonstream
from pytest_ftgate.gates import data as data_gates
mode, path, test = sys.argv[1], sys.argv[2], sys.argv[3]
t, cpu = time.perf_counter(), os.times()
if mode == "parse":
    rows = sum(1 for _ in jsonstream.iter_rows(path))
    extra = {{}}
else:
    spec = data.DatasetSpec("bench")
    scan = data.scan([data.DataFile("bench", "train", path, spec), data.DataFile("held", "test", test, spec)])
    rows = scan.train_rows
    extra = {{"pii": data_gates.pii_check(scan).value, "duplicates": scan.duplicate_rows, "leaked": len(scan.leaks),
              "invalid": sum(f.bad_rows for f in scan.files)}}
secs, now = time.perf_counter() - t, os.times()
cpu = sum(now[:4]) - sum(cpu[:4])  # user + system, this process and its helper (a JSON Lines file's second half)
# VmHWM: this process's own peak (ru_maxrss would include the parent's RSS at fork time)
rss = [int(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
print(json.dumps({{"rows": rows, "seconds": secs, "cpu": cpu, "peak_rss_mb": rss, **extra}}))
"""


def child(mode: str, path: Path, test: Path) -> dict:
    code = CHILD.format(root=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code, mode, str(path), str(test)], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def hashing(path: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from pytest_ftgate.gates.audit import sha256_file

    mb = path.stat().st_size / 1e6
    timed(["cat", str(path)])  # warm the page cache
    t = time.perf_counter()
    ours = sha256_file(path)
    rows = [("pytest-ftgate sha256_file (hashlib, 1 MiB reads)", time.perf_counter() - t)]
    for label, cmd in (("openssl dgst -sha256", ["openssl", "dgst", "-sha256", str(path)]),
                       ("coreutils sha256sum", ["sha256sum", str(path)])):
        if shutil.which(cmd[0]):
            rows.append((label, timed(cmd)))
    check = subprocess.run(["sha256sum", str(path)], capture_output=True, text=True).stdout.split()[0]
    print(f"\nSHA-256 of {mb:.0f} MB (digests agree: {ours == 'sha256:' + check})")
    for label, secs in rows:
        print(f"  {label:<52} {secs:6.2f} s  {mb / secs:7.0f} MB/s")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, nargs="+", default=[100, 1024], help="file sizes (default 100 1024)")
    ap.add_argument("--keep", metavar="DIR", help="generate into DIR and keep the files")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each, interleaved; the least time counts (3)")
    args = ap.parse_args(argv)
    tmp = Path(args.keep or tempfile.mkdtemp(prefix="ftgate-bench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        print(f"machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; python {sys.version.split()[0]}")
        print(f"each figure: the least of {args.repeat} runs, parse and scan interleaved (peak RSS: the largest)")
        test = tmp / "test.json"
        test.write_text(json.dumps([{"instruction": "Summarise the text in one sentence.", "input": "a repeated row",
                                     "output": "x"}, {"instruction": "unseen", "input": "", "output": "y"}]))
        for size, jsonl in ((size, jsonl) for size in args.size_mb for jsonl in (False, True)):
            path = tmp / ("train.jsonl" if jsonl else "train.json")
            t = time.perf_counter()
            n = generate(path, size, jsonl)
            mb = path.stat().st_size / 1e6
            print(f"\n{path.name}: {n:,} rows, {mb:.0f} MB (generated in {time.perf_counter() - t:.0f} s)")
            rates, runs = {}, {"parse": [], "scan": []}
            for _ in range(args.repeat):  # interleaved: a busy moment slows one of each, not one side
                for mode in runs:
                    runs[mode].append(child(mode, path, test))
            for mode in ("parse", "scan"):
                r = min(runs[mode], key=lambda x: x["seconds"])
                r["peak_rss_mb"] = max(x["peak_rss_mb"] for x in runs[mode])
                rates[mode] = mb / r["seconds"]
                what = "parse only" if mode == "parse" else "full scan (schema+PII+leakage+duplicates)"
                print(f"  {what:<44} {r['seconds']:6.1f} s  {r['rows'] / r['seconds']:9,.0f} rows/s  "
                      f"{mb / r['seconds']:6.1f} MB/s  peak RSS {r['peak_rss_mb']:5.0f} MB  (cpu {r['cpu']:.1f} s)")
                if mode == "scan":
                    print(f"    found: PII {r['pii']}, {r['duplicates']:,} duplicate rows, {r['leaked']} leaked test "
                          f"prompt(s), {r['invalid']} invalid rows")
                    print(f"    scan / parse rate: {rates['scan'] / rates['parse']:.2f} (target >= 0.5)")
            if not jsonl and size == args.size_mb[-1]:
                hashing(path)
            if not args.keep:
                path.unlink()
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
