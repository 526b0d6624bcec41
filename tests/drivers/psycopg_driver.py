#!/usr/bin/python3
"""psycopg 3 in its default configuration through pgswitch (see common.py).

Defaults that matter to a proxy: statements are sent over the extended
protocol with server-side binding (unnamed statements), and a query run
prepare_threshold (5) times is prepared server-side under a name (_pg3_N).
"""
import sys
import time

import psycopg
from psycopg import errors, pq

from common import (DIRECT_DSN, PRIMARY, PROXY_DSN, REPLICAS, all_on_replicas, check, metric, name, percentile,
                    run, tally)

TABLE = "drv_psycopg"


def connect(dsn=PROXY_DSN, **kw):
    return psycopg.connect(dsn, autocommit=True, **kw)


def setup():
    with connect(DIRECT_DSN) as c:
        c.execute(f"DROP TABLE IF EXISTS {TABLE}")
        c.execute(f"CREATE TABLE {TABLE} (id int PRIMARY KEY, v text)")
        c.execute(f"GRANT ALL ON {TABLE} TO PUBLIC")


def reads():
    with connect() as c:
        simple = [psycopg.ClientCursor(c).execute("SELECT inet_server_port()").fetchone()[0]
                  for _ in range(10)]
        all_on_replicas(simple, "simple protocol (ClientCursor)")
        # The default cursor: unnamed statements, then a named one once the
        # same text ran prepare_threshold times.
        ports = [c.execute("SELECT inet_server_port(), %s::int", (i,)).fetchone()[0] for i in range(20)]
        all_on_replicas(ports, f"extended, unnamed then auto-prepared (threshold {c.prepare_threshold})")
        named = [c.execute("SELECT inet_server_port() + 0 * %s::int", (i,), prepare=True).fetchone()[0]
                 for i in range(10)]
        all_on_replicas(named, "prepare=True")
        return f"simple {tally(simple)}; default {tally(ports)}; prepared {tally(named)}"


def writes():
    with connect() as c:
        ports = [c.execute(f"INSERT INTO {TABLE} VALUES (%s, 'w') RETURNING inet_server_port()",
                           (100000 + i,)).fetchone()[0] for i in range(10)]
        check(all(p == PRIMARY for p in ports), f"writes not on the primary: {tally(ports)}")
        return tally(ports)


def read_after_write():
    n = 200
    with connect() as c:
        plain = []
        for i in range(n):
            t = time.perf_counter()
            c.execute("SELECT count(*) FROM pg_class WHERE oid = %s", (i,)).fetchone()
            plain.append((time.perf_counter() - t) * 1e6)
        on_replica, stale, lat = 0, 0, []
        for i in range(n):
            c.execute(f"INSERT INTO {TABLE} VALUES (%s, 'x')", (i,))
            t = time.perf_counter()
            port, seen = c.execute(f"SELECT inet_server_port(), count(*) FROM {TABLE} WHERE id = %s",
                                   (i,)).fetchone()
            lat.append((time.perf_counter() - t) * 1e6)
            stale += seen != 1
            on_replica += port in REPLICAS
        share = on_replica / n
        metric("ryw_replica_share", f"{share:.3f}")
        metric("ryw_read_p50_us", f"{percentile(lat, 0.5):.0f}")
        metric("ryw_read_p99_us", f"{percentile(lat, 0.99):.0f}")
        metric("plain_read_p50_us", f"{percentile(plain, 0.5):.0f}")
        metric("plain_read_p99_us", f"{percentile(plain, 0.99):.0f}")
        check(stale == 0, f"{stale} of {n} reads did not see the session's own insert")
        check(share >= 0.5, f"only {on_replica} of {n} reads after a write ran on a replica")
        return f"{on_replica}/{n} on replicas, none stale"


def pipeline_outcome(dsn, table, pattern):
    """Runs `pattern` (list of ids to insert, 'sync' between groups) in
    pipeline mode; returns (exception class name or None, rows after)."""
    with connect(dsn) as c:
        c.execute(f"TRUNCATE {table}")
        c.execute(f"INSERT INTO {table} VALUES (1, 'there')")
        raised = None
        try:
            with c.pipeline() as p:
                for step in pattern:
                    if step == "sync":
                        p.sync()
                    else:
                        c.execute(f"INSERT INTO {table} VALUES (%s, 'p')", (step,))
        except psycopg.Error as e:
            raised = type(e).__name__
        rows = [r[0] for r in c.execute(f"SELECT id FROM {table} ORDER BY id").fetchall()]
        return raised, rows


def pipeline_errors():
    patterns = {
        "error first": [1, 2, 3],
        "error in the middle": [2, 1, 3],
        "error last": [2, 3, 1],
        "error in the middle, synced": [2, "sync", 1, "sync", 3],
        "error last, synced": [2, "sync", 3, "sync", 1],
    }
    with connect(DIRECT_DSN) as c:
        c.execute(f"DROP TABLE IF EXISTS {TABLE}_pipe")
        c.execute(f"CREATE TABLE {TABLE}_pipe (id int PRIMARY KEY, v text)")
        c.execute(f"GRANT ALL ON {TABLE}_pipe TO PUBLIC")
    for label, pattern in patterns.items():
        want = pipeline_outcome(DIRECT_DSN, f"{TABLE}_pipe", pattern)
        got = pipeline_outcome(PROXY_DSN, f"{TABLE}_pipe", pattern)
        check(want[0] is not None, f"{label}: direct raised nothing")
        check(got == want, f"{label}: through pgswitch {got}, direct {want}")
    return f"{len(patterns)} patterns as direct"


def serializable_read_only():
    with psycopg.connect(PROXY_DSN) as c:  # not autocommit: psycopg opens the transactions
        c.isolation_level = psycopg.IsolationLevel.SERIALIZABLE
        c.read_only = True
        port, iso, ro = c.execute("SELECT inet_server_port(), current_setting('transaction_isolation'), "
                                  "current_setting('transaction_read_only')").fetchone()
        c.commit()
        check(port == PRIMARY, f"SERIALIZABLE READ ONLY ran on {name(port)} (a standby refuses it)")
        check((iso, ro) == ("serializable", "on"), f"got isolation {iso}, read only {ro}")
        c.isolation_level = None
        ports = []
        for _ in range(4):
            ports.append(c.execute("SELECT inet_server_port()").fetchone()[0])
            c.commit()
        all_on_replicas(ports, "READ ONLY (read committed) transactions")
        return f"serializable on the primary; read only: {tally(ports)}"


def function_behind_back():
    fn = f"drv_psycopg_fn_{int(time.time() * 1000) % 100000000}"
    with connect(DIRECT_DSN) as d:  # a migration straight on the primary
        d.execute(f"CREATE FUNCTION {fn}(x int) RETURNS int LANGUAGE sql VOLATILE "
                  f"AS 'INSERT INTO {TABLE} VALUES (200000 + x, ''f'') RETURNING inet_server_port()'")
    with connect() as c:
        ports = [c.execute(f"SELECT {fn}(%s)", (i,)).fetchone()[0] for i in range(8)]
        check(all(p == PRIMARY for p in ports), f"calls ran on {tally(ports)}")
    return tally(ports)


def backend_pid():
    with connect() as c:
        pid = c.info.backend_pid
        seen = {c.execute("SELECT pg_backend_pid()").fetchone()[0] for _ in range(4)}
        check(seen == {pid}, f"pg_backend_pid() {seen}, BackendKeyData {pid}")
        return f"pid {pid}"


def terminate_backend():
    c = connect()
    c.execute("SELECT 1")
    pid = c.info.backend_pid
    with connect(DIRECT_DSN) as d:
        (done,) = d.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()
    check(done, f"pid {pid} is no backend of the primary")
    deadline = time.monotonic() + 5
    while True:
        try:
            c.execute("SELECT 1")
        except psycopg.OperationalError as e:
            return f"next query: {str(e).strip().splitlines()[0]}"
        check(time.monotonic() < deadline, "the session survived pg_terminate_backend() of its pid")
        time.sleep(0.05)


def failover_loop(role, stop_file, table):
    """For the failover test: reads (or writes) in a loop until `stop_file`
    exists; prints metrics. A write error is retried on a new connection."""
    import os
    ok = errors_ = 0
    acknowledged = []
    last_error = ""
    c = connect()
    i = 0
    while not os.path.exists(stop_file):
        i += 1
        try:
            if role == "reader":
                c.execute("SELECT count(*) FROM pg_class").fetchone()
            else:
                c.execute(f"INSERT INTO {table} VALUES (%s, 'f')", (i,))
                acknowledged.append(i)
            ok += 1
        except psycopg.Error as e:
            errors_ += 1
            last_error = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if c.closed or c.broken:
                try:
                    c = connect()
                except psycopg.Error:
                    time.sleep(0.05)
        time.sleep(0.002)
    metric("ok", ok)
    metric("errors", errors_)
    metric("last_error", repr(last_error))
    if role == "writer":
        metric("acknowledged", ",".join(map(str, acknowledged)))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--failover":
        failover_loop(sys.argv[2], sys.argv[3], sys.argv[4])
        sys.exit(0)
    setup()
    run([
        ("reads", reads),
        ("writes", writes),
        ("read_after_write", read_after_write),
        ("pipeline_errors", pipeline_errors),
        ("serializable_read_only", serializable_read_only),
        ("function_behind_back", function_behind_back),
        ("backend_pid", backend_pid),
        ("terminate_backend", terminate_backend),
    ])
