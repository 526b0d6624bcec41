#!/usr/bin/python3
"""callgrind_top.py N_DUMP TWO_N_DUMP N [inclusive|exclusive] [COUNT]

Top functions by instructions per statement, from two callgrind dumps of the same
workload with N and 2N statements (bench/callgrind.sh): per function,
(Ir in the 2N dump - Ir in the N dump) / N, so that work done once per run (login,
the SCRAM exchange with the server, connection set-up) cancels like it does in the
headline figure. Reads callgrind_annotate's function table; prints a markdown-ready
block: Ir/statement, share of the per-statement total, function (file paths and object
names dropped, long C++ signatures shortened).
"""
import re
import subprocess
import sys

ROW = re.compile(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*)$")


def table(path, inclusive):
    out = subprocess.run(["callgrind_annotate", f"--inclusive={'yes' if inclusive else 'no'}",
                          "--threshold=100", "--auto=no", path],
                         text=True, capture_output=True).stdout
    costs, started, total = {}, False, None
    for line in out.splitlines():
        if re.match(r"^Ir\s+file:function", line):
            started = True
            continue
        m = ROW.match(line)
        if not m:
            continue
        ir = int(m.group(1).replace(",", ""))
        if not started:
            if "PROGRAM TOTALS" in m.group(2):
                total = ir
            continue
        name = re.sub(r"\s+\[[^\]]*\]$", "", m.group(2))      # object file
        name = name.split(":", 1)[1] if ":" in name and not name.startswith("???:") else name[4:] \
            if name.startswith("???:") else name
        costs[name] = costs.get(name, 0) + ir
    return costs, total


def short(fn, width=120):
    # coroutine actors repeat their whole signature; template arguments are noise here
    fn = re.sub(r"\((?:[^()]|\([^()]*\))*::_Z\w+\.Frame\*\)", "(…)", fn)
    prev = None
    while prev != fn:
        prev = fn
        fn = re.sub(r"<[^<>]*>", "<…>", fn)
    fn = fn.replace("<…><…>", "<…>")
    return fn if len(fn) <= width else fn[:width - 1] + "…"


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    f1, f2, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    inclusive = (sys.argv[4] if len(sys.argv) > 4 else "exclusive") == "inclusive"
    count = int(sys.argv[5]) if len(sys.argv) > 5 else 10
    c1, t1 = table(f1, inclusive)
    c2, t2 = table(f2, inclusive)
    per_stmt_total = (t2 - t1) / n if t1 is not None and t2 is not None else None
    rows = []
    for fn in set(c1) | set(c2):
        d = (c2.get(fn, 0) - c1.get(fn, 0)) / n
        if per_stmt_total and d >= 0.98 * per_stmt_total:
            # main(), the event loop: everything (with exclusive costs too: callgrind charges
            # the frames active when its counters were zeroed with what ran below them)
            continue
        rows.append((d, fn))
    rows.sort(reverse=True)
    print(f"{'Ir/stmt':>9} {'share':>6}  function")
    for d, fn in rows[:count]:
        share = f"{100 * d / per_stmt_total:5.1f}%" if per_stmt_total else "    –"
        print(f"{d:9.0f} {share:>6}  {short(fn)}")


if __name__ == "__main__":
    main()
