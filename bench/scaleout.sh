#!/usr/bin/env bash
# The first lines are read by bash AND by Python: bash runs the `exec` line (""exec"" is
# the word exec) and hands this very file to Debian's python3; Python sees a string.
"""exec" /usr/bin/python3 "$0" "$@"
"""
# scaleout.sh — server-bound benchmark (`make bench-scaleout`, issue 13 item 1).
#
# Each PostgreSQL server (a primary + 2 streaming replicas from tests/pg_cluster.sh) is capped
# by its own cgroup v1 CPU quota, a stand-in for three separate machines of a fixed size, so
# that the servers, not the proxy, are the bottleneck and reads can only scale out by being
# spread over the servers. The postmaster and every process it has forked are moved into the
# server's cgroup (backends forked later inherit it); every process of every server is checked
# to be inside its cap after the move and every 2 s during each pgbench run, and the run fails
# if one is not.
#
# Targets, interleaved within each round (rounds → client counts → targets):
#   direct                 pgbench straight to the primary
#   direct_gap             the same with SCALEOUT_GAP_US of client think time after each statement
#                          (pgbench \sleep): a control that shows what a server pays per statement
#                          when the next one arrives after a gap, as it does through any proxy
#   pgswitch_rr            pgswitch, load_balancing = "round_robin"        (reads on the 2 replicas)
#   pgswitch_rr_pr         the same with primary_reads = true              (reads on all 3 servers)
#   pgswitch_lc, _lc_pr    load_balancing = "least_connections", without / with primary_reads
#   pgswitch_adaptive, _adaptive_pr   load_balancing = "adaptive" (a build that refuses the
#                          config — `pgswitch --check` fails — reports "unsupported by this build")
#   pgswitch_tx_lc, _tx_lc_pr   least_connections in pool_mode = "transaction" with
#                          pool_size = SCALEOUT_POOL_SIZE, without / with primary_reads
#   pgbouncer              PgBouncer, pool_mode = session, the primary only
#   pgpool                 pgpool-II, streaming replication mode, session-level load balancing
#                          over the 3 servers
# Cluster start, pgbench -i, proxy configs, package installs, pgbench runs and process clean-up
# come from bench/run_bench.sh, imported as a module. Everything created here — cgroups,
# cluster, proxies — is removed at the end, also on errors, Ctrl-C and SIGTERM.
#
# Reports per (clients, target): TPS (median of rounds), × direct (median of per-round ratios),
# p50 / p99 latency (pgbench's sampled per-transaction log), the servers' CPU per transaction
# (all servers' cpuacct.usage over the run / transactions), and per server the CPU-throttled
# time (cpu.stat throttled_time) and the CPU used (cpuacct.usage) during the run.
# Results: bench/results/scaleout-<UTC timestamp>.{md,json} and bench/results/scaleout-latest.{md,json}.
#
# Environment (needs root: cgroup v1 cpu and cpuacct hierarchies under /sys/fs/cgroup):
#   SCALEOUT_CPU        CPUs per server (default 0.3: cfs_quota_us 30000 per cfs_period_us 100000)
#   SCALEOUT_ROUNDS     rounds (default 3)
#   SCALEOUT_DURATION   seconds per pgbench run (default 8)
#   SCALEOUT_CLIENTS    comma list of client counts (default 8,32; at most 150 each)
#   SCALEOUT_TARGETS    comma list of targets (default: all of the above; direct is always added)
#   SCALEOUT_MODE       pgbench -M: simple (default), extended or prepared
#   SCALEOUT_SCALE      pgbench -i scale (default 10)
#   SCALEOUT_GAP_US     think time of direct_gap in µs (default 100)
#   SCALEOUT_POOL_SIZE  pool_size of the transaction-mode variants (default 6)
#   SCALEOUT_WARMUP     seconds of warm-up per target, 8 clients (default 3; 0 = none)
#   PGSWITCH_BIN        pgswitch binary (default build/proxy/pgswitch)
#   PGSWITCH_WORKERS    proxy.workers for every pgswitch variant (default: pgswitch's own)
import datetime
import hashlib
import importlib.machinery
import importlib.util
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PROG = "scaleout.sh"


def die(msg):
    print(f"{PROG}: error: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def load_run_bench():
    """bench/run_bench.sh as a module. Its import-time settings come from BENCH_*/QUICK, which
    are not ours: they are hidden during the import (and a bad one cannot stop us)."""
    hidden = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("BENCH_") or k == "QUICK"}
    try:
        loader = importlib.machinery.SourceFileLoader("run_bench", os.path.join(HERE, "run_bench.sh"))
        spec = importlib.util.spec_from_loader("run_bench", loader)
        mod = importlib.util.module_from_spec(spec)
        loader.exec_module(mod)
    finally:
        os.environ.update(hidden)
    mod.die = die               # its helpers report errors under our name
    return mod


rb = load_run_bench()
log = rb.log

# ------------------------------------------------------------------ configuration
POOL_SIZE = None      # set below, after env_number is defined
PGSWITCH_VARIANTS = {   # target -> (load_balancing, primary_reads, transaction pool?)
    "pgswitch_rr": ("round_robin", False, False),
    "pgswitch_rr_pr": ("round_robin", True, False),
    "pgswitch_lc": ("least_connections", False, False),
    "pgswitch_lc_pr": ("least_connections", True, False),
    "pgswitch_adaptive": ("adaptive", False, False),
    "pgswitch_adaptive_pr": ("adaptive", True, False),
    "pgswitch_tx_lc": ("least_connections", False, True),
    "pgswitch_tx_lc_pr": ("least_connections", True, True),
}
DIRECT = ["direct", "direct_gap"]
TARGETS = DIRECT + list(PGSWITCH_VARIANTS) + ["pgbouncer", "pgpool"]
SERVERS = ["primary", "replica1", "replica2"]
CFS_PERIOD_US = 100000
MAX_CLIENTS_ALLOWED = 150     # max_connections = 200 per server, and pgswitch/pgpool hold 2 per client


def env_number(name, default, conv, lo, hi):
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        v = conv(raw)
    except ValueError:
        die(f"{name}={raw!r}: not a{'n integer' if conv is int else ' number'}")
    if not lo <= v <= hi:
        die(f"{name}={raw!r}: must be between {lo} and {hi}")
    return v


def env_list(name, default, allowed=None, conv=str, lo=None, hi=None):
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    out = []
    for x in (x.strip() for x in raw.split(",")):
        if not x:
            continue
        try:
            v = conv(x)
        except ValueError:
            die(f"{name}={raw!r}: {x!r} is not an integer")
        if allowed is not None and v not in allowed:
            die(f"{name}={raw!r}: unknown value {x!r}; allowed: {', '.join(allowed)}")
        if lo is not None and not lo <= v <= hi:
            die(f"{name}={raw!r}: {x!r} must be between {lo} and {hi}")
        if v not in out:
            out.append(v)
    if not out:
        die(f"{name}={raw!r}: empty list")
    return out


CPU = env_number("SCALEOUT_CPU", 0.3, float, 0.01, float(rb.NPROC))
GAP_US = env_number("SCALEOUT_GAP_US", 100, int, 1, 1000000)
POOL_SIZE = env_number("SCALEOUT_POOL_SIZE", 6, int, 1, 100)
LABEL = {"direct": "direct (primary)", "direct_gap": f"direct, {GAP_US} µs think time (control)",
         "pgbouncer": "PgBouncer (session, primary)", "pgpool": "pgpool-II (LB over 3)"}
for _t, (_lb, _pr, _tx) in PGSWITCH_VARIANTS.items():
    LABEL[_t] = (f"pgswitch {_lb}" + (" + primary_reads" if _pr else "")
                 + (f", transaction pool {POOL_SIZE}" if _tx else ""))
QUOTA_US = int(round(CPU * CFS_PERIOD_US))
ROUNDS = env_number("SCALEOUT_ROUNDS", 3, int, 1, 100)
DURATION = env_number("SCALEOUT_DURATION", 8, int, 2, 3600)   # ≥ 2: pgbench's progress lines
SCALE = env_number("SCALEOUT_SCALE", 10, int, 1, 1000)
WARMUP = env_number("SCALEOUT_WARMUP", 3, int, 0, 600)
CLIENTS = env_list("SCALEOUT_CLIENTS", [8, 32], conv=int, lo=1, hi=MAX_CLIENTS_ALLOWED)
MODE = os.environ.get("SCALEOUT_MODE", "").strip() or "simple"
if MODE not in ("simple", "extended", "prepared"):
    die(f"SCALEOUT_MODE={MODE!r}: must be simple, extended or prepared")
_chosen = env_list("SCALEOUT_TARGETS", TARGETS, allowed=TARGETS)
TARGET_NAMES = [t for t in TARGETS if t == "direct" or t in _chosen]   # ratios need direct
_workers = os.environ.get("PGSWITCH_WORKERS", "").strip()
if _workers and not _workers.isdigit():
    die(f"PGSWITCH_WORKERS={_workers!r}: must be a non-negative integer")

WL = "scaleout_select"
rb.WORKLOADS[WL] = (["-S", "-M", MODE], 1, CLIENTS)
WL_GAP = "scaleout_select_gap"     # pgbench's built-in select-only script plus a think time
rb.DIRECT_TARGETS.add("direct_gap")
rb.MAX_CLIENTS = max(CLIENTS)           # proxies' client limits, pgpool-II's children
rb.TMP = os.path.join(rb.RESULTS, "tmp", "scaleout")        # apart from `make bench`'s files
rb.CLUSTER_DIR = os.path.join(rb.TMP, "cluster")
GAP_SCRIPT = os.path.join(rb.TMP, "select_gap.sql")
rb.WORKLOADS[WL_GAP] = (["-f", GAP_SCRIPT, "-M", MODE], 1, CLIENTS)


def write_gap_script():
    with open(GAP_SCRIPT, "w") as f:
        f.write("\\set aid random(1, 100000 * :scale)\n"
                "SELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n"
                f"\\sleep {GAP_US} us\n")


def workload_of(target):
    return WL_GAP if target == "direct_gap" else WL


# ------------------------------------------------------------------ cgroup v1
def cgroup_mounts():
    """{controller: mount point} for the cgroup v1 cpu and cpuacct controllers."""
    found = {}
    with open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) < 4 or parts[2] != "cgroup":
                continue
            opts = parts[3].split(",")
            for c in ("cpu", "cpuacct"):
                if c in opts and c not in found:
                    found[c] = parts[1]
    return found


def proc_tree():
    """{pid: ppid} of every process now."""
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    s = f.read()
                out[int(d)] = int(s[s.rindex(")") + 2:].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    return out


def descendants(root, tree=None):
    tree = proc_tree() if tree is None else tree
    kids = {}
    for pid, ppid in tree.items():
        kids.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        if p in tree:
            out.append(p)
        todo.extend(kids.get(p, []))
    return out


def proc_cgroups(pid):
    """{controller: cgroup path} from /proc/PID/cgroup (v1 lines), or None when it has exited."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            text = f.read()
    except OSError:
        return None
    out = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for c in parts[1].split(","):
                if c:
                    out[c] = parts[2]
    return out


PF_EXITING = 0x4


def exiting(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return True
    fields = s[s.rindex(")") + 2:].split()
    return fields[0] in ("Z", "X", "x") or bool(int(fields[6]) & PF_EXITING)


def comm(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        return cmd[:80]
    except OSError:
        return "?"


class Caps:
    """One cgroup per server in each of the cpu and cpuacct hierarchies (one if co-mounted),
    /<hierarchy>/pgswitch-scaleout-<our pid>/<server>."""

    def __init__(self):
        m = cgroup_mounts()
        missing = [c for c in ("cpu", "cpuacct") if c not in m]
        if missing:
            die(f"no cgroup v1 {' and '.join(missing)} hierarchy mounted (see /proc/mounts); "
                "this benchmark needs cgroup v1 CPU quotas")
        self.mounts = m
        self.hier = sorted(set(m.values()))          # distinct mount points
        # one controller per distinct hierarchy (cpu and cpuacct may be co-mounted)
        self.controllers = list({m["cpu"]: "cpu", m["cpuacct"]: "cpuacct"}.values())
        self.group = f"pgswitch-scaleout-{os.getpid()}"
        self.rel = {s: f"/{self.group}/{s}" for s in SERVERS}
        self.created = []                             # directories, in creation order
        self.postmasters = {}

    def path(self, controller, server=None):
        base = os.path.join(self.mounts[controller], self.group)
        return os.path.join(base, server) if server else base

    @staticmethod
    def write(path, value):
        with open(path, "w") as f:
            f.write(str(value))

    @staticmethod
    def remove_group(base):
        """Moves every process of base's child cgroups (and base's own) to the hierarchy's root,
        then removes them; retries briefly while the kernel still counts an exiting task."""
        root = os.path.dirname(base)
        dirs = sorted((os.path.join(base, d) for d in os.listdir(base)
                       if os.path.isdir(os.path.join(base, d))), reverse=True) + [base]
        for d in dirs:
            deadline = time.time() + 10
            while True:
                try:
                    with open(os.path.join(d, "cgroup.procs")) as f:
                        pids = [p for p in f.read().split() if p]
                except OSError:
                    pids = []
                for p in pids:
                    try:
                        Caps.write(os.path.join(root, "cgroup.procs"), p)
                    except OSError:
                        pass          # exited meanwhile
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    if time.time() > deadline:
                        log(f"warning: could not remove cgroup {d}: {e}")
                        break
                    time.sleep(0.1)

    def remove_stale(self):
        """Groups left by an earlier run that was killed (its pid no longer runs this script)."""
        for h in self.hier:
            for d in os.listdir(h):
                if not d.startswith("pgswitch-scaleout-"):
                    continue
                try:
                    pid = int(d.rsplit("-", 1)[1])
                except ValueError:
                    continue
                if pid != os.getpid() and "scaleout" not in comm(pid):
                    log(f"removing stale cgroup {os.path.join(h, d)}")
                    self.remove_group(os.path.join(h, d))

    def create(self):
        for h in self.hier:
            base = os.path.join(h, self.group)
            os.mkdir(base)
            self.created.append(base)
            for s in SERVERS:
                os.mkdir(os.path.join(base, s))
        for s in SERVERS:
            self.write(os.path.join(self.path("cpu", s), "cpu.cfs_period_us"), CFS_PERIOD_US)
            self.write(os.path.join(self.path("cpu", s), "cpu.cfs_quota_us"), QUOTA_US)
            with open(os.path.join(self.path("cpu", s), "cpu.cfs_quota_us")) as f:
                got = int(f.read())
            if got != QUOTA_US:
                die(f"cgroup {self.path('cpu', s)}: cpu.cfs_quota_us reads {got}, wrote {QUOTA_US}")

    def remove(self):
        for base in reversed(self.created):
            if os.path.isdir(base):
                self.remove_group(base)
        self.created = []

    def inside(self, pid, server):
        """True/False, or None for a process that has exited or is exiting: the kernel shows an
        exiting task (PF_EXITING, and so every zombie) in the root of every v1 hierarchy."""
        if exiting(pid):
            return None
        cg = proc_cgroups(pid)
        if cg is None or exiting(pid):
            return None
        return all(cg.get(c) == self.rel[server] for c in ("cpu", "cpuacct"))

    def attach(self, server, postmaster):
        """The postmaster first (what it forks from now on inherits its cgroups), then every
        process it had forked already; repeated until a pass finds nothing left to move."""
        self.postmasters[server] = postmaster
        for _ in range(50):
            moved = 0
            for pid in descendants(postmaster):
                if self.inside(pid, server) is False:
                    for c in self.controllers:
                        try:
                            self.write(os.path.join(self.path(c, server), "cgroup.procs"), pid)
                        except ProcessLookupError:
                            pass
                    moved += 1
            if not moved:
                return
        die(f"{server}: processes of postmaster {postmaster} keep appearing outside its cgroup")

    def check(self):
        """({server: processes checked}, [violations]) over the postmaster and all its descendants."""
        tree = proc_tree()
        counts, bad = {}, []
        for s, pm in self.postmasters.items():
            if pm not in tree:
                bad.append(f"{s}: postmaster {pm} is not running")
                continue
            n = 0
            for pid in descendants(pm, tree):
                ok = self.inside(pid, s)
                if ok is None:
                    continue      # exited since the listing
                n += 1
                if not ok:
                    bad.append(f"{s}: pid {pid} ({comm(pid)}) is in {proc_cgroups(pid)}, "
                               f"not {self.rel[s]}")
            counts[s] = n
        return counts, bad

    def counters(self):
        out = {}
        for s in SERVERS:
            st = {}
            with open(os.path.join(self.path("cpu", s), "cpu.stat")) as f:
                for line in f:
                    k, v = line.split()
                    st[k] = int(v)
            with open(os.path.join(self.path("cpuacct", s), "cpuacct.usage")) as f:
                usage = int(f.read())
            out[s] = {"throttled_ns": st.get("throttled_time", 0), "nr_throttled": st.get("nr_throttled", 0),
                      "nr_periods": st.get("nr_periods", 0), "usage_ns": usage}
        return out


CAPS = None


class CapWatch(threading.Thread):
    """Checks every server process's cgroups every 2 s while a pgbench run goes on."""

    def __init__(self, caps):
        super().__init__(daemon=True)
        self.caps, self.stop_ev = caps, threading.Event()
        self.checks, self.max_procs, self.violations = 0, {}, []

    def run(self):
        while True:
            counts, bad = self.caps.check()
            self.checks += 1
            for s, n in counts.items():
                self.max_procs[s] = max(self.max_procs.get(s, 0), n)
            self.violations += bad
            if self.stop_ev.wait(2.0):
                return

    def finish(self):
        self.stop_ev.set()
        self.join(timeout=30)


# ------------------------------------------------------------------ targets
def postmaster_pid(datadir):
    with open(os.path.join(datadir, "postmaster.pid")) as f:
        return int(f.readline().strip())


def start_pgswitch_variant(env, wd, target):
    """Starts the variant (bench/run_bench.sh's pgswitch config plus a [routing] section), or
    returns why it cannot run: ("unsupported", msg) when this build refuses the config
    (`pgswitch --check` fails on it), ("failed", msg) when it is accepted but does not come up."""
    lb, pr, tx = PGSWITCH_VARIANTS[target]
    routing = {"load_balancing": f'"{lb}"', "primary_reads": "true" if pr else "false"}
    try:
        p = rb.start_pgswitch(env, wd, target, routing=routing, pool_size=POOL_SIZE if tx else None)
    except (RuntimeError, SystemExit) as e:
        if isinstance(e, SystemExit) and e.code != 1:
            raise                     # a signal (128 + n), not a failed start
        proxy = rb.PROXIES.pop(target, None)
        if proxy:
            proxy.stop()
        conf = os.path.join(wd, f"{target}.toml")
        r = subprocess.run([rb.PGSWITCH_BIN, "--check", "-c", conf], text=True, capture_output=True,
                           stdin=subprocess.DEVNULL, timeout=30)
        if r.returncode != 0:
            msg = " ".join((r.stderr + r.stdout).split())[:300]
            return "unsupported", f"pgswitch --check -c {conf} exit {r.returncode}: {msg}"
        return "failed", " ".join(str(e).split())[:300]
    p.variant = {"load_balancing": lb, "primary_reads": pr,
                 "pool_mode": "transaction" if tx else "session", "pool_size": POOL_SIZE if tx else None}
    return None


def pgswitch_reads(target):
    p = rb.PROXIES.get(target)
    if not p or not hasattr(p, "admin"):
        return None
    try:
        data = rb.http_json(f"http://127.0.0.1:{p.admin}/backends")
    except Exception:  # noqa: BLE001
        return None
    bs = data.get("backends", data) if isinstance(data, dict) else data
    return {b["name"]: b.get("queries", {}).get("reads", 0) for b in bs}


def measured_run(env, target, clients, duration, tag, logdir):
    before_reads = pgswitch_reads(target)
    watch = CapWatch(CAPS)
    c0 = CAPS.counters()
    t0 = time.time()
    watch.start()
    try:
        res = rb.run_pgbench(env, target, workload_of(target), clients, duration, tag, logdir)
    finally:
        watch.finish()
    wall = time.time() - t0
    c1 = CAPS.counters()
    res["servers"] = {s: {
        "throttled_s": round((c1[s]["throttled_ns"] - c0[s]["throttled_ns"]) / 1e9, 3),
        "nr_throttled": c1[s]["nr_throttled"] - c0[s]["nr_throttled"],
        "nr_periods": c1[s]["nr_periods"] - c0[s]["nr_periods"],
        "cpu_s": round((c1[s]["usage_ns"] - c0[s]["usage_ns"]) / 1e9, 3),
    } for s in SERVERS}
    cpu_total = sum(v["cpu_s"] for v in res["servers"].values())
    if res.get("transactions"):
        res["server_cpu_us_per_tx"] = round(cpu_total / res["transactions"] * 1e6, 1)
    res["counter_window_s"] = round(wall, 2)
    res["cap_checks"] = watch.checks
    res["server_processes_max"] = watch.max_procs
    if watch.violations:
        res["cap_violations"] = watch.violations[:20]
    after_reads = pgswitch_reads(target)
    if before_reads is not None and after_reads is not None:
        res["reads_by_backend"] = {k: after_reads.get(k, 0) - before_reads.get(k, 0) for k in after_reads}
    return res


# ------------------------------------------------------------------ report
def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def summarize(runs, status):
    rows = []
    for c in CLIENTS:
        direct = {r["round"]: r["tps"] for r in runs
                  if r["clients"] == c and r["target"] == "direct" and r.get("tps") and not r.get("error")}
        for t in TARGET_NAMES:
            if t in status:
                rows.append({"clients": c, "target": t, "status": status[t][0], "reason": status[t][1]})
                continue
            rs = [r for r in runs if r["clients"] == c and r["target"] == t]
            ok = [r for r in rs if r.get("tps") and not r.get("error")]
            ratios = [r["tps"] / direct[r["round"]] for r in ok if direct.get(r["round"])]
            row = {
                "clients": c, "target": t, "status": "ok", "rounds": len(rs), "errors": len(rs) - len(ok),
                "failed_transactions": int(sum(r.get("failed") or 0 for r in ok)),
                "tps_median": med([r["tps"] for r in ok]),
                "tps_per_round": [r.get("tps") for r in rs],
                "ratio_to_direct_median": med(ratios),
                "ratio_per_round": [round(x, 3) for x in ratios],
                "latency_p50_ms": med([r.get("latency_p50_ms") for r in ok]),
                "latency_p99_ms": med([r.get("latency_p99_ms") for r in ok]),
                "latency_mean_ms": med([r.get("latency_avg_ms") for r in ok]),
                "proxy_cpu_us_per_stmt": med([r.get("proxy_cpu_us_per_stmt") for r in ok]),
                "server_cpu_us_per_tx": med([r.get("server_cpu_us_per_tx") for r in ok]),
                "servers": {s: {k: med([r["servers"][s][k] for r in ok])
                                for k in ("throttled_s", "cpu_s")} for s in SERVERS},
            }
            reads = [r["reads_by_backend"] for r in ok if r.get("reads_by_backend")]
            if reads:
                tot = {}
                for d in reads:
                    for k, v in d.items():
                        tot[k] = tot.get(k, 0) + v
                n = sum(tot.values())
                row["read_share"] = {k: round(v / n, 3) for k, v in tot.items()} if n else None
            rows.append(row)
    return rows


def fmt(v, nd=0):
    return "–" if v is None else f"{v:,.{nd}f}"


def markdown(meta, rows):
    m, v = meta["machine"], meta["versions"]
    L = [f"# pgswitch server-bound (scale-out) benchmark — {meta['started_utc']}", ""]
    L.append(f"Each PostgreSQL server capped at **{meta['cpu_per_server']} CPU** (cgroup v1 "
             f"cpu.cfs_quota_us {meta['cfs_quota_us']} / cfs_period_us {meta['cfs_period_us']}), "
             f"one cgroup per server holding its postmaster and every backend. "
             f"`pgbench -n -S -M {meta['mode']}`, scale {meta['scale']}, -T {meta['duration_s']} s, "
             f"-j min(clients, {m['nproc']}), {meta['rounds']} interleaved round(s); total {meta['elapsed_min']} min.")
    L.append(f"Machine: {m['nproc']} cores ({m['cpu_model']}), kernel {m['kernel']}; load average at start "
             f"{' / '.join(map(str, meta['loadavg_start']))}, at end {' / '.join(map(str, meta['loadavg_end']))}. "
             "Shared machine: compare ratios within this run, not absolute figures.")
    L.append(f"Versions: PostgreSQL {v['postgresql']}, pgswitch {v['pgswitch']} ({meta['pgswitch_bin']}, "
             f"sha256 {meta['pgswitch_bin_sha256']}…, {meta['pgswitch_buildtype']} build; bench scripts at git "
             f"{v['pgswitch_git']}; workers {meta['pgswitch_workers']}), PgBouncer {v['pgbouncer']}, "
             f"pgpool-II {v['pgpool']}.")
    cc = meta["cap_check"]
    L.append(f"Cap check: {cc['checks']} checks of every server process (after the move and every 2 s of every "
             f"run), up to {' / '.join(str(cc['max_processes'].get(s, '–')) for s in SERVERS)} processes "
             f"(primary / replica1 / replica2): **{'all inside their caps' if cc['passed'] else 'FAILED'}**.")
    L.append(f"Command: `{meta['command']}`")
    L.append("")
    L.append("| clients | target | TPS | × direct | p50 ms | p99 ms | server CPU µs/tx "
             "| throttled s: primary / r1 / r2 | server CPU s: primary / r1 / r2 |")
    L.append("|---:|---|---:|---:|---:|---:|---:|---|---|")
    for r in rows:
        if r["status"] != "ok":
            what = "unsupported by this build" if r["status"] == "unsupported" else "did not start"
            L.append(f"| {r['clients']} | {LABEL[r['target']]} | {what} | – | – | – | – | – | – |")
            continue
        err = f" ({r['errors']} run(s) failed)" if r["errors"] else ""
        if r["failed_transactions"]:
            err += f" ({r['failed_transactions']} failed txns)"
        sv = r["servers"]
        L.append(f"| {r['clients']} | {LABEL[r['target']]} | {fmt(r['tps_median'])}{err} "
                 f"| {'1.00' if r['target'] == 'direct' else fmt(r['ratio_to_direct_median'], 2)} "
                 f"| {fmt(r['latency_p50_ms'], 2)} | {fmt(r['latency_p99_ms'], 2)} "
                 f"| {fmt(r['server_cpu_us_per_tx'], 1)} "
                 f"| {' / '.join(fmt(sv[s]['throttled_s'], 1) for s in SERVERS)} "
                 f"| {' / '.join(fmt(sv[s]['cpu_s'], 1) for s in SERVERS)} |")
    L.append("")
    shares = [r for r in rows if r.get("read_share")]
    if shares:
        L.append("Where pgswitch's reads went (share of reads per backend, all rounds, from its /backends counters):")
        L.append("")
        L.append("| clients | target | primary | replica1 | replica2 |")
        L.append("|---:|---|---:|---:|---:|")
        for r in shares:
            L.append(f"| {r['clients']} | {LABEL[r['target']]} | "
                     + " | ".join(f"{r['read_share'].get(s, 0):.2f}" for s in SERVERS) + " |")
        L.append("")
    for r in rows:
        if r["status"] != "ok" and r["clients"] == CLIENTS[0]:
            L.append(f"- {LABEL[r['target']]}: {r['reason']}")
    L.append("")
    L.append(f"Notes: TPS is the median over rounds; × direct the median of per-round ratios to the direct run "
             f"of the same round and client count (the physical limits are 2× for reads on 2 replicas and 3× on "
             f"all 3 servers). p50/p99 come from pgbench's per-transaction log sampled at "
             f"{int(rb.LOG_SAMPLING * 100)} % (medians over rounds). Throttled s = increase of cpu.stat "
             f"throttled_time (summed over the CPUs' runqueues) and server CPU s = increase of cpuacct.usage "
             f"of each server's cgroup over the whole pgbench run ({meta['duration_s']} s plus connection "
             f"set-up; medians over rounds); server CPU µs/tx = all servers' CPU over the run / transactions. "
             f"The control row runs pgbench straight to the primary with {GAP_US} µs of think time after each "
             f"statement: each backend then goes idle before its next statement arrives, as it does behind "
             f"any proxy, and its CPU per transaction shows what that costs a server. PgBouncer reaches the primary only; pgpool-II balances sessions "
             f"over all three servers; pgbench and the proxies are not capped and share the machine's cores.")
    return "\n".join(L) + "\n"


# ------------------------------------------------------------------ main
def file_sha256(path):
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()[:16]


def on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def cleanup():
    """Proxies, pgbench, the cluster, then the cgroups; signals wait until it is done."""
    saved = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        rb.stop_everything()
    finally:
        if CAPS is not None:
            CAPS.remove()
            log("cgroups removed")
        for s, h in saved.items():
            signal.signal(s, h)


def main():
    global CAPS
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    if os.geteuid() != 0:
        die("needs root: it creates cgroups under /sys/fs/cgroup and moves the servers into them")
    if not os.access(rb.PGSWITCH_BIN, os.X_OK) and any(t in PGSWITCH_VARIANTS for t in TARGET_NAMES):
        die(f"{rb.PGSWITCH_BIN} not found — build it first (make build) or set PGSWITCH_BIN")
    caps = Caps()
    started = datetime.datetime.now(datetime.timezone.utc)
    t_start = time.time()
    la_start = rb.loadavg()
    if "pgbouncer" in TARGET_NAMES or "pgpool" in TARGET_NAMES:
        rb.install_baselines()
    n_runs = len(CLIENTS) * len(TARGET_NAMES) * ROUNDS
    log(f"{len(TARGET_NAMES)} targets × clients {CLIENTS} × {ROUNDS} round(s) × {DURATION} s = {n_runs} runs, "
        f"about {(n_runs * (DURATION + 2) + len(TARGET_NAMES) * WARMUP + 120) / 60:.0f} min; "
        f"{CPU} CPU per server; load average {la_start}")

    os.makedirs(rb.TMP, exist_ok=True)
    for sub in ("proxies", "runs"):
        shutil.rmtree(os.path.join(rb.TMP, sub), ignore_errors=True)
    run_as = "postgres"
    status, runs, routing, interrupted = {}, [], {}, False
    cap_log = {"checks": 0, "max_processes": {}, "violations": []}
    try:
        caps.remove_stale()
        env = rb.start_cluster(SCALE)      # stops a stale cluster in the same directory first
        CAPS = caps
        caps.create()
        for s in SERVERS:
            pm = postmaster_pid(env[f"{s.upper()}_DATA"])
            caps.attach(s, pm)
            log(f"{s}: postmaster {pm} and its {len(descendants(pm)) - 1} processes in "
                f"{caps.rel[s]} (quota {QUOTA_US} µs per {CFS_PERIOD_US} µs)")
        counts, bad = caps.check()
        cap_log["checks"] += 1
        if bad:
            die("server processes outside their caps after the move:\n  " + "\n  ".join(bad))
        log(f"cap check passed: {counts} processes")

        wd = rb.work_dir_for(run_as)
        for t in TARGET_NAMES:
            if t in PGSWITCH_VARIANTS:
                why = start_pgswitch_variant(env, wd, t)
                if why:
                    status[t] = why
                    log(f"{t}: {'unsupported by this build' if why[0] == 'unsupported' else 'did not start'}"
                        f" — {why[1]}; its rows are reported as such")
            elif t == "pgbouncer":
                rb.start_pgbouncer(env, wd, run_as)
            elif t == "pgpool":
                rb.start_pgpool(env, wd, run_as)
        active = [t for t in TARGET_NAMES if t not in status]

        logdir = os.path.join(rb.TMP, "runs")
        os.makedirs(logdir, exist_ok=True)
        write_gap_script()
        if WARMUP:
            log(f"warm-up: 8 clients, {WARMUP} s per target")
            for t in active:
                r = rb.run_pgbench(env, t, workload_of(t), 8, WARMUP, f"warmup-{t}", logdir)
                if r.get("error"):
                    log(f"warning: warm-up through {t} failed: {r['error']}")

        i = 0
        n_runs = len(CLIENTS) * len(active) * ROUNDS
        for rnd in range(1, ROUNDS + 1):
            for c in CLIENTS:
                for t in active:
                    i += 1
                    try:
                        res = measured_run(env, t, c, DURATION, f"r{rnd}-c{c}-{t}", logdir)
                    except RuntimeError as e:     # a proxy died: record it, go on
                        res = {"target": t, "clients": c, "error": str(e), "tps": None,
                               "servers": {s: {} for s in SERVERS}}
                    res["round"] = rnd
                    runs.append(res)
                    cap_log["checks"] += res.get("cap_checks", 0)
                    for s, n in res.get("server_processes_max", {}).items():
                        cap_log["max_processes"][s] = max(cap_log["max_processes"].get(s, 0), n)
                    sv = res.get("servers", {})
                    log(f"[{i}/{n_runs}] round {rnd} c={c:<3d} {t:21s} tps {fmt(res.get('tps'))}, "
                        f"p50 {fmt(res.get('latency_p50_ms'), 2)} ms, p99 {fmt(res.get('latency_p99_ms'), 2)} ms, "
                        f"throttled s {' / '.join(fmt(sv.get(s, {}).get('throttled_s'), 1) for s in SERVERS)}"
                        + (f"  ERROR: {res['error'][:200]}" if res.get("error") else ""))
                    if res.get("cap_violations"):
                        cap_log["violations"] = res["cap_violations"]
                        die("server processes outside their caps during the run:\n  "
                            + "\n  ".join(res["cap_violations"]))

        for t in active:
            if t in PGSWITCH_VARIANTS:
                try:
                    routing[t] = rb.http_json(f"http://127.0.0.1:{rb.PROXIES[t].admin}/backends")
                except Exception as e:  # noqa: BLE001
                    routing[t] = str(e)
        if "pgpool" in active:
            routing["pgpool_nodes"] = rb.psql(rb.PROXIES["pgpool"].port, "show pool_nodes", check=False)
    except KeyboardInterrupt:
        log("interrupted")
        interrupted = True
    finally:
        cleanup()
    if interrupted:
        return 130

    ended = datetime.datetime.now(datetime.timezone.utc)
    git = rb.run(["git", "-C", rb.REPO, "rev-parse", "--short", "HEAD"], check=False).stdout.strip() or "unknown"
    dirty = rb.run(["git", "-C", rb.REPO, "status", "--porcelain", "--untracked-files=no"], check=False).stdout.strip()
    envs = " ".join(f"{k}={os.environ[k]}" for k in sorted(os.environ)
                    if k.startswith("SCALEOUT_") or k in ("PGSWITCH_BIN", "PGSWITCH_WORKERS"))
    cap_log["passed"] = not cap_log["violations"]
    meta = {
        "started_utc": started.strftime("%Y-%m-%d %H:%M UTC"), "ended_utc": ended.strftime("%Y-%m-%d %H:%M UTC"),
        "elapsed_min": round((time.time() - t_start) / 60, 1),
        "command": (envs + " " if envs else "") + "bash bench/scaleout.sh",
        "cpu_per_server": CPU, "cfs_quota_us": QUOTA_US, "cfs_period_us": CFS_PERIOD_US,
        "mode": MODE, "scale": SCALE, "duration_s": DURATION, "rounds": ROUNDS, "warmup_s": WARMUP,
        "clients": CLIENTS, "targets": TARGET_NAMES, "target_labels": {t: LABEL[t] for t in TARGET_NAMES},
        "loadavg_start": la_start, "loadavg_end": rb.loadavg(),
        "machine": {"nproc": rb.NPROC, "cpu_model": rb.cpu_model(), "kernel": platform.release()},
        "versions": {
            "postgresql": rb.tool_version([f"{rb.PGBIN}/postgres", "--version"]),
            "pgbench": rb.tool_version([f"{rb.PGBIN}/pgbench", "--version"]),
            "pgswitch": rb.tool_version([rb.PGSWITCH_BIN, "--version"]),
            "pgswitch_git": git + ("+dirty" if dirty else ""),
            "pgbouncer": rb.tool_version([rb.PGBOUNCER_BIN, "--version"]),
            "pgpool": rb.tool_version([rb.PGPOOL_BIN, "--version"]),
        },
        "pgswitch_bin": rb.PGSWITCH_BIN,
        "pgswitch_bin_sha256": file_sha256(rb.PGSWITCH_BIN),
        "pgswitch_workers": os.environ.get("PGSWITCH_WORKERS") or "default",
        "pgswitch_buildtype": rb.buildtype(),
        "log_sampling_rate": rb.LOG_SAMPLING,
        "cap_check": cap_log,
    }
    rows = summarize(runs, status)
    md = markdown(meta, rows)
    doc = {"meta": meta, "summary": rows, "routing": routing, "runs": runs}
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    os.makedirs(rb.RESULTS, exist_ok=True)
    outs = [os.path.join(rb.RESULTS, f"scaleout-{stamp}"), os.path.join(rb.RESULTS, "scaleout-latest")]
    for base in outs:
        with open(base + ".md", "w") as f:
            f.write(md)
        with open(base + ".json", "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
    print()
    print(md)
    log("results: " + ", ".join(b + ".{md,json}" for b in outs))
    errors = sum(r.get("errors", 0) for r in rows)
    if errors:
        log(f"{errors} pgbench run(s) failed — see the JSON (runs[].error) and {rb.TMP}/runs/*.out")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
