// The docker-compose demo cluster (docker-compose.yml, Dockerfile, docker/) cannot be started
// here (no Docker engine), so check what can be checked without one: Debian's docker-compose
// accepts the file, it has the services and ports the README promises, and the pgswitch config
// the image ships passes `pgswitch --check`. Needs no PostgreSQL cluster.
#include "harness.h"

#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

using namespace e2e;

namespace {

bool is_file(const std::string& p)
{
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string dirname_of(const std::string& p)
{
    const auto slash = p.rfind('/');
    if (slash == std::string::npos)
        return ".";
    return slash == 0 ? "/" : p.substr(0, slash);
}

std::string self_dir()
{  // <build>/tests/integration
    char buf[4096];
    const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
    return n > 0 ? dirname_of(std::string(buf, size_t(n))) : ".";
}

bool is_repo_root(const std::string& d)
{
    return is_file(d + "/docker-compose.yml") && is_file(d + "/docker/pgswitch.toml");
}

/// The source tree: $PGSWITCH_REPO_ROOT; else from this file's path as the compiler saw it
/// (meson passes it relative to the build dir, <build> = <exe dir>/../..); else the build dir's
/// parent (build/ inside the repo); else the current directory or one of its parents.
std::string repo_root()
{
    std::vector<std::string> candidates;
    if (const char* r = std::getenv("PGSWITCH_REPO_ROOT"); r && *r)
        candidates.emplace_back(r);
    const std::string src_dir = dirname_of(__FILE__);  // <repo>/tests/integration
    const std::string build_dir = self_dir() + "/../..";
    if (!src_dir.empty() && src_dir[0] == '/')
        candidates.push_back(src_dir + "/../..");
    else
        candidates.push_back(build_dir + "/" + src_dir + "/../..");
    candidates.push_back(build_dir + "/..");
    char cwd[4096];
    if (::getcwd(cwd, sizeof cwd)) {
        std::string d = cwd;
        for (int i = 0; i < 6 && !d.empty(); ++i) {
            candidates.push_back(d);
            if (d == "/")
                break;
            d = dirname_of(d);
        }
    }
    for (const auto& c : candidates)
        if (is_repo_root(c))
            return c;
    return {};
}

}  // namespace

TEST_CASE("docker-compose.yml validates")
{
    const std::string root = repo_root();
    REQUIRE_MESSAGE(!root.empty(), "repo root with docker-compose.yml not found; set PGSWITCH_REPO_ROOT");
    const std::string compose_file = root + "/docker-compose.yml";

    SUBCASE("docker-compose config -q accepts the file")
    {
        const CommandResult r = run_command({"docker-compose", "-f", compose_file, "config", "-q"}, {}, 60s);
        INFO("docker-compose output:\n" << r.output);
        if (r.exit_code == 127)
            FAIL("docker-compose not found on PATH (Debian package docker-compose; scripts/install_deps.sh installs "
                 "it)");
        CHECK(r.exit_code == 0);
    }

    SUBCASE("services and published ports")
    {
        {
            const CommandResult s = run_command({"docker-compose", "-f", compose_file, "config", "--services"}, {},
                                                60s);
            INFO("docker-compose config --services:\n" << s.output);
            REQUIRE(s.exit_code == 0);
            for (const char* svc : {"primary", "replica1", "replica2", "pgswitch"}) {
                INFO("service " << svc);
                CHECK(("\n" + s.output).find(std::string("\n") + svc + "\n") != std::string::npos);
            }
        }
        const CommandResult c = run_command({"docker-compose", "-f", compose_file, "config"}, {}, 60s);
        INFO("docker-compose config:\n" << c.output);
        REQUIRE(c.exit_code == 0);
        // a published port prints as "published: P" (no host address) or "ADDR:P:P/tcp"
        auto published = [&](const std::string& port) {
            return c.output.find("published: " + port + "\n") != std::string::npos ||
                   c.output.find(":" + port + ":" + port + "/tcp") != std::string::npos;
        };
        CHECK(published("6432"));
        CHECK(published("6480"));
        CHECK(c.output.find("condition: service_healthy") != std::string::npos);
    }

    SUBCASE("docker-compose.cluster.yml adds etcd and a second instance (docs/cluster.md)")
    {
        const std::vector<std::string> files = {
            "docker-compose", "-f", compose_file, "-f", root + "/docker-compose.cluster.yml", "config"};
        auto with = [&](std::vector<std::string> extra) {
            auto argv = files;
            argv.insert(argv.end(), extra.begin(), extra.end());
            return run_command(argv, {}, 60s);
        };
        const CommandResult q = with({"-q"});
        INFO("docker-compose output:\n" << q.output);
        REQUIRE(q.exit_code == 0);
        const CommandResult s = with({"--services"});
        for (const char* svc : {"primary", "replica1", "replica2", "etcd", "pgswitch", "pgswitch-b"}) {
            INFO("service " << svc << " in\n" << s.output);
            CHECK(("\n" + s.output).find(std::string("\n") + svc + "\n") != std::string::npos);
        }
        const CommandResult c = with({});
        CHECK(c.output.find("pgswitch-cluster.toml:/etc/pgswitch/pgswitch.toml") != std::string::npos);
        CHECK(c.output.find(":6433:6432") != std::string::npos);
        const std::string bin = pgswitch_bin();
        const CommandResult check = run_command({bin, "--check", "-c", root + "/docker/pgswitch-cluster.toml"}, {},
                                                30s);
        INFO("pgswitch --check output:\n" << check.output);
        CHECK(check.exit_code == 0);
    }

    SUBCASE("docker/pgswitch.toml passes pgswitch --check")
    {
        const std::string bin = pgswitch_bin();
        REQUIRE_MESSAGE(is_file(bin), "pgswitch binary not found at " << bin << " (set PGSWITCH_BIN)");
        const CommandResult r = run_command({bin, "--check", "-c", root + "/docker/pgswitch.toml"}, {}, 30s);
        INFO("pgswitch --check output:\n" << r.output);
        CHECK(r.exit_code == 0);
    }
}
