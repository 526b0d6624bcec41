#!/usr/bin/python3
"""psycopg 3 through pgswitch: server-side prepared statements (prepare=True) used 1000 times,
alternating a read and a write, then 50 transactions using both. Run by test_routing.cpp:

    /usr/bin/python3 routing_psycopg.py CONNINFO PRIMARY_PORT REPLICA1_PORT REPLICA2_PORT

Table rt_py (id int PRIMARY KEY) must exist and be empty. Prints "OK ..." and exits 0 on success.
"""
import sys
import time

import psycopg

conninfo = sys.argv[1]
primary, r1, r2 = (int(a) for a in sys.argv[2:5])
names = {primary: "primary", r1: "replica1", r2: "replica2"}

READ = "SELECT inet_server_port(), %s::int * 3"
WRITE = "INSERT INTO rt_py VALUES (%s) RETURNING inet_server_port()"

reads = {p: 0 for p in names}
writes = {p: 0 for p in names}
with psycopg.connect(conninfo, autocommit=True) as conn:
    for i in range(1000):
        if i % 2 == 0:
            port, v = conn.execute(READ, (i,), prepare=True).fetchone()
            assert v == i * 3, (i, v)
            reads[port] += 1
        else:
            (port,) = conn.execute(WRITE, (i,), prepare=True).fetchone()
            assert port == primary, f"write {i} ran on {names.get(port, port)}"
            writes[port] += 1

    # The same prepared statements inside transactions: both on the primary.
    for i in range(1000, 1050):
        with conn.transaction():
            (wp,) = conn.execute(WRITE, (i,), prepare=True).fetchone()
            rp, v = conn.execute(READ, (i,), prepare=True).fetchone()
            assert v == i * 3
            assert wp == primary and rp == primary, (i, wp, rp)

    # The statements really are server-side: the primary holds psycopg's _pg3_* names.
    (n,) = conn.execute(
        "/* pgswitch:primary */ SELECT count(*) FROM pg_prepared_statements WHERE name LIKE '\\_pg3\\_%%'"
    ).fetchone()
    assert n >= 1, "no server-side prepared statements on the primary"

    # Once the replicas catch up, the prepared read runs on both of them.
    seen = set()
    deadline = time.monotonic() + 10
    while seen != {r1, r2}:
        assert time.monotonic() < deadline, f"prepared read never reached both replicas: {seen}"
        port, v = conn.execute(READ, (7,), prepare=True).fetchone()
        assert v == 21
        if port in (r1, r2):
            seen.add(port)
        time.sleep(0.005)

fmt = lambda d: " ".join(f"{names[p]}={k}" for p, k in d.items())
print(f"OK reads: {fmt(reads)}; writes: {fmt(writes)}; prepared on primary: {n}")
