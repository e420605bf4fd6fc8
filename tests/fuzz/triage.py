#!/usr/bin/python3
"""Reruns fuzzer findings, groups them by stack and keeps one reproducer per group.

    /usr/bin/python3 tests/fuzz/triage.py --target BUILD/tests/fuzz/fuzz_model \\
        --out /work/fuzz-findings/model ARTIFACT_OR_DIR...

Each artifact (crash-*, timeout-*, oom-*, or any input) is run once by the target with the
replay limits, and classified by its first report: the sanitizer error type, a hang (the target's
CPU time limit), libFuzzer's wall-clock timeout or out-of-memory, or another rule of the target
("fuzz: ..."). Its signature is that kind plus the top
three named frames below the sanitizer, libFuzzer and libc frames (HDF5's static functions have no
symbols in Debian's build and are left out, so the signature does not depend on the instruction
a hang was interrupted at; for a hang, the five named frames above the linfold call are used
instead, since it is interrupted anywhere in its loop). Per signature, the smallest reproducer
and its full report are kept in OUT/<NN>-<kind>/ (reproducer, report.txt), with the linfold call
sites seen, and a summary is written to OUT/summary.tsv. Every input's report is kept in
OUT/logs/ and reused by later runs (--rerun runs them again). Inputs the target accepts without a
report are counted as fixed.
"""

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys

SKIP = re.compile(r"^(__interceptor_|__asan|__sanitizer|__ubsan|__lsan|fuzzer::|__libc_|__pthread_kill|lf_fuzz_|_start$|"
                  r"main$|abort$|raise$|gsignal$|malloc$|calloc$|realloc$|free$|memcpy$|"
                  r"memmove$|memset$|LLVMFuzzerTestOneInput$)")
FRAME = re.compile(r"^\s*#(\d+) 0x[0-9a-f]+ (?:in (\S+)(?: (\S+))?)?\s*(?:\((\S+?)\+(0x[0-9a-f]+)\))?")


def classify(log):
    """Returns (kind, detail) of the first report in log, or None."""
    patterns = [
        (r"ERROR: AddressSanitizer: (requested allocation size|allocator is out of memory)",
         lambda m: ("asan-alloc-too-big", m.group(0))),
        (r"ERROR: AddressSanitizer: ([\w-]+)", lambda m: ("asan-" + m.group(1), m.group(0))),
        (r"runtime error: (.*)", lambda m: ("ubsan", m.group(1))),
        (r"ERROR: libFuzzer: timeout after (\d+) seconds", lambda m: ("timeout", m.group(0))),
        (r"ERROR: libFuzzer: out-of-memory \(malloc\((\d+)\)\)",
         lambda m: ("malloc-limit", f"malloc({m.group(1)})")),
        (r"ERROR: libFuzzer: out-of-memory \(used: (\d+)Mb", lambda m: ("rss-limit", m.group(0))),
        (r"^fuzz: the input used more CPU time", lambda m: ("hang", m.group(0))),
        (r"^fuzz: (.*)", lambda m: ("rule", m.group(1))),
        (r"ERROR: libFuzzer: deadly signal", lambda m: ("deadly-signal", m.group(0))),
        (r"ERROR: libFuzzer: (.*)", lambda m: ("libfuzzer", m.group(1))),
    ]
    first = None
    for pattern, make in patterns:
        m = re.search(pattern, log, re.M)
        if m and (first is None or m.start() < first[0]):
            first = (m.start(), make(m))
    return first[1] if first else None


def frames(log, start):
    """The frames of the first stack after offset start: (name or None, file, module+offset)."""
    out, seen = [], False
    for line in log[start:].splitlines():
        m = FRAME.match(line)
        if not m:
            if seen:
                break
            continue
        seen = True
        name, where, module, offset = m.group(2), m.group(3), m.group(4), m.group(5)
        out.append((name, where, f"{os.path.basename(module)}+{offset}" if module else None))
    return out


def signature(kind, log):
    detail_at = 0
    for key in ("ERROR: AddressSanitizer", "runtime error", "ERROR: libFuzzer", "fuzz: "):
        k = log.find(key)
        if k >= 0:
            detail_at = k
            break
    stack = frames(log, detail_at)
    named = [f for f in stack if f[0] and not SKIP.match(f[0])]
    top = [f[0] for f in named[:3]]
    if kind in ("timeout", "hang"):
        # A hang is interrupted anywhere in its loop: use the route into it instead, the five
        # named frames just above the innermost linfold frame (the library call and below).
        first_lf = next((k for k, f in enumerate(named) if f[1] and "/src/" in f[1]), len(named))
        top = [f[0] for f in named[:first_lf][-5:]]
    # The innermost linfold frame: "lf__read_string_attr src/h5io.c:145".
    sites = [f"{f[0]} src/" + ":".join(f[1].split("/src/")[-1].split(":")[:2])
             for f in named if f[1] and "/src/" in f[1]]
    return kind + " | " + " < ".join(top or ["?"]), sites[:1], stack


def run(target, path, timeout):
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OPENBLAS_NUM_THREADS="1")
    env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":detect_leaks=0:allocator_may_return_null=1"
    env.setdefault("LF_FUZZ_CPU_LIMIT", str(timeout))
    env["UBSAN_OPTIONS"] = env.get("UBSAN_OPTIONS", "") + ":halt_on_error=1:print_stacktrace=1"
    # No -detect_leaks=0 flag: it removes libFuzzer's malloc hooks, and with them the malloc
    # limit. Leak checking is off in ASan (ASAN_OPTIONS) instead.
    # The hang criterion is the targets' CPU time limit (LF_FUZZ_CPU_LIMIT = --timeout); the
    # wall-clock -timeout is a generous backstop, as in replay.sh.
    cmd = [target, f"-timeout={timeout * 12}", "-rss_limit_mb=2048", "-malloc_limit_mb=256", path]
    try:
        p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout * 24 + 60)
        return p.returncode, p.stdout.decode("utf-8", "replace")
    except subprocess.TimeoutExpired as e:
        return -1, (e.stdout or b"").decode("utf-8", "replace") + "\ntriage: killed\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", required=True, help="the fuzz target binary")
    ap.add_argument("--out", required=True, help="directory for the unique findings")
    ap.add_argument("--timeout", type=int, default=10,
                    help="CPU seconds per input before it counts as a hang (LF_FUZZ_CPU_LIMIT)")
    ap.add_argument("--rerun", action="store_true", help="rerun inputs whose report is kept")
    ap.add_argument("inputs", nargs="+", help="artifacts or directories of artifacts")
    args = ap.parse_args()
    paths = []
    for p in args.inputs:
        if os.path.isdir(p):
            paths += sorted(os.path.join(p, f) for f in os.listdir(p)
                            if os.path.isfile(os.path.join(p, f)) and f != "README.txt")  # AFL++'s
        else:
            paths.append(p)
    groups, fixed = {}, []
    logs = os.path.join(args.out, "logs")
    os.makedirs(logs, exist_ok=True)
    for k, path in enumerate(paths):
        # Each input's report is kept in OUT/logs and reused: regrouping needs no rerun.
        cached = os.path.join(logs, os.path.basename(path) + ".log")
        if os.path.exists(cached) and not args.rerun:
            status, log = 0, open(cached, encoding="utf-8").read()
        else:
            status, log = run(args.target, path, args.timeout)
            with open(cached, "w", encoding="utf-8") as f:
                f.write(log)
        c = classify(log)
        if c is None:
            fixed.append(path)
            print(f"[{k + 1}/{len(paths)}] no report (exit {status}): {path}", file=sys.stderr)
            continue
        sig, sites, stack = signature(c[0], log)
        g = groups.setdefault(sig, {"kind": c[0], "detail": c[1], "inputs": [], "sites": set(),
                                    "best": None})
        g["inputs"].append(path)
        g["sites"].update(sites)
        size = os.path.getsize(path)
        if g["best"] is None or size < g["best"][1]:
            g["best"] = (path, size, log)
        print(f"[{k + 1}/{len(paths)}] {sig}: {path}", file=sys.stderr)

    os.makedirs(args.out, exist_ok=True)
    rows = ["id\tkind\tsignature\tinputs\tsmallest_bytes\tlinfold_call_sites\tdetail"]
    for old in os.listdir(args.out):
        if re.match(r"^\d\d-", old):
            shutil.rmtree(os.path.join(args.out, old))
    for n, (sig, g) in enumerate(sorted(groups.items(), key=lambda kv: -len(kv[1]["inputs"]))):
        d = os.path.join(args.out, f"{n + 1:02d}-{g['kind']}")
        os.makedirs(d)
        path, size, log = g["best"]
        shutil.copy(path, os.path.join(d, "reproducer"))
        with open(path, "rb") as f:
            sha = hashlib.sha1(f.read()).hexdigest()
        with open(os.path.join(d, "report.txt"), "w") as f:
            f.write(f"signature: {sig}\nreproducer: {os.path.basename(path)} ({size} bytes, "
                    f"sha1 {sha})\ninputs with this signature: {len(g['inputs'])}\n"
                    f"linfold call sites: {', '.join(sorted(g['sites'])) or '-'}\n"
                    f"command: LF_FUZZ_CPU_LIMIT={args.timeout} {args.target} "
                    f"-timeout={args.timeout * 12} -rss_limit_mb=2048 -malloc_limit_mb=256 "
                    f"reproducer\n\n{log}")
        rows.append(f"{n + 1:02d}\t{g['kind']}\t{sig}\t{len(g['inputs'])}\t{size}\t"
                    f"{', '.join(sorted(g['sites'])) or '-'}\t{g['detail'][:160]}")
    with open(os.path.join(args.out, "summary.tsv"), "w") as f:
        f.write("\n".join(rows) + "\n")
    print("\n".join(rows))
    print(f"{len(paths)} inputs, {len(groups)} unique, {len(fixed)} without a report")


if __name__ == "__main__":
    main()
