#!/usr/bin/python3
"""asyncpg in its default configuration through pgswitch (see common.py).

Defaults that matter to a proxy: every fetch/fetchval/fetchrow is a named
server-side prepared statement (its statement cache), prepared with
Parse/Describe/Flush and run with Bind/Execute/Sync; results are decoded
with the description the prepare returned; executemany pipelines thousands
of Bind/Execute before one Sync.
"""
import asyncio
import sys
import time

import asyncpg

from common import (DB, HOST, PASSWORD, PORT, PRIMARY, REPLICAS, SUPERPASS, SUPERUSER, USER, all_on_replicas,
                    check, metric, name, percentile, run, tally)

TABLE = "drv_asyncpg"


async def connect(direct=False):
    if direct:
        return await asyncpg.connect(host=HOST, port=PRIMARY, user=SUPERUSER, password=SUPERPASS, database=DB)
    return await asyncpg.connect(host=HOST, port=PORT, user=USER, password=PASSWORD, database=DB)


async def setup():
    d = await connect(direct=True)
    await d.execute(f"DROP TABLE IF EXISTS {TABLE}; CREATE TABLE {TABLE} (id int PRIMARY KEY, v text); "
                    f"GRANT ALL ON {TABLE} TO PUBLIC")
    await d.close()


async def reads():
    c = await connect()
    cached = [await c.fetchval("SELECT inet_server_port()") for _ in range(20)]
    all_on_replicas(cached, "fetchval (statement cache: one named statement)")
    args = [await c.fetchval("SELECT inet_server_port() + 0 * $1::int", i) for i in range(20)]
    all_on_replicas(args, "fetchval with arguments")
    st = await c.prepare("SELECT inet_server_port()")
    prepared = [await st.fetchval() for _ in range(10)]
    all_on_replicas(prepared, "prepare()d statement")
    await c.close()
    return f"cached {tally(cached)}; args {tally(args)}; prepared {tally(prepared)}"


async def writes():
    c = await connect()
    ports = [await c.fetchval(f"INSERT INTO {TABLE} VALUES ($1, 'w') RETURNING inet_server_port()", 100000 + i)
             for i in range(10)]
    await c.close()
    check(all(p == PRIMARY for p in ports), f"writes not on the primary: {tally(ports)}")
    return tally(ports)


async def read_after_write():
    n = 200
    c = await connect()
    on_replica, stale, lat = 0, 0, []
    for i in range(n):
        await c.execute(f"INSERT INTO {TABLE} VALUES ({i}, 'x')")
        t = time.perf_counter()
        row = await c.fetchrow(f"SELECT inet_server_port() AS port, count(*) AS n FROM {TABLE} WHERE id = $1", i)
        lat.append((time.perf_counter() - t) * 1e6)
        stale += row["n"] != 1
        on_replica += row["port"] in REPLICAS
    await c.close()
    metric("ryw_replica_share", f"{on_replica / n:.3f}")
    metric("ryw_read_p50_us", f"{percentile(lat, 0.5):.0f}")
    metric("ryw_read_p99_us", f"{percentile(lat, 0.99):.0f}")
    check(stale == 0, f"{stale} of {n} reads did not see the session's own insert")
    check(on_replica >= n // 2, f"only {on_replica} of {n} reads after a write ran on a replica")
    return f"{on_replica}/{n} on replicas, none stale"


async def executemany_outcome(direct):
    c = await connect(direct)
    await c.execute(f"TRUNCATE {TABLE}_many")
    raised = None
    try:
        # The fourth row repeats the first: a unique violation mid-batch.
        await c.executemany(f"INSERT INTO {TABLE}_many VALUES ($1, $2)",
                            [(i if i != 4 else 1, "x" * 1000) for i in range(1, 200)])
    except asyncpg.PostgresError as e:
        raised = type(e).__name__
    rows = await c.fetchval(f"SELECT count(*) FROM {TABLE}_many")
    still = await c.fetchval("SELECT 1")
    await c.close()
    return raised, rows, still


async def pipeline_errors():
    d = await connect(direct=True)
    await d.execute(f"DROP TABLE IF EXISTS {TABLE}_many; CREATE TABLE {TABLE}_many (id int PRIMARY KEY, v text); "
                    f"GRANT ALL ON {TABLE}_many TO PUBLIC")
    await d.close()
    want = await executemany_outcome(True)
    got = await executemany_outcome(False)
    check(want[0] == "UniqueViolationError", f"direct: {want}")
    check(got == want, f"through pgswitch {got}, direct {want}")
    return f"executemany with an error mid-batch: {got[0]}, {got[1]} rows, as direct"


async def serializable_read_only():
    c = await connect()
    async with c.transaction(isolation="serializable", readonly=True):
        port = await c.fetchval("SELECT inet_server_port()")
        iso = await c.fetchval("SELECT current_setting('transaction_isolation')")
    check(port == PRIMARY, f"SERIALIZABLE READ ONLY ran on {name(port)} (a standby refuses it)")
    check(iso == "serializable", f"isolation {iso}")
    ports = []
    for _ in range(4):
        async with c.transaction(readonly=True):
            ports.append(await c.fetchval("SELECT inet_server_port()"))
    await c.close()
    all_on_replicas(ports, "READ ONLY (read committed) transactions")
    return f"serializable on the primary; read only: {tally(ports)}"


async def function_behind_back():
    fn = f"drv_asyncpg_fn_{int(time.time() * 1000) % 100000000}"
    d = await connect(direct=True)
    await d.execute(f"CREATE FUNCTION {fn}(x int) RETURNS int LANGUAGE sql VOLATILE "
                    f"AS 'INSERT INTO {TABLE} VALUES (200000 + x, ''f'') RETURNING inet_server_port()'")
    await d.close()
    c = await connect()
    ports = [await c.fetchval(f"SELECT {fn}($1)", i) for i in range(8)]
    await c.close()
    check(all(p == PRIMARY for p in ports), f"calls ran on {tally(ports)}")
    return tally(ports)


async def schema_change():
    # The session's own DDL: its cached statements must follow (asyncpg
    # re-prepares when the server says the cached plan changed type).
    c = await connect()
    await c.execute(f"DROP TABLE IF EXISTS {TABLE}_ddl; CREATE TABLE {TABLE}_ddl (a int, b int)")
    await c.execute(f"INSERT INTO {TABLE}_ddl VALUES (1, 2)")
    first = [tuple(await c.fetchrow(f"SELECT * FROM {TABLE}_ddl")) for _ in range(4)]
    await c.execute(f"ALTER TABLE {TABLE}_ddl ALTER COLUMN b SET DATA TYPE text")
    after = [tuple(await c.fetchrow(f"SELECT * FROM {TABLE}_ddl")) for _ in range(4)]
    await c.execute(f"DROP TABLE {TABLE}_ddl")
    await c.close()
    check(first == [(1, 2)] * 4, f"before: {first}")
    check(after == [(1, "2")] * 4, f"after ALTER TABLE: {after}")
    return "rows follow the new column type"


async def copy():
    # copy_records_to_table prepares an introspection statement with
    # Parse/Describe/Flush (on a replica), then sends COPY FROM STDIN: the
    # COPY must still reach the primary.
    d = await connect(direct=True)
    await d.execute(f"DROP TABLE IF EXISTS {TABLE}_copy; CREATE TABLE {TABLE}_copy (id int, v text); "
                    f"GRANT ALL ON {TABLE}_copy TO PUBLIC")
    await d.close()
    c = await connect()
    await c.copy_records_to_table(f"{TABLE}_copy", records=[(i, f"r{i}") for i in range(100)])
    n = await c.fetchval(f"SELECT count(*) FROM {TABLE}_copy")
    chunks = []

    async def sink(data):
        chunks.append(data)

    out = await c.copy_from_table(f"{TABLE}_copy", output=sink)
    await c.close()
    check(n == 100, f"{n} rows after COPY")
    return f"100 rows in, {out}"


async def serializable_session():
    # default_transaction_isolation = serializable: a standby refuses every
    # statement of such a session, so its reads run on the primary.
    c = await connect()
    await c.execute("SET default_transaction_isolation = serializable")
    ports = [await c.fetchval("SELECT inet_server_port()") for _ in range(4)]
    await c.close()
    check(all(p == PRIMARY for p in ports), f"reads ran on {tally(ports)}")
    return tally(ports)


async def backend_pid():
    c = await connect()
    pid = c.get_server_pid()
    seen = {await c.fetchval("SELECT pg_backend_pid()") for _ in range(4)}
    await c.close()
    check(seen == {pid}, f"pg_backend_pid() {seen}, BackendKeyData {pid}")
    return f"pid {pid}"


async def terminate_backend():
    c = await connect()
    await c.fetchval("SELECT 1")
    pid = c.get_server_pid()
    d = await connect(direct=True)
    done = await d.fetchval("SELECT pg_terminate_backend($1)", pid)
    await d.close()
    check(done, f"pid {pid} is no backend of the primary")
    deadline = time.monotonic() + 5
    while True:
        try:
            await asyncio.wait_for(c.fetchval("SELECT 1"), 5)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError) as e:
            return f"next query: {type(e).__name__}"
        except asyncpg.InternalClientError as e:
            # asyncpg read the FATAL while idle and the query started before
            # it read the end of the connection (a race of asyncpg's own, as
            # with a direct server): the session must still be over.
            while not c.is_closed():
                check(time.monotonic() < deadline, f"{e!r}, and the connection stayed open")
                await asyncio.sleep(0.01)
            return "next query: InternalClientError, connection closed"
        check(time.monotonic() < deadline, "the session survived pg_terminate_backend() of its pid")
        await asyncio.sleep(0.05)


def sync(coro_fn):
    return lambda: asyncio.run(coro_fn())


if __name__ == "__main__":
    asyncio.run(setup())
    run([
        ("reads", sync(reads)),
        ("writes", sync(writes)),
        ("read_after_write", sync(read_after_write)),
        ("pipeline_errors", sync(pipeline_errors)),
        ("serializable_read_only", sync(serializable_read_only)),
        ("function_behind_back", sync(function_behind_back)),
        ("schema_change", sync(schema_change)),
        ("copy", sync(copy)),
        ("serializable_session", sync(serializable_session)),
        ("backend_pid", sync(backend_pid)),
        ("terminate_backend", sync(terminate_backend)),
    ])
