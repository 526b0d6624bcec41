#include "health_checker.h"

#include "log.h"
#include "runtime.h"

namespace pgswitch::proxy {

using namespace asio::experimental::awaitable_operators;

namespace {
// Role and WAL position in one round trip: the current write position on a
// primary, the replayed position on a replica.
constexpr std::string_view health_query =
    "SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() "
    "THEN pg_last_wal_replay_lsn()::text ELSE pg_current_wal_lsn()::text END";
}  // namespace

struct HealthChecker::Node {
    BackendConfig config;
    routing::BackendView view;
    std::unique_ptr<BackendConnection> conn;
    bool checking = false;
    // Operator states, published over view.state (which stays the health
    // verdict up/down that check() maintains). Fenced wins over drained.
    bool drained = false;
    bool fenced = false;
};

HealthChecker::HealthChecker(Runtime& runtime) : runtime_(runtime), wake_(runtime.io())
{
    set_backends(runtime.settings()->config.backends);
}

HealthChecker::~HealthChecker() = default;

void HealthChecker::set_backends(const std::vector<BackendConfig>& backends)
{
    std::vector<std::shared_ptr<Node>> next;
    for (const auto& b : backends) {
        std::shared_ptr<Node> node;
        for (auto& old : nodes_)
            if (old->config.name == b.name)
                node = old;
        if (!node) {
            node = std::make_shared<Node>();
            node->view.role = routing::Role::unknown;
            node->view.state = routing::BackendState::down;
            node->view.last_error = "not checked yet";
        }
        if (node->config.host != b.host || node->config.port != b.port) {
            // Same name, new address: forget what we knew about the old one.
            if (node->conn)
                node->conn->close();
            node->conn.reset();
            node->view.role = routing::Role::unknown;
            node->view.state = routing::BackendState::down;
        }
        node->config = b;
        node->view.name = b.name;
        node->view.host = b.host;
        node->view.port = b.port;
        node->view.weight = b.weight;
        next.push_back(std::move(node));
    }
    for (auto& old : nodes_)
        if (std::find(next.begin(), next.end(), old) == next.end() && old->conn)
            old->conn->close();
    nodes_ = std::move(next);
    publish();
}

void HealthChecker::start()
{
    asio::co_spawn(runtime_.io(), run(), [](std::exception_ptr e) {
        if (!e)
            return;
        try {
            std::rethrow_exception(e);
        } catch (const std::exception& ex) {
            log::error("health checker stopped: ", ex.what());
        }
    });
}

void HealthChecker::stop() noexcept
{
    stopped_ = true;
    wake_.cancel();
    for (auto& n : nodes_)
        if (n->conn)
            n->conn->close();
}

void HealthChecker::check_now() noexcept
{
    wake_.cancel();
}

void HealthChecker::publish()
{
    // Replica lag against the primary's position from the same round.
    std::optional<std::uint64_t> primary_lsn;
    for (const auto& n : nodes_)
        if (n->view.role == routing::Role::primary && n->view.state == routing::BackendState::up)
            primary_lsn = n->view.wal_lsn;
    const auto max_lag = static_cast<std::uint64_t>(runtime_.settings()->config.routing.max_replica_lag_bytes);
    for (auto& n : nodes_) {
        if (n->view.role != routing::Role::replica) {
            n->view.lag_bytes.reset();
            n->view.lagging = false;
            continue;
        }
        if (primary_lsn && n->view.wal_lsn)
            n->view.lag_bytes = *primary_lsn > *n->view.wal_lsn ? *primary_lsn - *n->view.wal_lsn : 0;
        else
            n->view.lag_bytes.reset();
        const bool was = n->view.lagging;
        n->view.lagging = routing::update_lagging(was, n->view.lag_bytes, max_lag);
        if (was != n->view.lagging)
            log::info("replica ", n->config.name, n->view.lagging ? " is lagging (" : " caught up (",
                      n->view.lag_bytes.value_or(0), " bytes behind): ", n->view.lagging ? "no reads" : "reads resume");
    }
    auto view = std::make_shared<routing::ClusterView>();
    view->generation = ++generation_;
    for (const auto& n : nodes_) {
        view->backends.push_back(n->view);
        if (n->fenced)
            view->backends.back().state = routing::BackendState::fenced;
        else if (n->drained)
            view->backends.back().state = routing::BackendState::drained;
    }
    runtime_.publish(std::move(view));
}

bool HealthChecker::set_drained(std::string_view name, bool drained)
{
    for (auto& n : nodes_) {
        if (n->config.name != name)
            continue;
        if (n->drained != drained)
            log::info("backend ", n->config.name, drained ? " drained by the operator: no new statements"
                                                          : " back in rotation");
        n->drained = drained;
        publish();
        return true;
    }
    return false;
}

bool HealthChecker::set_fenced(std::string_view name, bool fenced)
{
    for (auto& n : nodes_) {
        if (n->config.name != name)
            continue;
        if (n->fenced != fenced)
            log::info("backend ", n->config.name, fenced ? " fenced: no traffic until an operator enables it"
                                                         : " fence lifted");
        n->fenced = fenced;
        publish();
        return true;
    }
    return false;
}

awaitable<void> HealthChecker::run()
{
    while (!stopped_) {
        const auto settings = runtime_.settings();
        const auto interval = std::chrono::milliseconds(settings->config.health.interval_ms);
        // Check every backend concurrently; one that hangs costs only its own timeout.
        auto nodes = nodes_;
        int outstanding = 0;
        asio::steady_timer done(runtime_.io(), asio::steady_timer::time_point::max());
        for (auto& n : nodes) {
            if (n->checking)
                continue;
            ++outstanding;
            asio::co_spawn(runtime_.io(), check(n), [&outstanding, &done](std::exception_ptr) {
                if (--outstanding == 0)
                    done.cancel();
            });
        }
        if (outstanding > 0) {
            auto [ec] = co_await done.async_wait(use_nothrow);
            (void)ec;
        }
        if (stopped_)
            break;
        publish();
        wake_.expires_after(interval);
        auto [ec] = co_await wake_.async_wait(use_nothrow);
        (void)ec;
    }
}

awaitable<void> HealthChecker::check(std::shared_ptr<Node> node)
{
    node->checking = true;
    const auto settings = runtime_.settings();
    const auto& h = settings->config.health;
    const auto timeout = std::chrono::milliseconds(h.timeout_ms);
    std::string failure;

    if (!node->conn || !node->conn->is_open()) {
        node->conn = std::make_unique<BackendConnection>(runtime_.io().get_executor());
        ServerStartup s;
        s.user = h.user;
        s.database = h.database;
        s.params.emplace_back("application_name", "pgswitch health check");
        if (!h.password.empty())
            s.credentials.password = h.password;
        else
            s.credentials.password = std::string();
        if (auto err = co_await node->conn->connect(node->config.host, node->config.port, s, timeout))
            failure = err->message;
    }
    if (failure.empty()) {
        asio::steady_timer t(runtime_.io(), timeout);
        // awaitable_operators flattens the variants: QueryRows, ConnectError, timer.
        auto r = co_await (node->conn->simple_query(health_query) || t.async_wait(use_nothrow));
        if (r.index() == 2) {
            failure = "health query timed out";
        } else if (r.index() == 1) {
            failure = std::get<1>(r).message;
        } else {
            const auto& rows = std::get<0>(r).rows;
            if (rows.size() != 1 || rows[0].size() != 2 || !rows[0][0]) {
                failure = "unexpected health query result";
            } else {
                const bool in_recovery = *rows[0][0] == "t";
                const auto role = in_recovery ? routing::Role::replica : routing::Role::primary;
                if (node->view.role != role || node->view.state != routing::BackendState::up)
                    log::info("backend ", node->config.name, " (", node->config.host, ":",
                              node->config.port, ") is up as ", routing::to_string(role));
                node->view.role = role;
                node->view.wal_lsn = rows[0][1] ? routing::parse_lsn(*rows[0][1]) : std::nullopt;
                if (node->view.state == routing::BackendState::down)
                    node->view.state = routing::BackendState::up;
                node->view.consecutive_failures = 0;
                node->view.last_error.clear();
            }
        }
    }
    if (!failure.empty()) {
        if (node->conn)
            node->conn->close();
        node->conn.reset();
        ++node->view.consecutive_failures;
        node->view.last_error = failure;
        if (node->view.state == routing::BackendState::up &&
            node->view.consecutive_failures >= h.failure_threshold) {
            node->view.state = routing::BackendState::down;
            log::warning("backend ", node->config.name, " is down after ", node->view.consecutive_failures,
                         " failed checks: ", failure);
        } else if (node->view.consecutive_failures == 1) {
            log::info("backend ", node->config.name, " check failed: ", failure);
        }
    }
    node->checking = false;
}

}  // namespace pgswitch::proxy
