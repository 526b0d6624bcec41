"""Shared by the Python driver scripts (psycopg_driver.py, asyncpg_driver.py).

The C++ end-to-end test (tests/integration/test_drivers.cpp) runs each driver
script against a pgswitch in front of a primary and two replicas and reads its
output: one line per scenario, `scenario NAME ok [details]` or
`scenario NAME FAIL why`, and `metric NAME VALUE` lines for figures.

Environment: PGSW_HOST PGSW_PORT PGSW_USER PGSW_PASSWORD PGSW_DB (pgswitch),
PRIMARY_PORT, REPLICA_PORTS (comma-separated), SUPERUSER SUPERPASS (direct
logins to the primary for what a migration or an operator does behind
pgswitch's back), SCENARIOS (optional comma-separated filter).
"""
import os
import sys
import time
import traceback

ENV = os.environ
HOST = ENV.get("PGSW_HOST", "127.0.0.1")
PORT = int(ENV.get("PGSW_PORT", "6432"))
USER = ENV.get("PGSW_USER", "app")
PASSWORD = ENV.get("PGSW_PASSWORD", "app")
DB = ENV.get("PGSW_DB", "app")
PRIMARY = int(ENV["PRIMARY_PORT"]) if "PRIMARY_PORT" in ENV else 0
REPLICAS = {int(p) for p in ENV.get("REPLICA_PORTS", "").split(",") if p}
SUPERUSER = ENV.get("SUPERUSER", "postgres")
SUPERPASS = ENV.get("SUPERPASS", "postgres")
WANTED = {s for s in ENV.get("SCENARIOS", "").split(",") if s}

PROXY_DSN = f"host={HOST} port={PORT} user={USER} password={PASSWORD} dbname={DB} connect_timeout=10"
DIRECT_DSN = f"host={HOST} port={PRIMARY} user={SUPERUSER} password={SUPERPASS} dbname={DB} connect_timeout=10"

failures = 0


class Failed(Exception):
    pass


def check(cond, why):
    if not cond:
        raise Failed(why)


def name(port):
    if port == PRIMARY:
        return "primary"
    if port in REPLICAS:
        return f"replica:{port}"
    return f"unknown:{port}"


def tally(ports):
    """'primary=0 replica:1234=10 ...' for a list of server ports."""
    out = {}
    for p in ports:
        out[name(p)] = out.get(name(p), 0) + 1
    return " ".join(f"{k}={v}" for k, v in sorted(out.items()))


def all_on_replicas(ports, what, both=True):
    check(ports, f"{what}: nothing ran")
    on_primary = sum(1 for p in ports if p == PRIMARY)
    check(on_primary == 0, f"{what}: {on_primary} of {len(ports)} on the primary ({tally(ports)})")
    check(all(p in REPLICAS for p in ports), f"{what}: ran on an unknown server ({tally(ports)})")
    if both and len(REPLICAS) > 1 and len(ports) >= 4:
        check(len(set(ports)) > 1, f"{what}: one replica only ({tally(ports)})")


def percentile(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * q))]


def metric(key, value):
    print(f"metric {key} {value}", flush=True)


def run(scenarios):
    """Runs (name, fn) pairs; fn returns an optional detail string."""
    global failures
    for scenario, fn in scenarios:
        if WANTED and scenario not in WANTED:
            continue
        started = time.monotonic()
        try:
            detail = fn() or ""
            print(f"scenario {scenario} ok {detail} ({time.monotonic() - started:.2f}s)", flush=True)
        except Failed as e:
            failures += 1
            print(f"scenario {scenario} FAIL {e}", flush=True)
        except Exception as e:  # an error the driver raised: the scenario failed
            failures += 1
            print(f"scenario {scenario} FAIL {type(e).__name__}: {e}", flush=True)
            traceback.print_exc(file=sys.stdout)
    sys.exit(1 if failures else 0)
