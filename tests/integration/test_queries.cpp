// Queries through pgswitch with real clients: simple and extended protocol,
// pipelining, session state.
#include "harness.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace e2e;

TEST_CASE("simple query round trips: CREATE, INSERT, UPDATE, SELECT; psql -c")
{
    Proxy& px = shared_proxy();
    Conn c = px.connect_app();

    exec_ok(c.get(), "DROP TABLE IF EXISTS e2e_items");
    exec_ok(c.get(), "CREATE TABLE e2e_items (id int PRIMARY KEY, name text, qty int)");
    Result ins = exec_ok(c.get(), "INSERT INTO e2e_items VALUES (1, 'apple', 3), (2, 'pear', 5), (3, 'fig', 7)");
    CHECK(std::string(PQcmdTuples(ins.get())) == "3");
    Result upd = exec_ok(c.get(), "UPDATE e2e_items SET qty = qty * 10, name = upper(name) WHERE id >= 2");
    CHECK(std::string(PQcmdTuples(upd.get())) == "2");

    Result sel = exec_ok(c.get(), "SELECT id, name, qty FROM e2e_items ORDER BY id", PGRES_TUPLES_OK);
    REQUIRE(PQntuples(sel.get()) == 3);
    REQUIRE(PQnfields(sel.get()) == 3);
    CHECK(std::string(PQfname(sel.get(), 1)) == "name");
    const std::vector<std::vector<std::string>> expected = {
        {"1", "apple", "3"}, {"2", "PEAR", "50"}, {"3", "FIG", "70"}};
    for (int r = 0; r < 3; ++r)
        for (int f = 0; f < 3; ++f)
            CHECK(std::string(PQgetvalue(sel.get(), r, f)) == expected[size_t(r)][size_t(f)]);

    // NULLs and an empty result set survive the trip.
    Result nul = exec_ok(c.get(), "SELECT NULL::text AS n, '' AS e", PGRES_TUPLES_OK);
    CHECK(PQgetisnull(nul.get(), 0, 0) == 1);
    CHECK(PQgetisnull(nul.get(), 0, 1) == 0);
    Result none = exec_ok(c.get(), "SELECT * FROM e2e_items WHERE id < 0", PGRES_TUPLES_OK);
    CHECK(PQntuples(none.get()) == 0);

    // An error leaves the session usable.
    Result bad(PQexec(c.get(), "SELECT * FROM e2e_no_such_table"));
    CHECK(PQresultStatus(bad.get()) == PGRES_FATAL_ERROR);
    CHECK(sqlstate(bad.get()) == "42P01");
    CHECK(query_value(c.get(), "SELECT count(*) FROM e2e_items") == "3");

    // Multi-statement simple query: the last result wins in PQexec.
    CHECK(query_value(c.get(), "UPDATE e2e_items SET qty = 0 WHERE id = 1; SELECT qty FROM e2e_items WHERE id = 1") ==
          "0");

    // A transaction with ROLLBACK leaves no trace.
    exec_ok(c.get(), "BEGIN");
    exec_ok(c.get(), "DELETE FROM e2e_items");
    CHECK(PQtransactionStatus(c.get()) == PQTRANS_INTRANS);
    exec_ok(c.get(), "ROLLBACK");
    CHECK(PQtransactionStatus(c.get()) == PQTRANS_IDLE);
    CHECK(query_value(c.get(), "SELECT count(*) FROM e2e_items") == "3");

    // psql through pgswitch.
    const ClusterEnv& env = cluster();
    CommandResult pr = run_command(
        {"psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", std::to_string(px.port()), "-U",
         env.get("APP_USER"), "-d", env.get("APP_DB"), "-c", "SELECT string_agg(name, ',' ORDER BY id) FROM e2e_items"},
        {"PGPASSWORD=" + env.get("APP_PASSWORD"), "PGSSLMODE=disable", "PGCONNECT_TIMEOUT=5"}, 30s);
    INFO("psql output: " << pr.output);
    CHECK(pr.exit_code == 0);
    CHECK(pr.output.find("apple,PEAR,FIG") != std::string::npos);

    exec_ok(c.get(), "DROP TABLE e2e_items");
}

TEST_CASE("extended protocol: named and unnamed statements, describe, cursors")
{
    Proxy& px = shared_proxy();
    Conn c = px.connect_app();
    exec_ok(c.get(), "DROP TABLE IF EXISTS e2e_ext");
    exec_ok(c.get(), "CREATE TABLE e2e_ext (id int PRIMARY KEY, label text, score float8)");

    SUBCASE("named statement prepared once, executed many times")
    {
        Result prep(PQprepare(c.get(), "e2e_ins", "INSERT INTO e2e_ext VALUES ($1, $2, $3)", 3, nullptr));
        REQUIRE_MESSAGE(PQresultStatus(prep.get()) == PGRES_COMMAND_OK, errmsg(c.get()));
        for (int i = 1; i <= 500; ++i) {
            const std::string id = std::to_string(i), label = "row-" + std::to_string(i),
                              score = std::to_string(i) + ".5";
            const char* vals[3] = {id.c_str(), label.c_str(), score.c_str()};
            Result r(PQexecPrepared(c.get(), "e2e_ins", 3, vals, nullptr, nullptr, 0));
            REQUIRE_MESSAGE(PQresultStatus(r.get()) == PGRES_COMMAND_OK, "row " << i << ": " << errmsg(c.get()));
        }
        CHECK(query_value(c.get(), "SELECT count(*) || ':' || sum(id) FROM e2e_ext") == "500:125250");

        Result prep2(PQprepare(c.get(), "e2e_get", "SELECT label, score FROM e2e_ext WHERE id = $1", 1, nullptr));
        REQUIRE(PQresultStatus(prep2.get()) == PGRES_COMMAND_OK);
        for (int i : {1, 250, 500}) {
            const std::string id = std::to_string(i);
            const char* vals[1] = {id.c_str()};
            Result r(PQexecPrepared(c.get(), "e2e_get", 1, vals, nullptr, nullptr, 0));
            REQUIRE(PQresultStatus(r.get()) == PGRES_TUPLES_OK);
            REQUIRE(PQntuples(r.get()) == 1);
            CHECK(std::string(PQgetvalue(r.get(), 0, 0)) == "row-" + id);
            CHECK(std::string(PQgetvalue(r.get(), 0, 1)) == id + ".5");
        }

        // Describe the statement: parameter and result types.
        Result d(PQdescribePrepared(c.get(), "e2e_get"));
        REQUIRE(PQresultStatus(d.get()) == PGRES_COMMAND_OK);
        CHECK(PQnparams(d.get()) == 1);
        CHECK(PQparamtype(d.get(), 0) == 23);  // int4
        CHECK(PQnfields(d.get()) == 2);
        CHECK(std::string(PQfname(d.get(), 0)) == "label");
        CHECK(PQftype(d.get(), 0) == 25);   // text
        CHECK(PQftype(d.get(), 1) == 701);  // float8

        // Binary result format.
        const char* vals[1] = {"250"};
        const int fmts[1] = {0};
        Result bin(PQexecPrepared(c.get(), "e2e_get", 1, vals, nullptr, fmts, 1));
        REQUIRE(PQresultStatus(bin.get()) == PGRES_TUPLES_OK);
        CHECK(PQfformat(bin.get(), 1) == 1);
        CHECK(PQgetlength(bin.get(), 0, 1) == 8);

        // A duplicate name is the server's error, and the session survives it.
        Result dup(PQprepare(c.get(), "e2e_get", "SELECT 1", 0, nullptr));
        CHECK(PQresultStatus(dup.get()) == PGRES_FATAL_ERROR);
        CHECK(sqlstate(dup.get()) == "42P05");
        exec_ok(c.get(), "DEALLOCATE e2e_get");
        Result gone(PQdescribePrepared(c.get(), "e2e_get"));
        CHECK(sqlstate(gone.get()) == "26000");
    }

    SUBCASE("unnamed statements with parameters (PQexecParams)")
    {
        for (int i = 1; i <= 200; ++i) {
            const std::string id = std::to_string(i), label = "p'\"\\" + std::to_string(i);
            const char* vals[3] = {id.c_str(), label.c_str(), nullptr};  // NULL score
            Result r(PQexecParams(c.get(), "INSERT INTO e2e_ext VALUES ($1::int, $2::text, $3::float8)", 3, nullptr,
                                  vals, nullptr, nullptr, 0));
            REQUIRE_MESSAGE(PQresultStatus(r.get()) == PGRES_COMMAND_OK, errmsg(c.get()));
        }
        const char* vals[1] = {"77"};
        Result r(PQexecParams(c.get(), "SELECT label, score IS NULL FROM e2e_ext WHERE id = $1", 1, nullptr, vals,
                              nullptr, nullptr, 0));
        REQUIRE(PQresultStatus(r.get()) == PGRES_TUPLES_OK);
        REQUIRE(PQntuples(r.get()) == 1);
        CHECK(std::string(PQgetvalue(r.get(), 0, 0)) == "p'\"\\77");
        CHECK(std::string(PQgetvalue(r.get(), 0, 1)) == "t");

        // A bind error (bad parameter) is reported and the session goes on.
        const char* badv[1] = {"not-a-number"};
        Result bad(PQexecParams(c.get(), "SELECT $1::int", 1, nullptr, badv, nullptr, nullptr, 0));
        CHECK(PQresultStatus(bad.get()) == PGRES_FATAL_ERROR);
        CHECK(sqlstate(bad.get()) == "22P02");
        CHECK(query_value(c.get(), "SELECT count(*) FROM e2e_ext") == "200");
    }

    SUBCASE("cursor: DECLARE, FETCH in pieces, describe portal")
    {
        exec_ok(c.get(), "INSERT INTO e2e_ext SELECT g, 'c' || g, g FROM generate_series(1, 1000) g");
        exec_ok(c.get(), "BEGIN");
        exec_ok(c.get(), "DECLARE e2e_cur CURSOR FOR SELECT id, label FROM e2e_ext ORDER BY id");
        Result dp(PQdescribePortal(c.get(), "e2e_cur"));
        REQUIRE_MESSAGE(PQresultStatus(dp.get()) == PGRES_COMMAND_OK, errmsg(c.get()));
        CHECK(PQnfields(dp.get()) == 2);
        CHECK(std::string(PQfname(dp.get(), 1)) == "label");
        long long sum = 0;
        int rows = 0, batches = 0;
        for (;;) {
            Result f = exec_ok(c.get(), "FETCH 128 FROM e2e_cur", PGRES_TUPLES_OK);
            const int n = PQntuples(f.get());
            if (n == 0)
                break;
            ++batches;
            for (int i = 0; i < n; ++i)
                sum += std::stoll(PQgetvalue(f.get(), i, 0));
            rows += n;
        }
        CHECK(rows == 1000);
        CHECK(batches == 8);
        CHECK(sum == 500500);
        exec_ok(c.get(), "CLOSE e2e_cur");
        exec_ok(c.get(), "COMMIT");
    }

    exec_ok(c.get(), "DROP TABLE e2e_ext");
}

TEST_CASE("pipeline mode: several queries, one sync, results in order")
{
    Proxy& px = shared_proxy();
    Conn c = px.connect_app();
    exec_ok(c.get(), "DROP TABLE IF EXISTS e2e_pipe");
    exec_ok(c.get(), "CREATE TABLE e2e_pipe (id int, v text)");

    REQUIRE(PQenterPipelineMode(c.get()) == 1);
    const int n = 20;
    for (int i = 0; i < n; ++i) {
        const std::string id = std::to_string(i), v = "v" + std::to_string(i);
        const char* vals[2] = {id.c_str(), v.c_str()};
        REQUIRE(PQsendQueryParams(c.get(), "INSERT INTO e2e_pipe VALUES ($1::int, $2)", 2, nullptr, vals, nullptr,
                                  nullptr, 0) == 1);
    }
    REQUIRE(PQsendQueryParams(c.get(), "SELECT count(*), string_agg(v, ',' ORDER BY id) FROM e2e_pipe", 0, nullptr,
                              nullptr, nullptr, nullptr, 0) == 1);
    REQUIRE(PQpipelineSync(c.get()) == 1);

    // Second batch: an error aborts the rest of the batch until the sync.
    const char* one[1] = {"1"};
    REQUIRE(PQsendQueryParams(c.get(), "SELECT 1/($1::int - 1)", 1, nullptr, one, nullptr, nullptr, 0) == 1);
    REQUIRE(PQsendQueryParams(c.get(), "SELECT 42", 0, nullptr, nullptr, nullptr, nullptr, 0) == 1);
    REQUIRE(PQpipelineSync(c.get()) == 1);
    // Third batch works again.
    REQUIRE(PQsendQueryParams(c.get(), "SELECT 'after'", 0, nullptr, nullptr, nullptr, nullptr, 0) == 1);
    REQUIRE(PQpipelineSync(c.get()) == 1);

    auto next = [&]() -> Result { return Result(PQgetResult(c.get())); };
    for (int i = 0; i < n; ++i) {
        Result r = next();
        REQUIRE_MESSAGE(PQresultStatus(r.get()) == PGRES_COMMAND_OK, "insert " << i << ": " << errmsg(c.get()));
        CHECK(std::string(PQcmdStatus(r.get())) == "INSERT 0 1");
        REQUIRE(next() == nullptr);
    }
    {
        Result r = next();
        REQUIRE(PQresultStatus(r.get()) == PGRES_TUPLES_OK);
        CHECK(std::string(PQgetvalue(r.get(), 0, 0)) == std::to_string(n));
        CHECK(std::string(PQgetvalue(r.get(), 0, 1)).rfind("v0,v1,v2,", 0) == 0);
        REQUIRE(next() == nullptr);
    }
    CHECK(PQresultStatus(next().get()) == PGRES_PIPELINE_SYNC);

    {
        Result r = next();
        CHECK(PQresultStatus(r.get()) == PGRES_FATAL_ERROR);
        CHECK(sqlstate(r.get()) == "22012");
        REQUIRE(next() == nullptr);
        Result aborted = next();
        CHECK(PQresultStatus(aborted.get()) == PGRES_PIPELINE_ABORTED);
        REQUIRE(next() == nullptr);
        CHECK(PQresultStatus(next().get()) == PGRES_PIPELINE_SYNC);
    }
    {
        Result r = next();
        REQUIRE(PQresultStatus(r.get()) == PGRES_TUPLES_OK);
        CHECK(std::string(PQgetvalue(r.get(), 0, 0)) == "after");
        REQUIRE(next() == nullptr);
        CHECK(PQresultStatus(next().get()) == PGRES_PIPELINE_SYNC);
    }
    REQUIRE(PQexitPipelineMode(c.get()) == 1);
    CHECK(query_value(c.get(), "SELECT count(*) FROM e2e_pipe") == std::to_string(n));
    exec_ok(c.get(), "DROP TABLE e2e_pipe");
}

TEST_CASE("session state: SET/SHOW, startup application_name, backend pid")
{
    Proxy& px = shared_proxy();
    Conn c = px.connect_app("application_name=e2e_startup_app");

    // The startup parameter reached the server, and the client saw the server's ParameterStatus.
    CHECK(query_value(c.get(), "SELECT current_setting('application_name')") == "e2e_startup_app");
    const char* ps = PQparameterStatus(c.get(), "application_name");
    REQUIRE(ps != nullptr);
    CHECK(std::string(ps) == "e2e_startup_app");
    const char* sv = PQparameterStatus(c.get(), "server_version");
    REQUIRE(sv != nullptr);
    CHECK(std::string(sv).rfind("15", 0) == 0);
    CHECK(PQserverVersion(c.get()) >= 150000);

    exec_ok(c.get(), "SET application_name = 'e2e_renamed'");
    CHECK(query_value(c.get(), "SHOW application_name") == "e2e_renamed");
    // ParameterStatus for the change was passed through.
    ps = PQparameterStatus(c.get(), "application_name");
    REQUIRE(ps != nullptr);
    CHECK(std::string(ps) == "e2e_renamed");

    exec_ok(c.get(), "SET search_path = e2e_nowhere, public");
    CHECK(query_value(c.get(), "SHOW search_path") == "e2e_nowhere, public");
    // Several statements later the setting still holds.
    for (int i = 0; i < 5; ++i)
        CHECK(query_value(c.get(), "SELECT current_setting('search_path')") == "e2e_nowhere, public");
    exec_ok(c.get(), "RESET search_path");
    CHECK(query_value(c.get(), "SHOW search_path") == "\"$user\", public");

    // Startup options (-c settings) reach the server too.
    Conn o = px.connect_app("options='-c statement_timeout=4321'");
    CHECK(query_value(o.get(), "SHOW statement_timeout") == "4321ms");

    // BackendKeyData carries the primary's server pid in session mode.
    const int pid = PQbackendPID(c.get());
    CHECK(pid > 0);
    CHECK(query_value(c.get(), "/* pgswitch:primary */ SELECT pg_backend_pid()") == std::to_string(pid));
    CHECK(query_value(c.get(),
                      "/* pgswitch:primary */ SELECT count(*) FROM pg_stat_activity WHERE pid = pg_backend_pid() "
                      "AND application_name = 'e2e_renamed'") == "1");

    // Two sessions get distinct server processes.
    Conn c2 = px.connect_app();
    CHECK(PQbackendPID(c2.get()) != pid);
    CHECK(query_value(c2.get(), "/* pgswitch:primary */ SELECT pg_backend_pid()") ==
          std::to_string(PQbackendPID(c2.get())));
    // The second session does not see the first one's settings.
    CHECK(query_value(c2.get(), "SHOW application_name") != "e2e_renamed");
}
