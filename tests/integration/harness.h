// End-to-end test fixture: a real PostgreSQL cluster (started by the test
// runner, described by cluster.env) and pgswitch processes spawned per test.
//
// Environment:
//   PGSWITCH_CLUSTER_ENV  path of cluster.env written by tests/pg_cluster.sh (default:
//                         <repo>/.cluster/cluster.env, pg_cluster.sh's default --dir,
//                         found relative to <repo>/build/tests/integration/)
//   PGSWITCH_BIN          path of the pgswitch binary (default: <build>/proxy/pgswitch
//                         next to this test's build directory)
//   PGSWITCH_DIRECT=1     skip pgswitch: the "proxy" is the primary itself, and tests
//                         that need pgswitch-specific behaviour are skipped. Used to
//                         validate the tests themselves.
#pragma once

#include <libpq-fe.h>
#include <sys/types.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace e2e {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// ---------------------------------------------------------------- cluster

/// cluster.env, parsed once.
struct ClusterEnv {
    std::map<std::string, std::string> vars;
    std::string get(const std::string& key) const;  ///< fails the test when missing
    int primary_port() const;
    int replica_port(int n) const;  ///< n = 1 or 2
    std::string host() const { return get("PGHOST"); }
    std::string pgbin() const;  ///< directory of pgbench etc.
};
const ClusterEnv& cluster();
/// Parses a cluster.env file written by tests/pg_cluster.sh (fails the process when unreadable).
ClusterEnv load_cluster_env(const std::string& path);

bool direct_mode();
std::string pgswitch_bin();

// ---------------------------------------------------------------- libpq RAII

struct PGconnDeleter {
    void operator()(PGconn* c) const noexcept
    {
        if (c)
            PQfinish(c);
    }
};
struct PGresultDeleter {
    void operator()(PGresult* r) const noexcept
    {
        if (r)
            PQclear(r);
    }
};
using Conn = std::unique_ptr<PGconn, PGconnDeleter>;
using Result = std::unique_ptr<PGresult, PGresultDeleter>;

/// PQerrorMessage as a std::string (doctest prints a char* as a pointer).
inline std::string errmsg(const PGconn* c)
{
    return c ? PQerrorMessage(c) : "(no connection)";
}

/// Quotes a conninfo value.
std::string cq(const std::string& v);

/// Connects (blocking, connect_timeout bounded). Never null; check PQstatus.
Conn connect(const std::string& conninfo);
/// Connects and fails the test (with the libpq message) unless it worked.
Conn connect_ok(const std::string& conninfo);

/// Runs `sql` and fails the test unless the status is `expected`.
Result exec_ok(PGconn* c, const std::string& sql, ExecStatusType expected = PGRES_COMMAND_OK);
/// Runs `sql` expecting one row with one column; returns it.
std::string query_value(PGconn* c, const std::string& sql);
/// SQLSTATE of a result ("" when none).
std::string sqlstate(const PGresult* r);

/// Waits until fd is readable (true) or the deadline passes (false).
bool wait_readable(int fd, Clock::time_point deadline);
bool wait_writable(int fd, Clock::time_point deadline);

// ---------------------------------------------------------------- processes

struct CommandResult {
    int exit_code = -1;  ///< -1 when killed by a signal or timed out
    bool timed_out = false;
    std::string output;  ///< stdout and stderr interleaved
};
/// fork/exec argv[0] (a path or a name on PATH) with extra environment entries,
/// capturing output; SIGKILLed after `timeout`.
CommandResult run_command(const std::vector<std::string>& argv, const std::vector<std::string>& extra_env = {},
                          std::chrono::milliseconds timeout = 60s);

/// Starts argv in the background, in a process group of its own, with stdout and stderr
/// written to out_path; it is SIGKILLed when the test binary dies. The caller reaps it.
pid_t spawn_background(const std::vector<std::string>& argv, const std::string& out_path,
                       const std::vector<std::string>& extra_env = {});

/// A free loopback TCP port (bind to port 0 and release it).
int free_port();

// ---------------------------------------------------------------- pgswitch

struct UserEntry {
    std::string name;
    std::string password;
    std::string auth_method;  ///< "" = default (scram-sha-256)
};

struct ProxyOptions {
    int max_client_connections = 100;
    int shutdown_timeout_ms = 10000;
    std::vector<UserEntry> users;             ///< empty = app/app only
    std::string extra_toml;                   ///< appended verbatim
    std::string proxy_extra;                  ///< extra [proxy] lines ("key = value\n"), verbatim
    int health_interval_ms = 200;             ///< [health] interval_ms
    std::string health_extra;                 ///< extra [health] lines ("key = value\n"), verbatim
    std::map<std::string, int> weights;       ///< backend name ("primary", "replica1", "replica2") -> weight
    std::string admin_token;                  ///< [admin] token ("" = none)
    const ClusterEnv* cluster_env = nullptr;  ///< another cluster than the shared one (failover tests)
    std::vector<std::string> env;             ///< extra environment entries ("NAME=value") for the process
};

/// One pgswitch process (or, in direct mode, the primary standing in for it).
class Proxy {
public:
    explicit Proxy(ProxyOptions opts = {});
    ~Proxy();
    Proxy(const Proxy&) = delete;
    Proxy& operator=(const Proxy&) = delete;

    /// Spawns and waits until a libpq login as app works; fails the test otherwise.
    void start();
    /// SIGTERM, wait up to `deadline` for exit (SIGKILL fallback); returns the exit
    /// code (-1 when killed by a signal). Idempotent.
    int stop(std::chrono::milliseconds deadline = 15s);

    /// Sends a signal (no-op in direct mode).
    void signal(int sig);
    /// Waits for the process to exit by itself; exit code, or nullopt on deadline.
    std::optional<int> wait_exit(std::chrono::milliseconds deadline);
    /// True while the process has not exited.
    bool alive();

    int port() const { return port_; }
    int admin_port() const { return admin_port_; }
    pid_t pid() const { return pid_; }
    const std::string& log_path() const { return log_path_; }
    const std::string& config_path() const { return config_path_; }

    /// "host=127.0.0.1 port=P dbname=app user=U password=PW connect_timeout=5 sslmode=disable" + extra.
    std::string conninfo(const std::string& user = "", const std::string& password = "",
                         const std::string& extra = "") const;
    /// Default user app.
    Conn connect_app(const std::string& extra = "") const { return connect_ok(conninfo("", "", extra)); }

    /// The log from byte `from` on (at most max_bytes of the tail).
    std::string log_text(size_t from = 0, size_t max_bytes = 16384) const;
    size_t log_size() const;

private:
    ProxyOptions opts_;
    int port_ = 0;
    int admin_port_ = 0;
    pid_t pid_ = -1;
    bool exited_ = false;
    int exit_status_ = 0;
    std::string log_path_;
    std::string config_path_;
    std::optional<int> reap(bool block);
};

/// The instance shared by most tests: started lazily once, stopped at exit.
Proxy& shared_proxy();

/// Writes text to a fresh temp file under /tmp and returns its path.
std::string write_temp_file(const std::string& stem, const std::string& text);

/// Writes the generated TOML for these options/ports (exposed for --check tests).
std::string make_config_toml(const ProxyOptions& opts, int port, int admin_port);

}  // namespace e2e

/// Marks the rest of a test as needing the real pgswitch.
#define E2E_SKIP_IF_DIRECT(why)                                                                                        \
    do {                                                                                                               \
        if (::e2e::direct_mode()) {                                                                                    \
            MESSAGE("skipped in PGSWITCH_DIRECT mode: " << (why));                                                     \
            return;                                                                                                    \
        }                                                                                                              \
    } while (0)
