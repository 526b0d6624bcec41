#!/usr/bin/python3
"""idle_clients.py — memory per idle client of pgswitch, and whether it stays responsive.

Starts a throwaway cluster (tests/pg_cluster.sh, primary + replicas) and pgswitch with the
given pool mode, both by PID; opens N client connections through pgswitch (each completes its
login and, unless --no-query, runs one `SELECT 1`, then idles); reads pgswitch's VmRSS and
VmHWM from /proc/<pid>/status before and after; meanwhile times GET /health, GET /status
and a new connection + query through pgswitch. Prints KiB per idle client and writes one
JSON line to bench/results/idle_clients.jsonl (and a markdown summary with --md).

  /usr/bin/python3 bench/idle_clients.py --clients 150 --pool-mode session
  /usr/bin/python3 bench/idle_clients.py --clients 10000 --pool-mode transaction --pool-size 20

Session mode: every client holds a server connection, and the test cluster allows 200
(max_connections), so keep N <= ~150 there. The tool counts server connections on the
primary while the clients idle and reports them, so a pool mode that does not share server
connections shows up as such instead of failing silently.

Uses Debian's python3 with psycopg 3 (python3-psycopg).
"""
import argparse
import datetime
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

# psycopg's default wait function uses select(), which fails on descriptors
# above 1023: with thousands of clients open every later query would.
os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_epoll")
import psycopg  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PGBIN = os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin")
BUILD = os.environ.get("BUILD_DIR", "build")
DEFAULT_BIN = os.path.join(BUILD if os.path.isabs(BUILD) else os.path.join(REPO, BUILD), "proxy", "pgswitch")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_for(what, fn, timeout=60, interval=0.2):
    """Polls fn() until it returns something truthy or the deadline passes."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except RuntimeError:
            raise
        except Exception as e:  # noqa: BLE001 — keep polling until the deadline
            last = e
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def read_env(path):
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                k, v = line.split("=", 1)
                env[k] = v.strip("'\"")
    return env


def status_kib(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon", "Threads"):
                out[k] = int(v.split()[0])
    return out


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def nofile_limits(pid):
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                parts = line.split()
                return parts[3], parts[4]
    return None


def http_get(url, timeout=5):
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=timeout) as r:
        body = r.read()
        code = r.status
    return (time.perf_counter() - t0) * 1000, code, body


def conninfo(port, env):
    return (f"host=127.0.0.1 port={port} user={env['APP_USER']} password={env['APP_PASSWORD']} "
            f"dbname={env['APP_DB']} connect_timeout=10 sslmode=disable")


def probe(port, admin, env, rounds=5):
    """Latencies (ms) of the admin API and of a new client through pgswitch."""
    res = {"health_ms": [], "status_ms": [], "connect_ms": [], "query_ms": [], "errors": []}
    for _ in range(rounds):
        for key, path in (("health_ms", "/health"), ("status_ms", "/status")):
            try:
                ms, code, _ = http_get(f"http://127.0.0.1:{admin}{path}")
                if code != 200:
                    res["errors"].append(f"{path}: HTTP {code}")
                res[key].append(ms)
            except Exception as e:  # noqa: BLE001
                res["errors"].append(f"{path}: {e}")
        try:
            t0 = time.perf_counter()
            with psycopg.connect(conninfo(port, env), autocommit=True) as c:
                t1 = time.perf_counter()
                c.execute("SELECT abalance FROM pgbench_accounts WHERE aid = 1").fetchall() \
                    if HAVE_PGBENCH else c.execute("SELECT 1").fetchall()
                t2 = time.perf_counter()
            res["connect_ms"].append((t1 - t0) * 1000)
            res["query_ms"].append((t2 - t1) * 1000)
        except Exception as e:  # noqa: BLE001
            res["errors"].append(f"query: {e}")
    summary = {}
    for k in ("health_ms", "status_ms", "connect_ms", "query_ms"):
        v = res[k]
        summary[k] = {"median": round(statistics.median(v), 2), "max": round(max(v), 2)} if v else None
    summary["errors"] = res["errors"]
    return summary


HAVE_PGBENCH = False


def primary_client_connections(env):
    with psycopg.connect(f"host=127.0.0.1 port={env['PRIMARY_PORT']} user={env['SUPERUSER']} "
                         f"password={env['SUPERPASS']} dbname=postgres", autocommit=True) as c:
        return c.execute("select count(*) from pg_stat_activity where backend_type = 'client backend' "
                         "and usename = %s", (env["APP_USER"],)).fetchone()[0]


def all_server_connections(env):
    total = 0
    for key in ("PRIMARY_PORT", "REPLICA1_PORT", "REPLICA2_PORT", "REPLICA3_PORT"):
        if key not in env:
            continue
        with psycopg.connect(f"host=127.0.0.1 port={env[key]} user={env['SUPERUSER']} "
                             f"password={env['SUPERPASS']} dbname=postgres", autocommit=True) as c:
            total += c.execute("select count(*) from pg_stat_activity where backend_type = 'client backend' "
                               "and usename = %s", (env["APP_USER"],)).fetchone()[0]
    return total


def write_config(path, port, admin, env, args):
    backends = f"""
[[backends]]
name = "primary"
host = "127.0.0.1"
port = {env['PRIMARY_PORT']}
"""
    for i in range(1, 4):
        if f"REPLICA{i}_PORT" in env:
            backends += f"""
[[backends]]
name = "replica{i}"
host = "127.0.0.1"
port = {env[f'REPLICA{i}_PORT']}
"""
    pool = f"pool_size = {args.pool_size}\n" if args.pool_mode == "transaction" and args.pool_size else ""
    with open(path, "w") as f:
        f.write(f"""# written by bench/idle_clients.py
[proxy]
listen = "127.0.0.1:{port}"
pool_mode = "{args.pool_mode}"
max_client_connections = {args.clients + 100}
{f"workers = {args.workers}" if args.workers else "# workers: pgswitch's default"}
{pool}
[admin]
listen = "127.0.0.1:{admin}"

[health]
interval_ms = 1000
user = "{env['SUPERUSER']}"
password = "{env['SUPERPASS']}"
{backends}
[[users]]
name = "{env['APP_USER']}"
password = "{env['APP_PASSWORD']}"
""")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", "-n", type=int, default=150)
    ap.add_argument("--pool-mode", choices=["session", "transaction"], default="session")
    ap.add_argument("--pool-size", type=int, default=0, help="pool_size (transaction mode; 0 = pgswitch default)")
    ap.add_argument("--workers", type=int, default=0, help="proxy.workers (0 = pgswitch default)")
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--no-query", action="store_true", help="clients only log in, no SELECT 1 before idling")
    ap.add_argument("--idle-seconds", type=float, default=3.0,
                    help="how long the clients idle while the probes run (at least one probe round)")
    ap.add_argument("--bin", default=os.environ.get("PGSWITCH_BIN", DEFAULT_BIN))
    ap.add_argument("--label", default="", help="free text stored with the result (e.g. before/after)")
    ap.add_argument("--md", default="", help="also append a markdown row to this file")
    ap.add_argument("--pgswitch-nofile", type=int, default=0,
                    help="start pgswitch with this soft RLIMIT_NOFILE (to check it raises its own)")
    args = ap.parse_args()

    # our own descriptors: one per client socket, plus slack
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.clients + 256
    if soft < need:
        new = min(hard, max(need, soft)) if hard != resource.RLIM_INFINITY else need
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        log(f"RLIMIT_NOFILE soft {soft} -> {new} (hard {hard})")
        if new < need:
            log(f"warning: hard limit {hard} < {need}: some clients will fail")
    if not os.access(args.bin, os.X_OK):
        sys.exit(f"{args.bin} not found — make build")

    tmp = tempfile.mkdtemp(prefix="pgswitch-idle-")
    if os.geteuid() == 0:
        os.chmod(tmp, 0o755)
    cluster_dir = os.path.join(tmp, "cluster")
    proc = None
    logf = None
    cluster_started = False
    clients = []
    result = {}
    try:
        log(f"starting PostgreSQL (primary + {args.replicas} replicas) in {cluster_dir}")
        cluster_started = True
        r = subprocess.run(["bash", os.path.join(REPO, "tests", "pg_cluster.sh"), "start", "--dir", cluster_dir,
                            "--replicas", str(args.replicas)], stdin=subprocess.DEVNULL, text=True,
                           capture_output=True)
        if r.returncode != 0:
            raise RuntimeError(f"cluster start failed:\n{r.stdout}{r.stderr}")
        env = read_env(os.path.join(cluster_dir, "cluster.env"))
        # a one-row-per-aid table like pgbench's, for the probe query (small: -s 1)
        r = subprocess.run([f"{PGBIN}/pgbench", "-i", "-q", "-s", "1", "-h", "127.0.0.1", "-p", env["PRIMARY_PORT"],
                            "-U", env["APP_USER"], env["APP_DB"]], stdin=subprocess.DEVNULL, text=True,
                           capture_output=True, env=dict(os.environ, PGPASSWORD=env["APP_PASSWORD"]))
        global HAVE_PGBENCH
        HAVE_PGBENCH = r.returncode == 0

        port, admin = free_port(), free_port()
        conf = os.path.join(tmp, "pgswitch.toml")
        write_config(conf, port, admin, env, args)
        logf = open(os.path.join(tmp, "pgswitch.log"), "wb")

        def lower_nofile():
            if args.pgswitch_nofile:
                h = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
                resource.setrlimit(resource.RLIMIT_NOFILE, (args.pgswitch_nofile, h))
        proc = subprocess.Popen([args.bin, "-c", conf], stdin=subprocess.DEVNULL, stdout=logf,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                env=dict(os.environ, PGSWITCH_LOG="info"), preexec_fn=lower_nofile)
        log(f"pgswitch pid {proc.pid}, 127.0.0.1:{port}, admin {admin}, pool_mode {args.pool_mode}")

        def ready():
            if proc.poll() is not None:
                raise RuntimeError(f"pgswitch exited ({proc.returncode}); log {logf.name}")
            ms, code, body = http_get(f"http://127.0.0.1:{admin}/backends")
            data = json.loads(body)
            bs = data.get("backends", data) if isinstance(data, dict) else data
            return code == 200 and all(b.get("state") == "up" for b in bs) and len(bs) == 1 + args.replicas
        wait_for("pgswitch to see every backend up", ready, timeout=60)

        def one_query():
            with psycopg.connect(conninfo(port, env), autocommit=True) as c:
                return c.execute("SELECT 1").fetchone()[0] == 1
        wait_for("a query through pgswitch", one_query, timeout=30)
        # warm-up: a few clients in and out so that pools, caches and arenas exist before "before"
        for _ in range(3):
            one_query()
        probe(port, admin, env, rounds=2)
        before = status_kib(proc.pid)
        fds_before = fd_count(proc.pid)
        log(f"before: VmRSS {before['VmRSS']} KiB, VmHWM {before['VmHWM']} KiB, fds {fds_before}, "
            f"NOFILE soft/hard {nofile_limits(proc.pid)}")

        t0 = time.monotonic()
        failures = []
        for i in range(args.clients):
            try:
                c = psycopg.connect(conninfo(port, env), autocommit=True)
                if not args.no_query:
                    c.execute("SELECT 1").fetchone()
                clients.append(c)
            except Exception as e:  # noqa: BLE001
                failures.append(str(e).strip())
                if len(failures) >= 20:
                    log(f"stopping after {len(failures)} failed connections; last: {failures[-1]}")
                    break
            if (i + 1) % 1000 == 0:
                log(f"{i + 1} clients connected ({time.monotonic() - t0:.1f} s)")
        connect_s = time.monotonic() - t0
        log(f"{len(clients)} clients connected and idle in {connect_s:.1f} s ({len(failures)} failed)")

        # idle: probe while the clients sit there
        idle_deadline = time.monotonic() + args.idle_seconds
        probes = probe(port, admin, env)
        while time.monotonic() < idle_deadline:
            time.sleep(min(0.5, max(0.0, idle_deadline - time.monotonic())))
        after = status_kib(proc.pid)
        fds_after = fd_count(proc.pid)
        try:
            server_conns = all_server_connections(env)
        except Exception as e:  # noqa: BLE001
            server_conns = f"error: {e}"
        alive = sum(1 for c in clients if not c.closed)
        n = len(clients)
        per_client = (after["VmRSS"] - before["VmRSS"]) / n if n else None
        per_client_anon = (after["RssAnon"] - before["RssAnon"]) / n if n else None
        log(f"after:  VmRSS {after['VmRSS']} KiB, VmHWM {after['VmHWM']} KiB, RssAnon {after['RssAnon']} KiB, "
            f"fds {fds_after}, threads {after['Threads']}, server connections (user app, all nodes) {server_conns}")

        # what an idle client leaves behind once it is gone
        for c in clients:
            c.close()
        clients = []

        def settled():
            return status_kib(proc.pid)["VmRSS"] if fd_count(proc.pid) <= fds_before + 2 else None
        try:
            wait_for("pgswitch to close the client sockets", settled, timeout=30)
        except RuntimeError as e:
            log(str(e))
        closed = status_kib(proc.pid)

        git = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], text=True,
                             capture_output=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"], text=True,
                               capture_output=True).stdout.strip()
        result = {
            "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "git": git + ("+dirty" if dirty else ""), "binary": args.bin, "label": args.label,
            "pool_mode": args.pool_mode, "pool_size": args.pool_size or None, "workers": args.workers or "default",
            "clients_requested": args.clients, "clients_idle": n, "connect_failures": len(failures),
            "first_failures": failures[:3], "query_before_idle": not args.no_query,
            "connect_seconds": round(connect_s, 1),
            "rss_before_kib": before["VmRSS"], "rss_after_kib": after["VmRSS"],
            "hwm_before_kib": before["VmHWM"], "hwm_after_kib": after["VmHWM"],
            "rss_anon_before_kib": before["RssAnon"], "rss_anon_after_kib": after["RssAnon"],
            "rss_after_close_kib": closed["VmRSS"],
            "kib_per_idle_client": round(per_client, 2) if per_client is not None else None,
            "anon_kib_per_idle_client": round(per_client_anon, 2) if per_client_anon is not None else None,
            "fds_before": fds_before, "fds_after": fds_after, "threads": after["Threads"],
            "server_connections_while_idle": server_conns, "clients_still_open": alive,
            "pgswitch_nofile_soft_hard": nofile_limits(proc.pid),
            "probes_while_idle": probes,
        }
        print()
        print(f"pool_mode {args.pool_mode}, {n} idle clients ({len(failures)} failed), "
              f"server connections held: {server_conns}")
        print(f"pgswitch VmRSS {before['VmRSS']} -> {after['VmRSS']} KiB: {per_client:.2f} KiB per idle client "
              f"(anonymous {per_client_anon:.2f}); VmHWM {before['VmHWM']} -> {after['VmHWM']} KiB; "
              f"after the clients left {closed['VmRSS']} KiB")
        for k in ("health_ms", "status_ms", "connect_ms", "query_ms"):
            v = probes[k]
            print(f"  while idle: {k[:-3]:8s} median {v['median']} ms, max {v['max']} ms" if v
                  else f"  while idle: {k[:-3]:8s} FAILED")
        if probes["errors"]:
            print(f"  probe errors: {probes['errors'][:5]}")
        if args.pool_mode == "transaction" and isinstance(server_conns, int) and server_conns >= n:
            print("  NOTE: transaction mode requested but every idle client holds a server connection: "
                  "this build does not pool per transaction")
            result["transaction_pooling_effective"] = False
        os.makedirs(os.path.join(REPO, "bench", "results"), exist_ok=True)
        with open(os.path.join(REPO, "bench", "results", "idle_clients.jsonl"), "a") as f:
            f.write(json.dumps(result) + "\n")
        if args.md:
            with open(args.md, "a") as f:
                p = probes
                f.write(f"| {result['date_utc']} | {result['git']} | {args.label} | {args.pool_mode} | {n} "
                        f"| {server_conns} | {before['VmRSS']} → {after['VmRSS']} | **{per_client:.1f}** "
                        f"| {after['VmHWM']} "
                        f"| {p['health_ms']['median'] if p['health_ms'] else '–'} / "
                        f"{p['status_ms']['median'] if p['status_ms'] else '–'} "
                        f"| {p['connect_ms']['median'] if p['connect_ms'] else '–'} + "
                        f"{p['query_ms']['median'] if p['query_ms'] else '–'} |\n")
        return 0 if not failures and not probes["errors"] else 1
    finally:
        for c in clients:
            try:
                c.close()
            except Exception:  # noqa: BLE001
                pass
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if logf:
            logf.close()
        if cluster_started:
            subprocess.run(["bash", os.path.join(REPO, "tests", "pg_cluster.sh"), "stop", "--dir", cluster_dir],
                           stdin=subprocess.DEVNULL, capture_output=True)
        if os.environ.get("KEEP_TMP"):
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
