// ClientSession's routing step (SPEC §3): each gathered request is summarized
// by routing::analyze_request(), placed by routing::choose_target() and sent
// to that backend's connection, after pgswitch caught the connection up with
// the session's state.
#include <algorithm>
#include <chrono>

#include "client_session.h"
#include "log.h"
#include "pg_wire/backend.h"
#include "pg_wire/frontend.h"
#include "pg_wire/sqlstate.h"
#include "routing/server_prepared.h"
#include "session_context.h"

namespace pgswitch::proxy {

namespace be = wire::be;
namespace fe = wire::fe;
namespace sqlstate = wire::sqlstate;
using Segment = ServerLink::Segment;

namespace {

// A request kept for a re-run on the primary costs its bytes until its reply
// starts; larger ones are not kept (no replay wait, no 25006 re-run).
constexpr std::size_t retry_keep_limit = 64 * 1024;

/// The hidden query that waits, on a replica, until it has replayed `lsn`:
/// it checks the replay position about once a millisecond (pg_sleep's
/// granularity) and returns the position it last saw, after `wait_ms` at
/// most. One row, whatever happens; NULL on a server not in recovery.
std::string replay_wait_sql(std::uint64_t lsn, std::uint32_t wait_ms)
{
    const auto n = std::to_string(std::max<std::uint32_t>(wait_ms, 1));
    const auto target = "'" + routing::format_lsn(lsn) + "'::pg_lsn";
    return "SELECT pg_catalog.pg_last_wal_replay_lsn() FROM pg_catalog.generate_series(0, " + n +
           ") g WHERE CASE WHEN pg_catalog.pg_last_wal_replay_lsn() >= " + target + " OR g = " + n +
           " THEN true ELSE pg_catalog.pg_sleep(0.001) IS NULL END LIMIT 1";
}

}  // namespace

bool ClientSession::any_pending() const noexcept
{
    return links_.any_owes_client();
}

bool ClientSession::read_your_writes_lsn() const noexcept
{
    return ctx_.policy().read_your_writes == routing::ReadYourWrites::lsn;
}

std::shared_ptr<ServerLink> ClientSession::primary_link() const
{
    return links_.to_primary(ctx_.cluster_now());
}

awaitable<void> ClientSession::wait_until_drained()
{
    while (!closed_ && any_pending()) {
        auto [ec] = co_await drained_.async_wait(use_nothrow);
        (void)ec;
    }
}

awaitable<void> ClientSession::wait_for_segment(ServerLink& link, std::uint64_t n)
{
    while (!closed_ && !link.dead && link.replies.segments_done() < n) {
        auto [ec] = co_await drained_.async_wait(use_nothrow);
        (void)ec;
    }
}

std::chrono::steady_clock::time_point ClientSession::primary_deadline() const
{
    const auto wait = std::chrono::milliseconds(ctx_.settings()->config.failover.wait_for_primary_ms);
    return std::chrono::steady_clock::now() + wait;
}

awaitable<bool> ClientSession::wait_for_primary(std::chrono::steady_clock::time_point deadline)
{
    if (closed_ || std::chrono::steady_clock::now() >= deadline)
        co_return false;
    co_await ctx_.wait_for_cluster_change(deadline);
    co_return !closed_;
}

routing::RequestFacts ClientSession::analyze(const wire::Request& request)
{
    if (const auto changed = ctx_.catalogs_changed(); changed != catalog_.seen) {
        catalog_.seen = changed;  // read first: a change while reading shows next time
        catalog_.catalog = ctx_.catalog(client_.database, &catalog_.stale);
    }
    const auto& catalog = catalog_.catalog;
    auto& cache = ctx_.statement_cache();
    const routing::ClassifyFn classify = [&cache, &catalog](std::string_view sql) {
        return routing::classify_cached(cache, sql, catalog.get());
    };
    return routing::analyze_request(request, state_, classify, catalog ? catalog->generation() : 0);
}

awaitable<std::shared_ptr<ServerLink>> ClientSession::link_to(const routing::BackendView& backend)
{
    if (auto l = links_.find(backend))
        co_return l;
    if (links_.pooling)
        co_return co_await borrow_link(backend);
    auto link = std::make_shared<ServerLink>();
    link->backend = backend.name;
    link->role = backend.role;
    link->conn = std::make_unique<BackendConnection>(ctx_.io().get_executor());
    const auto timeout = std::chrono::milliseconds(ctx_.settings()->config.proxy.connect_timeout_ms);
    if (auto err = co_await link->conn->connect(backend.host, backend.port, server_startup(), timeout)) {
        log::warning("session ", id_, ": could not open a connection to ", backend.name, ": ", err->message);
        ctx_.request_health_check();
        co_return nullptr;
    }
    if (closed_) {
        link->conn->close();
        co_return nullptr;
    }
    link->conn->forget_parameter_status();  // the client heard the identity link's
    add_link(link);
    co_return link;
}

routing::SessionPlacement ClientSession::placement() const
{
    routing::SessionPlacement p;
    p.in_transaction = tx_status_ != wire::TxStatus::idle;
    if (links_.active && !links_.active->dead) {
        p.has_active = true;
        p.active_role = links_.active->role;
        p.active_unsynced = links_.active->unsynced;
        p.active_unsynced_portal = links_.active->unsynced_portal;
        p.active_pending = links_.active->pending_client();
        p.active_awaiting_replay = p.active_pending > 0 && links_.active->awaiting_replay();
    }
    if (auto l = links_.unnamed.lock(); l && !l->dead)
        p.has_unnamed_link = true;
    // Only asked when no active connection can take bookkeeping.
    p.has_primary_link = !p.has_active && primary_link() != nullptr;
    return p;
}

std::optional<ClientSession::Route> ClientSession::stuck_route(routing::Stick stick) const
{
    switch (stick) {
    case routing::Stick::active:
        return Route{links_.active, std::nullopt};
    case routing::Stick::unnamed:
        return Route{links_.unnamed.lock(), std::nullopt};
    case routing::Stick::primary_link:
        return Route{primary_link(), std::nullopt};
    case routing::Stick::none:
    case routing::Stick::drain_first:
        break;
    }
    return std::nullopt;
}

awaitable<void> ClientSession::end_unsynced_request()
{
    std::string sync;
    fe::build_sync(sync);
    links_.active->push(Segment::hidden);
    links_.active->unsynced = false;
    (void)co_await links_.active->conn->write(sync);
}

awaitable<std::optional<ClientSession::Route>> ClientSession::sticky_route(const routing::RequestFacts& facts)
{
    // Waiting is rare: the common case suspends nowhere here.
    for (;;) {
        const auto plan = routing::plan_sticky(facts, placement());
        if (plan.end_unsynced_first)
            co_await end_unsynced_request();
        if (plan.stick != routing::Stick::drain_first)
            co_return stuck_route(plan.stick);
        co_await wait_until_drained();
        if (closed_)
            co_return Route{};
    }
}

routing::Decision ClientSession::decide_target(const routing::RouteRequest& rr, routing::SessionConstraints& sc,
                                               ReplayPositions& positions, const routing::ClusterView& view,
                                               const routing::Policy& policy)
{
    // Load figures are read only when the policy uses them.
    routing::Load load;
    if (routing::reads_load(policy.load_balancing))
        load = ctx_.loads(view);
    if (sc.min_lsn) {
        // A replica that just failed a wait for this much is not waited
        // on again before the next health round could show it moved.
        const auto interval = ctx_.settings()->config.health.interval_ms;
        const auto memory = std::chrono::milliseconds(std::max(interval, 100));
        positions.reached = ctx_.replay_knowledge().reached_positions(view);
        positions.behind = ctx_.replay_knowledge().behind_positions(view, std::chrono::steady_clock::now(), memory);
        sc.known_replay = positions.reached;  // spans: `positions` outlives the decision's use of `sc`
        sc.known_behind = positions.behind;
    }
    return routing::choose_target(rr, sc, view, policy, ctx_.balancer(), client_.peer_host, load);
}

awaitable<std::shared_ptr<ServerLink>> ClientSession::link_for_read(const routing::ClusterView& view,
                                                                    const routing::Policy& policy,
                                                                    const routing::SessionConstraints& sc,
                                                                    std::size_t unreachable)
{
    // A replica we could not reach: another fresh one serves the read, else
    // the primary (which needs no replay wait).
    for (auto i : routing::eligible_replicas(view, policy, sc)) {
        if (i == unreachable)
            continue;
        auto link = co_await link_to(view.backends[i]);
        if (link)
            co_return link;
    }
    if (auto p = view.primary_index())
        co_return co_await link_to(view.backends[*p]);
    co_return nullptr;
}

awaitable<ClientSession::Route> ClientSession::route_request(const wire::Request& request,
                                                             const routing::RequestFacts& facts)
{
    std::optional<Route> sticky;
    if (const auto plan = routing::plan_sticky(facts, placement());
        plan.end_unsynced_first || plan.stick == routing::Stick::drain_first)
        sticky = co_await sticky_route(facts);  // waits (rare)
    else
        sticky = stuck_route(plan.stick);
    if (sticky)
        co_return *sticky;
    const auto policy = ctx_.policy();
    const auto rr = routing::route_request_for(facts, tx_status_ == wire::TxStatus::idle && !any_pending());
    // A pipelined read right behind a write: its position is still on the way.
    auto sc = routing::session_constraints(state_, ctx_.schema_lsn(), lsn_.captures > 0);
    const auto deadline = primary_deadline();
    for (;;) {
        const auto view = ctx_.cluster();
        ReplayPositions positions;
        auto d = decide_target(rr, sc, positions, *view, policy);
        if (d.backend) {
            const auto& target = view->backends[*d.backend];
            auto link = links_.find(target);  // no coroutine frame when the link is open
            if (!link)
                link = co_await link_to(target);
            if (!link && links_.pool_timed_out) {
                // Transaction pooling: every connection stayed busy (issue 5).
                const std::string message = "no server connection to \"" + target.name +
                                            "\" became free within proxy.query_wait_timeout_ms";
                co_await reject_request(request, sqlstate::too_many_connections, message);
                co_return Route{};
            }
            if (!link && !rr.write) {
                d.wait_lsn.reset();
                link = co_await link_for_read(*view, policy, sc, *d.backend);
            }
            if (!link && !rr.write) {
                const std::string message = "could not connect to server \"" + target.name + "\"";
                co_await reject_request(request, sqlstate::connection_failure, message);
                co_return Route{};
            }
            if (link) {
                ctx_.count_query(*link, rr.write);
                ctx_.count_route_decision(d.reason);
                log::debug("session ", id_, ": ", rr.write ? "write" : "read", " to ", link->backend, " (",
                           routing::to_string(d.reason), ")");
                co_return Route{link, d.wait_lsn};
            }
            // The primary refuses connections: it may be dying. Probe it now and
            // wait for the health checker's verdict (or a new primary).
            ctx_.request_health_check();
        }
        // No primary (failover in progress): wait for one, up to the limit.
        const bool retry = co_await wait_for_primary(deadline);  // g++ 12: not inside a condition
        if (!retry)
            break;
    }
    co_await reject_request(request, sqlstate::cannot_connect_now,
                            "no primary server is available: writes waited failover.wait_for_primary_ms");
    co_return Route{};
}

awaitable<void> ClientSession::reject_request(const wire::Request& request, std::string_view state,
                                              std::string_view message)
{
    std::string out;
    be::build_error_response(out, "ERROR", state, message);
    co_await reject_request(request, std::move(out));
}

awaitable<void> ClientSession::reject_request(const wire::Request& request, std::string out)
{
    if (request.synced())
        be::build_ready_for_query(out, tx_status_);
    else
        flow_.discard_until_sync = request.extended();  // the server would skip to Sync too
    (void)co_await stream_.send(out);
}

awaitable<bool> ClientSession::answer_pgswitch_setting(const routing::RequestFacts& facts)
{
    std::string out;
    if (facts.show_lsn) {
        be::FieldDescription col;
        col.name = "pgswitch.lsn";
        col.type_oid = 25;  // text
        col.type_size = -1;
        col.type_modifier = -1;
        be::build_row_description(out, {col});
        std::optional<std::string> value;
        if (state_.min_lsn)
            value = routing::format_lsn(*state_.min_lsn);
        else
            value = std::string("0/0");
        be::build_data_row(out, {value});
        be::build_command_complete(out, "SHOW");
    } else {
        std::string text = *facts.set_min_lsn;
        std::erase(text, '\'');
        const auto lsn = routing::parse_lsn(text);
        if (!lsn) {
            const std::string message = "invalid value for parameter \"pgswitch.min_lsn\": \"" + text + "\"";
            be::build_error_response(out, "ERROR", "22023", message);
        } else {
            state_.require_lsn(*lsn);
            be::build_command_complete(out, "SET");
        }
    }
    be::build_ready_for_query(out, tx_status_);
    co_return !co_await stream_.send(out);
}

awaitable<bool> ClientSession::reject_parse_clash(const wire::Request& request, const routing::RequestFacts&)
{
    for (const auto& m : request.messages()) {
        const auto* p = m.as<fe::Parse>();
        if (!p || p->statement.empty() || !state_.statement(p->statement))
            continue;
        // A Parse of that name still unanswered may yet fail (then the name
        // is free, as on the server): wait for the answers before deciding.
        const bool pending = std::any_of(links_.all().begin(), links_.all().end(), [&](const auto& l) {
            return !l->dead && l->statements.parse_pending(p->statement);
        });
        if (pending) {
            co_await wait_until_drained();
            if (!state_.statement(p->statement))
                continue;
        }
        const std::string message = "prepared statement \"" + std::string(p->statement) + "\" already exists";
        co_await reject_request(request, "42P05", message);
        co_return true;
    }
    co_return false;
}

void ClientSession::book_replies(ServerLink& link, const wire::Request& request, const routing::RequestEffects& effects)
{
    // In message order: a message belongs to the segment its Sync or Query ends.
    const auto messages = request.messages();
    for (std::size_t i = 0; i < messages.size(); ++i) {
        const auto& m = messages[i];
        const auto next_segment = link.replies.segments_sent() + 1;
        switch (m.tag) {
        case fe::Tag::Query:
        case fe::Tag::Sync:
        case fe::Tag::FunctionCall:
            push_client_segment(link);
            break;
        case fe::Tag::Parse:
            if (const auto v = effects.versions[i]; v != routing::RequestEffects::no_version)
                link.statements.parse_sent(std::string(m.as<fe::Parse>()->statement), v, next_segment, true);
            break;
        case fe::Tag::Describe:
            if (const auto v = effects.versions[i]; v != routing::RequestEffects::no_version)
                link.statements.describe_sent(std::string(m.as<fe::Describe>()->name), v, next_segment);
            break;
        case fe::Tag::Close:
            link.statements.close_sent(next_segment);
            break;
        default:
            break;
        }
    }
}

void ClientSession::record_request(ServerLink& link, const wire::Request& request, const routing::RequestFacts& facts)
{
    const auto generation = catalog_.catalog ? catalog_.catalog->generation() : 0;
    const bool on_primary = link.role == routing::Role::primary;
    const auto effects = routing::record_effects(request, facts, state_, link.state, on_primary, generation);
    if (effects.catalog_stale)
        ctx_.invalidate_catalog(client_.database);
    if (effects.forgot_unnamed)
        links_.unnamed.reset();
    book_replies(link, request, effects);
    const auto messages = request.messages();
    if (request.extended()) {
        link.unsynced = !request.synced();
        if (!link.unsynced)
            link.unsynced_portal = false;
        else if (std::any_of(messages.begin(), messages.end(), [](const auto& m) { return m.tag == fe::Tag::Bind; }))
            link.unsynced_portal = true;
    }
    if (facts.may_write)
        link.wrote = true;
    if (facts.changes_schema)
        link.changed_schema = true;
}

void ClientSession::push_capture(ServerLink& link, std::string& out)
{
    // The insert position, not the write position: with synchronous_commit
    // off the commit record may not be written when COMMIT returns, and a
    // replica replaying only that far would lack it.
    fe::build_query(out, "SELECT pg_catalog.pg_current_wal_insert_lsn()");
    link.push(Segment::capture_lsn, 0, std::exchange(link.changed_schema, false));
    ++lsn_.captures;
    link.wrote = false;
}

bool ClientSession::can_keep(const ServerLink& link, const wire::Request& request,
                             const routing::RequestFacts& facts) const noexcept
{
    // Kept until its reply starts (re-run on the primary when it fails with
    // 25006, when its replay wait falls short, or when its server dies
    // before answering): one read request on a replica outside a transaction.
    return link.role == routing::Role::replica && tx_status_ == wire::TxStatus::idle && request.synced() &&
           request.sync_count() == 1 && !facts.tx_begin_read_only && !facts.copy_from &&
           request.bytes().size() <= retry_keep_limit && link.pending_client() == 0;
}

bool ClientSession::captures_after(const ServerLink& link, const wire::Request& request,
                                   const routing::RequestFacts& facts) const noexcept
{
    // Read your writes (lsn): right behind a request that may commit a write,
    // ask the primary for its WAL position. It is pipelined: the client gets
    // its own ReadyForQuery first and waits for nothing.
    // Not after COPY FROM: the server is then in copy-in mode and a Query
    // would break the protocol; that write is captured before the next request.
    if (!read_your_writes_lsn() || link.role != routing::Role::primary || !request.synced() || !link.wrote ||
        facts.copy_from)
        return false;
    const bool autocommit = tx_status_ == wire::TxStatus::idle && !facts.tx_begin && !facts.tx_begin_read_only;
    return autocommit || facts.tx_end;
}

awaitable<std::shared_ptr<ServerLink>> ClientSession::wait_replay_first(std::shared_ptr<ServerLink> link,
                                                                        std::uint64_t lsn)
{
    // The replay wait as a round trip of its own; the primary takes the
    // request if the replica does not get there in time.
    std::string q;
    fe::build_query(q, replay_wait_sql(lsn, ctx_.policy().read_your_writes_wait_ms));
    const auto n = link->push(Segment::replay_wait, lsn);
    (void)co_await link->conn->write(q);
    co_await wait_for_segment(*link, n);
    if (!link->replies.cancel_rerun())
        co_return link;
    const auto view = ctx_.cluster();
    std::shared_ptr<ServerLink> primary;
    if (auto idx = view->primary_index())
        primary = co_await link_to(view->backends[*idx]);
    co_return primary ? primary : link;
}

awaitable<bool> ClientSession::send_request(std::shared_ptr<ServerLink> link, wire::Request request,
                                            const routing::RequestFacts& facts, std::optional<std::uint64_t> wait_lsn,
                                            bool is_retry)
{
    const bool keepable = !is_retry && can_keep(*link, request, facts);
    if (wait_lsn && (!keepable || needs_check(*link, request))) {
        // The request cannot be re-run (a BEGIN READ ONLY, a prepare ended by
        // Flush), or statements are checked first on a replica that must
        // replay the session's last write (a CREATE TYPE they use): wait
        // there before anything else.
        link = co_await wait_replay_first(link, *wait_lsn);
        wait_lsn.reset();
    }
    bool same_statements = true;
    if (needs_check(*link, request))
        same_statements = co_await check_statements(*link, request);
    if (!same_statements) {
        // What the server itself says when a statement's tables changed
        // under it (plancache.c); drivers re-prepare on it (asyncpg looks at
        // the routine, pgjdbc at the message).
        std::string out;
        be::build_error_response(out, "ERROR", sqlstate::feature_not_supported,
                                 "cached plan must not change result type",
                                 {{'F', "plancache.c"}, {'R', "RevalidateCachedQuery"}});
        co_await reject_request(request, out);
        co_return !closed_;
    }
    if (closed_)
        co_return false;
    if (link->dead) {
        const std::string message = "server connection to \"" + link->backend + "\" was lost";
        co_await reject_request(request, sqlstate::connection_failure, message);
        co_return !closed_;
    }
    catch_up(*link, request, facts);
    if (wait_lsn) {
        fe::build_query(out_.hidden, replay_wait_sql(*wait_lsn, ctx_.policy().read_your_writes_wait_ms));
        link->push(Segment::replay_wait, *wait_lsn);
    }
    // Segments are queued before the bytes leave, so the pump can never see
    // a reply it does not expect.
    record_request(*link, request, facts);
    if (facts.parses_unnamed)
        links_.unnamed = link;

    // Read your writes: the WAL position right behind a write (captures_after()).
    out_.capture.clear();
    if (captures_after(*link, request, facts))
        push_capture(*link, out_.capture);
    links_.active = link;
    if (links_.last_backend != link->backend)
        links_.last_backend = link->backend;

    std::string_view bytes = request.bytes();
    if (keepable && link->role == routing::Role::replica)
        bytes = link->replies.keep(std::move(request)).bytes();  // its Sync or Query was the last pushed
    std::array<asio::const_buffer, 3> buffers{asio::buffer(out_.hidden), asio::buffer(bytes.data(), bytes.size()),
                                              asio::buffer(out_.capture)};
    auto ec = co_await write_all_fast(link->conn->socket(), buffers);
    // A failed write shows up in the link's pump, which tells the client.
    (void)ec;
    co_return !closed_;
}

std::shared_ptr<ServerLink> ClientSession::uncaptured_write_link() const
{
    // A write whose WAL position was not captured yet (COPY FROM, or a
    // transaction that ended without a COMMIT we saw), on an idle primary
    // connection.
    const bool any_wrote = std::any_of(links_.all().begin(), links_.all().end(),
                                       [](const auto& l) { return l->wrote; });
    if (!any_wrote || tx_status_ != wire::TxStatus::idle || !read_your_writes_lsn())
        return nullptr;
    auto p = primary_link();
    return p && p->wrote && p->replies.empty() && !p->unsynced ? p : nullptr;
}

awaitable<void> ClientSession::capture_now(ServerLink& link)
{
    std::string q;
    push_capture(link, q);
    (void)co_await link.conn->write(q);
}

bool ClientSession::parse_may_clash(const wire::Request& request) const
{
    for (const auto& m : request.messages())
        if (const auto* p = m.as<fe::Parse>(); p && !p->statement.empty() && state_.statement(p->statement))
            return true;
    return false;
}

awaitable<bool> ClientSession::dispatch_request(wire::Request request)
{
    // After pgswitch answered part of an extended request with an error,
    // the rest up to Sync is dropped, then ReadyForQuery closes it.
    if (flow_.discard_until_sync) {
        if (request.boundary() != fe::Tag::Sync)
            co_return true;
        flow_.discard_until_sync = false;
        std::string out;
        be::build_ready_for_query(out, tx_status_);
        co_return !co_await stream_.send(out);
    }

    if (auto p = uncaptured_write_link())
        co_await capture_now(*p);

    // A kept request is moving to the primary, or the session may be ending
    // (its identity connection was terminated): later requests queue behind.
    while ((flow_.retrying || flow_.checking_termination) && !closed_) {
        auto [ec] = co_await drained_.async_wait(use_nothrow);
        (void)ec;
    }

    if (log::enabled(log::Level::debug))
        log::debug("session ", id_, ": request ", wire::describe(request));
    links_.reconcile(ctx_.cluster_now());
    auto facts = analyze(request);
    // DDL changed functions (or a read wrote after all), or the request calls
    // functions created behind pgswitch's back: ask the database first.
    // (Plain statements: g++ 12 mis-evaluates co_await inside && and ||.)
    bool learned = false;
    if (catalog_.stale)
        learned = co_await learn_functions({});
    else if (!facts.unknown_functions.empty())
        learned = co_await learn_functions(facts.unknown_functions);
    if (learned)
        facts = analyze(request);
    // SHOW pgswitch.lsn must include the session's last write: wait for its capture.
    while (facts.show_lsn && lsn_.captures > 0 && !closed_) {
        auto [ec] = co_await drained_.async_wait(use_nothrow);
        (void)ec;
    }
    if ((facts.show_lsn || facts.set_min_lsn) && request.is_single_query() && facts.classes.size() == 1 &&
        facts.classes.front()->statements.size() == 1 && !any_pending())
        co_return co_await answer_pgswitch_setting(facts);

    bool clashed = false;
    if (parse_may_clash(request))
        clashed = co_await reject_parse_clash(request, facts);
    if (clashed)
        co_return !closed_;

    // A read that may go to a replica needs the position of the session's
    // last write, which is on its way right behind that write's reply.
    if (!facts.needs_primary() && read_your_writes_lsn() && lsn_.captures > 0 && !any_pending()) {
        while (lsn_.captures > 0 && !closed_) {
            auto [ec] = co_await drained_.async_wait(use_nothrow);
            (void)ec;
        }
    }

    auto route = co_await route_request(request, facts);
    if (!route.link)
        co_return !closed_;
    co_return co_await send_request(route.link, std::move(request), facts, route.wait_lsn, false);
}

}  // namespace pgswitch::proxy
