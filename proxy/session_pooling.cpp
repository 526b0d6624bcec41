// ClientSession in transaction pooling mode (proxy.pool_mode = "transaction",
// issue 5): server connections are borrowed from Runtime's ServerPool when a
// request starts outside a transaction and given back at ReadyForQuery 'I'
// with nothing owed; a connection a client leaves dirty is rolled back,
// reset or closed before anyone else gets it.
#include <algorithm>
#include <chrono>

#include "client_session.h"
#include "log.h"
#include "pg_wire/backend.h"
#include "pg_wire/frontend.h"
#include "pg_wire/sqlstate.h"
#include "session_context.h"

namespace pgswitch::proxy {

namespace be = wire::be;
namespace fe = wire::fe;
namespace sqlstate = wire::sqlstate;

namespace {

// A connection that needs more than this to come back clean is closed instead.
constexpr std::chrono::seconds reset_timeout{2};
// A borrower rarely needs this many statements; past it the connection's
// statement list is not worth carrying (nor the server memory): close it.
constexpr std::size_t max_pooled_statements = 1000;

}  // namespace

ServerPool::Request ClientSession::pool_request(const routing::BackendView& backend) const
{
    const auto settings = ctx_.settings();
    const auto& p = settings->config.proxy;
    ServerPool::Request r;
    r.backend = backend.name;
    r.host = backend.host;
    r.port = backend.port;
    r.startup = server_startup();
    r.signature = client_.signature;
    // Each worker has its own pool (workers share nothing mutable): the
    // proxy.pool_size connections are split between them, at least one each.
    r.capacity = std::max(1, p.pool_size / static_cast<int>(std::max<std::size_t>(1, ctx_.worker_count())));
    r.wait_timeout = std::chrono::milliseconds(p.query_wait_timeout_ms);
    r.connect_timeout = std::chrono::milliseconds(p.connect_timeout_ms);
    return r;
}

awaitable<std::shared_ptr<ServerLink>> ClientSession::borrow_link(const routing::BackendView& backend)
{
    links_.pool_timed_out = false;
    const auto req = pool_request(backend);
    auto got = co_await ctx_.pool().acquire(req);
    if (auto* f = std::get_if<AcquireFailure>(&got)) {
        if (f->kind == AcquireFailure::Kind::timeout) {
            links_.pool_timed_out = true;
            log::info("session ", id_, ": ", backend.name, ": ", f->error.message);
        } else {
            log::warning("session ", id_, ": could not open a connection to ", backend.name, ": ", f->error.message);
            ctx_.request_health_check();
        }
        co_return nullptr;
    }
    auto pc = std::move(std::get<std::unique_ptr<PooledConnection>>(got));
    if (closed_) {
        ctx_.pool().release(std::move(pc));  // untouched: still clean
        co_return nullptr;
    }
    auto link = std::make_shared<ServerLink>();
    link->backend = backend.name;
    link->role = backend.role;
    link->conn = std::move(pc->conn);
    // What the connection has that is ours, and what is someone else's
    // (closed before use): catch_up() works from this.
    link->state = routing::borrow_link_state(pc->prepared, state_);
    link->lease = std::move(pc);
    add_link(link);
    co_return link;
}

awaitable<bool> ClientSession::release_if_idle(ServerLink& link)
{
    // Not before the request it was borrowed for went out: the pump's first
    // round runs before the session has written anything.
    if (!link.lease || !link.used || closed_ || link.dead)
        co_return false;
    // Replies owed, an unfinished extended request, a misrouted read moving
    // to the primary, an open transaction: the connection is still in use.
    if (!link.replies.empty() || link.unsynced || link.replies.swallowing() || flow_.retrying ||
        link.conn->decoder().buffered() != 0)
        co_return false;
    if (links_.active.get() == &link && tx_status_ != wire::TxStatus::idle)
        co_return false;
    // Temp tables, session advisory locks, LISTEN, WITH HOLD cursors live on
    // this connection: a pinned session keeps it (as with PgBouncer's session
    // mode) until DISCARD ALL or the end of the session.
    if (state_.pinned_to_primary && link.role == routing::Role::primary)
        co_return false;
    // A write's commit position is read before the connection goes (read
    // your writes); it comes back here and the next call releases it.
    if (link.wrote && link.role == routing::Role::primary &&
        ctx_.policy().read_your_writes == routing::ReadYourWrites::lsn) {
        std::string q;
        push_capture(link, q);
        (void)co_await link.conn->write(q);
        co_return false;
    }

    link.dead = true;  // for the session, this link is gone
    link.released = true;
    const auto keep = links_.remove(link);  // `link` may be links_.active
    if (links_.active.get() == &link)
        links_.active.reset();
    auto pc = std::move(link.lease);
    pc->prepared = routing::return_link_state(link.state, state_, pc->prepared);
    pc->conn = std::move(link.conn);
    if (pc->prepared.statements.size() + pc->prepared.sql_prepared.size() > max_pooled_statements)
        ctx_.pool().discard(std::move(pc));
    else
        ctx_.pool().release(std::move(pc));
    drained_.cancel();
    co_return true;
}

awaitable<bool> ClientSession::reset_connection(BackendConnection& conn, std::string_view sql)
{
    // Bounded: a server that does not answer in time loses its connection.
    auto done = std::make_shared<bool>(false);
    asio::steady_timer guard(co_await asio::this_coro::executor, reset_timeout);
    guard.async_wait([c = &conn, done](error_code ec) {
        if (!ec && !*done)
            c->close();
    });
    std::string q;
    fe::build_query(q, sql);
    bool ok = !co_await conn.write(q);
    bool failed = false;
    while (ok) {
        auto r = co_await conn.read_frame();
        auto* f = std::get_if<wire::Frame>(&r);
        if (!f) {
            ok = false;
            break;
        }
        const auto tag = f->backend_tag();
        if (tag == be::Tag::ErrorResponse)
            failed = true;
        else if (tag == be::Tag::ReadyForQuery) {
            auto rfq = be::parse_ready_for_query(f->body);
            ok = rfq && rfq->status == wire::TxStatus::idle && !failed;
            break;
        }
    }
    *done = true;
    guard.cancel();
    co_return ok&& conn.is_open() && conn.decoder().buffered() == 0;
}

awaitable<void> ClientSession::settle_link(std::shared_ptr<ServerLink> link)
{
    // The session ended (or lost this link) while it held the connection.
    auto pc = std::move(link->lease);
    pc->conn = std::move(link->conn);
    auto& pool = ctx_.pool();
    // Replies still owed (mid-request, mid-extended-request, in COPY) or a
    // broken stream: no cheap way to bring it back in step, so it is closed.
    if (!pc->conn || !pc->conn->is_open() || link->dead || link->owed_at_close || link->server_sent_fatal ||
        pc->conn->decoder().buffered() != 0 || end_ == SessionEnd::backend_lost) {
        if (pc->conn && pc->conn->is_open() && !link->dead)
            log::info("session ", id_, ": closing its server connection to ", link->backend,
                      ": the client left in the middle of a request");
        pool.discard(std::move(pc));
        co_return;
    }
    pc->prepared = routing::return_link_state(link->state, state_, pc->prepared);
    if (link->open_tx_at_close) {
        log::info("session ", id_, ": client left a transaction open on ", link->backend, ": rolling it back");
        if (!co_await reset_connection(*pc->conn, "ROLLBACK")) {
            pool.discard(std::move(pc));
            co_return;
        }
    }
    if (link->pinned_at_close) {
        // Temp tables, advisory locks, LISTEN, held cursors: DISCARD ALL drops
        // them all (and prepared statements and settings with them).
        if (!co_await reset_connection(*pc->conn, "DISCARD ALL")) {
            pool.discard(std::move(pc));
            co_return;
        }
        pc->prepared = routing::ServerPrepared{};
    }
    pool.release(std::move(pc));
}

void ClientSession::detach_leased(ServerLink& link) noexcept
{
    // Called by close() instead of closing the socket: the pump wakes from
    // its read, ends, and settle_link() decides the connection's fate.
    link.owed_at_close = !link.replies.empty() || link.unsynced;
    link.open_tx_at_close = links_.active.get() == &link && tx_status_ != wire::TxStatus::idle;
    link.pinned_at_close = state_.pinned_to_primary && link.role == routing::Role::primary;
    error_code ignored;
    link.conn->socket().cancel(ignored);
}

awaitable<bool> ClientSession::login_pooled()
{
    client_.signature = ServerPool::make_signature(server_startup());
    // ParameterStatus values are those a server gave a login with the same
    // user, database and parameters; once known (and the database's function
    // catalog loaded) a login needs no server connection at all.
    std::string status;
    if (const auto* known = ctx_.pool().parameter_status(client_.user, client_.database, client_.signature);
        known && ctx_.catalog(client_.database)) {
        status = *known;
    } else {
        const auto deadline = primary_deadline();
        std::string last_error = "no server is available";
        bool done = false;
        for (;;) {
            // The primary first; a replica while there is none (a failover).
            auto view = ctx_.cluster();
            for (auto idx : routing::login_order(*view)) {
                const auto target = view->backends[idx];
                auto got = co_await ctx_.pool().acquire(pool_request(target));
                if (auto* pcp = std::get_if<std::unique_ptr<PooledConnection>>(&got)) {
                    auto pc = std::move(*pcp);
                    if (!ctx_.catalog(client_.database) && ctx_.claim_catalog_refresh(client_.database, true))
                        co_await load_catalog(*pc->conn);
                    status = pc->conn->parameter_status_messages();
                    if (pc->conn->is_open() && pc->conn->decoder().buffered() == 0)
                        ctx_.pool().release(std::move(pc));
                    else
                        ctx_.pool().discard(std::move(pc));
                    done = true;
                    break;
                }
                const auto& f = std::get<AcquireFailure>(got);
                if (f.kind == AcquireFailure::Kind::timeout) {
                    const std::string message = "too many clients waiting for a server connection: " + f.error.message;
                    co_await send_fatal(sqlstate::too_many_connections, message, SessionEnd::auth_failed);
                    co_return false;
                }
                log::warning("session ", id_, ": login to ", target.name, " failed: ", f.error.message);
                if (!f.error.server_error.empty()) {
                    // The server's own refusal (unknown database...) says it best.
                    (void)co_await stream_.send(f.error.server_error);
                    end_ = SessionEnd::auth_failed;
                    close();
                    co_return false;
                }
                ctx_.request_health_check();
                last_error = "could not connect to server \"" + target.name + "\": " + f.error.message;
            }
            if (done)
                break;
            const bool retry = co_await wait_for_primary(deadline);  // g++ 12: not inside if (!...)
            if (!retry)
                break;
        }
        if (!done) {
            const std::string message = last_error + " (waited failover.wait_for_primary_ms)";
            co_await send_fatal(sqlstate::cannot_connect_now, message, SessionEnd::backend_lost);
            co_return false;
        }
    }

    // The client's process id is pgswitch's own here: its statements run on
    // whichever pooled connection is free. Cancels find the one running now.
    client_.pid = static_cast<std::int32_t>(id_ % 0x7fffffffULL) + 1;
    client_.secret = ctx_.cancels().add(client_.pid, weak_from_this());
    std::string reply;  // a local: an idle session keeps nothing of its login
    be::build_authentication_ok(reply);
    reply.append(status);
    be::build_backend_key_data(reply, client_.pid, client_.secret);
    be::build_ready_for_query(reply, wire::TxStatus::idle);
    if (co_await stream_.send(reply)) {
        close();
        co_return false;
    }
    co_return true;
}

}  // namespace pgswitch::proxy
