#!/usr/bin/python3
"""End-to-end faults of the linfold command line that need processes, signals or a mount.

    cli_faults.py GROUP LINFOLD MPIEXEC SOURCE_DIR

GROUP is one of
  full_disk   outputs on a small tmpfs (calibrate, compress, predict; 1 and 2 ranks; several
              sizes, so the disk fills at different points; also out of inodes, an existing
              output kept, a read-only directory). Needs root and mount(2): without them the
              group prints SKIP and exits 77 (CTest's SKIP_RETURN_CODE).
  signals     SIGTERM to both ranks of a 2-rank predict, to one rank only, SIGINT (and SIGUSR1)
              to a singleton, SIGHUP to one of 2 ranks; and what mpiexec itself does with SIGTERM
              (printed, not asserted: that is Open MPI's behaviour, not linfold's).
  writers     4 `linfold compress` started together on the same --out.
  truncation  the data file truncated to half while calibrate reads it (1 and 2 ranks).

Every failed run must give its exit status, exactly one error line (see ERROR_LINE) between the
log header and the closing line, no output, no `OUT.tmp-*` temporary, and no crash report.
Runs under /usr/bin/python3 (Debian's, which has h5py and numpy). Each group takes well under a
minute on 2 cores; the tests are deterministic: signals are sent only once the output's temporary
exists (so the ranks are inside the pass), truncation only once a progress line shows the pass
is under way.
"""
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np

GROUP, LINFOLD, MPIEXEC, SRC = sys.argv[1:5]
MODEL = os.path.join(SRC, "tests", "data", "digits", "model.h5")
DATA = os.path.join(SRC, "tests", "data", "digits", "data.h5")
SKIP = 77
# No run here needs more than a few seconds; a hang is killed after this many and fails.
TIMEOUT = 25

ERROR_LINE = re.compile(r"^linfold: (\[rank (\d+)/(\d+)\] )?(error: |interrupted by SIG)")
CRASH_WORDS = ("Segmentation fault", "exited on signal", "Signal: ", "core dumped", "Aborted",
               "AddressSanitizer", "HDF5-DIAG", "Traceback")

checks = 0
failures = []


def check(ok, what, run=None):
    """Records one check; a failure keeps the command and its stderr for the report."""
    global checks
    checks += 1
    if not ok:
        detail = ""
        if run is not None:
            detail = "\n  $ %s\n  exit status %s\n  stderr:\n%s" % (
                " ".join(run.cmd), run.status, indent(run.err))
        failures.append(what + detail)
        print("FAIL: " + what + detail, flush=True)


def indent(text):
    return "".join("    " + line + "\n" for line in text.splitlines())


class Run:
    def __init__(self, cmd, status, out, err):
        self.cmd, self.status, self.out, self.err = cmd, status, out, err


def command(np_, args):
    if np_ == 1:
        return [LINFOLD] + args
    return [MPIEXEC, "-n", str(np_), LINFOLD] + args


def start(np_, args):
    """Starts linfold in a session of its own (so that a hang can be killed whole)."""
    cmd = command(np_, args)
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    p.lf_cmd, p.lf_t0 = cmd, time.monotonic()
    return p


def kill_run(p, ranks=None):
    """Kills a started run: the ranks (by PID: Open MPI may give them process groups of their
    own), then mpiexec's process group."""
    for pid in (ranks or linfold_children(p.pid)).values():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def finish(p):
    """Waits for a started run; one that hangs is killed after TIMEOUT seconds (mpiexec's process
    group and the ranks it started, by PID) and reported with status 124, like timeout(1)."""
    try:
        out, err = p.communicate(timeout=max(0.1, TIMEOUT - (time.monotonic() - p.lf_t0)))
        status = p.returncode
    except subprocess.TimeoutExpired:
        kill_run(p)
        out, err = p.communicate()
        status = 124
        err += "\n[killed by the test after %d s]\n" % TIMEOUT
    print("  %.1f s, status %s: %s" % (time.monotonic() - p.lf_t0, status, " ".join(p.lf_cmd[:5])),
          flush=True)
    return Run(p.lf_cmd, status, out, err)


def run(np_, args):
    return finish(start(np_, args))


def run_parallel(jobs, before=None, parallel=4):
    """Runs jobs [(np, args), ...] at most `parallel` at a time; before(k) runs just before job k
    starts (to mount its file system). Returns the Runs in order."""
    results = [None] * len(jobs)
    running = {}
    k = 0
    try:
        while k < len(jobs) or running:
            while k < len(jobs) and len(running) < parallel:
                if before:
                    before(k)
                running[k] = start(*jobs[k])
                k += 1
            done = [j for j, p in running.items() if p.poll() is not None
                    or time.monotonic() - p.lf_t0 > TIMEOUT]
            for j in done:
                results[j] = finish(running.pop(j))
            if not done:
                time.sleep(0.01)
    finally:
        for p in running.values():
            kill_run(p)
    return results


def linfold_lines(text):
    return [line for line in text.splitlines() if line.startswith("linfold: ")]


OTHER_RANK = re.compile(r"^linfold: \[(rank )?([1-9]\d*)/\d+\] ")


def rank0_lines(text):
    """linfold's lines from rank 0. Under mpiexec each rank's lines arrive in order, but lines of
    different ranks may interleave either way (rank 1's error after rank 0's closing line)."""
    return [line for line in linfold_lines(text) if not OTHER_RANK.match(line)]


def error_lines(text):
    return [line for line in text.splitlines() if ERROR_LINE.match(line)]


def check_failed_run(r, what, cmd_name, status, np_):
    """Exit status, one error line between the header and the closing line, no crash."""
    check(r.status == status, "%s: exit status %s, expected %d" % (what, r.status, status), r)
    errors = error_lines(r.err)
    check(len(errors) == 1, "%s: %d error lines, expected exactly one" % (what, len(errors)), r)
    lines = rank0_lines(r.err)
    header = "linfold: version "
    ranks = "| %d rank%s x " % (np_, "" if np_ == 1 else "s")
    check(bool(lines) and lines[0].startswith(header) and (" | %s " % cmd_name) in lines[0]
          and ranks in lines[0], "%s: the first line is not the log header" % what, r)
    closing = re.compile(r"^linfold: %s stopped after [0-9.]+ s \(exit status %d\)$"
                         % (cmd_name, status))
    check(bool(lines) and closing.match(lines[-1]) is not None,
          "%s: the last line is not '%s stopped after X s (exit status %d)'"
          % (what, cmd_name, status), r)
    for word in CRASH_WORDS:
        check(word not in r.err and word not in r.out, "%s: output mentions '%s'" % (what, word),
              r)
    return errors[0] if len(errors) == 1 else ""


def leftovers(directory, name):
    """The output itself and its temporaries, if any are in directory."""
    found = glob.glob(os.path.join(glob.escape(directory), glob.escape(name) + ".tmp-*"))
    return sorted(found)


def check_nothing_written(directory, name, what, r, existing=None):
    path = os.path.join(directory, name)
    if existing is None:
        check(not os.path.exists(path), "%s: %s exists after a failed run" % (what, path), r)
    else:
        with open(path, "rb") as f:
            check(f.read() == existing, "%s: the existing %s was changed" % (what, path), r)
    temps = leftovers(directory, name)
    check(not temps, "%s: temporaries left: %s" % (what, temps), r)


def big_data(path, rows=400000):
    """rows x 64 float32 in [0, 16) (the digits' pixel range), contiguous: ~100 MB."""
    rng = np.random.default_rng(20240601)
    with h5py.File(path, "w") as f:
        d = f.create_dataset("x", shape=(rows, 64), dtype="<f4")
        step = 50000
        for r0 in range(0, rows, step):
            n = min(step, rows - r0)
            d[r0:r0 + n] = rng.uniform(0.0, 16.0, size=(n, 64)).astype(np.float32)


def wait_for(predicate, proc, limit, what):
    """Polls predicate every 5 ms until it holds; False when proc ended first or after limit s."""
    t0 = time.monotonic()
    while not predicate():
        if proc.poll() is not None or time.monotonic() - t0 > limit:
            print("note: %s did not happen (process status %s)" % (what, proc.poll()))
            return False
        time.sleep(0.005)
    return True


def stderr_has(path, text):
    try:
        with open(path) as f:
            return text in f.read()
    except OSError:
        return False


def linfold_children(pid):
    """The linfold processes mpiexec started, as {rank: pid} (rank from the environment Open MPI
    gives each process)."""
    ranks = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                text = f.read()
            comm = text[text.index("(") + 1:text.rindex(")")]
            ppid = int(text[text.rindex(")") + 2:].split()[1])
            if ppid != pid or comm != "linfold":
                continue
            child = int(stat.split("/")[2])
            with open("/proc/%d/environ" % child, "rb") as f:
                env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
            ranks[int(env[b"OMPI_COMM_WORLD_RANK"])] = child
        except (OSError, ValueError, KeyError, IndexError):
            continue
    return ranks


# ------------------------------------------------------------------------------------ full disk

def mount_tmpfs(directory, options):
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", directory],
                          capture_output=True, text=True)


def umount(directory):
    subprocess.run(["umount", directory], capture_output=True)
    if os.path.ismount(directory):
        subprocess.run(["umount", "-l", directory], capture_output=True)


def in_private_namespace():
    """Re-runs this script in a private mount namespace (unshare), so that a tmpfs cannot outlive
    the test even if it is killed; the script unmounts explicitly as well. Returns only when the
    script should go on in this process (already inside, or unshare unavailable)."""
    if os.environ.get("LF_FAULTS_NAMESPACE") == "1" or shutil.which("unshare") is None:
        return
    env = dict(os.environ, LF_FAULTS_NAMESPACE="1")
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"],
                           capture_output=True)
    if probe.returncode != 0:
        return
    rc = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable]
                        + sys.argv, env=env).returncode
    sys.exit(rc)


def full_disk(tmp):
    if os.geteuid() != 0:
        print("SKIP: the full-disk tests mount a tmpfs and need root")
        sys.exit(SKIP)
    in_private_namespace()
    probe_dir = os.path.join(tmp, "probe")
    os.mkdir(probe_dir)
    probe = mount_tmpfs(probe_dir, "size=64k")
    if probe.returncode != 0:
        print("SKIP: cannot mount a tmpfs here (%s)" % " ".join(probe.stderr.split()))
        sys.exit(SKIP)
    umount(probe_dir)

    x = DATA + ":/train/x"

    def args(name, out):
        # "compress-dist": compress through the distributed fold, which writes the model
        # collectively (every rank its blocks) instead of from rank 0.
        extra = ["--merge", "distributed", "--dist-block", "16"] if name == "compress-dist" else []
        return [name.split("-")[0], "--model", MODEL, "--data", x, "--out", out] + extra

    # (what, ranks, command, tmpfs options, an existing output's bytes or None, message words).
    # Output sizes on the digits model: statistics 36,032 bytes; model 537,600 bytes;
    # predictions 45,168 bytes, for which predict reserves 108,656 (data + 64 KiB) up front: the
    # sizes make the disk fill at different points of each writer.
    nospace = "No space left on device"
    sizes = {"calibrate": ["4k", "16k", "32k"], "compress": ["4k", "256k", "512k"],
             "compress-dist": ["4k", "256k", "512k"], "predict": ["4k", "104k"]}
    cases = []
    for np_ in (1, 2):
        for name, options in sizes.items():
            for size in options:
                cases.append(("%s on %d rank(s), %s tmpfs" % (name, np_, size), np_, name,
                              "size=" + size, None, [nospace]))
    # No inode left for the temporary: mkstemp fails before any output exists.
    for np_, name in ((1, "compress"), (2, "calibrate"), (2, "compress"), (1, "predict"),
                      (2, "predict")):
        cases.append(("%s on %d rank(s), no free inode" % (name, np_), np_, name,
                      "size=1m,nr_inodes=1", None,
                      ["cannot create a temporary file in", nospace]))
    # An existing output survives a run that fails on a full disk.
    existing = b"an earlier result\n" * 200
    for np_, name in ((1, "compress"), (2, "predict"), (2, "calibrate"), (2, "compress-dist")):
        cases.append(("%s on %d rank(s), existing output" % (name, np_), np_, name, "size=24k",
                      existing, [nospace]))

    dirs = [os.path.join(tmp, "mnt%d" % k) for k in range(len(cases))]
    mounted = [False] * len(cases)

    def before(k):
        os.mkdir(dirs[k])
        mounted[k] = mount_tmpfs(dirs[k], cases[k][3]).returncode == 0
        check(mounted[k], cases[k][0] + ": mount")
        if cases[k][4] is not None:
            with open(os.path.join(dirs[k], "OUT.h5"), "wb") as f:
                f.write(cases[k][4])

    def check_and_umount(k):
        what, np_, name, _, old, words = cases[k]
        r = results[k] if results and results[k] else None
        if r is not None and mounted[k]:
            line = check_failed_run(r, what, name.split("-")[0], 1, np_)
            out = os.path.join(dirs[k], "OUT.h5")
            check(out in line and all(w in line for w in words),
                  "%s: the error line does not name %s and %s" % (what, out, words), r)
            check_nothing_written(dirs[k], "OUT.h5", what, r, existing=old)
            check(sorted(os.listdir(dirs[k])) == ([] if old is None else ["OUT.h5"]),
                  "%s: files left: %s" % (what, os.listdir(dirs[k])), r)
        umount(dirs[k])
        check(not os.path.ismount(dirs[k]), what + ": still mounted")

    results = []
    jobs = [(c[1], args(c[2], os.path.join(dirs[k], "OUT.h5"))) for k, c in enumerate(cases)]
    try:
        results = run_parallel(jobs, before=before)
        for k in range(len(cases)):
            check_and_umount(k)
    finally:
        for d in dirs:
            if os.path.isdir(d) and os.path.ismount(d):
                umount(d)

    # A read-only directory is refused before any work: the header, the not-writable line and
    # the closing line, and no pass over the data.
    mnt = os.path.join(tmp, "ro")
    os.mkdir(mnt)
    what = "compress into a read-only directory"
    check(mount_tmpfs(mnt, "ro,size=64k").returncode == 0, what + ": mount")
    try:
        out = os.path.join(mnt, "OUT.h5")
        r = run(1, args("compress", out))
        check(r.status == 1, "%s: exit status %s, expected 1" % (what, r.status), r)
        lines = [l for l in r.err.splitlines() if l.startswith("linfold: ")]
        check(len(lines) == 3 and lines[0].startswith("linfold: version ") and
              lines[1] == "linfold: error: --out %s: directory %s is not writable (LF_ERR_IO)"
              % (out, mnt) and lines[2].startswith("linfold: compress stopped after ") and
              "rows in" not in r.err,
              "%s: expected the header, the not-writable line and the closing line" % what, r)
    finally:
        umount(mnt)
    check(not os.path.ismount(mnt), what + ": still mounted")


# ------------------------------------------------------------------------------------ signals

SIGNALLED = re.compile(r"^linfold: (\[rank (\d+)/2\] )?interrupted by (SIG[A-Z0-9]+) during "
                       r"predict at batch (\d+) of (\d+); no output was written "
                       r"\(LF_ERR_INTERRUPTED\)$")


def signal_run(tmp, data, np_, targets, sig, what):
    """Starts predict on np_ ranks, waits for the header and the output's temporary (the ranks
    are then in the pass), sends sig to the ranks in targets ("all", a rank number, or "mpiexec")
    and returns the Run and the rank that must report."""
    work = os.path.join(tmp, "sig")
    shutil.rmtree(work, ignore_errors=True)
    os.mkdir(work)
    out = os.path.join(work, "pred.h5")
    errp = os.path.join(work, "stderr")
    args = ["predict", "--model", MODEL, "--data", data + ":/x", "--out", out]
    cmd = command(np_, args)
    ranks = {}
    status, waited = 124, None
    with open(errp, "w") as err, open(os.devnull, "w") as devnull:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=devnull, stderr=err,
                                start_new_session=True)
        try:
            started = wait_for(lambda: stderr_has(errp, "linfold: version ")
                               and leftovers(work, "pred.h5"), proc, 30,
                               "%s: the header and the temporary" % what)
            check(started, "%s: predict never got into its pass" % what)
            ranks = {0: proc.pid} if np_ == 1 else linfold_children(proc.pid)
            check(len(ranks) == np_, "%s: found ranks %s" % (what, ranks))
            if started and len(ranks) == np_:
                if targets == "mpiexec":
                    os.kill(proc.pid, sig)
                elif targets == "all":
                    for pid in ranks.values():
                        os.kill(pid, sig)
                else:
                    os.kill(ranks[targets], sig)
            t_signal = time.monotonic()
            status = proc.wait(timeout=TIMEOUT)
            waited = time.monotonic() - t_signal
        except subprocess.TimeoutExpired:
            check(False, "%s: still running %d s after the signal" % (what, TIMEOUT))
        finally:
            if proc.poll() is None:
                kill_run(proc, ranks)
                proc.wait()
    with open(errp) as f:
        text = f.read()
    r = Run(cmd, status, "", text)
    r.waited = waited
    return r, work


def signals(tmp):
    data = os.path.join(tmp, "big.h5")
    big_data(data)
    cases = [
        # (ranks, who gets the signal, signal, exit status, the rank that reports)
        (2, "all", signal.SIGTERM, 143, 0),
        (2, 1, signal.SIGTERM, 143, 1),
        (2, 0, signal.SIGTERM, 143, 0),
        (1, 0, signal.SIGINT, 130, None),
        (1, 0, signal.SIGUSR1, 138, None),
        (2, 1, signal.SIGHUP, 129, 1),
    ]
    for np_, target, sig, status, reporter in cases:
        name = signal.Signals(sig).name
        what = "%s to %s of %d rank%s" % (
            name, "every rank" if target == "all" else "rank %s" % target, np_,
            "" if np_ == 1 else "s")
        r, work = signal_run(tmp, data, np_, target, sig, what)
        line = check_failed_run(r, what, "predict", status, np_)
        m = SIGNALLED.match(line)
        check(m is not None, "%s: no 'interrupted by %s during predict at batch K of N; no output "
              "was written' line" % (what, name), r)
        if m:
            check(m.group(3) == name, "%s: the line names %s" % (what, m.group(3)), r)
            check((m.group(2) is None) == (np_ == 1), "%s: rank prefix" % what, r)
            if reporter is not None and m.group(2) is not None:
                check(int(m.group(2)) == reporter, "%s: reported by rank %s, expected %d"
                      % (what, m.group(2), reporter), r)
            check(int(m.group(4)) < int(m.group(5)), "%s: stopped at the last batch" % what, r)
        matching = [l for l in r.err.splitlines() if "interrupted by %s during predict" % name in l]
        check(len(matching) == 1, "%s: %d interruption lines" % (what, len(matching)), r)
        check_nothing_written(work, "pred.h5", what, r)
        check(os.listdir(work) == ["stderr"], "%s: files left: %s" % (what, os.listdir(work)), r)

    # mpiexec itself: recorded for the report, not asserted (Open MPI's behaviour).
    r, work = signal_run(tmp, data, 2, "mpiexec", signal.SIGTERM, "SIGTERM to mpiexec")
    print("observed: SIGTERM to mpiexec -n 2: mpiexec exited %s s later with status %s; linfold "
          "lines: %s; other lines: %s; files left: %s"
          % (None if r.waited is None else round(r.waited, 2), r.status, linfold_lines(r.err),
             [l for l in r.err.splitlines() if l and not l.startswith("linfold: ")],
             sorted(os.listdir(work))))


# ------------------------------------------------------------------------------------ writers

def writers(tmp):
    thresholds = ["1", "0.9", "0.8", "0.7"]
    x = DATA + ":/train/x"

    def args(t, out):
        return ["compress", "--quiet", "--threshold", t, "--model", MODEL, "--data", x, "--out",
                out]

    # The four models the writers make, each written alone first (side by side: different files).
    refs = {}
    procs = [(t, subprocess.Popen(command(1, args(t, os.path.join(tmp, "ref-%s.h5" % t))),
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)) for t in thresholds]
    for t, p in procs:
        out, err = p.communicate(timeout=TIMEOUT)
        check(p.returncode == 0, "reference at threshold %s: status %s: %s" % (t, p.returncode,
                                                                               err.decode()))
        with open(os.path.join(tmp, "ref-%s.h5" % t), "rb") as f:
            refs[t] = f.read()
    check(len(set(refs.values())) == len(thresholds), "the references are not all different")

    work = os.path.join(tmp, "w")
    os.mkdir(work)
    out = os.path.join(work, "OUT.h5")
    for round_ in range(3):
        procs = [subprocess.Popen(command(1, args(t, out)), stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for t in thresholds]
        for t, p in zip(thresholds, procs):
            o, e = p.communicate(timeout=TIMEOUT)
            r = Run(p.args, p.returncode, o.decode(), e.decode())
            check(r.status == 0 and r.err == "", "round %d, writer at %s: status %s"
                  % (round_, t, r.status), r)
        with open(out, "rb") as f:
            final = f.read()
        winners = [t for t in thresholds if refs[t] == final]
        check(len(winners) == 1, "round %d: the final file is none of the four models "
              "(%d bytes)" % (round_, len(final)))
        r = run(1, ["inspect", out])
        check(r.status == 0 and "6 layers, 64 inputs, 10 outputs" in r.out,
              "round %d: inspect on the final file" % round_, r)
        check(sorted(os.listdir(work)) == ["OUT.h5"], "round %d: files left: %s"
              % (round_, os.listdir(work)))
        mode = os.stat(out).st_mode & 0o777
        umask = os.umask(0)
        os.umask(umask)
        check(mode == 0o666 & ~umask, "round %d: mode %o, expected %o from the umask"
              % (round_, mode, 0o666 & ~umask))


# ------------------------------------------------------------------------------------ truncation

def truncation(tmp):
    source = os.path.join(tmp, "big.h5")
    big_data(source)
    size = os.path.getsize(source)
    for np_, extra in ((1, []), (2, ["--output-sums"])):
        what = "calibrate on %d rank%s, data truncated to half" % (np_, "" if np_ == 1 else "s")
        work = os.path.join(tmp, "t%d" % np_)
        os.mkdir(work)
        data = os.path.join(work, "copy.h5")
        shutil.copyfile(source, data)
        out = os.path.join(work, "STATS.h5")
        errp = os.path.join(tmp, "stderr-%d" % np_)
        cmd = command(np_, ["calibrate", "--progress"] + extra +
                      ["--model", MODEL, "--data", data + ":/x", "--out", out])
        status = 124
        with open(errp, "w") as err, open(os.devnull, "w") as devnull:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=devnull, stderr=err,
                                    start_new_session=True)
            try:
                # A progress line says the pass is under way (the dataset is open and whole).
                ok = wait_for(lambda: stderr_has(errp, "linfold: calibrate: ")
                              and stderr_has(errp, "/400000 rows ("), proc, 30,
                              what + ": a progress line")
                check(ok, "%s: calibrate never reported progress" % what)
                os.truncate(data, size // 2)
                status = proc.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                check(False, "%s: still running %d s after the truncation" % (what, TIMEOUT))
            finally:
                if proc.poll() is None:
                    kill_run(proc, {0: proc.pid} if np_ == 1 else None)
                    proc.wait()
        with open(errp) as f:
            r = Run(cmd, status, "", f.read())
        line = check_failed_run(r, what, "calibrate", 1, np_)
        want = "%s: the file shrank from %d to %d bytes while it was being read" % (
            data, size, size // 2)
        check(want in line, "%s: the error line lacks '%s'" % (what, want), r)
        check_nothing_written(work, "STATS.h5", what, r)


def read_bytes(pid):
    """Bytes process pid has read (rchar), or -1 once it is gone."""
    try:
        with open("/proc/%d/io" % pid) as f:
            return int(next(l for l in f if l.startswith("rchar")).split()[1])
    except (OSError, StopIteration, ValueError):
        return -1


def model_reader_faults(tmp):
    """The model's reader process streams it strip by strip: a model truncated, or a reader
    killed from outside, while the values are on their way. linfold is stopped (SIGSTOP) once
    its reader has read 8 MB, so the reader blocks on the full pipe mid-model; then the fault,
    then SIGCONT. Truncation must be an error naming the file (HDF5 would read zeros past the
    end), a SIGKILL must not be blamed on the file, and no prediction file may appear."""
    sys.path.insert(0, os.path.join(SRC, "tools"))
    import linfold_format
    rng = np.random.default_rng(7)
    widths = [1024, 4096, 4096, 10]
    layers = [{"weight": rng.standard_normal((widths[i + 1], widths[i])).astype(np.float32),
               "bias": np.zeros(widths[i + 1], np.float32),
               "activation": "relu" if i < 2 else "identity"} for i in range(3)]
    source = os.path.join(tmp, "wide-model.h5")
    linfold_format.save_model(source, layers)
    data = os.path.join(tmp, "rows.h5")
    with h5py.File(data, "w") as f:
        f["x"] = rng.standard_normal((20, 1024)).astype(np.float32)
    for fault, want in (("truncate", "the file shrank from"), ("kill", "was killed from outside")):
        what = "model reader, %s mid-stream" % fault
        work = os.path.join(tmp, "m-" + fault)
        os.mkdir(work)
        model = os.path.join(work, "model.h5")
        shutil.copyfile(source, model)
        out = os.path.join(work, "PRED.h5")
        cmd = command(1, ["predict", "--model", model, "--data", data + ":/x", "--out", out])
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        reader, t0 = None, time.monotonic()
        while reader is None and time.monotonic() - t0 < TIMEOUT and proc.poll() is None:
            try:
                with open("/proc/%d/task/%d/children" % (proc.pid, proc.pid)) as f:
                    kids = [int(k) for k in f.read().split()]
            except OSError:
                kids = []
            for k in kids:
                if read_bytes(k) >= 8 << 20:
                    reader = k
            time.sleep(0.001)
        check(reader is not None, "%s: the reader process was seen reading" % what)
        if reader is not None:
            os.kill(proc.pid, signal.SIGSTOP)
            time.sleep(0.5)  # the reader fills the pipe and waits
            if fault == "truncate":
                os.truncate(model, os.path.getsize(model) // 2)
            else:
                os.kill(reader, signal.SIGKILL)
            os.kill(proc.pid, signal.SIGCONT)
        try:
            o, e = proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            o, e = proc.communicate()
            check(False, "%s: still running %d s later" % (what, TIMEOUT))
        r = Run(cmd, proc.returncode, o, e)
        check(proc.returncode == 1 and want in e and "LF_ERR_IO" in e and model in e,
              "%s: exit 1 with '%s' naming the model" % (what, want), r)
        check(fault != "kill" or "corrupt" not in e, "%s: the file is not called corrupt" % what, r)
        check_nothing_written(work, "PRED.h5", what, r)


def main():
    groups = {"full_disk": full_disk, "signals": signals, "writers": writers,
              "truncation": truncation, "model_reader": model_reader_faults}
    if GROUP not in groups:
        sys.exit("unknown group %s (expected %s)" % (GROUP, ", ".join(groups)))
    tmp = tempfile.mkdtemp(prefix="linfold-faults-")
    t0 = time.monotonic()
    try:
        groups[GROUP](tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("%s: %d checks, %d failed, %.1f s" % (GROUP, checks, len(failures),
                                                 time.monotonic() - t0))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
