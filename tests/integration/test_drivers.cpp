// Real drivers in their default configuration through pgswitch (issue 10):
// psycopg 3, asyncpg, node-postgres and pgjdbc each run the scenarios of
// tests/drivers/ (reads on replicas whatever the protocol or statement
// naming, writes on the primary, reads after writes that are never stale and
// mostly on replicas, errors in pipelines and batches as without pgswitch,
// SERIALIZABLE READ ONLY, a function created behind pgswitch's back, the pid
// the client was given, pg_terminate_backend() of it). Each script prints
// `scenario NAME ok|FAIL ...` and `metric NAME VALUE` lines; every scenario
// a driver runs must be ok.
#include "harness.h"

#include <doctest/doctest.h>
#include <libpq-fe.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace e2e;

namespace {

std::string drivers_dir()
{
    return std::string(PGSWITCH_SOURCE_ROOT) + "/tests/drivers";
}

/// node-postgres as tests/drivers/setup.sh installed it.
std::string node_modules()
{
    if (const char* dir = std::getenv("PGSWITCH_NODE_MODULES"))
        return dir;
    return std::string(PGSWITCH_SOURCE_ROOT) + "/build/drivers/node/node_modules";
}

struct DriverRun {
    std::map<std::string, std::string> scenarios;  ///< name -> "ok ..." or "FAIL ..."
    std::map<std::string, std::string> metrics;
    CommandResult result;
};

DriverRun run_driver(const std::vector<std::string>& argv, const Proxy& px, std::chrono::seconds timeout)
{
    const ClusterEnv& env = cluster();
    std::vector<std::string> vars = {
        "PGSW_HOST=127.0.0.1",
        "PGSW_PORT=" + std::to_string(px.port()),
        "PGSW_USER=" + env.get("APP_USER"),
        "PGSW_PASSWORD=" + env.get("APP_PASSWORD"),
        "PGSW_DB=" + env.get("APP_DB"),
        "PRIMARY_PORT=" + std::to_string(env.primary_port()),
        "REPLICA_PORTS=" + std::to_string(env.replica_port(1)) + "," + std::to_string(env.replica_port(2)),
        "SUPERUSER=" + env.get("SUPERUSER"),
        "SUPERPASS=" + env.get("SUPERPASS"),
        "NODE_MODULES_DIR=" + node_modules(),
        "PYTHONPATH=" + drivers_dir(),
    };
    DriverRun run;
    run.result = run_command(argv, vars, timeout);
    std::istringstream lines(run.result.output);
    std::string line;
    while (std::getline(lines, line)) {
        std::istringstream words(line);
        std::string kind, name;
        words >> kind >> name;
        std::string rest;
        std::getline(words, rest);
        if (!rest.empty() && rest.front() == ' ')
            rest.erase(0, 1);
        if (kind == "scenario")
            run.scenarios[name] = rest;
        if (kind == "metric")
            run.metrics[name] = rest;
    }
    return run;
}

/// Every scenario in `expected` ran and is ok.
void check_scenarios(const std::string& driver, const DriverRun& run, const std::vector<std::string>& expected)
{
    INFO(driver << " output:\n" << run.result.output);
    CHECK_MESSAGE(!run.result.timed_out, driver << " timed out");
    for (const auto& name : expected) {
        auto it = run.scenarios.find(name);
        CHECK_MESSAGE(it != run.scenarios.end(), driver << ": scenario " << name << " did not run");
        if (it != run.scenarios.end())
            CHECK_MESSAGE(it->second.rfind("ok", 0) == 0, driver << ": " << name << ": " << it->second);
    }
    CHECK(run.result.exit_code == 0);
    std::ostringstream figures;
    for (const auto& [k, v] : run.metrics)
        figures << " " << k << "=" << v;
    MESSAGE(driver << ":" << figures.str());
}

std::unique_ptr<Proxy> driver_proxy()
{
    ProxyOptions o;
    o.health_interval_ms = 100;
    auto px = std::make_unique<Proxy>(std::move(o));
    px->start();
    return px;
}

const std::vector<std::string> common_scenarios = {
    "reads",       "writes",           "read_after_write", "serializable_read_only", "function_behind_back",
    "backend_pid", "terminate_backend"};

std::vector<std::string> with(std::vector<std::string> v, std::initializer_list<std::string> more)
{
    v.insert(v.end(), more);
    return v;
}

}  // namespace

TEST_CASE("drivers: psycopg 3 in its default configuration (unnamed statements, auto-prepare, pipeline mode)")
{
    E2E_SKIP_IF_DIRECT("the scenarios tell replicas from the primary");
    auto px = driver_proxy();
    const auto run = run_driver({"/usr/bin/python3", drivers_dir() + "/psycopg_driver.py"}, *px, 180s);
    check_scenarios("psycopg", run, with(common_scenarios, {"pipeline_errors"}));
}

TEST_CASE("drivers: asyncpg in its default configuration (statement cache, Parse/Describe/Flush, executemany)")
{
    E2E_SKIP_IF_DIRECT("the scenarios tell replicas from the primary");
    auto px = driver_proxy();
    const auto run = run_driver({"/usr/bin/python3", drivers_dir() + "/asyncpg_driver.py"}, *px, 180s);
    check_scenarios("asyncpg", run,
                    with(common_scenarios, {"pipeline_errors", "schema_change", "copy", "serializable_session"}));
}

TEST_CASE("drivers: node-postgres in its default configuration (simple, unnamed and named queries)")
{
    E2E_SKIP_IF_DIRECT("the scenarios tell replicas from the primary");
    REQUIRE_MESSAGE(std::filesystem::exists(node_modules() + "/pg"),
                    "node-postgres is not installed in " << node_modules() << " (tests/drivers/setup.sh)");
    auto px = driver_proxy();
    const auto run = run_driver({"node", drivers_dir() + "/node_driver.js"}, *px, 180s);
    check_scenarios("node-postgres", run, with(common_scenarios, {"named_parse_error"}));
}

TEST_CASE("drivers: pgjdbc in its default configuration (server-prepared statements, SET at connect, batches)")
{
    E2E_SKIP_IF_DIRECT("the scenarios tell replicas from the primary");
    const std::string jar = "/usr/share/java/postgresql.jar";
    REQUIRE_MESSAGE(std::filesystem::exists(jar), jar << " is missing (Debian libpostgresql-jdbc-java)");
    char tmpl[] = "/tmp/pgswitch-jdbc-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    const std::string classes = tmpl;
    const auto compiled = run_command({"javac", "-d", classes, "-cp", jar, drivers_dir() + "/JdbcDriver.java"}, {},
                                      120s);
    REQUIRE_MESSAGE(compiled.exit_code == 0, "javac: " << compiled.output);
    auto px = driver_proxy();
    const auto run = run_driver({"java", "-cp", classes + ":" + jar, "JdbcDriver"}, *px, 180s);
    std::filesystem::remove_all(classes);
    check_scenarios("pgjdbc", run, with(common_scenarios, {"pipeline_errors"}));
}

namespace {

int port_of(PGresult* r)
{
    return std::atoi(PQgetvalue(r, 0, 0));
}

std::string tally(const std::vector<int>& ports)
{
    std::map<std::string, int> m;
    for (int p : ports)
        m[p == cluster().primary_port() ? "primary" : "replica:" + std::to_string(p)]++;
    std::ostringstream out;
    for (const auto& [k, v] : m)
        out << k << "=" << v << " ";
    return out.str();
}

void all_on_replicas(const std::vector<int>& ports, const std::string& what)
{
    INFO(what << ": " << tally(ports));
    const int r1 = cluster().replica_port(1), r2 = cluster().replica_port(2);
    int on1 = 0, on2 = 0;
    for (int p : ports) {
        CHECK((p == r1 || p == r2));
        on1 += p == r1;
        on2 += p == r2;
    }
    CHECK(on1 > 0);
    CHECK(on2 > 0);
}

}  // namespace

TEST_CASE("drivers: libpq as applications use it (PQexec, PQexecParams, PQprepare, pipeline-free)")
{
    E2E_SKIP_IF_DIRECT("the scenarios tell replicas from the primary");
    auto px = driver_proxy();
    const int primary = cluster().primary_port();
    Conn su = connect_ok("host=127.0.0.1 port=" + std::to_string(primary) + " dbname=" + cluster().get("APP_DB") +
                         " user=" + cluster().get("SUPERUSER") + " password=" + cluster().get("SUPERPASS"));
    exec_ok(su.get(), "DROP TABLE IF EXISTS drv_libpq; CREATE TABLE drv_libpq (id int PRIMARY KEY); "
                      "GRANT ALL ON drv_libpq TO PUBLIC");
    Conn c = px->connect_app();

    SUBCASE("reads on replicas: simple, unnamed, named statements")
    {
        std::vector<int> simple, unnamed, named;
        for (int i = 0; i < 10; ++i)
            simple.push_back(port_of(exec_ok(c.get(), "SELECT inet_server_port()", PGRES_TUPLES_OK).get()));
        for (int i = 0; i < 10; ++i) {
            const std::string v = std::to_string(i);
            const char* values[1] = {v.c_str()};
            Result r(
                PQexecParams(c.get(), "SELECT inet_server_port(), $1::int", 1, nullptr, values, nullptr, nullptr, 0));
            REQUIRE_MESSAGE(PQresultStatus(r.get()) == PGRES_TUPLES_OK, errmsg(c.get()));
            unnamed.push_back(port_of(r.get()));
        }
        Result prep(PQprepare(c.get(), "drv_q", "SELECT inet_server_port(), $1::int", 1, nullptr));
        REQUIRE_MESSAGE(PQresultStatus(prep.get()) == PGRES_COMMAND_OK, errmsg(c.get()));
        for (int i = 0; i < 10; ++i) {
            const std::string v = std::to_string(i);
            const char* values[1] = {v.c_str()};
            Result r(PQexecPrepared(c.get(), "drv_q", 1, values, nullptr, nullptr, 0));
            REQUIRE_MESSAGE(PQresultStatus(r.get()) == PGRES_TUPLES_OK, errmsg(c.get()));
            named.push_back(port_of(r.get()));
        }
        all_on_replicas(simple, "PQexec");
        all_on_replicas(unnamed, "PQexecParams");
        all_on_replicas(named, "PQexecPrepared");
    }
    SUBCASE("writes on the primary; reads after them never stale, mostly on replicas")
    {
        int on_replica = 0, stale = 0;
        for (int i = 0; i < 200; ++i) {
            const std::string id = std::to_string(i);
            Result w = exec_ok(c.get(), "INSERT INTO drv_libpq VALUES (" + id + ") RETURNING inet_server_port()",
                               PGRES_TUPLES_OK);
            CHECK(port_of(w.get()) == primary);
            Result r = exec_ok(c.get(), "SELECT inet_server_port(), count(*) FROM drv_libpq WHERE id = " + id,
                               PGRES_TUPLES_OK);
            on_replica += port_of(r.get()) != primary;
            stale += std::string(PQgetvalue(r.get(), 0, 1)) != "1";
        }
        CHECK(stale == 0);
        CHECK(on_replica >= 100);
        MESSAGE("libpq: " << on_replica << " of 200 reads after writes on replicas");
    }
    SUBCASE("SERIALIZABLE READ ONLY on the primary, READ ONLY on a replica")
    {
        exec_ok(c.get(), "BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY");
        CHECK(port_of(exec_ok(c.get(), "SELECT inet_server_port()", PGRES_TUPLES_OK).get()) == primary);
        exec_ok(c.get(), "COMMIT");
        exec_ok(c.get(), "SET default_transaction_isolation = serializable");
        exec_ok(c.get(), "BEGIN READ ONLY");
        CHECK(port_of(exec_ok(c.get(), "SELECT inet_server_port()", PGRES_TUPLES_OK).get()) == primary);
        exec_ok(c.get(), "COMMIT");
        exec_ok(c.get(), "RESET default_transaction_isolation");
        std::vector<int> ro;
        for (int i = 0; i < 4; ++i) {
            exec_ok(c.get(), "BEGIN READ ONLY");
            ro.push_back(port_of(exec_ok(c.get(), "SELECT inet_server_port()", PGRES_TUPLES_OK).get()));
            exec_ok(c.get(), "COMMIT");
        }
        all_on_replicas(ro, "BEGIN READ ONLY");
    }
    SUBCASE("pg_backend_pid() is the pid libpq was given; pg_terminate_backend() of it ends the session")
    {
        const int pid = PQbackendPID(c.get());
        for (int i = 0; i < 4; ++i)
            CHECK(query_value(c.get(), "SELECT pg_backend_pid()") == std::to_string(pid));
        CHECK(query_value(su.get(), "SELECT pg_terminate_backend(" + std::to_string(pid) + ")") == "t");
        const auto deadline = Clock::now() + 5s;
        bool ended = false;
        while (!ended && Clock::now() < deadline) {
            Result r(PQexec(c.get(), "SELECT 1"));
            ended = PQresultStatus(r.get()) != PGRES_TUPLES_OK;
            if (!ended)
                std::this_thread::sleep_for(20ms);
        }
        CHECK_MESSAGE(ended, "the session survived pg_terminate_backend() of its pid");
        CHECK(PQstatus(c.get()) == CONNECTION_BAD);
    }
}
