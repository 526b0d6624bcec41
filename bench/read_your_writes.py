#!/usr/bin/python3
"""read_your_writes.py — reads right after the session's own writes (`make bench-ryw`).

Starts a throwaway primary + 2 streaming replicas (tests/pg_cluster.sh, synchronous and
then asynchronous replication) and pgswitch in front of them, then runs one psycopg
session (default configuration) that alternates `INSERT` and a `SELECT` of the row just
inserted, and one that only reads, and reports:

  * the share of reads-after-writes served by replicas (and whether any was stale);
  * their latency (p50, p99) against plain reads of the same session shape, i.e. what
    read-your-writes costs them;
  * the same loop with routing.read_your_writes_wait_ms = 0 (reads after writes go to the
    primary whenever no replica is known to have the write: the behaviour before the
    replay wait).

Rounds alternate the configurations. Results: bench/results/read_your_writes.md (and .jsonl).
Environment: RYW_ITERATIONS (default 2000), RYW_ROUNDS (3), PGSWITCH_BIN.
"""
import datetime
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import psycopg

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PGSWITCH = os.environ.get("PGSWITCH_BIN", os.path.join(REPO, "build", "proxy", "pgswitch"))
N = int(os.environ.get("RYW_ITERATIONS", "2000"))
ROUNDS = int(os.environ.get("RYW_ROUNDS", "3"))


def free_port():
    # Below the ephemeral range, so that no client socket takes it meanwhile.
    for port in range(21000, 32000, 7):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port")


def read_env(path):
    env = {}
    for line in open(path):
        if "=" in line and not line.startswith("#"):
            k, v = line.rstrip("\n").split("=", 1)
            env[k] = v.replace("\\ ", " ")
    return env


def start_pgswitch(env, wait_ms, workdir):
    port, admin = free_port(), free_port()
    while admin == port:
        admin = free_port()
    conf = os.path.join(workdir, f"pgswitch-{wait_ms}.toml")
    with open(conf, "w") as f:
        f.write(f"""[proxy]
listen = "127.0.0.1:{port}"
[admin]
listen = "127.0.0.1:{admin}"
[routing]
read_your_writes_wait_ms = {wait_ms}
[health]
user = "postgres"
password = "postgres"
[[users]]
name = "app"
password = "app"
""")
        for name, key in (("primary", "PRIMARY_PORT"), ("replica1", "REPLICA1_PORT"), ("replica2", "REPLICA2_PORT")):
            f.write(f'[[backends]]\nname = "{name}"\nhost = "127.0.0.1"\nport = {env[key]}\n')
    log = open(os.path.join(workdir, f"pgswitch-{wait_ms}.log"), "w")
    proc = subprocess.Popen([PGSWITCH, "-c", conf], stdout=log, stderr=subprocess.STDOUT)
    dsn = f"host=127.0.0.1 port={port} user=app password=app dbname=app"
    deadline = time.monotonic() + 15
    while True:
        try:
            with psycopg.connect(dsn, autocommit=True) as c:
                ports = {c.execute("SELECT inet_server_port()").fetchone()[0] for _ in range(8)}
                if int(env["PRIMARY_PORT"]) not in ports:
                    return proc, dsn
        except psycopg.Error:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("pgswitch did not start serving reads from replicas")
        time.sleep(0.05)


def loop(dsn, primary, table):
    """N plain reads, then N (insert, read it back); returns figures."""
    with psycopg.connect(dsn, autocommit=True) as c:
        plain = []
        for i in range(N):
            t = time.perf_counter()
            c.execute(f"SELECT count(*) FROM {table} WHERE id = %s", (-i,)).fetchone()
            plain.append((time.perf_counter() - t) * 1e6)
        after, on_replica, stale = [], 0, 0
        for i in range(N):
            c.execute(f"INSERT INTO {table} VALUES (%s)", (i,))
            t = time.perf_counter()
            port, n = c.execute(f"SELECT inet_server_port(), count(*) FROM {table} WHERE id = %s", (i,)).fetchone()
            after.append((time.perf_counter() - t) * 1e6)
            on_replica += port != primary
            stale += n != 1
    q = lambda v, p: sorted(v)[min(len(v) - 1, int(len(v) * p))]
    return {
        "plain_p50_us": q(plain, 0.5), "plain_p99_us": q(plain, 0.99),
        "after_p50_us": q(after, 0.5), "after_p99_us": q(after, 0.99),
        "replica_share": on_replica / N, "stale": stale,
    }


def run_cluster(sync, workdir, results):
    cdir = os.path.join(workdir, "sync" if sync else "async")
    args = ["bash", os.path.join(REPO, "tests", "pg_cluster.sh"), "start", "--dir", cdir] + (["--sync"] if sync else [])
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        env = read_env(os.path.join(cdir, "cluster.env"))
        primary = int(env["PRIMARY_PORT"])
        direct = f"host=127.0.0.1 port={primary} user=postgres password=postgres dbname=app"
        with psycopg.connect(direct, autocommit=True) as c:
            c.execute("CREATE TABLE ryw (id int PRIMARY KEY)")
            c.execute("GRANT ALL ON ryw TO app")
        for rnd in range(ROUNDS):
            for wait_ms in (20, 0):
                with psycopg.connect(direct, autocommit=True) as c:
                    c.execute("TRUNCATE ryw")
                proc, dsn = start_pgswitch(env, wait_ms, workdir)
                try:
                    r = loop(dsn, primary, "ryw")
                finally:
                    proc.terminate()
                    proc.wait(10)
                r.update(replication="synchronous" if sync else "asynchronous", wait_ms=wait_ms, round=rnd + 1)
                results.append(r)
                print(json.dumps(r), flush=True)
    finally:
        subprocess.run(["bash", os.path.join(REPO, "tests", "pg_cluster.sh"), "stop", "--dir", cdir],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main():
    workdir = tempfile.mkdtemp(prefix="pgswitch-ryw-")
    os.chmod(workdir, 0o755)
    results = []
    for sync in (True, False):
        run_cluster(sync, workdir, results)
    commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = os.path.join(REPO, "bench", "results", "read_your_writes")
    with open(out + ".jsonl", "a") as f:
        for r in results:
            f.write(json.dumps(dict(r, commit=commit, at=stamp)) + "\n")
    med = lambda rows, k: statistics.median(r[k] for r in rows)
    lines = [f"# Reads after the session's own writes ({stamp}, pgswitch {commit})", "",
             f"`make bench-ryw`: one psycopg session, {N} plain reads then {N} × (INSERT, SELECT of that row), "
             f"primary + 2 replicas on this machine, medians of {ROUNDS} rounds.", "",
             "| replication | read_your_writes_wait_ms | reads after writes on replicas | stale | "
             "read after write p50 / p99 µs | plain read p50 / p99 µs | added p50 µs |",
             "|---|---|---|---|---|---|---|"]
    for sync in ("synchronous", "asynchronous"):
        for wait_ms in (20, 0):
            rows = [r for r in results if r["replication"] == sync and r["wait_ms"] == wait_ms]
            lines.append(f"| {sync} | {wait_ms} | {100 * med(rows, 'replica_share'):.1f}% | "
                         f"{sum(r['stale'] for r in rows)} | {med(rows, 'after_p50_us'):.0f} / {med(rows, 'after_p99_us'):.0f} | "
                         f"{med(rows, 'plain_p50_us'):.0f} / {med(rows, 'plain_p99_us'):.0f} | "
                         f"{med(rows, 'after_p50_us') - med(rows, 'plain_p50_us'):.0f} |")
    open(out + ".md", "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))
    subprocess.run(["rm", "-rf", workdir])


if __name__ == "__main__":
    sys.exit(main())
