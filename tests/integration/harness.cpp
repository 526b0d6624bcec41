#include "harness.h"

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

extern char** environ;

namespace e2e {

namespace {

// Directory of this executable (<build>/tests/integration).
std::string exe_dir()
{
    char buf[4096];
    const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0)
        return ".";
    std::string p(buf, size_t(n));
    return p.substr(0, p.rfind('/'));
}
bool exists(const std::string& p)
{
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0;
}
std::string trim(std::string s)
{
    const auto b = s.find_first_not_of(" \t\r\n");
    if (b == std::string::npos)
        return {};
    const auto e = s.find_last_not_of(" \t\r\n");
    return s.substr(b, e - b + 1);
}

// Shell-style value: 'single' or "double" quoted, and backslash escapes as
// printf %q writes them (e.g. REPLICA_PORTS=22071\ 31519 means "22071 31519").
std::string unquote(const std::string& v)
{
    std::string out;
    char quote = 0;
    for (size_t i = 0; i < v.size(); ++i) {
        const char ch = v[i];
        if (quote == '\'') {
            if (ch == '\'')
                quote = 0;
            else
                out += ch;
        } else if (ch == '\\' && i + 1 < v.size()) {
            out += v[++i];
        } else if (quote == '"') {
            if (ch == '"')
                quote = 0;
            else
                out += ch;
        } else if (ch == '\'' || ch == '"') {
            quote = ch;
        } else {
            out += ch;
        }
    }
    return out;
}

std::atomic<int> g_temp_counter{0};

// Live pgswitch processes, for dumping their logs when a test fails.
std::mutex g_live_mu;
std::set<Proxy*> g_live;
std::map<Proxy*, size_t> g_log_marks;  // log size at the start of the current test
struct RetiredLog {
    pid_t pid;
    std::string path;
    size_t from;
};
std::vector<RetiredLog> g_retired;  // instances torn down during the current test

std::string read_file(const std::string& path, size_t from = 0, size_t max_bytes = std::string::npos);

void dump_one(const char* why, pid_t pid, const std::string& path, size_t from)
{
    std::cerr << "----- pgswitch log (" << why << ", pid " << pid << ", " << path << ", from byte " << from
              << ") -----\n"
              << read_file(path, from, 16384) << "\n----- end of log -----\n";
}

void dump_logs(const char* why)
{
    std::lock_guard lk(g_live_mu);
    for (Proxy* p : g_live)
        dump_one(why, p->pid(), p->log_path(), g_log_marks.count(p) ? g_log_marks[p] : 0);
    for (const auto& r : g_retired)
        dump_one(why, r.pid, r.path, r.from);
}

}  // namespace

// ---------------------------------------------------------------- cluster

std::string ClusterEnv::get(const std::string& key) const
{
    auto it = vars.find(key);
    if (it == vars.end())
        FAIL("cluster.env has no " << key);
    return it->second;
}

int ClusterEnv::primary_port() const
{
    return std::stoi(get("PRIMARY_PORT"));
}
int ClusterEnv::replica_port(int n) const
{
    return std::stoi(get("REPLICA" + std::to_string(n) + "_PORT"));
}
std::string ClusterEnv::pgbin() const
{
    auto it = vars.find("PGBIN");
    return it != vars.end() ? it->second : "/usr/lib/postgresql/15/bin";
}

ClusterEnv load_cluster_env(const std::string& path_s)
{
    ClusterEnv e;
    const char* path = path_s.c_str();
    std::ifstream in(path);
    if (!in) {
        std::cerr << "cannot read cluster env " << path << "\n";
        std::exit(2);
    }
    std::string line;
    while (std::getline(in, line)) {
        line = trim(line);
        if (line.empty() || line[0] == '#')
            continue;
        if (line.rfind("export ", 0) == 0)
            line = trim(line.substr(7));
        const auto eq = line.find('=');
        if (eq == std::string::npos)
            continue;
        e.vars[trim(line.substr(0, eq))] = unquote(trim(line.substr(eq + 1)));
    }
    for (const char* k : {"PRIMARY_PORT", "REPLICA1_PORT", "REPLICA2_PORT", "PGHOST"}) {
        if (!e.vars.count(k)) {
            std::cerr << "cluster env " << path << " lacks " << k << "\n";
            std::exit(2);
        }
    }
    for (auto [k, d] : {std::pair{"SUPERUSER", "postgres"},
                        {"SUPERPASS", "postgres"},
                        {"APP_USER", "app"},
                        {"APP_PASSWORD", "app"},
                        {"APP_DB", "app"},
                        {"MD5_USER", "md5user"},
                        {"MD5_PASSWORD", "md5user"},
                        {"PW_USER", "pwuser"},
                        {"PW_PASSWORD", "pwuser"}})
        e.vars.emplace(k, d);
    return e;
}

const ClusterEnv& cluster()
{
    static const ClusterEnv env = [] {
        ClusterEnv e;
        const char* from_env = std::getenv("PGSWITCH_CLUSTER_ENV");
        std::string fallback = exe_dir() + "/../../../.cluster/cluster.env";  // pg_cluster.sh's default dir
        const std::string path_s = from_env && *from_env ? from_env : fallback;
        const char* path = path_s.c_str();
        if (!(from_env && *from_env) && !exists(path_s)) {
            std::cerr << "PGSWITCH_CLUSTER_ENV is not set (path of cluster.env from "
                         "`bash tests/pg_cluster.sh start --dir DIR`), and "
                      << fallback << " does not exist\n";
            std::exit(2);
        }
        e = load_cluster_env(path_s);
        return e;
    }();
    return env;
}

bool direct_mode()
{
    const char* d = std::getenv("PGSWITCH_DIRECT");
    return d && *d && std::string(d) != "0";
}

std::string pgswitch_bin()
{
    const char* b = std::getenv("PGSWITCH_BIN");
    if (b && *b)
        return b;
    // <build>/tests/integration/integration_e2e -> <build>/proxy/pgswitch
    const std::string sibling = exe_dir() + "/../../proxy/pgswitch";
    return exists(sibling) ? sibling : "build/proxy/pgswitch";
}

// ---------------------------------------------------------------- libpq

std::string cq(const std::string& v)
{
    std::string out = "'";
    for (char ch : v) {
        if (ch == '\'' || ch == '\\')
            out += '\\';
        out += ch;
    }
    return out + "'";
}

namespace {
void quiet_notices(void*, const char*) {}
}  // namespace

Conn connect(const std::string& conninfo)
{
    Conn c(PQconnectdb(conninfo.c_str()));
    if (c)
        PQsetNoticeProcessor(c.get(), quiet_notices, nullptr);  // DROP ... IF EXISTS chatter
    return c;
}

Conn connect_ok(const std::string& conninfo)
{
    Conn c = connect(conninfo);
    REQUIRE_MESSAGE(c != nullptr, "PQconnectdb returned null");
    REQUIRE_MESSAGE(PQstatus(c.get()) == CONNECTION_OK, "connect failed (" << conninfo << "): " << errmsg(c.get()));
    return c;
}

Result exec_ok(PGconn* c, const std::string& sql, ExecStatusType expected)
{
    Result r(PQexec(c, sql.c_str()));
    const std::string shown = sql.size() > 200 ? sql.substr(0, 200) + "..." : sql;
    REQUIRE_MESSAGE(PQresultStatus(r.get()) == expected,
                    "`" << shown << "` -> " << std::string(PQresStatus(PQresultStatus(r.get()))) << ": " << errmsg(c));
    return r;
}

std::string query_value(PGconn* c, const std::string& sql)
{
    Result r = exec_ok(c, sql, PGRES_TUPLES_OK);
    REQUIRE_MESSAGE(PQntuples(r.get()) == 1, "`" << sql << "` returned " << PQntuples(r.get()) << " rows");
    REQUIRE(PQnfields(r.get()) >= 1);
    return PQgetvalue(r.get(), 0, 0);
}

std::string sqlstate(const PGresult* r)
{
    const char* s = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
    return s ? s : "";
}

namespace {
bool wait_fd(int fd, short events, Clock::time_point deadline)
{
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() < 0)
            return false;
        pollfd p{fd, events, 0};
        const int n = ::poll(&p, 1, static_cast<int>(left.count()) + 1);
        if (n > 0)
            return true;
        if (n < 0 && errno != EINTR)
            return true;  // let the caller see the error
    }
}
}  // namespace

bool wait_readable(int fd, Clock::time_point deadline)
{
    return wait_fd(fd, POLLIN, deadline);
}
bool wait_writable(int fd, Clock::time_point deadline)
{
    return wait_fd(fd, POLLOUT, deadline);
}

// ---------------------------------------------------------------- processes

std::string write_temp_file(const std::string& stem, const std::string& text)
{
    const std::string path = "/tmp/pgswitch-e2e-" + std::to_string(::getpid()) + "-" +
                             std::to_string(g_temp_counter++) + "-" + stem;
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
    out.close();
    REQUIRE_MESSAGE(out.good(), "cannot write " << path);
    return path;
}

namespace {
std::string read_file(const std::string& path, size_t from, size_t max_bytes)
{
    std::ifstream in(path, std::ios::binary);
    if (!in)
        return {};
    in.seekg(0, std::ios::end);
    const size_t size = static_cast<size_t>(in.tellg());
    if (from > size)
        from = size;
    if (max_bytes != std::string::npos && size - from > max_bytes)
        from = size - max_bytes;
    in.seekg(static_cast<std::streamoff>(from));
    std::string s(size - from, '\0');
    in.read(s.data(), static_cast<std::streamsize>(s.size()));
    return s;
}

// Builds argv/envp before fork: nothing but async-signal-safe calls after it.
struct ExecImage {
    std::vector<std::string> args, env;
    std::vector<char*> argv, envp;
    ExecImage(const std::vector<std::string>& a, const std::vector<std::string>& extra_env) : args(a)
    {
        std::set<std::string> overridden;
        for (const auto& e : extra_env)
            overridden.insert(e.substr(0, e.find('=')));
        for (char** p = environ; *p; ++p) {
            std::string e = *p;
            if (!overridden.count(e.substr(0, e.find('='))))
                env.push_back(e);
        }
        for (const auto& e : extra_env)
            env.push_back(e);
        for (auto& s : args)
            argv.push_back(s.data());
        argv.push_back(nullptr);
        for (auto& s : env)
            envp.push_back(s.data());
        envp.push_back(nullptr);
    }
};

pid_t spawn(const ExecImage& img, const std::string& out_path)
{
    const int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    REQUIRE_MESSAGE(out >= 0, "open " << out_path << ": " << std::strerror(errno));
    const int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test binary
        if (::getppid() != parent)
            ::_exit(127);
        ::setpgid(0, 0);
        ::dup2(devnull, 0);
        ::dup2(out, 1);
        ::dup2(out, 2);
        // Restore default signal dispositions and mask for the child.
        sigset_t none;
        sigemptyset(&none);
        ::sigprocmask(SIG_SETMASK, &none, nullptr);
        ::signal(SIGPIPE, SIG_DFL);
        ::execvpe(img.argv[0], img.argv.data(), img.envp.data());
        ::_exit(127);
    }
    ::close(out);
    if (devnull >= 0)
        ::close(devnull);
    REQUIRE_MESSAGE(pid > 0, "fork: " << std::strerror(errno));
    return pid;
}
}  // namespace

pid_t spawn_background(const std::vector<std::string>& argv, const std::string& out_path,
                       const std::vector<std::string>& extra_env)
{
    return spawn(ExecImage(argv, extra_env), out_path);
}

CommandResult run_command(const std::vector<std::string>& argv, const std::vector<std::string>& extra_env,
                          std::chrono::milliseconds timeout)
{
    ExecImage img(argv, extra_env);
    const std::string out_path = "/tmp/pgswitch-e2e-" + std::to_string(::getpid()) + "-" +
                                 std::to_string(g_temp_counter++) + "-cmd.out";
    const pid_t pid = spawn(img, out_path);
    CommandResult res;
    const auto deadline = Clock::now() + timeout;
    int status = 0;
    for (;;) {
        const pid_t w = ::waitpid(pid, &status, WNOHANG);
        if (w == pid)
            break;
        if (Clock::now() > deadline) {
            ::kill(-pid, SIGKILL);
            ::kill(pid, SIGKILL);
            ::waitpid(pid, &status, 0);
            res.timed_out = true;
            break;
        }
        std::this_thread::sleep_for(20ms);
    }
    if (!res.timed_out && WIFEXITED(status))
        res.exit_code = WEXITSTATUS(status);
    res.output = read_file(out_path);
    ::unlink(out_path.c_str());
    return res;
}

int free_port()
{
    // Below 32768, where the kernel does not pick ports for client sockets
    // (ip_local_port_range), so nothing takes it between now and its use;
    // a random start per process, so parallel runs rarely collide.
    static unsigned next = 20000 + static_cast<unsigned>(::getpid()) % 12000;
    for (int tries = 0; tries < 12768; ++tries) {
        const unsigned port = 20000 + (next++ - 20000) % 12768;
        const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        REQUIRE(fd >= 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons(static_cast<uint16_t>(port));
        const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
        ::close(fd);
        if (ok)
            return static_cast<int>(port);
    }
    FAIL("no free TCP port in 20000-32767");
    return 0;
}

// ---------------------------------------------------------------- pgswitch

std::string make_config_toml(const ProxyOptions& opts, int port, int admin_port)
{
    const ClusterEnv& env = opts.cluster_env ? *opts.cluster_env : cluster();
    std::ostringstream t;
    t << "# generated by integration_e2e\n"
      << "[proxy]\n"
      << "listen = \"127.0.0.1:" << port << "\"\n"
      << "max_client_connections = " << opts.max_client_connections << "\n"
      << "shutdown_timeout_ms = " << opts.shutdown_timeout_ms << "\n"
      << opts.proxy_extra << "\n"
      << "[admin]\n"
      << "listen = \"127.0.0.1:" << admin_port << "\"\n"
      << (opts.admin_token.empty() ? std::string() : "token = \"" + opts.admin_token + "\"\n") << "\n"
      << "[health]\n"
      << "user = \"" << env.get("SUPERUSER") << "\"\n"
      << "password = \"" << env.get("SUPERPASS") << "\"\n"
      << "interval_ms = " << opts.health_interval_ms << "\n"
      << opts.health_extra << "\n";
    const std::pair<const char*, int> backends[] = {
        {"primary", env.primary_port()}, {"replica1", env.replica_port(1)}, {"replica2", env.replica_port(2)}};
    for (const auto& [name, p] : backends) {
        t << "[[backends]]\nname = \"" << name << "\"\nhost = \"" << env.host() << "\"\nport = " << p << "\n";
        if (auto w = opts.weights.find(name); w != opts.weights.end())
            t << "weight = " << w->second << "\n";
        t << "\n";
    }
    std::vector<UserEntry> users = opts.users;
    if (users.empty())
        users.push_back({env.get("APP_USER"), env.get("APP_PASSWORD"), ""});
    for (const auto& u : users) {
        t << "[[users]]\nname = \"" << u.name << "\"\npassword = \"" << u.password << "\"\n";
        if (!u.auth_method.empty())
            t << "auth_method = \"" << u.auth_method << "\"\n";
        t << "\n";
    }
    t << opts.extra_toml << "\n";
    return t.str();
}

Proxy::Proxy(ProxyOptions opts) : opts_(std::move(opts)) {}

Proxy::~Proxy()
{
    if (pid_ > 0 && !exited_) {
        const int code = stop();
        if (code != 0) {
            std::cerr << "pgswitch (pid " << pid_ << ") exited with " << code << " on teardown; log:\n"
                      << log_text() << "\n";
        }
    }
    std::lock_guard lk(g_live_mu);
    if (g_live.erase(this) && !log_path_.empty())
        g_retired.push_back({pid_, log_path_, g_log_marks.count(this) ? g_log_marks[this] : 0});
    g_log_marks.erase(this);
}

std::string Proxy::conninfo(const std::string& user, const std::string& password, const std::string& extra) const
{
    const ClusterEnv& env = cluster();
    std::string s = "host=127.0.0.1 port=" + std::to_string(port_) + " dbname=" + cq(env.get("APP_DB")) +
                    " user=" + cq(user.empty() ? env.get("APP_USER") : user) +
                    " password=" + cq(user.empty() && password.empty() ? env.get("APP_PASSWORD") : password) +
                    " connect_timeout=5 sslmode=disable gssencmode=disable";
    if (!extra.empty())
        s += " " + extra;
    return s;
}

std::optional<int> Proxy::reap(bool block)
{
    if (pid_ <= 0)
        return 0;
    if (exited_)
        return exit_status_;
    int status = 0;
    const pid_t w = ::waitpid(pid_, &status, block ? 0 : WNOHANG);
    if (w == pid_) {
        exited_ = true;
        exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        if (WIFSIGNALED(status))
            std::cerr << "pgswitch pid " << pid_ << " died of signal " << WTERMSIG(status) << "\n";
        return exit_status_;
    }
    return std::nullopt;
}

bool Proxy::alive()
{
    if (pid_ <= 0)
        return direct_mode() && port_ != 0;  // direct mode: the primary stands in
    return !reap(false).has_value();
}

void Proxy::start()
{
    if (direct_mode()) {
        port_ = cluster().primary_port();
        return;
    }
    const std::string bin = pgswitch_bin();
    struct stat st {};
    REQUIRE_MESSAGE(::stat(bin.c_str(), &st) == 0,
                    "pgswitch binary not found at " << bin << " (set PGSWITCH_BIN, or PGSWITCH_DIRECT=1)");
    port_ = free_port();
    admin_port_ = free_port();
    while (admin_port_ == port_)
        admin_port_ = free_port();
    config_path_ = write_temp_file("pgswitch.toml", make_config_toml(opts_, port_, admin_port_));
    log_path_ = config_path_.substr(0, config_path_.size() - 4) + "log";

    ExecImage img({bin, "-c", config_path_}, opts_.env);
    pid_ = spawn(img, log_path_);
    exited_ = false;
    {
        std::lock_guard lk(g_live_mu);
        g_live.insert(this);
    }

    // Ready = a libpq login as the app user works (primary discovered, auth working).
    const auto deadline = Clock::now() + 20s;
    std::string last_error;
    for (;;) {
        if (auto code = reap(false)) {
            FAIL("pgswitch exited during startup with " << *code << "; config " << config_path_ << "; log:\n"
                                                        << log_text());
        }
        Conn c = connect(conninfo("", "", "connect_timeout=2"));
        if (PQstatus(c.get()) == CONNECTION_OK) {
            Result r(PQexec(c.get(), "SELECT 1"));
            if (PQresultStatus(r.get()) == PGRES_TUPLES_OK)
                break;
            last_error = errmsg(c.get());
        } else {
            last_error = errmsg(c.get());
        }
        if (Clock::now() > deadline) {
            const std::string log = log_text();
            stop(3s);
            FAIL("pgswitch did not accept a login within 20 s; last error: " << last_error << "\nlog:\n" << log);
        }
        std::this_thread::sleep_for(50ms);
    }
}

void Proxy::signal(int sig)
{
    if (pid_ > 0 && !exited_)
        ::kill(pid_, sig);
}

std::optional<int> Proxy::wait_exit(std::chrono::milliseconds deadline)
{
    const auto until = Clock::now() + deadline;
    for (;;) {
        if (auto code = reap(false))
            return code;
        if (Clock::now() > until)
            return std::nullopt;
        std::this_thread::sleep_for(10ms);
    }
}

int Proxy::stop(std::chrono::milliseconds deadline)
{
    if (pid_ <= 0)
        return 0;
    if (exited_)
        return exit_status_;
    ::kill(pid_, SIGTERM);
    if (auto code = wait_exit(deadline))
        return *code;
    std::cerr << "pgswitch pid " << pid_ << " ignored SIGTERM for " << deadline.count() << " ms; SIGKILL\n";
    ::kill(pid_, SIGKILL);
    reap(true);
    return -1;
}

size_t Proxy::log_size() const
{
    struct stat st {};
    if (log_path_.empty() || ::stat(log_path_.c_str(), &st) != 0)
        return 0;
    return static_cast<size_t>(st.st_size);
}

std::string Proxy::log_text(size_t from, size_t max_bytes) const
{
    if (log_path_.empty())
        return "(direct mode: no pgswitch log)";
    return read_file(log_path_, from, max_bytes);
}

namespace {
std::unique_ptr<Proxy> g_shared;
std::string g_shared_died_in;  // name of the test during which the shared instance died
}  // namespace

Proxy& shared_proxy()
{
    if (g_shared && !direct_mode() && !g_shared->alive()) {
        // A crash must not cascade into every later test: report it here, restart.
        FAIL_CHECK("the shared pgswitch (pid " << g_shared->pid() << ") died during the earlier test \""
                                               << g_shared_died_in << "\"; restarting it for this one");
        std::cerr << "----- log of the dead shared pgswitch -----\n" << g_shared->log_text() << "\n-----\n";
        g_shared.reset();
        g_shared_died_in.clear();
    }
    if (!g_shared) {
        auto fresh = std::make_unique<Proxy>();
        fresh->start();
        g_shared = std::move(fresh);
        std::lock_guard lk(g_live_mu);
        g_log_marks[g_shared.get()] = 0;
    }
    return *g_shared;
}

// ---------------------------------------------------------------- doctest hooks

namespace {

// Per-test watchdog: a hung proxy must fail the run quickly rather than wait for
// meson's timeout; on expiry it dumps the logs and exits.
std::atomic<long long> g_deadline_ns{0};
std::string g_current_test;
std::mutex g_test_mu;

void watchdog_loop()
{
    for (;;) {
        std::this_thread::sleep_for(200ms);
        const long long d = g_deadline_ns.load();
        if (d != 0 && Clock::now().time_since_epoch().count() > d) {
            {
                std::lock_guard lk(g_test_mu);
                std::cerr << "\nWATCHDOG: test \"" << g_current_test << "\" exceeded its time limit\n";
            }
            dump_logs("watchdog");
            std::cerr.flush();
            std::_Exit(3);
        }
    }
}

struct LogListener : doctest::IReporter {
    explicit LogListener(const doctest::ContextOptions&)
    {
        static std::once_flag once;
        std::call_once(once, [] { std::thread(watchdog_loop).detach(); });
    }
    void report_query(const doctest::QueryData&) override {}
    void test_run_start() override {}
    void test_run_end(const doctest::TestRunStats&) override {}
    void test_case_start(const doctest::TestCaseData& tc) override
    {
        {
            std::lock_guard lk(g_test_mu);
            g_current_test = tc.m_name;
        }
        {
            std::lock_guard lk(g_live_mu);
            g_retired.clear();
            for (Proxy* p : g_live)
                g_log_marks[p] = p->log_size();
        }
        g_deadline_ns = (Clock::now() + 120s).time_since_epoch().count();
    }
    void test_case_reenter(const doctest::TestCaseData&) override
    {
        // Each SUBCASE pass reruns the test case: a fresh time limit for each.
        g_deadline_ns = (Clock::now() + 120s).time_since_epoch().count();
    }
    void test_case_end(const doctest::CurrentTestCaseStats& st) override
    {
        g_deadline_ns = 0;
        if (g_shared && !direct_mode() && g_shared_died_in.empty() && !g_shared->alive()) {
            std::lock_guard lk(g_test_mu);
            g_shared_died_in = g_current_test;
            std::cerr << "\n*** the shared pgswitch (pid " << g_shared->pid() << ") DIED during test \""
                      << g_current_test << "\" ***\n";
        }
        if (!st.testCaseSuccess)
            dump_logs("test failed");
        std::lock_guard lk(g_live_mu);
        g_retired.clear();
    }
    void test_case_exception(const doctest::TestCaseException&) override {}
    void subcase_start(const doctest::SubcaseSignature&) override {}
    void subcase_end() override {}
    void log_assert(const doctest::AssertData&) override {}
    void log_message(const doctest::MessageData&) override {}
    void test_case_skipped(const doctest::TestCaseData&) override {}
};

}  // namespace

}  // namespace e2e

REGISTER_LISTENER("pgswitch_logs", 1, e2e::LogListener);
