// Admin handlers against a fake AdminApi: status codes, JSON fields, token,
// routing errors (404/405/400/409), and the Prometheus text format.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>

#include "admin/handlers.h"
#include "admin/metrics.h"
#include "fake_admin_api.h"

using namespace pgswitch;
using namespace pgswitch::admin;
using json = nlohmann::json;
using pgswitch::test::FakeApi;

namespace {

Response call(AdminApi& api, std::string method, std::string target, std::string body = {}, std::string auth = {})
{
    return handle_request({std::move(method), std::move(target), std::move(auth), std::move(body)}, api);
}

json body_of(const Response& r)
{
    return json::parse(r.body);
}

std::string header(const Response& r, std::string_view name)
{
    for (const auto& [n, v] : r.headers)
        if (n == name)
            return v;
    return {};
}

void check_error(const Response& r, int status)
{
    CHECK(r.status == status);
    CHECK(r.content_type == "application/json");
    const auto j = body_of(r);
    REQUIRE(j.contains("error"));
    CHECK(j["error"].is_string());
    CHECK_FALSE(j["error"].get<std::string>().empty());
}

}  // namespace

TEST_CASE("GET /health and /ready")
{
    FakeApi api;
    auto r = call(api, "GET", "/health");
    CHECK(r.status == 200);
    CHECK(body_of(r) == json{{"status", "ok"}});

    r = call(api, "GET", "/ready");
    CHECK(r.status == 200);
    CHECK(body_of(r)["primary"] == "pg1");

    api.snap.primary.reset();
    r = call(api, "GET", "/ready");
    check_error(r, 503);
    CHECK(body_of(r)["primary"].is_null());

    api.snap.primary = "pg1";
    api.snap.draining = true;
    check_error(call(api, "GET", "/ready"), 503);
}

TEST_CASE("GET /status has every field SPEC §5 names")
{
    FakeApi api;
    const auto r = call(api, "GET", "/status");
    REQUIRE(r.status == 200);
    const auto j = body_of(r);
    CHECK(j["version"] == "9.9.9");
    CHECK(j["uptime_s"] == 12.5);
    CHECK(j["primary"] == "pg1");
    CHECK(j["failover"]["mode"] == "auto");
    CHECK(j["failover"]["state"] == "idle");
    CHECK(j["failover"]["history"] == json::array());
    CHECK(j["backends"].size() == 2);
    CHECK(j["clients"] == json{{"active", 3}, {"max", 100}});
    CHECK(j["routing"]["reads"] == 14);
    CHECK(j["routing"]["writes"] == 7);
    CHECK(j["routing"]["by_backend"]["pg2"]["reads"] == 11);
    CHECK(j["routing"]["by_reason"]["write"] == 10);
    CHECK(j["statement_cache"]["hits"] == 5);
    CHECK(j["statement_cache"]["misses"] == 2);
    CHECK(j["statement_cache"]["size"] == 2);

    api.snap.primary.reset();
    CHECK(body_of(call(api, "GET", "/status"))["primary"].is_null());
}

TEST_CASE("GET /backends and /backends/{name}")
{
    FakeApi api;
    auto r = call(api, "GET", "/backends");
    REQUIRE(r.status == 200);
    const auto list = body_of(r)["backends"];
    REQUIRE(list.size() == 2);
    for (const auto& b : list)
        for (const char* field :
             {"name", "host", "port", "role", "state", "lag_bytes", "replay_lsn", "weight", "connections", "queries"})
            CHECK_MESSAGE(b.contains(field), field);

    r = call(api, "GET", "/backends/pg2");
    REQUIRE(r.status == 200);
    const auto b = body_of(r);
    CHECK(b["name"] == "pg2");
    CHECK(b["host"] == "127.0.0.1");
    CHECK(b["port"] == 5433);
    CHECK(b["role"] == "replica");
    CHECK(b["state"] == "up");
    CHECK(b["lag_bytes"] == 16);
    CHECK(b["replay_lsn"] == "0/1000050");
    CHECK(b["weight"] == 1);
    CHECK(b["connections"] == json{{"active", 0}, {"idle", 4}});
    CHECK(b["queries"] == json{{"reads", 11}, {"writes", 0}});

    const auto p = body_of(call(api, "GET", "/backends/pg1"));
    CHECK(p["role"] == "primary");
    CHECK(p["replay_lsn"].is_null());  // a primary replays nothing
    CHECK(p["lag_bytes"].is_null());

    check_error(call(api, "GET", "/backends/nope"), 404);
    CHECK(call(api, "GET", "/backends/").status == 200);                   // trailing slash
    CHECK(call(api, "GET", "/backends?x=1").status == 200);                // query string ignored
    CHECK(body_of(call(api, "GET", "/backends/pg%32"))["name"] == "pg2");  // percent-decoded
    check_error(call(api, "GET", "/backends/pg%G2"), 400);
}

TEST_CASE("POST /backends validates and creates")
{
    FakeApi api;
    auto r = call(api, "POST", "/backends", R"({"name":"pg3","host":"10.0.0.3","port":5434,"weight":2})");
    CHECK(r.status == 201);
    CHECK(header(r, "Location") == "/backends/pg3");
    REQUIRE(api.added);
    CHECK(api.added->name == "pg3");
    CHECK(api.added->host == "10.0.0.3");
    CHECK(api.added->port == 5434);
    CHECK(api.added->weight == 2);
    const auto b = body_of(r);
    CHECK(b["name"] == "pg3");
    CHECK(b["state"] == "down");
    CHECK(b["role"] == "unknown");

    // weight defaults to 1
    api.added.reset();
    CHECK(call(api, "POST", "/backends", R"({"name":"pg4","host":"h","port":1})").status == 201);
    CHECK(api.added->weight == 1);

    check_error(call(api, "POST", "/backends", R"({"name":"pg1","host":"h","port":5})"), 409);

    api.added.reset();
    SUBCASE("bad bodies are 400 and reach no command")
    {
        for (const char* bad :
             {"", "not json", "[1,2]", "{\"name\":\"x\"", R"({"host":"h","port":1})",
              R"({"name":"","host":"h","port":1})", R"({"name":"a b","host":"h","port":1})", R"({"name":"x","port":1})",
              R"({"name":"x","host":"","port":1})", R"({"name":"x","host":"h"})", R"({"name":"x","host":"h","port":0})",
              R"({"name":"x","host":"h","port":65536})", R"({"name":"x","host":"h","port":"5432"})",
              R"({"name":"x","host":"h","port":1,"weight":-1})", R"({"name":"x","host":"h","port":1,"weight":1.5})",
              R"({"name":"x","host":"h","port":1,"colour":"red"})", R"({"name":5,"host":"h","port":1})"}) {
            CAPTURE(bad);
            check_error(call(api, "POST", "/backends", bad), 400);
        }
        CHECK_FALSE(api.added);
    }
}

TEST_CASE("DELETE, drain and enable")
{
    FakeApi api;
    auto r = call(api, "DELETE", "/backends/pg3");
    CHECK(r.status == 200);
    CHECK(body_of(r)["removed"] == true);

    r = call(api, "DELETE", "/backends/pg2");
    CHECK(r.status == 202);
    CHECK(body_of(r)["name"] == "pg2");
    CHECK(body_of(r)["message"] == "draining");

    check_error(call(api, "DELETE", "/backends/nope"), 404);

    r = call(api, "POST", "/backends/pg2/drain");
    CHECK(r.status == 200);
    CHECK(body_of(r)["state"] == "drained");
    CHECK(body_of(call(api, "GET", "/backends/pg2"))["state"] == "drained");

    r = call(api, "POST", "/backends/pg2/enable");
    CHECK(r.status == 200);
    CHECK(body_of(r)["state"] == "up");

    check_error(call(api, "POST", "/backends/nope/drain"), 404);
    check_error(call(api, "POST", "/backends/nope/enable"), 404);
}

TEST_CASE("POST /failover answers 501 until failover lands")
{
    FakeApi api;
    auto r = call(api, "POST", "/failover");
    check_error(r, 501);
    CHECK(body_of(r)["error"] == "failover is not implemented yet (issue 6)");
    CHECK_FALSE(api.failover_target);

    r = call(api, "POST", "/failover", R"({"target":"pg2"})");
    CHECK(r.status == 501);
    CHECK(api.failover_target == "pg2");

    check_error(call(api, "POST", "/failover", "{bad"), 400);
    check_error(call(api, "POST", "/failover", R"({"target":3})"), 400);
    check_error(call(api, "POST", "/failover", R"({"to":"pg2"})"), 400);
}

TEST_CASE("POST /reload")
{
    FakeApi api;
    auto r = call(api, "POST", "/reload");
    CHECK(r.status == 200);
    CHECK(body_of(r)["reloaded"] == true);

    api.reload_result = CommandResult::error(CommandResult::Code::invalid,
                                             "pgswitch.toml: proxy.pool_size: must be >= 1");
    check_error(call(api, "POST", "/reload"), 400);
    api.reload_result = CommandResult::error(CommandResult::Code::conflict, "running from command-line flags");
    check_error(call(api, "POST", "/reload"), 409);
}

TEST_CASE("GET /clients")
{
    FakeApi api;
    const auto r = call(api, "GET", "/clients");
    REQUIRE(r.status == 200);
    const auto c = body_of(r)["clients"];
    REQUIRE(c.size() == 1);
    CHECK(c[0]["address"] == "127.0.0.1:50000");
    CHECK(c[0]["user"] == "app");
    CHECK(c[0]["database"] == "appdb");
    CHECK(c[0]["application_name"] == "psql");
    CHECK(c[0]["state"] == "idle");
    CHECK(c[0]["backend"] == "pg2");
}

TEST_CASE("POST /routing/explain")
{
    FakeApi api;
    auto r = call(api, "POST", "/routing/explain", R"({"sql":"SELECT 1","database":"appdb"})");
    REQUIRE(r.status == 200);
    const auto j = body_of(r);
    CHECK(j["target"] == "pg2");
    CHECK(j["kind"] == "read");
    CHECK(j["reason"] == "read on replica");
    REQUIRE(j["statements"].size() == 1);
    CHECK(j["statements"][0]["kind"] == "select");
    CHECK(j["statements"][0]["text"] == "SELECT 1");
    CHECK(api.last_sql == "SELECT 1");
    CHECK(api.last_database == "appdb");

    check_error(call(api, "POST", "/routing/explain", "{}"), 400);
    check_error(call(api, "POST", "/routing/explain", R"({"sql":1})"), 400);
    check_error(call(api, "POST", "/routing/explain", "SELECT 1"), 400);
}

TEST_CASE("unknown paths are 404, wrong methods 405 with Allow")
{
    FakeApi api;
    check_error(call(api, "GET", "/nope"), 404);
    check_error(call(api, "GET", "/backends/pg1/nope"), 404);
    check_error(call(api, "GET", "/"), 404);

    auto r = call(api, "POST", "/health");
    check_error(r, 405);
    CHECK(header(r, "Allow") == "GET");

    r = call(api, "PUT", "/backends");
    check_error(r, 405);
    CHECK(header(r, "Allow") == "GET, POST");

    r = call(api, "POST", "/backends/pg1");
    check_error(r, 405);
    CHECK(header(r, "Allow") == "GET, DELETE");

    r = call(api, "GET", "/backends/pg1/drain");
    check_error(r, 405);
    CHECK(header(r, "Allow") == "POST");
    check_error(call(api, "GET", "/failover"), 405);
    check_error(call(api, "DELETE", "/metrics"), 405);
}

TEST_CASE("bearer token")
{
    FakeApi api;
    api.token_value = "s3cret";
    // /health never needs it
    CHECK(call(api, "GET", "/health").status == 200);

    auto r = call(api, "GET", "/status");
    check_error(r, 401);
    CHECK(header(r, "WWW-Authenticate").find("Bearer") == 0);
    check_error(call(api, "GET", "/status", "", "Bearer wrong"), 401);
    check_error(call(api, "GET", "/status", "", "Bearer s3cre"), 401);
    check_error(call(api, "GET", "/status", "", "Bearer s3cret2"), 401);
    check_error(call(api, "GET", "/status", "", "Basic s3cret"), 401);
    check_error(call(api, "GET", "/status", "", "s3cret"), 401);
    check_error(call(api, "GET", "/status", "", "Bearer "), 401);
    // Unknown paths and commands are refused before routing: nothing to probe.
    check_error(call(api, "GET", "/nope"), 401);
    check_error(call(api, "POST", "/backends/pg2/drain"), 401);
    CHECK(api.snap.backends[1].view.state == routing::BackendState::up);
    check_error(call(api, "GET", "/metrics"), 401);

    CHECK(call(api, "GET", "/status", "", "Bearer s3cret").status == 200);
    CHECK(call(api, "GET", "/status", "", "bearer s3cret").status == 200);  // scheme is case-insensitive
    CHECK(call(api, "GET", "/metrics", "", "Bearer s3cret").status == 200);
}

TEST_CASE("authorized() compares exactly")
{
    CHECK(authorized("Bearer abc", "abc"));
    CHECK_FALSE(authorized("Bearer abc", "abd"));
    CHECK_FALSE(authorized("Bearer ", ""));  // an empty token never authorizes
    CHECK_FALSE(authorized("", "abc"));
}

TEST_CASE("GET /metrics is Prometheus text")
{
    FakeApi api;
    const auto r = call(api, "GET", "/metrics");
    REQUIRE(r.status == 200);
    CHECK(r.content_type.find("text/plain; version=0.0.4") == 0);

    // Every line: a comment, or name{labels} value.
    const std::regex sample(
        R"(^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*"(,[a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*")*\})? -?([0-9.eE+-]+|\+Inf|-Inf|NaN)$)");
    const std::regex comment(R"(^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+$)");
    std::istringstream in(r.body);
    std::string line;
    int samples = 0;
    std::set<std::string> typed;
    while (std::getline(in, line)) {
        CAPTURE(line);
        REQUIRE_FALSE(line.empty());
        if (line[0] == '#') {
            CHECK(std::regex_match(line, comment));
            if (line.rfind("# TYPE ", 0) == 0)
                typed.insert(line.substr(7, line.find(' ', 7) - 7));
        } else {
            CHECK(std::regex_match(line, sample));
            ++samples;
        }
    }
    CHECK(samples > 20);
    for (const char* family :
         {"pgswitch_queries_total", "pgswitch_backend_up", "pgswitch_backend_role", "pgswitch_backend_lag_bytes",
          "pgswitch_client_connections", "pgswitch_server_connections", "pgswitch_failovers_total",
          "pgswitch_query_duration_seconds", "pgswitch_statement_cache_hits_total",
          "pgswitch_statement_cache_misses_total", "pgswitch_routing_decisions_total"})
        CHECK_MESSAGE(typed.count(family) == 1, family);

    const auto& body = r.body;
    CHECK(body.find("pgswitch_queries_total{backend=\"pg2\",kind=\"read\"} 11\n") != std::string::npos);
    CHECK(body.find("pgswitch_queries_total{backend=\"pg1\",kind=\"write\"} 7\n") != std::string::npos);
    CHECK(body.find("pgswitch_backend_up{backend=\"pg1\"} 1\n") != std::string::npos);
    CHECK(body.find("pgswitch_backend_role{backend=\"pg1\",role=\"primary\"} 1\n") != std::string::npos);
    CHECK(body.find("pgswitch_backend_role{backend=\"pg1\",role=\"replica\"} 0\n") != std::string::npos);
    CHECK(body.find("pgswitch_backend_lag_bytes{backend=\"pg2\"} 16\n") != std::string::npos);
    CHECK(body.find("pgswitch_client_connections 3\n") != std::string::npos);
    CHECK(body.find("pgswitch_server_connections{backend=\"pg1\",state=\"active\"} 2\n") != std::string::npos);
    CHECK(body.find("pgswitch_server_connections{backend=\"pg2\",state=\"idle\"} 4\n") != std::string::npos);
    CHECK(body.find("pgswitch_failovers_total 0\n") != std::string::npos);
    CHECK(body.find("pgswitch_query_duration_seconds_bucket{le=\"0.0005\"} 1\n") != std::string::npos);
    CHECK(body.find("pgswitch_query_duration_seconds_bucket{le=\"0.1\"} 1\n") != std::string::npos);
    CHECK(body.find("pgswitch_query_duration_seconds_bucket{le=\"0.25\"} 2\n") != std::string::npos);
    CHECK(body.find("pgswitch_query_duration_seconds_bucket{le=\"+Inf\"} 2\n") != std::string::npos);
    CHECK(body.find("pgswitch_query_duration_seconds_count 2\n") != std::string::npos);
    CHECK(body.find("pgswitch_statement_cache_hits_total 5\n") != std::string::npos);
    CHECK(body.find("pgswitch_routing_decisions_total{reason=\"read on replica\"} 11\n") != std::string::npos);
}

TEST_CASE("metric label values are escaped")
{
    CHECK(escape_label(R"(a"b\c)") == R"(a\"b\\c)");
    CHECK(escape_label("a\nb") == "a\\nb");

    FakeApi api;
    api.snap.backends[0].view.name = "we\"ird";
    const auto body = render_prometheus(api.snap);
    CHECK(body.find("pgswitch_backend_up{backend=\"we\\\"ird\"} 1\n") != std::string::npos);
}

TEST_CASE("latency histogram buckets are cumulative")
{
    LatencyHistogram h;
    h.observe(0.0001);
    h.observe(0.003);
    h.observe(100);
    h.observe(-1);  // clamped to 0
    CHECK(h.count() == 4);
    CHECK(h.cumulative(0) == 2);
    CHECK(h.cumulative(3) == 3);  // <= 0.005
    CHECK(h.cumulative(LatencyHistogram::bounds.size() - 1) == 3);
    CHECK(h.sum() == doctest::Approx(100.0031));
}
