// Classifier cost per statement, uncached (libpg_query parse + tree walk) and
// cached (StatementCache hit), over a fixed mix of statements.
// Usage: classifier_bench [iterations]; prints one line per mode, in µs/statement.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "routing/classifier.h"
#include "routing/statement_cache.h"

using namespace pgswitch::routing;

namespace {

const std::vector<std::string> statements = {
    "SELECT 1",
    "SELECT abalance FROM pgbench_accounts WHERE aid = 48213",
    "UPDATE pgbench_accounts SET abalance = abalance + 12 WHERE aid = 48213",
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, 48213, 12, CURRENT_TIMESTAMP)",
    "SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.created_at > now() - interval "
    "'1 day' ORDER BY o.id LIMIT 50",
    "WITH recent AS (SELECT * FROM events WHERE ts > now() - interval '5 minutes') SELECT kind, count(*) FROM recent "
    "GROUP BY kind",
    "SELECT * FROM accounts WHERE id = 7 FOR UPDATE",
    "BEGIN",
    "COMMIT",
    "SET search_path = app, public",
};

double run(bool cached, int iterations)
{
    StatementCache cache(cached ? 10'000 : 0);
    volatile bool sink = false;
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < iterations; ++i)
        for (const auto& sql : statements) {
            if (cached)
                sink = sink ^ classify_cached(cache, sql, nullptr)->write;
            else
                sink = sink ^ classify(sql, nullptr).write;
        }
    const auto elapsed = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start);
    return elapsed.count() / (static_cast<double>(iterations) * static_cast<double>(statements.size()));
}

}  // namespace

int main(int argc, char** argv)
{
    const int iterations = argc > 1 ? std::atoi(argv[1]) : 2000;
    (void)run(false, 50);  // warm up allocator and caches
    std::printf("uncached: %.2f us/statement (%zu statements x %d)\n", run(false, iterations), statements.size(),
                iterations);
    std::printf("cached:   %.3f us/statement (%zu statements x %d)\n", run(true, iterations * 50), statements.size(),
                iterations * 50);
    // pgbench -S in simple mode: a new literal every time, one shared entry.
    StatementCache cache(10'000);
    const int n = iterations * 50;
    const auto start = std::chrono::steady_clock::now();
    volatile bool sink = false;
    for (int i = 0; i < n; ++i) {
        const auto sql = "SELECT abalance FROM pgbench_accounts WHERE aid = " + std::to_string(i * 7919 % 100000);
        sink = sink ^ classify_cached(cache, sql, nullptr)->write;
    }
    const auto us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
    std::printf("literal-varying (pgbench -S shape): %.3f us/statement (%d statements, hits %llu, misses %llu)\n",
                us / n, n, static_cast<unsigned long long>(cache.hits()),
                static_cast<unsigned long long>(cache.misses()));
}
