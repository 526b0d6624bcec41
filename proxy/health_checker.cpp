#include "health_checker.h"

#include "cluster_coordinator.h"
#include "failpoint.h"
#include "log.h"
#include "time_text.h"
#include "runtime.h"

namespace pgswitch::proxy {

using namespace asio::experimental::awaitable_operators;

namespace {
// Role and WAL position in one round trip: the current write position on a
// primary, the replayed position on a replica.
constexpr std::string_view health_query = "SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() "
                                          "THEN pg_last_wal_replay_lsn()::text ELSE pg_current_wal_lsn()::text END, "
                                          "pg_last_wal_receive_lsn()::text";

// A backend that failed a check is probed again this soon, so failure_threshold
// checks take a fraction of a second rather than failure_threshold intervals.
constexpr std::chrono::milliseconds burst_interval{100};

std::string quote_literal(std::string_view s)
{
    std::string out = "'";
    for (char c : s) {
        if (c == '\'')
            out.push_back('\'');
        out.push_back(c);
    }
    out.push_back('\'');
    return out;
}

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
    std::string fence_reason;
    /// When a failed check first said the server is stopping/starting on
    /// purpose (restart grace), since it last passed.
    std::optional<std::chrono::steady_clock::time_point> restart_announced;
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
    asio::co_spawn(runtime_.io(), run(), log::stopped_by_exception("health checker"));
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

void HealthChecker::restart_announced(const std::string& backend)
{
    for (auto& n : nodes_)
        if (n->config.name == backend && !n->restart_announced)
            n->restart_announced = std::chrono::steady_clock::now();
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
    if (const auto* coord = runtime_.coordinator()) {
        // Writes go only to the primary of the newest epoch this instance
        // has seen, and nowhere while it cannot reach etcd.
        if (!coord->topology().primary.empty())
            view->designated_primary = coord->topology().primary;
        view->writes_blocked = coord->writes_blocked();
    }
    for (const auto& n : nodes_) {
        view->backends.push_back(n->view);
        if (n->fenced) {
            view->backends.back().state = routing::BackendState::fenced;
            view->backends.back().fence_reason = n->fence_reason;
        } else if (n->drained)
            view->backends.back().state = routing::BackendState::drained;
    }
    runtime_.publish(std::move(view));
}

void HealthChecker::follow_topology()
{
    const auto* coord = runtime_.coordinator();
    if (!coord)
        return;
    const auto& t = coord->topology();
    for (auto& n : nodes_) {
        auto it = t.fenced.find(n->config.name);
        const bool fenced = it != t.fenced.end();
        if (fenced != n->fenced)
            log::info("backend ", n->config.name,
                      fenced ? " fenced by the cluster's leader (" : " fence lifted in the cluster",
                      fenced ? it->second + ")" : std::string());
        n->fenced = fenced;
        n->fence_reason = fenced ? it->second : std::string();
    }
    if (!t.primary.empty())
        last_primary_ = t.primary;
    publish();
}

bool HealthChecker::set_drained(std::string_view name, bool drained)
{
    for (auto& n : nodes_) {
        if (n->config.name != name)
            continue;
        if (n->drained != drained)
            log::info("backend ", n->config.name,
                      drained ? " drained by the operator: no new statements" : " back in rotation");
        n->drained = drained;
        publish();
        return true;
    }
    return false;
}

bool HealthChecker::set_fenced(std::string_view name, bool fenced, std::string reason)
{
    for (auto& n : nodes_) {
        if (n->config.name != name)
            continue;
        if (n->fenced != fenced) {
            if (fenced)
                log::info("backend ", n->config.name, " fenced (", reason,
                          "): no traffic until an operator enables it");
            else
                log::info("backend ", n->config.name, " fence lifted");
        }
        n->fenced = fenced;
        n->fence_reason = fenced ? std::move(reason) : std::string();
        publish();
        return true;
    }
    return false;
}

routing::FailoverInput HealthChecker::failover_input() const
{
    routing::FailoverInput in;
    const auto& cfg = runtime_.settings()->config;
    in.mode = cfg.failover.mode;
    in.last_primary = last_primary_;
    for (const auto& n : nodes_) {
        routing::FailoverInput::Node o;
        o.name = n->config.name;
        o.role = n->view.role;
        o.healthy = n->view.state == routing::BackendState::up;
        o.fenced = n->fenced;
        o.drained = n->drained;
        o.receive_lsn = n->view.receive_lsn;
        o.replay_lsn = n->view.wal_lsn;
        in.nodes.push_back(std::move(o));
    }
    return in;
}

routing::FailoverDecision HealthChecker::decide(const routing::FailoverInput& in)
{
    auto d = routing::next_failover_action(in);
    problem_ = d.reason.ends_with("\" is healthy") ? std::string() : d.reason;
    if (d.reason != last_reason_) {
        last_reason_ = d.reason;
        if (d.kind == routing::FailoverDecision::Kind::none && !d.reason.starts_with("primary \""))
            log::warning("failover: ", d.reason);
    }
    return d;
}

awaitable<void> HealthChecker::apply_cluster_policy(ClusterCoordinator& coord)
{
    // Every instance checks the servers; only the leader acts, and only after
    // etcd recorded what it is about to do (so that an instance taking over
    // from a leader that died half way knows what to finish).
    const auto& t = coord.topology();
    problem_.clear();
    if (!coord.has_topology() || !coord.is_leader())
        co_return;
    const auto in = failover_input();
    if (t.primary.empty()) {
        if (const auto sole = routing::sole_primary(in))
            (void)co_await coord.record_primary(*sole);
        co_return;
    }
    if (in.mode == routing::FailoverMode::external) {
        // Something outside pgswitch promotes: the leader records the node
        // that is now the only primary (a new epoch, nothing fenced), and
        // every instance follows it.
        const auto sole = routing::sole_primary(in);
        if (!sole || *sole == t.primary)
            co_return;
        const std::string reason = "promoted outside pgswitch (failover.mode = external)";
        const std::string old_primary = t.primary;  // t is the coordinator's: it changes once recorded
        const bool recorded = co_await coord.record_promotion(*sole, old_primary, reason, /*fence_old=*/false);
        if (recorded)
            follow_topology();
        co_return;
    }
    // A promotion recorded by a leader that did not live to carry it out.
    for (const auto& n : nodes_)
        if (n->config.name == t.primary && n->view.state == routing::BackendState::up &&
            n->view.role == routing::Role::replica) {
            const auto old = t.history.empty() ? std::string() : t.history.back().from;
            co_await promote(t.primary, old, "completing the failover of epoch " + std::to_string(t.epoch));
            co_return;
        }
    const auto d = decide(in);
    switch (d.kind) {
    case routing::FailoverDecision::Kind::none:
        break;
    case routing::FailoverDecision::Kind::fence:
        log::warning("failover: ", d.reason);
        if (co_await coord.record_fence(d.candidate, d.reason))
            follow_topology();
        break;
    case routing::FailoverDecision::Kind::promote:
        if (co_await coord.record_promotion(d.candidate, d.old_primary, d.reason)) {
            follow_topology();
            if (const auto pause = failpoint_pause("AFTER_RECORDING_PROMOTION"); pause.count() > 0) {
                log::warning("failpoint: pausing ", pause.count(),
                             " ms between recording and carrying out the promotion");
                asio::steady_timer t(runtime_.io(), pause);
                co_await t.async_wait(use_nothrow);
            }
            co_await promote(d.candidate, d.old_primary, d.reason);
        }
        break;
    }
}

awaitable<void> HealthChecker::apply_failover_policy()
{
    if (failover_running_)
        co_return;
    if (auto* coord = runtime_.coordinator()) {
        co_await apply_cluster_policy(*coord);
        co_return;
    }
    // Remember which node writes go to: a failover replaces exactly that one.
    // Only while a single node claims the role: when a second one appears
    // (a replica promoted behind pgswitch's back), the one writes went to
    // stays the primary and the newcomer is the one fenced.
    if (const auto sole = routing::sole_primary(failover_input())) {
        if (last_primary_ && *last_primary_ != *sole)
            log::info("primary is now ", *sole);
        last_primary_ = *sole;
    }
    const auto d = decide(failover_input());
    switch (d.kind) {
    case routing::FailoverDecision::Kind::none:
        break;
    case routing::FailoverDecision::Kind::fence:
        log::warning("failover: ", d.reason);
        (void)set_fenced(d.candidate, true, d.reason);
        break;
    case routing::FailoverDecision::Kind::promote:
        co_await promote(d.candidate, d.old_primary, d.reason);
        break;
    }
}

std::optional<std::string> HealthChecker::manual_failover(std::optional<std::string> target)
{
    if (failover_running_)
        return std::string("a failover is already running");
    if (const auto* coord = runtime_.coordinator(); coord && !coord->is_leader())
        return "only the leading instance promotes: ask \"" + coord->status().leader + "\"";
    auto in = failover_input();
    std::string candidate;
    if (target) {
        bool ok = false;
        for (const auto& n : in.nodes)
            ok = ok || (n.name == *target && n.role == routing::Role::replica && n.healthy && !n.fenced);
        if (!ok)
            return "\"" + *target + "\" is not a healthy, unfenced replica";
        candidate = *target;
    } else if (auto best = routing::best_promotion_candidate(in)) {
        candidate = *best;
    } else {
        return std::string("no healthy replica can be promoted");
    }
    const auto old = last_primary_.value_or("");
    asio::co_spawn(runtime_.io(), promote_requested(candidate, old), asio::detached);
    return std::nullopt;
}

awaitable<void> HealthChecker::promote_requested(std::string candidate, std::string old_primary)
{
    const std::string reason = "operator request (POST /failover)";
    if (auto* coord = runtime_.coordinator()) {
        if (!co_await coord->record_promotion(candidate, old_primary, reason))
            co_return;
        follow_topology();
    }
    co_await promote(std::move(candidate), std::move(old_primary), reason);
}

awaitable<void> HealthChecker::promote(std::string candidate, std::string old_primary, std::string reason)
{
    if (failover_running_)
        co_return;
    failover_running_ = true;
    const auto started = std::chrono::steady_clock::now();
    std::shared_ptr<Node> target;
    std::optional<std::uint64_t> old_lsn;
    for (auto& n : nodes_) {
        if (n->config.name == candidate)
            target = n;
        if (n->config.name == old_primary)
            old_lsn = n->view.wal_lsn;
    }
    log::warning("failover: ", reason, "; promoting ", candidate);
    // Fence first: whatever happens next, the old primary gets no more
    // traffic, even if it comes back (never two primaries).
    if (!old_primary.empty()) {
        std::string why = "old primary, replaced by \"" + candidate + "\" (" + reason +
                          "); re-join it as a replica, then POST /backends/" + old_primary + "/enable";
        (void)set_fenced(old_primary, true, std::move(why));
    }

    bool promoted = false;
    if (target && target->conn && target->conn->is_open() && !target->checking) {
        target->checking = true;  // keep the round's check off this connection meanwhile
        auto r = co_await target->conn->simple_query("SELECT pg_promote(true, 60)");
        target->checking = false;
        if (auto* rows = std::get_if<QueryRows>(&r); rows && !rows->rows.empty() && rows->rows[0].size() == 1 &&
                                                     rows->rows[0][0] == std::optional<std::string>("t"))
            promoted = true;
        else if (auto* e = std::get_if<ConnectError>(&r))
            log::error("failover: pg_promote() on ", candidate, " failed: ", e->message);
    }
    if (!promoted) {
        log::error("failover: ", candidate, " was not promoted; will try again");
        failover_running_ = false;
        co_return;
    }
    target->view.role = routing::Role::primary;
    target->view.receive_lsn.reset();
    last_primary_ = candidate;
    publish();

    // The other replicas now stream from the new primary (they follow its
    // new timeline: recovery_target_timeline = latest is the default).
    const auto& h = runtime_.settings()->config.health;
    for (auto& n : nodes_) {
        if (n == target || n->config.name == old_primary || n->view.role != routing::Role::replica || !n->conn ||
            !n->conn->is_open() || n->checking)
            continue;
        std::string conninfo = "host=" + target->config.host + " port=" + std::to_string(target->config.port) +
                               " user=" + h.user + " application_name=" + n->config.name;
        if (!h.password.empty())
            conninfo += " password=" + h.password;
        n->checking = true;
        auto a = co_await n->conn->simple_query("ALTER SYSTEM SET primary_conninfo = " + quote_literal(conninfo));
        auto b = co_await n->conn->simple_query("SELECT pg_reload_conf()");
        n->checking = false;
        if (std::holds_alternative<ConnectError>(a) || std::holds_alternative<ConnectError>(b))
            log::error("failover: could not re-point ", n->config.name, " at ", candidate);
        else
            log::info("failover: ", n->config.name, " now streams from ", candidate);
    }

    FailoverRecord rec;
    rec.at = now_rfc3339();
    rec.from = old_primary;
    rec.to = candidate;
    rec.reason = reason;
    rec.duration_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
    rec.promoted_lsn = target->view.wal_lsn;
    if (old_lsn && target->view.wal_lsn && *old_lsn > *target->view.wal_lsn)
        rec.unreceived_bytes = *old_lsn - *target->view.wal_lsn;
    history_.push_back(rec);
    log::warning("failover: ", candidate, " is the new primary (", rec.duration_ms, " ms); ", old_primary,
                 " is fenced until POST /backends/", old_primary, "/enable after it re-joined as a replica");
    failover_running_ = false;
    check_now();
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
        co_await apply_failover_policy();
        if (stopped_)
            break;
        // A backend failing its checks is probed in a burst, so a dead primary
        // is known in failure_threshold x 100 ms, not x interval.
        bool suspect = false;
        for (const auto& n : nodes_)
            suspect = suspect || (n->view.state == routing::BackendState::up && n->view.consecutive_failures > 0);
        wake_.expires_after(suspect ? std::min<std::chrono::milliseconds>(interval, burst_interval) : interval);
        auto [ec] = co_await wake_.async_wait(use_nothrow);
        (void)ec;
    }
}

namespace {

ServerStartup health_startup(const HealthSettings& h)
{
    ServerStartup s;
    s.user = h.user;
    s.database = h.database;
    s.params.emplace_back("application_name", "pgswitch health check");
    s.credentials.password = h.password;  // "" when none: the server may not ask
    return s;
}

}  // namespace

std::string HealthChecker::record_answer(Node& node, const QueryRows& answer)
{
    const auto& rows = answer.rows;
    if (rows.size() != 1 || rows[0].size() != 3 || !rows[0][0])
        return "unexpected health query result";
    const bool in_recovery = *rows[0][0] == "t";
    const auto role = in_recovery ? routing::Role::replica : routing::Role::primary;
    if (node.view.role != role || node.view.state != routing::BackendState::up)
        log::info("backend ", node.config.name, " (", node.config.host, ":", node.config.port, ") is up as ",
                  routing::to_string(role));
    node.view.role = role;
    node.view.wal_lsn = rows[0][1] ? routing::parse_lsn(*rows[0][1]) : std::nullopt;
    node.view.receive_lsn = rows[0][2] ? routing::parse_lsn(*rows[0][2]) : std::nullopt;
    if (node.view.state == routing::BackendState::down)
        node.view.state = routing::BackendState::up;
    node.view.consecutive_failures = 0;
    node.view.last_error.clear();
    node.restart_announced.reset();
    return {};
}

void HealthChecker::record_failure(Node& node, const std::string& failure, const std::string& failure_state)
{
    const auto& h = runtime_.settings()->config.health;
    if (node.conn)
        node.conn->close();
    node.conn.reset();
    ++node.view.consecutive_failures;
    node.view.last_error = failure;
    const auto now = std::chrono::steady_clock::now();
    if (!node.restart_announced && routing::announces_restart(failure_state, failure))
        node.restart_announced = now;
    if (node.restart_announced && node.view.consecutive_failures == 1 && node.view.state == routing::BackendState::up &&
        h.restart_grace_ms > 0)
        log::info("backend ", node.config.name, " is stopping or restarting (", failure,
                  "): waiting up to health.restart_grace_ms = ", h.restart_grace_ms,
                  " ms for it before it counts as down");
    std::optional<std::chrono::milliseconds> since_announced;
    if (node.restart_announced)
        since_announced = std::chrono::duration_cast<std::chrono::milliseconds>(now - *node.restart_announced);
    if (node.view.state == routing::BackendState::up &&
        routing::is_down(node.view.consecutive_failures, h.failure_threshold, since_announced,
                         std::chrono::milliseconds(h.restart_grace_ms))) {
        node.view.state = routing::BackendState::down;
        log::warning("backend ", node.config.name, " is down after ", node.view.consecutive_failures,
                     " failed checks: ", failure);
    } else if (node.view.consecutive_failures == 1) {
        log::info("backend ", node.config.name, " check failed: ", failure);
    }
}

awaitable<void> HealthChecker::check(std::shared_ptr<Node> node)
{
    node->checking = true;
    const auto settings = runtime_.settings();
    const auto& h = settings->config.health;
    const auto timeout = std::chrono::milliseconds(h.timeout_ms);
    std::string failure;
    std::string failure_state;  // the server's SQLSTATE, when it said why

    if (!node->conn || !node->conn->is_open()) {
        node->conn = std::make_unique<BackendConnection>(runtime_.io().get_executor());
        const auto startup = health_startup(h);
        if (auto err = co_await node->conn->connect(node->config.host, node->config.port, startup, timeout)) {
            failure = err->message;
            failure_state = err->sqlstate;
        }
    }
    if (failure.empty()) {
        asio::steady_timer t(runtime_.io(), timeout);
        // awaitable_operators flattens the variants: QueryRows, ConnectError, timer.
        auto r = co_await (node->conn->simple_query(health_query) || t.async_wait(use_nothrow));
        if (r.index() == 2) {
            failure = "health query timed out";
        } else if (r.index() == 1) {
            failure = std::get<1>(r).message;
            failure_state = std::get<1>(r).sqlstate;
        } else {
            failure = record_answer(*node, std::get<0>(r));
        }
    }
    if (!failure.empty())
        record_failure(*node, failure, failure_state);
    node->checking = false;
}

}  // namespace pgswitch::proxy
