// Real tools against pgswitch (pgbench) and the pgswitch command line itself.
#include "harness.h"

#include <doctest/doctest.h>

#include <regex>
#include <string>
#include <sys/stat.h>

using namespace e2e;

namespace {
// "number of transactions actually processed: 1234" -> 1234, or -1.
long long pgbench_number(const std::string& out, const std::string& label)
{
    std::smatch m;
    if (std::regex_search(out, m, std::regex(label + ":\\s*([0-9]+)")))
        return std::stoll(m[1]);
    return -1;
}

std::string pgbench_path()
{
    const std::string p = cluster().pgbin() + "/pgbench";
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0 ? p : "pgbench";
}

bool have_binary()
{
    struct stat st {};
    return ::stat(pgswitch_bin().c_str(), &st) == 0;
}
}  // namespace

TEST_CASE("pgbench: select-only and TPC-B through pgswitch without errors")
{
    Proxy& px = shared_proxy();
    const ClusterEnv& env = cluster();
    const std::vector<std::string> penv = {"PGPASSWORD=" + env.get("APP_PASSWORD"), "PGSSLMODE=disable",
                                           "PGCONNECT_TIMEOUT=5"};
    // Initialize directly on the primary (data setup is not what is under test).
    CommandResult init = run_command({pgbench_path(), "-i", "-q", "-s", "1", "-h", "127.0.0.1", "-p",
                                      std::to_string(env.primary_port()), "-U", env.get("APP_USER"), env.get("APP_DB")},
                                     penv, 120s);
    INFO("pgbench -i output:\n" << init.output);
    REQUIRE(init.exit_code == 0);

    auto bench = [&](std::vector<std::string> mode_args) {
        std::vector<std::string> argv = {pgbench_path(), "-n",
                                         "-c",           "8",
                                         "-j",           "2",
                                         "-T",           "10",
                                         "-h",           "127.0.0.1",
                                         "-p",           std::to_string(px.port()),
                                         "-U",           env.get("APP_USER")};
        argv.insert(argv.end(), mode_args.begin(), mode_args.end());
        argv.push_back(env.get("APP_DB"));
        return run_command(argv, penv, 60s);
    };

    SUBCASE("select-only (-S)")
    {
        CommandResult r = bench({"-S"});
        INFO("pgbench -S output:\n" << r.output);
        CHECK_FALSE(r.timed_out);
        CHECK(r.exit_code == 0);
        CHECK(pgbench_number(r.output, "number of transactions actually processed") > 0);
        const long long failed = pgbench_number(r.output, "number of failed transactions");
        CHECK((failed == -1 || failed == 0));
        CHECK(r.output.find("error") == std::string::npos);
        CHECK(r.output.find("aborted") == std::string::npos);
    }
    SUBCASE("TPC-B (default script)")
    {
        CommandResult r = bench({});
        INFO("pgbench TPC-B output:\n" << r.output);
        CHECK_FALSE(r.timed_out);
        CHECK(r.exit_code == 0);
        const long long done = pgbench_number(r.output, "number of transactions actually processed");
        CHECK(done > 0);
        const long long failed = pgbench_number(r.output, "number of failed transactions");
        CHECK((failed == -1 || failed == 0));
        CHECK(r.output.find("error") == std::string::npos);
        CHECK(r.output.find("aborted") == std::string::npos);
        // Every processed transaction really committed on the primary: pgbench_history
        // gets one row per TPC-B transaction (it started empty after -i).
        Conn direct = connect_ok("host=127.0.0.1 port=" + std::to_string(env.primary_port()) +
                                 " dbname=" + cq(env.get("APP_DB")) + " user=" + cq(env.get("APP_USER")) +
                                 " password=" + cq(env.get("APP_PASSWORD")) + " sslmode=disable connect_timeout=5");
        CHECK(std::stoll(query_value(direct.get(), "SELECT count(*) FROM pgbench_history")) == done);
    }
}

TEST_CASE("command line: --check, --version, --help")
{
    if (!have_binary()) {
        if (direct_mode()) {
            MESSAGE("skipped in PGSWITCH_DIRECT mode: no pgswitch binary at " << pgswitch_bin());
            return;
        }
        FAIL("pgswitch binary not found at " << pgswitch_bin());
    }
    const std::string bin = pgswitch_bin();

    SUBCASE("a good file passes")
    {
        const std::string good = write_temp_file("good.toml", make_config_toml({}, free_port(), free_port()));
        CommandResult r = run_command({bin, "--check", "-c", good}, {}, 20s);
        INFO(r.output);
        CHECK(r.exit_code == 0);
    }
    SUBCASE("an unknown key is named")
    {
        ProxyOptions o;
        o.extra_toml = "[routing]\ne2e_bogus_key = 1\n";
        const std::string bad = write_temp_file("bad-key.toml", make_config_toml(o, free_port(), free_port()));
        CommandResult r = run_command({bin, "--check", "-c", bad}, {}, 20s);
        INFO(r.output);
        CHECK(r.exit_code == 1);
        CHECK(r.output.find("e2e_bogus_key") != std::string::npos);
    }
    SUBCASE("a wrong type is named")
    {
        std::string text = "[proxy]\nlisten = \"127.0.0.1:6432\"\nmax_client_connections = \"lots\"\n"
                           "[[backends]]\nname = \"pg1\"\nhost = \"127.0.0.1\"\nport = 5432\n"
                           "[[users]]\nname = \"app\"\npassword = \"app\"\n";
        const std::string bad = write_temp_file("bad-type.toml", text);
        CommandResult r = run_command({bin, "--check", "-c", bad}, {}, 20s);
        INFO(r.output);
        CHECK(r.exit_code == 1);
        CHECK(r.output.find("max_client_connections") != std::string::npos);
    }
    SUBCASE("every problem is listed, not just the first")
    {
        std::string text = "[proxy]\nlisten = \"127.0.0.1:6432\"\ne2e_first_problem = true\n"
                           "[routing]\nload_balancing = \"e2e_no_such_policy\"\n"
                           "[[backends]]\nname = \"pg1\"\nhost = \"127.0.0.1\"\nport = 5432\n"
                           "[[backends]]\nname = \"pg1\"\nhost = \"127.0.0.1\"\nport = 5433\n"
                           "[[users]]\nname = \"app\"\npassword = \"app\"\n";
        const std::string bad = write_temp_file("bad-many.toml", text);
        CommandResult r = run_command({bin, "--check", "-c", bad}, {}, 20s);
        INFO(r.output);
        CHECK(r.exit_code == 1);
        CHECK(r.output.find("e2e_first_problem") != std::string::npos);
        CHECK(r.output.find("load_balancing") != std::string::npos);
        CHECK(r.output.find("pg1") != std::string::npos);  // the duplicate backend name
    }
    SUBCASE("a missing file is an error")
    {
        CommandResult r = run_command({bin, "--check", "-c", "/nonexistent/e2e.toml"}, {}, 20s);
        INFO(r.output);
        CHECK(r.exit_code == 1);
        CHECK(r.output.find("/nonexistent/e2e.toml") != std::string::npos);
    }
    SUBCASE("--version and --help")
    {
        CommandResult v = run_command({bin, "--version"}, {}, 20s);
        INFO(v.output);
        CHECK(v.exit_code == 0);
        CHECK(v.output.find("pgswitch") != std::string::npos);
        CHECK(std::regex_search(v.output, std::regex("[0-9]+\\.[0-9]+")));
        CommandResult h = run_command({bin, "--help"}, {}, 20s);
        INFO(h.output);
        CHECK(h.exit_code == 0);
        CHECK(h.output.find("--check") != std::string::npos);
    }
}
