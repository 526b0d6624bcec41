#!/usr/bin/env bash
# The first lines are read by bash AND by Python: bash runs the `exec` line (""exec"" is
# the word exec) and hands this very file to Debian's python3; Python sees a string.
"""exec" /usr/bin/python3 "$0" "$@"
"""
# run_bench.sh — pgswitch vs direct, PgBouncer and pgpool-II under pgbench (`make bench`).
#
# Starts a throwaway primary + 2 streaming replicas (tests/pg_cluster.sh, in
# bench/results/tmp/cluster), `pgbench -i -s 10` on the primary (tables owned by app),
# then three proxies on free loopback ports, all started and stopped by PID here:
#   pgswitch   session mode, the 3 backends (reads go to the replicas), users app + postgres
#   PgBouncer  pool_mode = session, in front of the primary only
#   pgpool-II  streaming-replication mode, load balancing over primary + 2 replicas
# PgBouncer and pgpool-II come from Debian; they are apt-get installed here when missing,
# with their system services kept from starting (policy-rc.d) or stopped right after.
#
# Workloads (pgbench -n): select-only (-S) with -M simple / extended / prepared,
# a `SELECT 1` script (-f), TPC-B (built-in default script). Targets are interleaved
# within each round: direct (the primary), pgswitch, PgBouncer, pgpool-II.
# Results: bench/results/<timestamp>.{md,json} and bench/results/latest.{md,json}
# (QUICK mode writes <timestamp>-quick.{md,json} only). See bench/README.md.
#
# Environment:
#   QUICK=1            development mode: 8 clients, -T 5, 1 round (~3 min)
#   BENCH_DURATION     seconds per pgbench run (full: 8)
#   BENCH_ROUNDS       rounds (full: 3)
#   BENCH_CLIENTS      comma list, overrides the client counts of every workload
#   BENCH_WORKLOADS    comma list of: select_simple,select_extended,select_prepared,select1,tpcb
#   BENCH_TARGETS      comma list of: direct,pgswitch,pgswitch_w1,pgbouncer,pgpool
#                      (pgswitch = proxy.workers default, one per core; pgswitch_w1 = workers = 1)
#   BENCH_SCALE        pgbench -i scale (10)
#   PGSWITCH_WORKERS   proxy.workers for pgswitch (default: pgswitch's own default)
#   PGSWITCH_BIN       pgswitch binary (default build/proxy/pgswitch)
import datetime
import glob
import json
import os
import platform
import pwd
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "bench", "results")
TMP = os.path.join(RESULTS, "tmp")
CLUSTER_DIR = os.path.join(TMP, "cluster")
PGBIN = os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin")
BUILD = os.environ.get("BUILD_DIR", "build")
PGSWITCH_BIN = os.environ.get("PGSWITCH_BIN") or os.path.join(
    BUILD if os.path.isabs(BUILD) else os.path.join(REPO, BUILD), "proxy", "pgswitch")
PGBOUNCER_BIN = "/usr/sbin/pgbouncer"
PGPOOL_BIN = "/usr/sbin/pgpool"
IS_ROOT = os.geteuid() == 0
NPROC = os.cpu_count() or 1
CLK_TCK = os.sysconf("SC_CLK_TCK")

QUICK = os.environ.get("QUICK", "") not in ("", "0")

# name -> (pgbench arguments, statements per transaction, client counts in full mode)
WORKLOADS = {
    "select_simple":   (["-S", "-M", "simple"], 1, [1, 8, 32, 128]),
    "select_extended": (["-S", "-M", "extended"], 1, [8, 32]),
    "select_prepared": (["-S", "-M", "prepared"], 1, [8, 32]),
    "select1":         (["-f", "@SELECT1@", "-M", "simple"], 1, [8, 32]),
    "tpcb":            (["-M", "simple"], 7, [1, 8, 32, 128]),  # BEGIN, 3 UPDATE, SELECT, INSERT, END
}
TARGETS = ["direct", "pgswitch", "pgswitch_w1", "pgbouncer", "pgpool"]
TARGET_LABEL = {"direct": "direct", "pgswitch": "pgswitch", "pgswitch_w1": "pgswitch workers=1",
                "pgbouncer": "PgBouncer", "pgpool": "pgpool-II"}


def env_list(name, default, allowed=None, conv=str):
    v = os.environ.get(name, "").strip()
    if not v:
        return default
    out = [conv(x.strip()) for x in v.split(",") if x.strip()]
    if allowed is not None:
        bad = [x for x in out if x not in allowed]
        if bad:
            die(f"{name}: unknown value(s) {bad}; allowed: {list(allowed)}")
    return out


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def die(msg):
    print(f"run_bench.sh: error: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


# ------------------------------------------------------------------ configuration
DURATION = int(os.environ.get("BENCH_DURATION") or (5 if QUICK else 8))
ROUNDS = int(os.environ.get("BENCH_ROUNDS") or (1 if QUICK else 3))
SCALE = int(os.environ.get("BENCH_SCALE") or 10)
WL_NAMES = env_list("BENCH_WORKLOADS", list(WORKLOADS), WORKLOADS)
TARGET_NAMES = env_list("BENCH_TARGETS", TARGETS, TARGETS)
if "direct" not in TARGET_NAMES:
    TARGET_NAMES = ["direct"] + TARGET_NAMES          # ratios need it
TARGET_NAMES = [t for t in TARGETS if t in TARGET_NAMES]
CLIENTS_OVERRIDE = env_list("BENCH_CLIENTS", None, conv=int)
WARMUP_SECONDS = 2 if QUICK else 3
LOG_SAMPLING = 0.2       # fraction of transactions pgbench logs (for p99)


def clients_for(wl):
    if CLIENTS_OVERRIDE:
        return CLIENTS_OVERRIDE
    return [8] if QUICK else WORKLOADS[wl][2]


COMBOS = [(wl, c) for wl in WL_NAMES for c in clients_for(wl)]
MAX_CLIENTS = max(c for _, c in COMBOS)


# ------------------------------------------------------------------ small helpers
def free_port():
    """A free loopback port (bound and released; good enough on one machine)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def run(cmd, check=True, **kw):
    kw.setdefault("stdin", subprocess.DEVNULL)
    r = subprocess.run(cmd, text=True, capture_output=True, **kw)
    if check and r.returncode != 0:
        die(f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout}{r.stderr}")
    return r


def read_env(path):
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            k, v = line.split("=", 1)
            # values are written with printf %q; plain words are all we need here
            env[k] = v.strip("'\"").replace("\\ ", " ")
    return env


def pg_env(password):
    e = dict(os.environ)
    e["PGPASSWORD"] = password
    e["PGCONNECT_TIMEOUT"] = "10"
    for k in ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGSERVICE", "PGOPTIONS"):
        e.pop(k, None)
    return e


def psql(port, sql, user="app", password="app", db="app", check=True, timeout=60):
    """Runs SQL (a string, or a list: one -c each, i.e. one transaction each); returns the output."""
    cmd = [f"{PGBIN}/psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
           "-h", "127.0.0.1", "-p", str(port), "-U", user, "-d", db]
    for stmt in ([sql] if isinstance(sql, str) else sql):
        cmd += ["-c", stmt]
    try:
        r = subprocess.run(cmd, text=True, capture_output=True, env=pg_env(password),
                           stdin=subprocess.DEVNULL, timeout=timeout)
    except subprocess.TimeoutExpired:
        if check:
            die(f"psql on port {port} timed out: {sql}")
        return None
    if r.returncode != 0:
        if check:
            die(f"psql on port {port} failed: {sql}\n{r.stderr}")
        return None
    return r.stdout.strip()


def wait_for(what, fn, timeout=60, interval=0.3):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = fn()
            if last:
                return last
        except RuntimeError:        # a process we wait for has exited: no point waiting
            raise
        except Exception as e:  # noqa: BLE001 — keep polling until the deadline
            last = e
        time.sleep(interval)
    die(f"timed out after {timeout}s waiting for {what} (last: {last})")


def http_json(url, timeout=3):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read().decode())


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# ------------------------------------------------------------------ /proc accounting
def proc_stat(pid):
    """(pgrp, utime+stime, cutime+cstime) in seconds, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    fields = s[s.rindex(")") + 2:].split()
    # fields[0] is field 3 (state): pgrp = field 5, utime..cstime = fields 14..17
    pgrp = int(fields[2])
    own = (int(fields[11]) + int(fields[12])) / CLK_TCK
    children = (int(fields[13]) + int(fields[14])) / CLK_TCK
    return pgrp, own, children


def group_pids(leader):
    """The leader and every process in its process group (the proxies run in their own session)."""
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        st = proc_stat(int(d))
        if st and st[0] == leader:
            pids.append(int(d))
    return pids


def group_cpu(leader, single):
    """CPU seconds used so far by a proxy: itself (all threads), its live children and the
    children it has already reaped (the leader's cutime+cstime)."""
    if single:
        st = proc_stat(leader)
        return st[1] + st[2] if st else None
    total = 0.0
    found = False
    for pid in group_pids(leader):
        st = proc_stat(pid)
        if not st:
            continue
        found = True
        total += st[1] + (st[2] if pid == leader else 0.0)
    return total if found else None


def status_kib(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def group_memory(leader, single):
    pids = [leader] if single else group_pids(leader)
    return {
        "processes": len(pids),
        "vmhwm_kib": sum(status_kib(p, "VmHWM") for p in pids),
        "rss_kib": sum(status_kib(p, "VmRSS") for p in pids),
        "pss_kib": sum(pss_kib(p) for p in pids),
        "leader_vmhwm_kib": status_kib(leader, "VmHWM"),
        "threads": status_kib(leader, "Threads"),
    }


# ------------------------------------------------------------------ installing baselines
def installed(pkg):
    r = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", pkg],
                       text=True, capture_output=True, stdin=subprocess.DEVNULL)
    return r.returncode == 0 and r.stdout.startswith("ii")


def pids_named(names):
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/comm") as f:
                    comm = f.read().strip()
            except OSError:
                continue
            if comm in names:
                out[int(d)] = comm
    return out


def install_baselines():
    missing = [p for p in ("pgbouncer", "pgpool2") if not installed(p)]
    if not missing:
        return
    if IS_ROOT:
        sudo = []
    elif shutil.which("sudo"):
        sudo = ["sudo"]
    else:
        die(f"missing Debian packages {missing}; not root and no sudo — install them as root")
    log(f"installing {' '.join(missing)} (apt-get; their system services are kept stopped)")
    before = set(pids_named({"pgbouncer", "pgpool"}))
    # Debian starts a package's service on install unless /usr/sbin/policy-rc.d exits 101.
    policy = "/usr/sbin/policy-rc.d"
    saved = None
    if os.path.exists(policy):
        with open(policy, "rb") as f:
            saved = f.read()
    policy_script = "#!/bin/sh\n# written by pgswitch bench/run_bench.sh during apt-get install\nexit 101\n"
    try:
        run(sudo + ["tee", policy], input=policy_script, stdin=None)
        run(sudo + ["chmod", "755", policy])
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        cmd = sudo + ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-qq",
                      "--no-install-recommends"] + missing
        r = subprocess.run(cmd, text=True, capture_output=True, env=env, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            run(sudo + ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "update", "-qq"])
            run(cmd, env=env)
    finally:
        if saved is None:
            run(sudo + ["rm", "-f", policy], check=False)
        else:
            p = subprocess.run(sudo + ["tee", policy], input=saved, capture_output=True)
            if p.returncode != 0:
                log(f"warning: could not restore {policy}")
    # Belt and braces: a service the install started anyway is stopped by its PID.
    time.sleep(0.5)
    for pid, comm in pids_named({"pgbouncer", "pgpool"}).items():
        if pid not in before:
            log(f"stopping {comm} (pid {pid}) started by the package install")
            subprocess.run(sudo + ["kill", "-TERM", str(pid)], stdin=subprocess.DEVNULL)
    still = [p for p in missing if not installed(p)]
    if still:
        die(f"still missing after apt-get install: {still}")


def buildtype():
    """meson buildtype of the pgswitch build (its build directory's meson-info)."""
    info = os.path.join(os.path.dirname(os.path.dirname(PGSWITCH_BIN)), "meson-info", "intro-buildoptions.json")
    try:
        with open(info) as f:
            for o in json.load(f):
                if o.get("name") == "buildtype":
                    return o.get("value")
    except (OSError, ValueError):
        pass
    return "unknown"


def tool_version(cmd, pattern=r"(\d+\.\d+(?:\.\d+)?)"):
    try:
        r = subprocess.run(cmd, text=True, capture_output=True, stdin=subprocess.DEVNULL, timeout=10)
        m = re.search(pattern, r.stdout + r.stderr)
        return m.group(1) if m else (r.stdout + r.stderr).strip()[:60]
    except Exception:  # noqa: BLE001
        return "unknown"


# ------------------------------------------------------------------ processes we start
class Proxy:
    def __init__(self, name, cmd, port, logfile, single, run_as=None, env=None):
        self.name, self.cmd, self.port, self.logfile, self.single = name, cmd, port, logfile, single
        self.run_as, self.env = run_as, env
        self.proc = None
        self.peak = {}

    def start(self):
        kw = {}
        if self.run_as:
            pw = pwd.getpwnam(self.run_as)
            kw.update(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[])
        self.logf = open(self.logfile, "ab")
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     env=self.env, **kw)
        log(f"{self.name}: pid {self.proc.pid}, 127.0.0.1:{self.port}")

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self):
        if not self.alive():
            tail = ""
            try:
                with open(self.logfile, errors="replace") as f:
                    tail = "".join(f.readlines()[-20:])
            except OSError:
                pass
            raise RuntimeError(f"{self.name} is not running (exit {self.proc.returncode}); "
                               f"last lines of {self.logfile}:\n{tail}")

    def cpu(self):
        return group_cpu(self.pid, self.single) if self.alive() else None

    def sample_memory(self):
        if not self.alive():
            return
        m = group_memory(self.pid, self.single)
        for k, v in m.items():
            self.peak[k] = max(self.peak.get(k, 0), v)

    def stop(self, sig=signal.SIGTERM):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                log(f"{self.name}: still running 15 s after signal {sig}, killing its process group")
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=10)
        # children of a proxy (pgpool-II) live in its process group, which is its pid
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.logf.close()
        log(f"{self.name}: stopped")


PROXIES = {}
CLUSTER_STARTED = False
CURRENT_PGBENCH = None


def stop_everything():
    if CURRENT_PGBENCH is not None and CURRENT_PGBENCH.poll() is None:
        CURRENT_PGBENCH.kill()
        CURRENT_PGBENCH.wait()
    for name in list(PROXIES):
        try:
            PROXIES.pop(name).stop(signal.SIGINT if name == "pgpool" else signal.SIGTERM)
        except Exception as e:  # noqa: BLE001
            log(f"warning: stopping {name}: {e}")
    global CLUSTER_STARTED
    if CLUSTER_STARTED:
        log("stopping the PostgreSQL cluster")
        subprocess.run(["bash", os.path.join(REPO, "tests", "pg_cluster.sh"), "stop", "--dir", CLUSTER_DIR],
                       stdin=subprocess.DEVNULL)
        CLUSTER_STARTED = False


def on_signal(signum, _frame):
    raise SystemExit(128 + signum)


# ------------------------------------------------------------------ proxy configs
def work_dir_for(user):
    """A directory under TMP that `user` can write, or one under /tmp when it cannot reach TMP."""
    d = os.path.join(TMP, "proxies")
    os.makedirs(d, exist_ok=True)
    if not user:
        return d
    pw = pwd.getpwnam(user)
    os.chown(d, pw.pw_uid, pw.pw_gid)
    ok = subprocess.run(["runuser", "-u", user, "--", "test", "-w", d], stdin=subprocess.DEVNULL).returncode == 0
    if not ok:
        d = tempfile.mkdtemp(prefix="pgswitch-bench-")
        os.chown(d, pw.pw_uid, pw.pw_gid)
        log(f"{user} cannot write under {TMP}; proxy files in {d}")
    return d


def pool_lines(pool_size):
    if pool_size is None:
        return 'pool_mode = "session"'
    return f'pool_mode = "transaction"\npool_size = {int(pool_size)}'


def start_pgswitch(env, wd, name="pgswitch", workers=None, routing=None, pool_size=None):
    """pgswitch as target `name`; workers None = PGSWITCH_WORKERS or pgswitch's default;
    routing: a dict of [routing] keys (TOML literals as strings), None = no [routing] section;
    pool_size None = pool_mode "session", a number = pool_mode "transaction" with that pool_size."""
    port, admin = free_port(), free_port()
    conf = os.path.join(wd, f"{name}.toml")
    if workers is None:
        workers = os.environ.get("PGSWITCH_WORKERS", "").strip()
    with open(conf, "w") as f:
        f.write(f"""# written by bench/run_bench.sh
[proxy]
listen = "127.0.0.1:{port}"
{pool_lines(pool_size)}
max_client_connections = {max(1000, MAX_CLIENTS * 2)}
{f"workers = {int(workers)}" if workers else "# workers: pgswitch's default"}

[admin]
listen = "127.0.0.1:{admin}"
{routing_section(routing)}
[health]
interval_ms = 1000
user = "{env['SUPERUSER']}"
password = "{env['SUPERPASS']}"

[[backends]]
name = "primary"
host = "127.0.0.1"
port = {env['PRIMARY_PORT']}

[[backends]]
name = "replica1"
host = "127.0.0.1"
port = {env['REPLICA1_PORT']}

[[backends]]
name = "replica2"
host = "127.0.0.1"
port = {env['REPLICA2_PORT']}

[[users]]
name = "{env['APP_USER']}"
password = "{env['APP_PASSWORD']}"

[[users]]
name = "{env['SUPERUSER']}"
password = "{env['SUPERPASS']}"
""")
    penv = dict(os.environ, PGSWITCH_LOG="warning")
    p = Proxy(name, [PGSWITCH_BIN, "-c", conf], port, os.path.join(wd, f"{name}.log"),
              single=True, env=penv)
    p.admin = admin
    p.conf = conf
    p.start()
    PROXIES[name] = p

    def ready():
        p.check_alive()
        data = http_json(f"http://127.0.0.1:{admin}/backends")
        bs = data.get("backends", data) if isinstance(data, dict) else data
        roles = sorted((b.get("role"), b.get("state")) for b in bs)
        return roles == [("primary", "up"), ("replica", "up"), ("replica", "up")]
    wait_for("pgswitch to see the primary and both replicas up", ready, timeout=60)
    wait_for("a query through pgswitch", lambda: psql(port, "select 1", check=False) == "1", timeout=30)
    return p


def routing_section(routing):
    if not routing:
        return ""
    return "\n[routing]\n" + "".join(f"{k} = {v}\n" for k, v in routing.items())


def start_pgbouncer(env, wd, run_as):
    port = free_port()
    conf = os.path.join(wd, "pgbouncer.ini")
    users = os.path.join(wd, "pgbouncer_users.txt")
    with open(users, "w") as f:
        f.write(f'"{env["APP_USER"]}" "{env["APP_PASSWORD"]}"\n')
    with open(conf, "w") as f:
        f.write(f"""; written by bench/run_bench.sh
[databases]
{env['APP_DB']} = host=127.0.0.1 port={env['PRIMARY_PORT']} dbname={env['APP_DB']}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = md5
auth_file = {users}
pool_mode = session
max_client_conn = {max(400, MAX_CLIENTS * 2)}
default_pool_size = {MAX_CLIENTS + 8}
max_db_connections = 0
; session pool: give server connections back to PostgreSQL soon after a run (the
; primary's max_connections is 200 and the next run may be a direct one)
server_idle_timeout = 2
logfile = {os.path.join(wd, 'pgbouncer.log')}
pidfile = {os.path.join(wd, 'pgbouncer.pid')}
log_connections = 0
log_disconnections = 0
stats_period = 600
""")
    for fn in (conf, users):
        os.chmod(fn, 0o600)
        if run_as:
            pw = pwd.getpwnam(run_as)
            os.chown(fn, pw.pw_uid, pw.pw_gid)
    # PgBouncer refuses to run as root: as root it runs as postgres.
    p = Proxy("pgbouncer", [PGBOUNCER_BIN, conf], port, os.path.join(wd, "pgbouncer.stdout"),
              single=True, run_as=run_as)
    p.start()
    PROXIES["pgbouncer"] = p

    def ready():
        p.check_alive()
        return psql(port, "select 1", check=False) == "1"
    wait_for("a query through PgBouncer", ready, timeout=30)
    return p


def start_pgpool(env, wd, run_as):
    port, pcp = free_port(), free_port()
    conf = os.path.join(wd, "pgpool.conf")
    pcpconf = os.path.join(wd, "pcp.conf")
    hba = os.path.join(wd, "pool_hba.conf")
    backends = ""
    for i, (name, key) in enumerate([("primary", "PRIMARY_PORT"), ("replica1", "REPLICA1_PORT"),
                                     ("replica2", "REPLICA2_PORT")]):
        backends += f"""
backend_hostname{i} = '127.0.0.1'
backend_port{i} = {env[key]}
backend_weight{i} = 1
backend_flag{i} = 'DISALLOW_TO_FAILOVER'
backend_application_name{i} = '{name}'
"""
    with open(conf, "w") as f:
        f.write(f"""# written by bench/run_bench.sh
backend_clustering_mode = 'streaming_replication'
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{wd}'
pcp_listen_addresses = ''
pcp_port = {pcp}
pcp_socket_dir = '{wd}'
{backends}
# Clients log in with a cleartext password that pgpool-II reuses for its SCRAM logins to
# the servers (no pool_passwd, no pool_hba).
enable_pool_hba = off
pool_passwd = ''
allow_clear_text_frontend_auth = on
# one pre-forked child per client; no connection cache, so that idle children do not
# hold connections to the primary (max_connections 200) between runs. pgbench connects
# once per client and its TPS excludes connection time.
num_init_children = {MAX_CLIENTS + 4}
max_pool = 1
connection_cache = off
child_life_time = 0
child_max_connections = 0
connection_life_time = 0
client_idle_limit = 0
reserved_connections = 0
listen_backlog_multiplier = 2
# streaming replication + session-level load balancing over the three nodes
load_balance_mode = on
statement_level_load_balance = off
disable_load_balance_on_write = 'transaction'
sr_check_period = 0
sr_check_user = '{env['SUPERUSER']}'
sr_check_password = '{env['SUPERPASS']}'
sr_check_database = 'postgres'
health_check_period = 0
failover_on_backend_error = off
use_watchdog = off
memory_cache_enabled = off
ssl = off
log_destination = 'stderr'
log_min_messages = warning
log_connections = off
log_statement = off
logdir = '{wd}'
pid_file_name = '{os.path.join(wd, 'pgpool.pid')}'
""")
    with open(pcpconf, "w") as f:
        f.write("# no pcp users\n")
    with open(hba, "w") as f:
        f.write("host all all 127.0.0.1/32 trust\n")
    for fn in (conf, pcpconf, hba):
        if run_as:
            pw = pwd.getpwnam(run_as)
            os.chown(fn, pw.pw_uid, pw.pw_gid)
    p = Proxy("pgpool", [PGPOOL_BIN, "-n", "-D", "-f", conf, "-F", pcpconf, "-a", hba], port,
              os.path.join(wd, "pgpool.log"), single=False, run_as=run_as)
    p.start()
    PROXIES["pgpool"] = p

    def ready():
        p.check_alive()
        return psql(port, "select 1", check=False) == "1"
    wait_for("a query through pgpool-II", ready, timeout=60)
    return p


# ------------------------------------------------------------------ pgbench
PROGRESS_RE = re.compile(r"^progress: ([\d.]+) s, ([\d.]+) tps")


def parse_pgbench(out):
    def num(pattern):
        m = re.search(pattern, out, re.M)
        return float(m.group(1)) if m else None
    return {
        "tps": num(r"^tps = ([\d.]+)"),
        "transactions": num(r"^number of transactions actually processed: (\d+)"),
        "failed": num(r"^number of failed transactions: (\d+)"),
        "latency_avg_ms": num(r"^latency average = ([\d.]+) ms"),
        "latency_stddev_ms": num(r"^latency stddev = ([\d.]+) ms"),
        "connection_ms": num(r"^initial connection time = ([\d.]+) ms"),
    }


def percentile(sorted_vals, q):
    if not sorted_vals:
        return None
    k = (len(sorted_vals) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (k - lo)


def wait_primary_connections(env, below):
    """Connections a proxy keeps after a run (PgBouncer's idle pool) must not starve the next one."""
    deadline = time.time() + 20
    n = None
    while time.time() < deadline:
        n = psql(env["PRIMARY_PORT"], "select count(*) from pg_stat_activity where backend_type = 'client backend'",
                 user=env["SUPERUSER"], password=env["SUPERPASS"], db="postgres", check=False)
        if n is not None and int(n) < below:
            return
        time.sleep(0.5)
    log(f"warning: still {n} client connections on the primary before a run")


def prepare_tpcb(env):
    # what pgbench does itself without -n, but directly on the primary for every target
    psql(env["PRIMARY_PORT"], ["vacuum pgbench_branches", "vacuum pgbench_tellers", "truncate pgbench_history"],
         user=env["APP_USER"], password=env["APP_PASSWORD"], db=env["APP_DB"])


DIRECT_TARGETS = {"direct"}     # pgbench straight to the primary; bench/scaleout.sh adds its own


def run_pgbench(env, target, wl, clients, duration, tag, logdir):
    args, stmts, _ = WORKLOADS[wl]
    args = [a.replace("@SELECT1@", os.path.join(TMP, "select1.sql")) for a in args]
    port = env["PRIMARY_PORT"] if target in DIRECT_TARGETS else PROXIES[target].port
    proxy = PROXIES.get(target)
    if wl == "tpcb":
        prepare_tpcb(env)
    wait_primary_connections(env, 200 - 3 - MAX_CLIENTS - 10)
    if proxy:
        proxy.check_alive()
    prefix = os.path.join(logdir, tag)
    threads = max(1, min(clients, NPROC))
    cmd = [f"{PGBIN}/pgbench", "-n", "-h", "127.0.0.1", "-p", str(port), "-U", env["APP_USER"],
           "-c", str(clients), "-j", str(threads), "-T", str(duration), "-P", "1",
           "-l", f"--sampling-rate={LOG_SAMPLING}", f"--log-prefix={prefix}"] + args + [env["APP_DB"]]
    outf = os.path.join(logdir, tag + ".out")
    cpu0 = proxy.cpu() if proxy else None
    t0 = time.time()
    progress = []          # (pgbench seconds, tps, proxy cpu seconds at the time we read the line)
    with open(outf, "w") as out:
        global CURRENT_PGBENCH
        p = CURRENT_PGBENCH = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.PIPE,
                                               text=True, env=pg_env(env["APP_PASSWORD"]), cwd=logdir)
        errlines = []
        killer_deadline = t0 + duration + 120
        for line in p.stderr:
            m = PROGRESS_RE.match(line)
            if m:
                progress.append((float(m.group(1)), float(m.group(2)), proxy.cpu() if proxy else None))
            else:
                errlines.append(line)
            if time.time() > killer_deadline:
                p.kill()
        try:
            rc = p.wait(timeout=max(5, killer_deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            rc = p.wait()
    cpu1 = proxy.cpu() if proxy else None
    with open(outf) as f:
        res = parse_pgbench(f.read())
    res.update(target=target, workload=wl, clients=clients, rc=rc, wall_s=round(time.time() - t0, 2),
               statements_per_txn=stmts)
    if rc != 0 or res["tps"] is None:
        res["error"] = ("".join(errlines[-5:]) or f"pgbench exit {rc}").strip()
    # p99 from the sampled per-transaction log (column 3: latency in µs)
    lats = []
    for fn in glob.glob(prefix + ".*"):
        if fn.endswith(".out"):
            continue
        with open(fn) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3:
                    lats.append(int(parts[2]))
        os.unlink(fn)
    lats.sort()
    res["latency_samples"] = len(lats)
    res["latency_p99_ms"] = round(percentile(lats, 0.99) / 1000, 3) if lats else None
    res["latency_p50_ms"] = round(percentile(lats, 0.50) / 1000, 3) if lats else None
    # proxy CPU per statement over the steady state: from the first progress report to the
    # last (connection set-up and the tail are left out); transactions from the reports' tps.
    if proxy:
        win = [x for x in progress if x[2] is not None]
        if len(win) >= 2:   # pgbench prints its first report once its clients are connected
            txns = sum(win[i][1] * (win[i][0] - win[i - 1][0]) for i in range(1, len(win)))
            cpu = win[-1][2] - win[0][2]
            res["cpu_window"] = "steady"
        else:  # too short for progress reports: the whole run, connections included
            txns = res["transactions"] or 0
            cpu = (cpu1 - cpu0) if (cpu0 is not None and cpu1 is not None) else None
            res["cpu_window"] = "whole run"
        res["proxy_cpu_s"] = round(cpu, 3) if cpu is not None else None
        res["window_transactions"] = round(txns)
        res["proxy_cpu_us_per_stmt"] = (round(cpu / (txns * stmts) * 1e6, 2)
                                        if cpu is not None and txns > 0 else None)
        res["proxy_cpu_s_whole_run"] = round(cpu1 - cpu0, 3) if cpu0 is not None and cpu1 is not None else None
        proxy.sample_memory()
    return res


# ------------------------------------------------------------------ report
def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def summarize(runs):
    rows = []
    for wl, c in COMBOS:
        direct_by_round = {r["round"]: r["tps"] for r in runs
                           if r["workload"] == wl and r["clients"] == c and r["target"] == "direct"
                           and r.get("tps") and not r.get("error")}
        for t in TARGET_NAMES:
            rs = [r for r in runs if r["workload"] == wl and r["clients"] == c and r["target"] == t]
            ok = [r for r in rs if r.get("tps") and not r.get("error")]
            ratios = [r["tps"] / direct_by_round[r["round"]] for r in ok if direct_by_round.get(r["round"])]
            rows.append({
                "workload": wl, "clients": c, "target": t,
                "rounds": len(rs), "errors": len(rs) - len(ok),
                "failed_transactions": int(sum(r.get("failed") or 0 for r in ok)),
                "tps_median": med([r["tps"] for r in ok]),
                "tps_per_round": [r.get("tps") for r in rs],
                "ratio_to_direct_median": med(ratios),
                "ratio_per_round": [round(x, 3) for x in ratios],
                "latency_mean_ms": med([r["latency_avg_ms"] for r in ok]),
                "latency_p99_ms": med([r["latency_p99_ms"] for r in ok]),
                "proxy_cpu_us_per_stmt": med([r.get("proxy_cpu_us_per_stmt") for r in ok]) if t != "direct" else None,
            })
    return rows


def fmt(v, nd=0, unit=""):
    if v is None:
        return "–"
    return f"{v:,.{nd}f}{unit}"


WL_LABEL = {"select_simple": "select-only -M simple", "select_extended": "select-only -M extended",
            "select_prepared": "select-only -M prepared", "select1": "SELECT 1 (-f)", "tpcb": "TPC-B"}


def markdown(meta, rows, memory):
    L = []
    L.append(f"# pgswitch benchmark — {meta['started_utc']}{' (QUICK)' if meta['quick'] else ''}")
    L.append("")
    m = meta["machine"]
    L.append(f"Machine: {m['nproc']} cores ({m['cpu_model']}), {m['mem_total_mib']} MiB, kernel {m['kernel']}; "
             f"load average at start {' / '.join(map(str, meta['loadavg_start']))}, "
             f"at end {' / '.join(map(str, meta['loadavg_end']))}. Shared machine: figures are noisy.")
    v = meta["versions"]
    L.append(f"Versions: PostgreSQL {v['postgresql']}, pgbench {v['pgbench']}, pgswitch {v['pgswitch']} "
             f"(git {v['pgswitch_git']}, {meta['pgswitch_buildtype']} build, workers {meta['pgswitch_workers']}), "
             f"PgBouncer {v['pgbouncer']}, pgpool-II {v['pgpool']}.")
    L.append(f"Run: pgbench -T {meta['duration_s']} s × {meta['rounds']} round(s), scale {meta['scale']}, "
             f"-j min(clients, {m['nproc']}); targets interleaved per round "
             f"({', '.join(TARGET_LABEL[t] for t in meta['targets'])}); total {meta['elapsed_min']} min.")
    L.append("")
    L.append("| workload | clients | target | TPS (median) | × direct (median of per-round ratios) "
             "| mean lat ms | p99 lat ms | proxy CPU µs/stmt |")
    L.append("|---|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        err = f" ({r['errors']} run(s) failed)" if r["errors"] else ""
        if r["failed_transactions"]:
            err += f" ({r['failed_transactions']} failed txns)"
        L.append(f"| {WL_LABEL[r['workload']]} | {r['clients']} | {TARGET_LABEL[r['target']]} "
                 f"| {fmt(r['tps_median'])}{err} "
                 f"| {'1.00' if r['target'] == 'direct' else fmt(r['ratio_to_direct_median'], 2)} "
                 f"| {fmt(r['latency_mean_ms'], 2)} | {fmt(r['latency_p99_ms'], 2)} "
                 f"| {fmt(r['proxy_cpu_us_per_stmt'], 1)} |")
    L.append("")
    L.append("Summary at 8 and 32 clients (select-only simple/extended/prepared and SELECT 1; "
             "ranges over those rows):")
    L.append("")
    L.append("| proxy | × direct | proxy CPU µs/stmt | pgswitch TPS ÷ this proxy's TPS |")
    L.append("|---|---|---|---|")
    sel = [r for r in rows if r["clients"] in (8, 32) and r["workload"] != "tpcb"]

    def rng(vals, nd):
        vals = [v for v in vals if v is not None]
        return f"{min(vals):.{nd}f}–{max(vals):.{nd}f}" if vals else "–"
    sw = {(r["workload"], r["clients"]): r["tps_median"] for r in sel if r["target"] == "pgswitch"}
    for t in TARGET_NAMES:
        if t == "direct":
            continue
        mine = [r for r in sel if r["target"] == t]
        vs = [sw[(r["workload"], r["clients"])] / r["tps_median"] for r in mine
              if t != "pgswitch" and r["tps_median"] and sw.get((r["workload"], r["clients"]))]
        L.append(f"| {TARGET_LABEL[t]} | {rng([r['ratio_to_direct_median'] for r in mine], 2)} "
                 f"| {rng([r['proxy_cpu_us_per_stmt'] for r in mine], 1)} | {rng(vs, 2) if vs else '–'} |")
    L.append("")
    L.append("Proxy memory over the whole run (peak of samples taken after every pgbench run):")
    L.append("")
    L.append("| proxy | processes | peak RSS, VmHWM (KiB) | Pss (KiB) |")
    L.append("|---|---:|---:|---:|")
    for t in TARGET_NAMES:
        if t == "direct" or t not in memory:
            continue
        mm = memory[t]
        L.append(f"| {TARGET_LABEL[t]} | {mm.get('processes', '–')} | {fmt(mm.get('vmhwm_kib'))} "
                 f"| {fmt(mm.get('pss_kib'))} |")
    L.append("")
    L.append("Notes: direct = pgbench straight to the primary. pgswitch sends reads to the two replicas, "
             "PgBouncer (session pool) only reaches the primary, pgpool-II balances sessions over all "
             "three nodes; every server runs on the same cores as pgbench and the proxies. "
             "Ratios are per round against the direct run of the same round. Latencies are pgbench's "
             f"mean and the p99 of a {int(LOG_SAMPLING * 100)} % sample of per-transaction logs "
             "(medians over rounds). Proxy CPU = utime+stime of the proxy (all threads; for "
             "pgpool-II all its processes) from /proc between the first and last progress "
             "report, divided by statements (TPC-B: 7 per transaction). pgpool-II's VmHWM is the sum "
             "over its processes and counts shared pages once per process; Pss does not.")
    return "\n".join(L) + "\n"


def start_cluster(scale):
    """Primary + 2 streaming replicas in CLUSTER_DIR (tests/pg_cluster.sh), `pgbench -i -s scale`
    on the primary as app, and a wait until both replicas have replayed it; returns cluster.env.
    Sets CLUSTER_STARTED, so that stop_everything() stops the cluster (also bench/scaleout.sh)."""
    global CLUSTER_STARTED
    log("starting PostgreSQL: primary + 2 replicas")
    CLUSTER_STARTED = True
    r = subprocess.run(["bash", os.path.join(REPO, "tests", "pg_cluster.sh"), "start", "--dir", CLUSTER_DIR,
                        "--replicas", "2"], stdin=subprocess.DEVNULL, text=True, capture_output=True)
    if r.returncode != 0:
        die(f"cluster start failed:\n{r.stdout}{r.stderr}")
    env = read_env(os.path.join(CLUSTER_DIR, "cluster.env"))

    log(f"pgbench -i -s {scale} on the primary (port {env['PRIMARY_PORT']})")
    ti = time.time()
    r = subprocess.run([f"{PGBIN}/pgbench", "-i", "-q", "-s", str(scale), "-h", "127.0.0.1",
                        "-p", env["PRIMARY_PORT"], "-U", env["APP_USER"], env["APP_DB"]],
                       stdin=subprocess.DEVNULL, text=True, capture_output=True, env=pg_env(env["APP_PASSWORD"]))
    if r.returncode != 0:
        die(f"pgbench -i failed:\n{r.stderr}")
    # the tables are app's own (pgbench -i ran as app); make that explicit for other logins
    psql(env["PRIMARY_PORT"], "grant select, insert, update, delete, truncate on all tables in schema public to app",
         user=env["APP_USER"], password=env["APP_PASSWORD"])
    lsn = psql(env["PRIMARY_PORT"], "select pg_current_wal_lsn()", user=env["SUPERUSER"],
               password=env["SUPERPASS"], db="postgres")

    def replicas_caught_up():
        n = psql(env["PRIMARY_PORT"],
                 f"select count(*) from pg_stat_replication where replay_lsn >= '{lsn}'",
                 user=env["SUPERUSER"], password=env["SUPERPASS"], db="postgres")
        return int(n) >= 2
    wait_for("the replicas to replay the pgbench tables", replicas_caught_up, timeout=300)
    log(f"initialized in {time.time() - ti:.0f} s")
    return env


# ------------------------------------------------------------------ main
def main():
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    started = datetime.datetime.now(datetime.timezone.utc)
    t_start = time.time()
    la_start = loadavg()
    if not os.access(PGSWITCH_BIN, os.X_OK):
        die(f"{PGSWITCH_BIN} not found — build it first: make build")
    if not os.path.exists(f"{PGBIN}/pgbench"):
        die(f"{PGBIN}/pgbench not found (postgresql-15)")
    install_baselines()

    n_runs = len(COMBOS) * len(TARGET_NAMES) * ROUNDS
    est = n_runs * (DURATION + 0.7) + 90
    log(f"{'QUICK' if QUICK else 'full'} mode: {len(COMBOS)} workload×clients × {len(TARGET_NAMES)} targets "
        f"× {ROUNDS} round(s) × {DURATION} s = {n_runs} pgbench runs, about {est / 60:.0f} min; "
        f"load average {la_start}")

    # runs started by an earlier, interrupted bench may have left a cluster behind
    if os.path.exists(os.path.join(CLUSTER_DIR, "cluster.env")):
        subprocess.run(["bash", os.path.join(REPO, "tests", "pg_cluster.sh"), "stop", "--dir", CLUSTER_DIR],
                       stdin=subprocess.DEVNULL, capture_output=True)
    shutil.rmtree(os.path.join(TMP, "proxies"), ignore_errors=True)
    shutil.rmtree(os.path.join(TMP, "runs"), ignore_errors=True)
    os.makedirs(TMP, exist_ok=True)
    run_as = "postgres" if IS_ROOT else None

    try:
        env = start_cluster(SCALE)
        with open(os.path.join(TMP, "select1.sql"), "w") as f:
            f.write("SELECT 1;\n")

        wd = work_dir_for(run_as)
        if "pgswitch" in TARGET_NAMES:
            start_pgswitch(env, wd)
        if "pgswitch_w1" in TARGET_NAMES:
            start_pgswitch(env, wd, "pgswitch_w1", "1")
        if "pgbouncer" in TARGET_NAMES:
            start_pgbouncer(env, wd, run_as)
        if "pgpool" in TARGET_NAMES:
            start_pgpool(env, wd, run_as)

        logdir = os.path.join(TMP, "runs")
        os.makedirs(logdir, exist_ok=True)
        if run_as:
            pw = pwd.getpwnam(run_as)
            os.chown(logdir, pw.pw_uid, pw.pw_gid)  # harmless; pgbench runs as us

        log(f"warm-up: select-only, 8 clients, {WARMUP_SECONDS} s per target")
        for t in TARGET_NAMES:
            r = run_pgbench(env, t, "select_simple", 8, WARMUP_SECONDS, f"warmup-{t}", logdir)
            if r.get("error"):
                log(f"warning: warm-up through {t} failed: {r['error']}")

        runs = []
        i = 0
        for rnd in range(1, ROUNDS + 1):
            for wl, c in COMBOS:
                for t in TARGET_NAMES:
                    i += 1
                    tag = f"r{rnd}-{wl}-c{c}-{t}"
                    try:
                        res = run_pgbench(env, t, wl, c, DURATION, tag, logdir)
                    except RuntimeError as e:   # a proxy died: record it, go on with the others
                        res = {"target": t, "workload": wl, "clients": c, "error": str(e), "tps": None}
                    res["round"] = rnd
                    runs.append(res)
                    extra = ""
                    if res.get("proxy_cpu_us_per_stmt") is not None:
                        extra = f", proxy {res['proxy_cpu_us_per_stmt']} µs/stmt"
                    if res.get("error"):
                        extra += f"  ERROR: {res['error'][:200]}"
                    log(f"[{i}/{n_runs}] round {rnd} {wl:15s} c={c:<3d} {t:9s} "
                        f"tps {fmt(res.get('tps'))}, lat {fmt(res.get('latency_avg_ms'), 2)} ms, "
                        f"p99 {fmt(res.get('latency_p99_ms'), 2)} ms{extra}")

        # where the reads went (pgswitch /backends, pgpool SHOW pool_nodes)
        routing = {}
        if "pgswitch" in PROXIES:
            try:
                routing["pgswitch_backends"] = http_json(f"http://127.0.0.1:{PROXIES['pgswitch'].admin}/backends")
            except Exception as e:  # noqa: BLE001
                routing["pgswitch_backends"] = str(e)
        if "pgpool" in PROXIES:
            routing["pgpool_nodes"] = psql(PROXIES["pgpool"].port, "show pool_nodes", check=False)
        memory = {}
        for t, p in PROXIES.items():
            p.sample_memory()
            memory[t] = p.peak
    finally:
        stop_everything()

    ended = datetime.datetime.now(datetime.timezone.utc)
    with open("/proc/meminfo") as f:
        mem_total = int(f.readline().split()[1]) // 1024
    git = run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], check=False).stdout.strip() or "unknown"
    dirty = run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"], check=False).stdout.strip()
    meta = {
        "started_utc": started.strftime("%Y-%m-%d %H:%M UTC"),
        "ended_utc": ended.strftime("%Y-%m-%d %H:%M UTC"),
        "elapsed_min": round((time.time() - t_start) / 60, 1),
        "quick": QUICK,
        "duration_s": DURATION, "rounds": ROUNDS, "scale": SCALE,
        "targets": TARGET_NAMES,
        "combos": [{"workload": w, "clients": c} for w, c in COMBOS],
        "loadavg_start": la_start, "loadavg_end": loadavg(),
        "machine": {"nproc": NPROC, "cpu_model": cpu_model(), "mem_total_mib": mem_total,
                    "kernel": platform.release()},
        "versions": {
            "postgresql": tool_version([f"{PGBIN}/postgres", "--version"]),
            "pgbench": tool_version([f"{PGBIN}/pgbench", "--version"]),
            "pgswitch": tool_version([PGSWITCH_BIN, "--version"]),
            "pgswitch_git": git + ("+dirty" if dirty else ""),
            "pgbouncer": tool_version([PGBOUNCER_BIN, "--version"]),
            "pgpool": tool_version([PGPOOL_BIN, "--version"]),
        },
        "pgswitch_workers": os.environ.get("PGSWITCH_WORKERS") or "default",
        "pgswitch_buildtype": buildtype(),
        "log_sampling_rate": LOG_SAMPLING,
    }
    rows = summarize(runs)
    md = markdown(meta, rows, memory)
    doc = {"meta": meta, "summary": rows, "memory_kib": memory, "routing": routing, "runs": runs}

    stamp = started.strftime("%Y%m%dT%H%M%SZ") + ("-quick" if QUICK else "")
    os.makedirs(RESULTS, exist_ok=True)
    outs = [os.path.join(RESULTS, stamp)] + ([] if QUICK else [os.path.join(RESULTS, "latest")])
    for base in outs:
        with open(base + ".md", "w") as f:
            f.write(md)
        with open(base + ".json", "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
    print()
    print(md)
    log("results: " + ", ".join(b + ".{md,json}" for b in outs))
    errors = sum(r["errors"] for r in rows)
    if errors:
        log(f"{errors} pgbench run(s) failed — see the JSON (runs[].error) and {TMP}/runs/*.out")
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        stop_everything()
        sys.exit(130)
    except RuntimeError as e:       # a proxy exited while we set it up (stopped already)
        die(str(e))
