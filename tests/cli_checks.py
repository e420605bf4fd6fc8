"""What the end-to-end command-line tests share: running linfold (under mpiexec for more than
one rank), recording checks, and refusing crash reports in any run's stderr.

    import cli_checks as cc
    cc.setup(linfold, mpiexec, timeout=120)
    r = cc.linfold(["run", "p.yaml"], cwd, ranks=2)
    cc.check(r.status == 0, "runs", r)
    sys.exit(cc.finish("pipeline_cli"))
"""
import subprocess

CRASH_WORDS = ("Segmentation fault", "exited on signal", "core dumped", "Aborted",
               "AddressSanitizer", "HDF5-DIAG", "Traceback")

_cfg = {"linfold": None, "mpiexec": None, "timeout": 120}
checks = 0
failures = []


def setup(linfold_binary, mpiexec, timeout=120):
    _cfg.update(linfold=linfold_binary, mpiexec=mpiexec, timeout=timeout)


class Run:
    """A finished command: cmd, status, out, err."""

    def __init__(self, cmd, cwd):
        self.cmd = cmd
        p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True,
                           timeout=_cfg["timeout"], errors="replace")
        self.status, self.out, self.err = p.returncode, p.stdout, p.stderr


def check(ok, what, run=None):
    """Records one check; a failure keeps the command and its output for the report."""
    global checks
    checks += 1
    if not ok:
        detail = ""
        if run is not None:
            detail = "\n  $ %s\n  exit %s\n  stdout:\n%s\n  stderr:\n%s" % (
                " ".join(run.cmd), run.status, run.out[-2000:], run.err[-4000:])
        failures.append(what + detail)
        print("FAIL: " + what + detail, flush=True)


def linfold(args, cwd, ranks=1):
    """Runs linfold with args in cwd (mpiexec -n ranks when ranks > 1); no crash report allowed."""
    lf, mpiexec = _cfg["linfold"], _cfg["mpiexec"]
    cmd = [lf] + args if ranks == 1 else [mpiexec, "-n", str(ranks), lf] + args
    r = Run(cmd, cwd)
    for w in CRASH_WORDS:
        check(w not in r.err, "no crash report (%s) from %s" % (w, " ".join(args)), r)
    return r


def finish(name):
    """Prints the tally and returns the exit status."""
    print("%s: %d checks, %d failed" % (name, checks, len(failures)))
    return 1 if failures else 0
