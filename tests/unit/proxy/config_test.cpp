// Unit tests for proxy/config: the TOML file of SPEC §2, the flags of SPEC §1,
// and that every problem is reported with the right dotted key.
#include "proxy/config.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

using namespace pgswitch::proxy;

namespace {

// The smallest valid file: one backend and one user.
constexpr const char* minimal_toml = R"(
[[backends]]
name = "pg1"
host = "127.0.0.1"

[[users]]
name = "app"
password = "app"
)";

// The SPEC §2 example, verbatim apart from the comments.
constexpr const char* spec_example = R"(
[proxy]
listen = "127.0.0.1:6432"
workers = 0                      # event-loop threads; 0 = one per core
max_client_connections = 1000
pool_mode = "session"            # "session" | "transaction"
pool_size = 20                   # server connections per backend per (user, database)
connect_timeout_ms = 3000
shutdown_timeout_ms = 10000

[admin]
listen = "127.0.0.1:6480"
token = ""

[routing]
load_balancing = "round_robin"
primary_reads = false
max_replica_lag_bytes = 16777216
read_your_writes = "lsn"
write_functions = []
read_only_functions = []

[health]
interval_ms = 1000
timeout_ms = 1000
failure_threshold = 3
user = "postgres"
password = ""

[failover]
mode = "auto"
wait_for_primary_ms = 10000

[cache]
enabled = false
statements = "hinted"
max_memory_mb = 64
ttl_ms = 60000
max_entry_kb = 1024
invalidation = "wal"

[[backends]]                     # roles are discovered, never configured
name = "pg1"
host = "127.0.0.1"
port = 5432
weight = 1

[[users]]
name = "app"
password = "app"                 # or scram_secret = "SCRAM-SHA-256$4096:..."
)";

/// Parses `extra` followed by the minimal backend and user.
LoadResult parse_with_minimal(const std::string& extra)
{
    return parse_config(extra + minimal_toml, "test.toml");
}

bool has_error(const LoadResult& r, const std::string& key)
{
    return std::any_of(r.errors.begin(), r.errors.end(), [&](const ConfigError& e) { return e.key == key; });
}

const ConfigError* find_error(const LoadResult& r, const std::string& key)
{
    for (const auto& e : r.errors)
        if (e.key == key)
            return &e;
    return nullptr;
}

/// Asserts that parsing fails with exactly one error, on `key`, whose message contains `needle`.
void expect_single_error(const LoadResult& r, const std::string& key, const std::string& needle = "")
{
    CHECK_FALSE(r.config.has_value());
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].key == key);
    CHECK(r.errors[0].file == "test.toml");
    if (!needle.empty()) {
        INFO("message: " << r.errors[0].message);
        CHECK(r.errors[0].message.find(needle) != std::string::npos);
    }
}

std::string all_errors(const LoadResult& r)
{
    std::string out;
    for (const auto& e : r.errors)
        out += e.to_string() + "\n";
    return out;
}

CommandLineResult parse_args(std::vector<const char*> args)
{
    args.insert(args.begin(), "pgswitch");
    return parse_command_line(static_cast<int>(args.size()), args.data());
}

}  // namespace

TEST_CASE("the SPEC §2 example parses to its documented values")
{
    const auto r = parse_config(spec_example, "pgswitch.toml");
    INFO(all_errors(r));
    REQUIRE(r.config.has_value());
    const Config& c = *r.config;
    CHECK(c.source == "pgswitch.toml");
    CHECK(c.proxy.listen.host == "127.0.0.1");
    CHECK(c.proxy.listen.port == 6432);
    CHECK(c.proxy.workers == 0);
    CHECK(c.proxy.max_client_connections == 1000);
    CHECK(c.proxy.pool_mode == PoolMode::session);
    CHECK(c.proxy.pool_size == 20);
    CHECK(c.proxy.connect_timeout_ms == 3000);
    CHECK(c.proxy.shutdown_timeout_ms == 10000);
    CHECK(c.admin.listen.to_string() == "127.0.0.1:6480");
    CHECK(c.admin.token.empty());
    CHECK(c.routing.load_balancing == LoadBalancing::round_robin);
    CHECK_FALSE(c.routing.primary_reads);
    CHECK(c.routing.max_replica_lag_bytes == 16777216);
    CHECK(c.routing.read_your_writes == ReadYourWrites::lsn);
    CHECK(c.routing.write_functions.empty());
    CHECK(c.routing.read_only_functions.empty());
    CHECK(c.health.interval_ms == 1000);
    CHECK(c.health.timeout_ms == 1000);
    CHECK(c.health.failure_threshold == 3);
    CHECK(c.health.user == "postgres");
    CHECK(c.health.password.empty());
    CHECK(c.failover.mode == FailoverMode::automatic);
    CHECK(c.failover.wait_for_primary_ms == 10000);
    CHECK_FALSE(c.cache.enabled);
    CHECK(c.cache.statements == CacheStatements::hinted);
    CHECK(c.cache.max_memory_mb == 64);
    CHECK(c.cache.ttl_ms == 60000);
    CHECK(c.cache.max_entry_kb == 1024);
    CHECK(c.cache.invalidation == CacheInvalidation::wal);
    REQUIRE(c.backends.size() == 1);
    CHECK(c.backends[0].name == "pg1");
    CHECK(c.backends[0].host == "127.0.0.1");
    CHECK(c.backends[0].port == 5432);
    CHECK(c.backends[0].weight == 1);
    REQUIRE(c.users.size() == 1);
    CHECK(c.users[0].name == "app");
    CHECK(c.users[0].password == "app");
    CHECK_FALSE(c.users[0].scram_secret.has_value());
    CHECK(c.users[0].auth_method == AuthMethod::scram_sha_256);
}

TEST_CASE("omitted sections and keys take the defaults")
{
    const auto r = parse_config(minimal_toml, "test.toml");
    INFO(all_errors(r));
    REQUIRE(r.config.has_value());
    const Config& c = *r.config;
    const Config d;  // the defaults in config.h
    CHECK(c.proxy.listen.to_string() == "127.0.0.1:6432");
    CHECK(c.admin.listen.to_string() == "127.0.0.1:6480");
    CHECK(c.proxy.workers == d.proxy.workers);
    CHECK(c.proxy.max_message_bytes == (256LL << 20));
    CHECK(c.proxy.tls_cert.empty());
    CHECK(c.routing.read_your_writes == ReadYourWrites::lsn);
    CHECK(c.health.database == "postgres");
    CHECK(c.failover.mode == FailoverMode::automatic);
    CHECK(c.backends[0].port == 5432);
    CHECK(c.backends[0].weight == 1);
    CHECK(c.find_user("app") == &c.users[0]);
    CHECK(c.find_user("nobody") == nullptr);
}

TEST_CASE("non-default values and the extra keys")
{
    const auto r = parse_config(R"(
[proxy]
listen = "[::1]:7000"
workers = 4
pool_mode = "transaction"
tls_cert = "/etc/pgswitch/cert.pem"
tls_key = "/etc/pgswitch/key.pem"
max_message_bytes = 1024

[admin]
listen = "0.0.0.0:6480"
token = "s3cret"

[routing]
load_balancing = "least_connections"
primary_reads = true
max_replica_lag_bytes = 0
read_your_writes = "off"
write_functions = ["my_write", "audit"]
read_only_functions = ["pure_fn"]

[health]
database = "monitor"

[failover]
mode = "external"

[[backends]]
name = "a"
host = "db1.internal"
port = 5433
weight = 0

[[backends]]
name = "b"
host = "::1"
port = 5434
weight = 3

[[users]]
name = "app"
password = "pw"
auth_method = "md5"

[[users]]
name = "ro"
scram_secret = "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy"
)",
                                "t.toml");
    INFO(all_errors(r));
    REQUIRE(r.config.has_value());
    const Config& c = *r.config;
    CHECK(c.proxy.listen.host == "::1");
    CHECK(c.proxy.listen.port == 7000);
    CHECK(c.proxy.workers == 4);
    CHECK(c.proxy.pool_mode == PoolMode::transaction);
    CHECK(c.proxy.tls_cert == "/etc/pgswitch/cert.pem");
    CHECK(c.proxy.tls_key == "/etc/pgswitch/key.pem");
    CHECK(c.proxy.max_message_bytes == 1024);
    CHECK(c.admin.token == "s3cret");
    CHECK(c.routing.load_balancing == LoadBalancing::least_connections);
    CHECK(c.routing.primary_reads);
    CHECK(c.routing.max_replica_lag_bytes == 0);
    CHECK(c.routing.read_your_writes == ReadYourWrites::off);
    CHECK(c.routing.write_functions == std::vector<std::string>{"my_write", "audit"});
    CHECK(c.routing.read_only_functions == std::vector<std::string>{"pure_fn"});
    CHECK(c.health.database == "monitor");
    CHECK(c.failover.mode == FailoverMode::external);
    REQUIRE(c.backends.size() == 2);
    CHECK(c.backends[0].weight == 0);
    CHECK(c.backends[1].host == "::1");
    REQUIRE(c.users.size() == 2);
    CHECK(c.users[0].auth_method == AuthMethod::md5);
    CHECK(c.users[1].scram_secret.has_value());
    CHECK_FALSE(c.users[1].password.has_value());
}

TEST_CASE("every enum spelling is accepted and round-trips through to_string")
{
    SUBCASE("pool_mode")
    {
        for (auto m : {PoolMode::session, PoolMode::transaction}) {
            const auto r = parse_with_minimal("[proxy]\npool_mode = \"" + std::string(to_string(m)) + "\"\n");
            REQUIRE(r.config.has_value());
            CHECK(r.config->proxy.pool_mode == m);
        }
    }
    SUBCASE("load_balancing")
    {
        for (auto m : {LoadBalancing::round_robin, LoadBalancing::least_connections, LoadBalancing::ip_hash}) {
            const auto r = parse_with_minimal("[routing]\nload_balancing = \"" + std::string(to_string(m)) + "\"\n");
            REQUIRE(r.config.has_value());
            CHECK(r.config->routing.load_balancing == m);
        }
    }
    SUBCASE("read_your_writes")
    {
        for (auto m : {ReadYourWrites::lsn, ReadYourWrites::session, ReadYourWrites::off}) {
            const auto r = parse_with_minimal("[routing]\nread_your_writes = \"" + std::string(to_string(m)) + "\"\n");
            REQUIRE(r.config.has_value());
            CHECK(r.config->routing.read_your_writes == m);
        }
    }
    SUBCASE("failover.mode")
    {
        for (auto m : {FailoverMode::automatic, FailoverMode::manual, FailoverMode::external}) {
            const auto r = parse_with_minimal("[failover]\nmode = \"" + std::string(to_string(m)) + "\"\n");
            REQUIRE(r.config.has_value());
            CHECK(r.config->failover.mode == m);
        }
    }
    SUBCASE("spellings")
    {
        CHECK(to_string(FailoverMode::automatic) == "auto");
        CHECK(to_string(AuthMethod::scram_sha_256) == "scram-sha-256");
        CHECK(to_string(AuthMethod::md5) == "md5");
        CHECK(to_string(AuthMethod::password) == "password");
        CHECK(to_string(LoadBalancing::ip_hash) == "ip_hash");
        CHECK(to_string(PoolMode::transaction) == "transaction");
        CHECK(to_string(ReadYourWrites::session) == "session");
    }
}

TEST_CASE("TOML syntax errors are one error with line and column")
{
    const auto r = parse_config("[proxy]\nworkers = = 3\n", "bad.toml");
    CHECK_FALSE(r.config.has_value());
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].file == "bad.toml");
    CHECK(r.errors[0].message.find("line 2") != std::string::npos);
    CHECK(r.errors[0].message.find("column") != std::string::npos);
    CHECK(r.errors[0].to_string().starts_with("bad.toml: line 2, column "));
}

TEST_CASE("unknown keys are errors naming the dotted key")
{
    SUBCASE("inside a section")
    {
        expect_single_error(parse_with_minimal("[proxy]\nlisten_port = 1\n"), "proxy.listen_port", "unknown key");
    }
    SUBCASE("the message lists the allowed keys")
    {
        const auto r = parse_with_minimal("[admin]\ntokn = \"x\"\n");
        expect_single_error(r, "admin.tokn", "listen, token");
    }
    SUBCASE("unknown top-level key")
    {
        expect_single_error(parse_with_minimal("verbose = true\n"), "verbose", "unknown key");
    }
    SUBCASE("unknown top-level table is reported once, not per child")
    {
        expect_single_error(parse_with_minimal("[logging]\nlevel = \"debug\"\nformat = \"json\"\n"), "logging");
    }
    SUBCASE("inside a [[backends]] entry, with its index")
    {
        const auto r = parse_config(R"(
[[backends]]
name = "a"
host = "h"
[[backends]]
name = "b"
host = "h"
role = "primary"
[[users]]
name = "app"
password = "x"
)",
                                    "test.toml");
        expect_single_error(r, "backends[1].role", "unknown key");
    }
    SUBCASE("inside a [[users]] entry")
    {
        const auto r = parse_config(R"(
[[backends]]
name = "a"
host = "h"
[[users]]
name = "app"
password = "x"
database = "db"
)",
                                    "test.toml");
        expect_single_error(r, "users[0].database", "unknown key");
    }
    SUBCASE("a quoted key with a dot is shown quoted")
    {
        expect_single_error(parse_with_minimal("[proxy]\n\"a.b\" = 1\n"), "proxy.\"a.b\"");
    }
}

TEST_CASE("wrong types name the key and the expected type")
{
    SUBCASE("string instead of integer")
    {
        expect_single_error(parse_with_minimal("[proxy]\npool_size = \"20\"\n"), "proxy.pool_size",
                            "expected integer, got string");
    }
    SUBCASE("float instead of integer")
    {
        expect_single_error(parse_with_minimal("[health]\ninterval_ms = 1.5\n"), "health.interval_ms",
                            "expected integer");
    }
    SUBCASE("integer instead of boolean")
    {
        expect_single_error(parse_with_minimal("[routing]\nprimary_reads = 1\n"), "routing.primary_reads",
                            "expected boolean");
    }
    SUBCASE("integer instead of string")
    {
        expect_single_error(parse_with_minimal("[admin]\ntoken = 42\n"), "admin.token", "expected string");
    }
    SUBCASE("listen as integer")
    {
        expect_single_error(parse_with_minimal("[proxy]\nlisten = 6432\n"), "proxy.listen", "expected string");
    }
    SUBCASE("array element of the wrong type")
    {
        expect_single_error(parse_with_minimal("[routing]\nwrite_functions = [\"f\", 2]\n"),
                            "routing.write_functions[1]", "expected string");
    }
    SUBCASE("string list given as a string")
    {
        expect_single_error(parse_with_minimal("[routing]\nread_only_functions = \"f\"\n"),
                            "routing.read_only_functions", "expected array");
    }
    SUBCASE("section that is not a table")
    {
        expect_single_error(parse_with_minimal("proxy = 5\n"), "proxy", "expected table");
    }
    SUBCASE("backends as a table instead of an array of tables")
    {
        const auto r = parse_config("[backends]\nname = \"a\"\n[[users]]\nname = \"u\"\npassword = \"p\"\n",
                                    "test.toml");
        expect_single_error(r, "backends", "expected array of tables");
    }
    SUBCASE("backend port as string")
    {
        const auto r = parse_config(R"(
[[backends]]
name = "a"
host = "h"
port = "5432"
[[users]]
name = "app"
password = "x"
)",
                                    "test.toml");
        expect_single_error(r, "backends[0].port", "expected integer");
    }
    SUBCASE("enum given as integer")
    {
        expect_single_error(parse_with_minimal("[failover]\nmode = 1\n"), "failover.mode", "expected string");
    }
}

TEST_CASE("impossible values are errors naming the key")
{
    SUBCASE("ports out of 1..65535")
    {
        for (const char* port : {"0", "65536", "-1"}) {
            const auto r = parse_config(std::string("[[backends]]\nname = \"a\"\nhost = \"h\"\nport = ") + port +
                                            "\n[[users]]\nname = \"u\"\npassword = \"p\"\n",
                                        "test.toml");
            INFO("port = " << port);
            expect_single_error(r, "backends[0].port", "1..65535");
        }
    }
    SUBCASE("workers below zero")
    {
        expect_single_error(parse_with_minimal("[proxy]\nworkers = -1\n"), "proxy.workers", "at least 0");
    }
    SUBCASE("integers too large for the field")
    {
        expect_single_error(parse_with_minimal("[proxy]\npool_size = 99999999999\n"), "proxy.pool_size",
                            "out of range");
    }
    SUBCASE("counts and timeouts below one")
    {
        const std::vector<std::pair<std::string, std::string>> cases = {
            {"[proxy]\nmax_client_connections = 0\n", "proxy.max_client_connections"},
            {"[proxy]\npool_size = 0\n", "proxy.pool_size"},
            {"[proxy]\nconnect_timeout_ms = 0\n", "proxy.connect_timeout_ms"},
            {"[health]\ninterval_ms = 0\n", "health.interval_ms"},
            {"[health]\ntimeout_ms = -5\n", "health.timeout_ms"},
            {"[health]\nfailure_threshold = 0\n", "health.failure_threshold"},
            {"[failover]\nwait_for_primary_ms = 0\n", "failover.wait_for_primary_ms"},
        };
        for (const auto& c : cases) {
            INFO(c.second);
            expect_single_error(parse_with_minimal(c.first), c.second, "at least 1");
        }
    }
    SUBCASE("zero is allowed where documented")
    {
        const auto r = parse_with_minimal(
            "[proxy]\nworkers = 0\nshutdown_timeout_ms = 0\n[routing]\nmax_replica_lag_bytes = 0\n");
        INFO(all_errors(r));
        CHECK(r.config.has_value());
    }
    SUBCASE("negative shutdown timeout and lag")
    {
        const auto r = parse_with_minimal("[proxy]\nshutdown_timeout_ms = -1\n[routing]\nmax_replica_lag_bytes = -1\n");
        CHECK(r.errors.size() == 2);
        CHECK(has_error(r, "proxy.shutdown_timeout_ms"));
        CHECK(has_error(r, "routing.max_replica_lag_bytes"));
    }
    SUBCASE("max_message_bytes below 1024")
    {
        expect_single_error(parse_with_minimal("[proxy]\nmax_message_bytes = 1023\n"), "proxy.max_message_bytes",
                            "at least 1024");
    }
    SUBCASE("negative weight")
    {
        const auto r = parse_config(
            "[[backends]]\nname = \"a\"\nhost = \"h\"\nweight = -1\n[[users]]\nname = \"u\"\npassword = \"p\"\n",
            "test.toml");
        expect_single_error(r, "backends[0].weight", "at least 0");
    }
}

TEST_CASE("enum strings outside their set list the allowed values")
{
    SUBCASE("pool_mode")
    {
        expect_single_error(parse_with_minimal("[proxy]\npool_mode = \"statement\"\n"), "proxy.pool_mode",
                            "\"session\", \"transaction\"");
    }
    SUBCASE("load_balancing")
    {
        expect_single_error(parse_with_minimal("[routing]\nload_balancing = \"random\"\n"), "routing.load_balancing",
                            "\"round_robin\", \"least_connections\", \"ip_hash\"");
    }
    SUBCASE("read_your_writes")
    {
        expect_single_error(parse_with_minimal("[routing]\nread_your_writes = \"on\"\n"), "routing.read_your_writes",
                            "\"lsn\", \"session\", \"off\"");
    }
    SUBCASE("failover.mode spelled as the C++ enumerator")
    {
        expect_single_error(parse_with_minimal("[failover]\nmode = \"automatic\"\n"), "failover.mode",
                            "\"auto\", \"manual\", \"external\"");
    }
    SUBCASE("auth_method")
    {
        const auto r = parse_config(
            "[[backends]]\nname = \"a\"\nhost = \"h\"\n[[users]]\nname = \"u\"\npassword = \"p\"\n"
            "auth_method = \"trust\"\n",
            "test.toml");
        expect_single_error(r, "users[0].auth_method", "\"scram-sha-256\", \"md5\", \"password\"");
    }
}

TEST_CASE("listen strings must parse as host:port")
{
    SUBCASE("no port")
    {
        expect_single_error(parse_with_minimal("[proxy]\nlisten = \"127.0.0.1\"\n"), "proxy.listen", "port");
    }
    SUBCASE("non-numeric port")
    {
        expect_single_error(parse_with_minimal("[admin]\nlisten = \"127.0.0.1:http\"\n"), "admin.listen",
                            "not a number");
    }
    SUBCASE("unbracketed IPv6")
    {
        expect_single_error(parse_with_minimal("[proxy]\nlisten = \"::1:6432\"\n"), "proxy.listen", "bracketed");
    }
}

TEST_CASE("backend entries")
{
    SUBCASE("missing name and host")
    {
        const auto r = parse_config("[[backends]]\nport = 5432\n[[users]]\nname = \"u\"\npassword = \"p\"\n",
                                    "test.toml");
        CHECK(r.errors.size() == 2);
        CHECK(has_error(r, "backends[0].name"));
        CHECK(has_error(r, "backends[0].host"));
    }
    SUBCASE("empty name and host")
    {
        const auto r = parse_config(
            "[[backends]]\nname = \"\"\nhost = \"\"\n[[users]]\nname = \"u\"\npassword = \"p\"\n", "test.toml");
        CHECK(r.errors.size() == 2);
        CHECK(find_error(r, "backends[0].name")->message == "must not be empty");
        CHECK(has_error(r, "backends[0].host"));
    }
    SUBCASE("duplicate names")
    {
        const auto r = parse_config(R"(
[[backends]]
name = "pg"
host = "a"
[[backends]]
name = "other"
host = "b"
[[backends]]
name = "pg"
host = "c"
[[users]]
name = "u"
password = "p"
)",
                                    "test.toml");
        expect_single_error(r, "backends[2].name", "duplicate backend name \"pg\" (also backends[0])");
    }
    SUBCASE("at least one backend")
    {
        expect_single_error(parse_config("[[users]]\nname = \"u\"\npassword = \"p\"\n", "test.toml"), "backends",
                            "at least one");
        expect_single_error(parse_config("backends = []\n[[users]]\nname = \"u\"\npassword = \"p\"\n", "test.toml"),
                            "backends", "at least one");
    }
    SUBCASE("an entry that is not a table keeps later indices right")
    {
        const auto r = parse_config(
            "backends = [1, { name = \"b\", host = \"h\", port = 0 }]\n[[users]]\nname = \"u\"\npassword = \"p\"\n",
            "test.toml");
        CHECK(r.errors.size() == 2);
        CHECK(find_error(r, "backends[0]")->message == "expected table, got integer");
        CHECK(has_error(r, "backends[1].port"));
    }
}

TEST_CASE("user entries")
{
    const std::string backend = "[[backends]]\nname = \"a\"\nhost = \"h\"\n";
    SUBCASE("neither password nor scram_secret")
    {
        expect_single_error(parse_config(backend + "[[users]]\nname = \"u\"\n", "test.toml"), "users[0].password",
                            "password or a scram_secret");
    }
    SUBCASE("both password and scram_secret")
    {
        expect_single_error(parse_config(backend + "[[users]]\nname = \"u\"\npassword = \"p\"\n"
                                                   "scram_secret = \"SCRAM-SHA-256$4096:a$b:c\"\n",
                                         "test.toml"),
                            "users[0].scram_secret", "not both");
    }
    SUBCASE("scram_secret with the wrong prefix")
    {
        expect_single_error(
            parse_config(backend + "[[users]]\nname = \"u\"\nscram_secret = \"md5abcdef\"\n", "test.toml"),
            "users[0].scram_secret", "SCRAM-SHA-256$");
    }
    SUBCASE("md5 or password auth without a plaintext password")
    {
        for (const char* method : {"md5", "password"}) {
            INFO(method);
            expect_single_error(
                parse_config(backend +
                                 "[[users]]\nname = \"u\"\nscram_secret = \"SCRAM-SHA-256$4096:a$b:c\"\n"
                                 "auth_method = \"" +
                                 method + "\"\n",
                             "test.toml"),
                "users[0].auth_method", "plaintext password");
        }
    }
    SUBCASE("duplicate user names")
    {
        expect_single_error(parse_config(backend + "[[users]]\nname = \"u\"\npassword = \"p\"\n"
                                                   "[[users]]\nname = \"u\"\npassword = \"q\"\n",
                                         "test.toml"),
                            "users[1].name", "duplicate user name");
    }
    SUBCASE("missing name")
    {
        expect_single_error(parse_config(backend + "[[users]]\npassword = \"p\"\n", "test.toml"), "users[0].name",
                            "missing");
    }
    SUBCASE("at least one user")
    {
        expect_single_error(parse_config(backend, "test.toml"), "users", "at least one");
    }
}

TEST_CASE("TLS certificate and key come together")
{
    expect_single_error(parse_with_minimal("[proxy]\ntls_cert = \"c.pem\"\n"), "proxy.tls_key", "tls_cert");
    expect_single_error(parse_with_minimal("[proxy]\ntls_key = \"k.pem\"\n"), "proxy.tls_cert", "tls_key");
}

TEST_CASE("a non-loopback admin.listen needs a token")
{
    SUBCASE("refused without a token")
    {
        for (const char* addr : {"0.0.0.0:6480", "10.0.0.5:6480", "[::]:6480", "admin.example.com:6480"}) {
            INFO(addr);
            const auto r = parse_with_minimal(std::string("[admin]\nlisten = \"") + addr + "\"\n");
            expect_single_error(r, "admin.listen", "refuses to start: non-loopback admin.listen needs admin.token");
        }
    }
    SUBCASE("accepted with a token")
    {
        CHECK(parse_with_minimal("[admin]\nlisten = \"0.0.0.0:6480\"\ntoken = \"t\"\n").config.has_value());
    }
    SUBCASE("loopback forms need no token")
    {
        for (const char* addr : {"127.0.0.1:1", "127.10.20.30:6480", "[::1]:6480", "localhost:6480"}) {
            INFO(addr);
            const auto r = parse_with_minimal(std::string("[admin]\nlisten = \"") + addr + "\"\n");
            INFO(all_errors(r));
            CHECK(r.config.has_value());
        }
    }
}

TEST_CASE("all problems are reported, not just the first")
{
    const auto r = parse_config(R"(
[proxy]
pool_size = 0
pool_mode = "statement"
bogus = 1

[admin]
listen = "0.0.0.0:6480"

[health]
interval_ms = "1s"

[[backends]]
name = "a"
host = "h"
port = 70000

[[backends]]
name = "a"
host = "h2"

[[users]]
name = "u"
)",
                                "many.toml");
    INFO(all_errors(r));
    CHECK_FALSE(r.config.has_value());
    CHECK(r.errors.size() == 8);
    for (const char* key : {"proxy.pool_size", "proxy.pool_mode", "proxy.bogus", "admin.listen", "health.interval_ms",
                            "backends[0].port", "backends[1].name", "users[0].password"}) {
        INFO(key);
        CHECK(has_error(r, key));
    }
    for (const auto& e : r.errors)
        CHECK(e.file == "many.toml");
    // Listed top to bottom as in the file, not in toml++'s key order.
    REQUIRE(r.errors.size() >= 2);
    CHECK(r.errors.front().key == "proxy.pool_size");
    CHECK(r.errors.back().key == "users[0].password");
}

TEST_CASE("ConfigError::to_string")
{
    CHECK(ConfigError{"f.toml", "proxy.pool_size", "must be at least 1"}.to_string() ==
          "f.toml: proxy.pool_size: must be at least 1");
    CHECK(ConfigError{"", "--password", "flag mode needs --password"}.to_string() ==
          "--password: flag mode needs --password");
}

TEST_CASE("validate() checks a Config built in code")
{
    Config c;
    c.backends.push_back(BackendConfig{"pg", "127.0.0.1", 5432, 1});
    c.users.push_back(UserConfig{"app", std::string("pw"), std::nullopt, AuthMethod::scram_sha_256});
    CHECK(validate(c).empty());

    c.proxy.pool_size = 0;
    c.backends.push_back(BackendConfig{"pg", "", 0, 1});
    const auto errors = validate(c);
    std::vector<std::string> keys;
    for (const auto& e : errors)
        keys.push_back(e.key);
    CHECK(keys ==
          std::vector<std::string>{"proxy.pool_size", "backends[1].name", "backends[1].host", "backends[1].port"});
    CHECK(errors[0].file.empty());
}

TEST_CASE("load_config_file")
{
    SUBCASE("an unreadable file is one error naming it")
    {
        const auto r = load_config_file("/nonexistent/pgswitch.toml");
        CHECK_FALSE(r.config.has_value());
        REQUIRE(r.errors.size() == 1);
        CHECK(r.errors[0].file == "/nonexistent/pgswitch.toml");
        CHECK(r.errors[0].to_string().starts_with("/nonexistent/pgswitch.toml: "));
    }
    SUBCASE("a directory is unreadable too")
    {
        const auto r = load_config_file("/tmp");
        CHECK_FALSE(r.config.has_value());
        CHECK(r.errors.size() == 1);
    }
    SUBCASE("a real file sets Config::source")
    {
        const std::string path = "/tmp/pgswitch_config_test_" + std::to_string(::getpid()) + ".toml";
        {
            std::ofstream out(path);
            out << spec_example;
        }
        const auto r = load_config_file(path);
        std::remove(path.c_str());
        INFO(all_errors(r));
        REQUIRE(r.config.has_value());
        CHECK(r.config->source == path);
        CHECK(r.config->users[0].name == "app");
    }
}

TEST_CASE("parse_endpoint")
{
    SUBCASE("valid forms")
    {
        auto e = parse_endpoint("127.0.0.1:6432");
        REQUIRE(e);
        CHECK(e->host == "127.0.0.1");
        CHECK(e->port == 6432);
        e = parse_endpoint("db.example.com:5432");
        REQUIRE(e);
        CHECK(e->host == "db.example.com");
        e = parse_endpoint("[::1]:5432");
        REQUIRE(e);
        CHECK(e->host == "::1");
        CHECK(e->port == 5432);
        e = parse_endpoint("[fe80::1:2]:65535");
        REQUIRE(e);
        CHECK(e->host == "fe80::1:2");
        CHECK(e->port == 65535);
        CHECK(parse_endpoint("localhost:1"));
    }
    SUBCASE("invalid forms")
    {
        for (const char* bad : {"", "127.0.0.1", "127.0.0.1:", ":5432", "host:0", "host:65536", "host:-1", "host:+5",
                                "host:54a", "::1:5432", "[::1]", "[::1]5432", "[::1:5432", "[nothex]:5432", "[]:5432",
                                "ho st:5432", "host:99999999999999999999"}) {
            INFO(bad);
            CHECK_FALSE(parse_endpoint(bad).has_value());
        }
    }
    SUBCASE("to_string brackets IPv6")
    {
        CHECK(Endpoint{"::1", 5432}.to_string() == "[::1]:5432");
        CHECK(Endpoint{"127.0.0.1", 6432}.to_string() == "127.0.0.1:6432");
        CHECK(parse_endpoint(Endpoint{"fe80::1", 80}.to_string())->host == "fe80::1");
    }
}

TEST_CASE("command line: config file forms")
{
    SUBCASE("-c FILE")
    {
        const auto r = parse_args({"-c", "a.toml"});
        REQUIRE(r.cmd);
        CHECK(r.cmd->action == CommandLine::Action::run);
        CHECK(r.cmd->config_path == "a.toml");
    }
    SUBCASE("--config FILE and --config=FILE")
    {
        CHECK(parse_args({"--config", "b.toml"}).cmd->config_path == "b.toml");
        CHECK(parse_args({"--config=c.toml"}).cmd->config_path == "c.toml");
    }
    SUBCASE("--check -c FILE, either order")
    {
        auto r = parse_args({"--check", "-c", "a.toml"});
        REQUIRE(r.cmd);
        CHECK(r.cmd->action == CommandLine::Action::check);
        r = parse_args({"-c", "a.toml", "--check"});
        REQUIRE(r.cmd);
        CHECK(r.cmd->action == CommandLine::Action::check);
    }
    SUBCASE("--check without -c is an error")
    {
        const auto r = parse_args({"--check"});
        CHECK_FALSE(r.cmd);
        REQUIRE(r.errors.size() == 1);
        CHECK(r.errors[0].find("--check") != std::string::npos);
    }
    SUBCASE("--version and --help need nothing else")
    {
        CHECK(parse_args({"--version"}).cmd->action == CommandLine::Action::version);
        CHECK(parse_args({"--help"}).cmd->action == CommandLine::Action::help);
        CHECK(parse_args({"-h"}).cmd->action == CommandLine::Action::help);
    }
}

TEST_CASE("command line: flag mode")
{
    SUBCASE("all flags, both value forms")
    {
        const auto r = parse_args({"--primary", "10.0.0.1:5432", "--replica=10.0.0.2:5432", "--replica", "[::1]:5433",
                                   "--listen=0.0.0.0:7432", "--admin-listen", "127.0.0.1:7480", "--user", "app",
                                   "--password=-starts-with-dash"});
        INFO((r.errors.empty() ? "" : r.errors[0]));
        REQUIRE(r.cmd);
        const CommandLine& c = *r.cmd;
        CHECK(c.action == CommandLine::Action::run);
        CHECK(c.config_path.empty());
        CHECK(c.primary->to_string() == "10.0.0.1:5432");
        REQUIRE(c.replicas.size() == 2);
        CHECK(c.replicas[1].host == "::1");
        CHECK(c.listen->port == 7432);
        CHECK(c.admin_listen->port == 7480);
        CHECK(c.user == "app");
        CHECK(c.password == "-starts-with-dash");
    }
    SUBCASE("a password after a space may start with a dash")
    {
        const auto r = parse_args({"--primary", "h:1", "--password", "-x"});
        REQUIRE(r.cmd);
        CHECK(r.cmd->password == "-x");
    }
    SUBCASE("primary alone is enough to parse")
    {
        const auto r = parse_args({"--primary=h:5432"});
        REQUIRE(r.cmd);
        CHECK(r.cmd->replicas.empty());
    }
}

TEST_CASE("command line errors")
{
    const auto expect_error = [](std::vector<const char*> args, const std::string& needle) {
        const auto r = parse_args(std::move(args));
        CHECK_FALSE(r.cmd);
        REQUIRE_FALSE(r.errors.empty());
        const bool found = std::any_of(r.errors.begin(), r.errors.end(),
                                       [&](const std::string& e) { return e.find(needle) != std::string::npos; });
        INFO("errors[0]: " << r.errors[0]);
        CHECK(found);
    };
    SUBCASE("unknown option")
    {
        expect_error({"-c", "a.toml", "--verbose"}, "unknown option \"--verbose\"");
    }
    SUBCASE("stray argument")
    {
        expect_error({"a.toml"}, "unexpected argument");
    }
    SUBCASE("missing value at the end")
    {
        expect_error({"-c"}, "-config needs a value");
    }
    SUBCASE("missing value before another option")
    {
        expect_error({"--config", "--check"}, "needs a value");
    }
    SUBCASE("bad endpoint")
    {
        expect_error({"--primary", "localhost"}, "--primary: invalid address");
    }
    SUBCASE("bad replica endpoint")
    {
        expect_error({"--primary", "h:1", "--replica=h:0"}, "--replica");
    }
    SUBCASE("neither -c nor --primary")
    {
        expect_error({}, "-c FILE or --primary");
    }
    SUBCASE("replica without primary")
    {
        expect_error({"--replica", "h:1"}, "needs --primary");
    }
    SUBCASE("both -c and --primary")
    {
        expect_error({"-c", "a.toml", "--primary", "h:1"}, "cannot be combined");
    }
    SUBCASE("flag that takes no value")
    {
        expect_error({"--check=yes", "-c", "a"}, "takes no value");
    }
    SUBCASE("-c given twice")
    {
        expect_error({"-c", "a", "-c", "b"}, "more than once");
    }
    SUBCASE("all errors are collected")
    {
        const auto r = parse_args({"--bogus", "--primary", "nope", "--replica", "x:0"});
        CHECK(r.errors.size() == 3);
    }
}

TEST_CASE("config_from_flags")
{
    SUBCASE("backends, user and listeners")
    {
        const auto args = parse_args({"--primary", "10.0.0.1:5432", "--replica", "10.0.0.2:5432", "--replica",
                                      "10.0.0.3:5433", "--user", "app", "--password", "pw"});
        REQUIRE(args.cmd);
        const auto r = config_from_flags(*args.cmd);
        INFO(all_errors(r));
        REQUIRE(r.config);
        const Config& c = *r.config;
        CHECK(c.source.empty());
        REQUIRE(c.backends.size() == 3);
        CHECK(c.backends[0].name == "primary");
        CHECK(c.backends[0].host == "10.0.0.1");
        CHECK(c.backends[1].name == "replica1");
        CHECK(c.backends[2].name == "replica2");
        CHECK(c.backends[2].port == 5433);
        for (const auto& b : c.backends)
            CHECK(b.weight == 1);
        REQUIRE(c.users.size() == 1);
        CHECK(c.users[0].name == "app");
        CHECK(c.users[0].password == "pw");
        CHECK(c.users[0].auth_method == AuthMethod::scram_sha_256);
        CHECK(c.health.user == "app");
        CHECK(c.health.password == "pw");
        CHECK(c.proxy.listen.to_string() == "127.0.0.1:6432");
        CHECK(c.admin.listen.to_string() == "127.0.0.1:6480");
    }
    SUBCASE("listeners from flags, default user postgres")
    {
        const auto args = parse_args(
            {"--primary", "h:1", "--listen", "0.0.0.0:7000", "--admin-listen", "[::1]:7001", "--password", "pw"});
        REQUIRE(args.cmd);
        const auto r = config_from_flags(*args.cmd);
        REQUIRE(r.config);
        CHECK(r.config->proxy.listen.to_string() == "0.0.0.0:7000");
        CHECK(r.config->admin.listen.to_string() == "[::1]:7001");
        CHECK(r.config->users[0].name == "postgres");
        CHECK(r.config->health.user == "postgres");
    }
    SUBCASE("a password is required")
    {
        const auto args = parse_args({"--primary", "h:1", "--user", "app"});
        REQUIRE(args.cmd);
        const auto r = config_from_flags(*args.cmd);
        CHECK_FALSE(r.config);
        REQUIRE(r.errors.size() == 1);
        CHECK(r.errors[0].key == "--password");
        CHECK(r.errors[0].file.empty());
        CHECK(r.errors[0].message.find("flag mode needs --password") != std::string::npos);
    }
    SUBCASE("a non-loopback admin listener is refused: flags cannot set a token")
    {
        const auto args = parse_args({"--primary", "h:1", "--password", "pw", "--admin-listen", "0.0.0.0:6480"});
        REQUIRE(args.cmd);
        const auto r = config_from_flags(*args.cmd);
        CHECK_FALSE(r.config);
        REQUIRE(r.errors.size() == 1);
        CHECK(r.errors[0].key == "--admin-listen");
        CHECK(r.errors[0].message.find("refuses to start") != std::string::npos);
    }
    SUBCASE("no primary")
    {
        CommandLine cmd;
        cmd.password = "pw";
        const auto r = config_from_flags(cmd);
        CHECK_FALSE(r.config);
        REQUIRE(r.errors.size() == 1);
        CHECK(r.errors[0].key == "--primary");
    }
}

TEST_CASE("usage_text lists every form, the defaults and the signals")
{
    const std::string u = usage_text();
    for (const char* needle : {"-c FILE", "--config", "--check", "--primary HOST:PORT", "--replica HOST:PORT",
                               "--listen", "--admin-listen", "--user NAME", "--password PW", "--version", "--help",
                               "127.0.0.1:6432", "127.0.0.1:6480", "SIGHUP", "SIGTERM", "reload"}) {
        INFO(needle);
        CHECK(u.find(needle) != std::string::npos);
    }
}

TEST_CASE("[cluster]: off by default, parsed, and every bad value names its key")
{
    SUBCASE("absent: cluster mode is off")
    {
        const auto r = parse_with_minimal("");
        REQUIRE(r.config.has_value());
        CHECK_FALSE(r.config->cluster.enabled());
        CHECK(r.config->cluster.prefix == "/pgswitch/default");
        CHECK(r.config->cluster.lease_ttl_ms == 3000);
    }
    SUBCASE("every key")
    {
        const auto r = parse_with_minimal(
            "[cluster]\netcd = [\"http://10.0.0.1:2379\", \"http://etcd2:2379\"]\nprefix = \"/prod/pgswitch\"\n"
            "name = \"px-1\"\nlease_ttl_ms = 5000\n");
        INFO(all_errors(r));
        REQUIRE(r.config.has_value());
        const auto& c = r.config->cluster;
        CHECK(c.enabled());
        CHECK(c.etcd == std::vector<std::string>{"http://10.0.0.1:2379", "http://etcd2:2379"});
        CHECK(c.prefix == "/prod/pgswitch");
        CHECK(c.name == "px-1");
        CHECK(c.lease_ttl_ms == 5000);
    }
    SUBCASE("etcd URLs must be http://host:port")
    {
        for (const char* url :
             {"10.0.0.1:2379", "https://h:2379", "http://h", "http://:2379", "http://h:", "http://h:x1"}) {
            INFO(url);
            expect_single_error(
                parse_with_minimal(std::string("[cluster]\netcd = [\"http://ok:1\", \"") + url + "\"]\n"),
                "cluster.etcd[1]", "http://host:port");
        }
    }
    SUBCASE("prefix, name and lease_ttl_ms")
    {
        const std::string etcd = "[cluster]\netcd = [\"http://h:2379\"]\n";
        expect_single_error(parse_with_minimal(etcd + "prefix = \"pgswitch\"\n"), "cluster.prefix", "start with");
        expect_single_error(parse_with_minimal(etcd + "prefix = \"/pgswitch/\"\n"), "cluster.prefix", "end with");
        expect_single_error(parse_with_minimal(etcd + "name = \"a/b\"\n"), "cluster.name", "\"/\"");
        expect_single_error(parse_with_minimal(etcd + "lease_ttl_ms = 999\n"), "cluster.lease_ttl_ms", "at least 1000");
    }
    SUBCASE("wrong types and unknown keys")
    {
        expect_single_error(parse_with_minimal("[cluster]\netcd = \"http://h:2379\"\n"), "cluster.etcd", "array");
        expect_single_error(parse_with_minimal("[cluster]\nttl = 3\n"), "cluster.ttl", "unknown");
    }
}

TEST_CASE("[cache]: SPEC §2's keys parse, bad values name their key, and enabled = true is refused until it is built")
{
    SUBCASE("other values")
    {
        const auto r = parse_with_minimal("[cache]\nstatements = \"all\"\nmax_memory_mb = 8\nttl_ms = 500\n"
                                          "max_entry_kb = 16\ninvalidation = \"proxy\"\n");
        INFO(all_errors(r));
        REQUIRE(r.config.has_value());
        CHECK(r.config->cache.statements == CacheStatements::all);
        CHECK(to_string(r.config->cache.statements) == "all");
        CHECK(r.config->cache.max_memory_mb == 8);
        CHECK(r.config->cache.ttl_ms == 500);
        CHECK(r.config->cache.max_entry_kb == 16);
        CHECK(r.config->cache.invalidation == CacheInvalidation::proxy);
        CHECK(to_string(r.config->cache.invalidation) == "proxy");
    }
    SUBCASE("bad values")
    {
        expect_single_error(parse_with_minimal("[cache]\nstatements = \"some\"\n"), "cache.statements", "\"hinted\"");
        expect_single_error(parse_with_minimal("[cache]\ninvalidation = \"wall\"\n"), "cache.invalidation", "\"wal\"");
        expect_single_error(parse_with_minimal("[cache]\nttl_ms = 0\n"), "cache.ttl_ms");
        expect_single_error(parse_with_minimal("[cache]\nmax_memory_mb = -1\n"), "cache.max_memory_mb");
        expect_single_error(parse_with_minimal("[cache]\nsize = 1\n"), "cache.size");
    }
    SUBCASE("enabled = true")
    {
        expect_single_error(parse_with_minimal("[cache]\nenabled = true\n"), "cache.enabled", "not in this build");
    }
}
