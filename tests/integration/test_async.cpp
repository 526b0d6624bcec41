// Asynchronous traffic through pgswitch: notifications and cancel requests.
#include "harness.h"

#include <doctest/doctest.h>

#include <string>
#include <thread>

using namespace e2e;

TEST_CASE("LISTEN/NOTIFY: an idle listener receives another session's notification")
{
    Proxy& px = shared_proxy();
    Conn a = px.connect_app();
    Conn b = px.connect_app();
    exec_ok(a.get(), "LISTEN e2e_channel");

    // Nothing queued yet.
    REQUIRE(PQconsumeInput(a.get()) == 1);
    CHECK(PQnotifies(a.get()) == nullptr);

    exec_ok(b.get(), "NOTIFY e2e_channel, 'hello from b'");
    exec_ok(b.get(), "SELECT pg_notify('e2e_channel', 'second')", PGRES_TUPLES_OK);
    const int sender = PQbackendPID(b.get());

    std::vector<std::pair<std::string, int>> got;
    const auto deadline = Clock::now() + 5s;
    while (got.size() < 2) {
        REQUIRE_MESSAGE(wait_readable(PQsocket(a.get()), deadline),
                        "listener got " << got.size() << " of 2 notifications within 5 s");
        REQUIRE_MESSAGE(PQconsumeInput(a.get()) == 1, errmsg(a.get()));
        while (PGnotify* n = PQnotifies(a.get())) {
            CHECK(std::string(n->relname) == "e2e_channel");
            got.emplace_back(n->extra, n->be_pid);
            PQfreemem(n);
        }
    }
    CHECK(got[0].first == "hello from b");
    CHECK(got[1].first == "second");
    // The sender pid is the one session B was given in BackendKeyData.
    CHECK(got[0].second == sender);

    // The listener still runs queries, and UNLISTEN stops delivery.
    exec_ok(a.get(), "UNLISTEN e2e_channel");
    exec_ok(b.get(), "NOTIFY e2e_channel, 'after unlisten'");
    CHECK(query_value(a.get(), "SELECT 1") == "1");
    REQUIRE(PQconsumeInput(a.get()) == 1);
    CHECK(PQnotifies(a.get()) == nullptr);

    // A session notifying itself inside a transaction sees it after COMMIT.
    exec_ok(a.get(), "LISTEN e2e_self");
    exec_ok(a.get(), "BEGIN");
    exec_ok(a.get(), "NOTIFY e2e_self, 'me'");
    exec_ok(a.get(), "COMMIT");
    PGnotify* self = PQnotifies(a.get());
    if (!self) {
        REQUIRE(wait_readable(PQsocket(a.get()), Clock::now() + 5s));
        REQUIRE(PQconsumeInput(a.get()) == 1);
        self = PQnotifies(a.get());
    }
    REQUIRE(self != nullptr);
    CHECK(std::string(self->extra) == "me");
    CHECK(self->be_pid == PQbackendPID(a.get()));
    PQfreemem(self);
}

TEST_CASE("cancel request stops a running query with 57014")
{
    Proxy& px = shared_proxy();
    Conn c = px.connect_app();
    Conn other = px.connect_app();  // must not be disturbed by the cancel

    auto run_and_cancel = [&](const char* sql) {
        REQUIRE(PQsendQuery(c.get(), sql) == 1);
        // Let the query really start on the server, then cancel.
        const auto started_by = Clock::now() + 5s;
        bool running = false;
        while (!running && Clock::now() < started_by) {
            running = query_value(other.get(),
                                  "/* pgswitch:primary */ SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                                  "AND query LIKE '%pg_sleep(30)%' AND pid <> pg_backend_pid()") != "0";
            if (!running)
                std::this_thread::sleep_for(20ms);
        }
        // With read routing the query may run on a replica, where the primary's
        // pg_stat_activity cannot see it; the fixed delay covers that case.
        if (!running)
            std::this_thread::sleep_for(300ms);

        PGcancel* cancel = PQgetCancel(c.get());
        REQUIRE(cancel != nullptr);
        const auto cancel_at = Clock::now();
        char err[256] = {0};
        const int ok = PQcancel(cancel, err, sizeof err);
        PQfreeCancel(cancel);
        REQUIRE_MESSAGE(ok == 1, "PQcancel: " << std::string(err));

        REQUIRE_MESSAGE(wait_readable(PQsocket(c.get()), cancel_at + 2s), "query not cancelled within 2 s");
        // Drain results (bounded by the deadline: only block once input is complete).
        std::string state;
        for (;;) {
            while (PQisBusy(c.get())) {
                REQUIRE_MESSAGE(wait_readable(PQsocket(c.get()), cancel_at + 2s), "result not complete within 2 s");
                REQUIRE(PQconsumeInput(c.get()) == 1);
            }
            Result r(PQgetResult(c.get()));
            if (!r)
                break;
            if (PQresultStatus(r.get()) == PGRES_FATAL_ERROR)
                state = sqlstate(r.get());
        }
        CHECK(Clock::now() - cancel_at < 2s);
        CHECK(state == "57014");
    };

    SUBCASE("outside a transaction")
    {
        run_and_cancel("SELECT pg_sleep(30)");
    }
    SUBCASE("inside a transaction")
    {
        exec_ok(c.get(), "BEGIN");
        run_and_cancel("SELECT pg_sleep(30)");
        CHECK(PQtransactionStatus(c.get()) == PQTRANS_INERROR);
        exec_ok(c.get(), "ROLLBACK");
    }

    // Both sessions go on normally; the other one was never cancelled.
    CHECK(query_value(c.get(), "SELECT 'still here'") == "still here");
    CHECK(query_value(other.get(), "SELECT 2") == "2");
}

TEST_CASE("a cancel request with no query running does not hit the next query")
{
    // libpq's PQcancel returns once the cancel connection is closed; PostgreSQL
    // closes it only after signalling the backend, so an idle session ignores it.
    // A proxy must not deliver it later, into whatever the session runs next.
    Proxy& px = shared_proxy();
    Conn c = px.connect_app();
    for (int round = 0; round < 3; ++round) {
        INFO("round " << round);
        PGcancel* idle = PQgetCancel(c.get());
        REQUIRE(idle != nullptr);
        char err[256] = {0};
        CHECK(PQcancel(idle, err, sizeof err) == 1);
        PQfreeCancel(idle);
        // A stray cancel that landed late would kill this short sleep.
        Result r(PQexec(c.get(), "SELECT 3 FROM pg_sleep(0.3)"));
        CHECK_MESSAGE(PQresultStatus(r.get()) == PGRES_TUPLES_OK,
                      "the query after an idle cancel failed: " << errmsg(c.get()));
    }
}
