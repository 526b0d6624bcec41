// POST /routing/explain and real sessions agree (issue 12 item 3): for each statement, sent by
// a session that just logged in as a simple Query, as an extended request of the unnamed
// statement and as a named prepared statement (PQprepare, then PQexecPrepared), the server the
// session ran it on has the role explain named: primary, or a replica. Pins, prepared
// BEGIN/COMMIT, hints, session identity, functions and multi-statement queries included, in
// session and in transaction pooling. Where a session ran its last request is what GET
// /clients reports as its backend.
#include "harness.h"
#include "http_client.h"

#include <doctest/doctest.h>

#include <libpq-fe.h>

#include <map>
#include <string>
#include <thread>
#include <vector>

using namespace e2e;
using nlohmann::json;

namespace {

enum class Shape { simple, extended, prepared };

const char* name_of(Shape s)
{
    switch (s) {
    case Shape::simple:
        return "simple";
    case Shape::extended:
        return "extended";
    case Shape::prepared:
        return "prepared";
    }
    return "?";
}

struct Statement {
    std::string sql;
    bool simple_only = false;  ///< several statements, COPY or an empty query: no Parse can carry it
};

/// The statements compared: reads, writes, pins, transactions, bookkeeping, hints, identity.
const std::vector<Statement> k_statements = {
    {"SELECT 1"},
    {"SELECT a FROM explain_t"},
    {"VALUES (1)"},
    {"TABLE explain_t"},
    {"SHOW search_path"},
    {"EXPLAIN SELECT * FROM explain_t"},
    {"WITH x AS (SELECT 1 AS a) SELECT a FROM x"},
    {"SELECT count(*) FROM explain_t WHERE a > 1"},
    {"SELECT explain_stable()"},
    {"SELECT explain_volatile()"},
    {"INSERT INTO explain_t VALUES (1)"},
    {"UPDATE explain_t SET a = a WHERE a < 0"},
    {"DELETE FROM explain_t WHERE a < 0"},
    {"SELECT a FROM explain_t FOR UPDATE"},
    {"WITH d AS (DELETE FROM explain_t WHERE a < 0 RETURNING a) SELECT a FROM d"},
    {"SELECT nextval('explain_s')"},
    {"SELECT currval('explain_s')"},
    {"SELECT pg_try_advisory_lock(7)"},
    {"SELECT pg_notify('explain', 'x')"},
    {"LISTEN explain_channel"},
    {"DECLARE c CURSOR WITH HOLD FOR SELECT 1"},
    {"BEGIN"},
    {"BEGIN READ ONLY"},
    {"START TRANSACTION READ ONLY"},
    {"BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY"},
    {"BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"},
    {"COMMIT"},
    {"ROLLBACK"},
    {"SET search_path = public"},
    {"SET statement_timeout = '5s'"},
    {"RESET ALL"},
    {"PREPARE explain_p AS SELECT 1"},
    {"DEALLOCATE ALL"},
    {"SELECT pg_backend_pid()"},
    {"SHOW transaction_read_only"},
    {"/* pgswitch:primary */ SELECT 1"},
    {"/* pgswitch:replica */ SELECT 1"},
    {"/* pgswitch:replica */ INSERT INTO explain_t VALUES (2)"},
    {"SELECT 1; SELECT 2", true},
    {"SELECT 1; INSERT INTO explain_t VALUES (3)", true},
    {"BEGIN; SELECT 1; COMMIT", true},
    {"SET search_path = public; SELECT 1", true},
    {"COPY explain_t TO STDOUT", true},
    {"COPY explain_t FROM STDIN", true},
    {"", true},
};

/// A superuser connection straight to the primary (no pgswitch).
Conn direct_primary()
{
    const ClusterEnv& env = cluster();
    return connect_ok("host=" + env.host() + " port=" + std::to_string(env.primary_port()) +
                      " dbname=" + cq(env.get("APP_DB")) + " user=" + cq(env.get("SUPERUSER")) +
                      " password=" + cq(env.get("SUPERPASS")) + " connect_timeout=5 sslmode=disable");
}

/// The objects the statements use, made on the primary before pgswitch starts (so its
/// function catalog knows them) and readable by app.
void create_objects()
{
    Conn c = direct_primary();
    exec_ok(c.get(), "DROP TABLE IF EXISTS explain_t; CREATE TABLE explain_t (a int); "
                     "GRANT ALL ON explain_t TO " +
                         cluster().get("APP_USER") +
                         "; "
                         "CREATE SEQUENCE IF NOT EXISTS explain_s; GRANT ALL ON SEQUENCE explain_s TO " +
                         cluster().get("APP_USER") +
                         "; "
                         "CREATE OR REPLACE FUNCTION explain_stable() RETURNS int STABLE LANGUAGE sql AS 'SELECT 1'; "
                         "CREATE OR REPLACE FUNCTION explain_volatile() RETURNS int VOLATILE LANGUAGE sql AS "
                         "'SELECT 1'");
}

/// Ends whatever `r` started (COPY in or out) and clears every result of the request.
void finish_request(PGconn* c, PGresult* first)
{
    PGresult* r = first;
    while (r) {
        const auto st = PQresultStatus(r);
        PQclear(r);
        if (st == PGRES_COPY_OUT) {
            char* buf = nullptr;
            while (PQgetCopyData(c, &buf, 0) > 0)
                PQfreemem(buf);
        } else if (st == PGRES_COPY_IN) {
            PQputCopyEnd(c, nullptr);
        }
        r = PQgetResult(c);
    }
}

/// Sends `sql` in `shape` on `c` and waits for its whole reply.
void run_in_shape(PGconn* c, const std::string& sql, Shape shape)
{
    switch (shape) {
    case Shape::simple:
        REQUIRE(PQsendQuery(c, sql.c_str()) == 1);
        break;
    case Shape::extended:
        REQUIRE(PQsendQueryParams(c, sql.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 0) == 1);
        break;
    case Shape::prepared: {
        Result prep(PQprepare(c, "explain_stmt", sql.c_str(), 0, nullptr));
        REQUIRE_MESSAGE(PQresultStatus(prep.get()) == PGRES_COMMAND_OK, errmsg(c));
        REQUIRE(PQsendQueryPrepared(c, "explain_stmt", 0, nullptr, nullptr, nullptr, 0) == 1);
        break;
    }
    }
    finish_request(c, PQgetResult(c));
}

/// What /clients says the session named `app` last ran on.
std::string backend_of(int admin_port, const std::string& app)
{
    const auto r = http::get(admin_port, "/clients");
    REQUIRE(r.status == 200);
    const json clients = r.json();  // kept: a range-for over r.json()[...] would dangle
    for (const auto& c : clients["clients"])
        if (c.value("application_name", "") == app)
            return c["backend"].is_string() ? c["backend"].get<std::string>() : "";
    FAIL("no client with application_name " << app << " in " << r.str());
    return "";
}

/// Role by backend name, from GET /backends.
std::map<std::string, std::string> roles_of(int admin_port)
{
    std::map<std::string, std::string> roles;
    const auto deadline = Clock::now() + 15s;
    for (;;) {
        roles.clear();
        const auto r = http::get(admin_port, "/backends");
        int up = 0;
        const json list = r.status == 200 ? r.json() : json::object();
        if (list.contains("backends"))
            for (const auto& b : list["backends"]) {
                roles[b.value("name", "")] = b.value("role", "");
                up += b.value("state", "") == "up";
            }
        if (up == 3 && roles["primary"] == "primary")
            return roles;
        REQUIRE_MESSAGE(Clock::now() < deadline, "backends not all up (" << up << "): " << r.str());
        std::this_thread::sleep_for(20ms);
    }
}

/// Every statement in every shape it fits: the session's server has explain's role.
int compare_all(const Proxy& px)
{
    const int ap = px.admin_port();
    const auto roles = roles_of(ap);
    int compared = 0;
    for (const auto& st : k_statements) {
        const auto e = http::post(ap, "/routing/explain", json{{"sql", st.sql}}.dump());
        REQUIRE_MESSAGE(e.status == 200, e.str());
        const auto target = e.json()["target"];
        REQUIRE_MESSAGE(target.is_string(), st.sql << ": " << e.str());
        const auto want = roles.at(target.get<std::string>());
        for (Shape shape : {Shape::simple, Shape::extended, Shape::prepared}) {
            if (st.simple_only && shape != Shape::simple)
                continue;
            const std::string app = "explain_" + std::to_string(compared);
            Conn c = px.connect_app("application_name=" + app);
            run_in_shape(c.get(), st.sql, shape);
            const auto ran_on = backend_of(ap, app);
            INFO(name_of(shape) << " \"" << st.sql << "\": explain -> " << e.str() << "; session ran on " << ran_on);
            CHECK(roles.count(ran_on) == 1);
            CHECK(roles.at(ran_on) == want);
            ++compared;
        }
    }
    return compared;
}

}  // namespace

TEST_CASE("explain: a new session runs each statement, in each request shape, where explain says")
{
    E2E_SKIP_IF_DIRECT("admin API");
    create_objects();
    for (const std::string mode : {"session", "transaction"}) {
        CAPTURE(mode);
        ProxyOptions o;
        o.health_interval_ms = 100;
        o.proxy_extra = "pool_mode = \"" + mode + "\"\n";
        Proxy px(o);
        px.start();
        const int compared = compare_all(px);
        MESSAGE(mode << " pooling: " << compared << " statement/shape pairs compared");
        CHECK(compared >= 50);
    }
}
