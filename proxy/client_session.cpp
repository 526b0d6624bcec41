#include "client_session.h"

#include <chrono>

#include "log.h"
#include "pg_wire/backend.h"
#include "pg_wire/frontend.h"
#include "pg_wire/sqlstate.h"
#include "routing/failover_policy.h"
#include "routing/literal_key.h"
#include "session_context.h"

namespace pgswitch::proxy {

namespace be = wire::be;
namespace fe = wire::fe;
namespace sqlstate = wire::sqlstate;

namespace {

// A request still under way past this many bytes is sent on in parts.
constexpr std::size_t request_part_bytes = 64 * 1024;

// PostgreSQL's authentication_timeout default: a client that does not finish
// logging in by then is dropped, so half-open logins cannot pile up.
constexpr std::chrono::seconds login_timeout{60};

wire::Limits client_limits(const Config& c)
{
    wire::Limits l;
    l.max_message = static_cast<std::size_t>(c.proxy.max_message_bytes);
    return l;
}

}  // namespace

std::string_view to_string(SessionEnd e) noexcept
{
    switch (e) {
    case SessionEnd::client_closed:
        return "client closed";
    case SessionEnd::client_protocol_error:
        return "client protocol error";
    case SessionEnd::auth_failed:
        return "authentication failed";
    case SessionEnd::backend_lost:
        return "server connection lost";
    case SessionEnd::shutdown:
        return "shutdown";
    }
    return "unknown";
}

ClientSession::ClientSession(SessionContext& ctx, tcp::socket socket)
    : ctx_(ctx),
      id_(ctx.next_session_id()),
      stream_(std::move(socket)),
      input_{wire::FrameDecoder(client_limits(ctx.settings()->config), wire::FrameDecoder::Phase::startup), {}},
      drained_(ctx.io(), asio::steady_timer::time_point::max())
{
    client_.peer = stream_.remote_address();
    client_.peer_host = client_.peer.substr(0, client_.peer.rfind(':'));
    error_code ignored;
    stream_.socket().set_option(tcp::no_delay(true), ignored);
}

ClientSession::~ClientSession()
{
    if (client_.secret != 0)
        ctx_.cancels().remove(client_.pid, client_.secret);
    if (client_.admitted)
        ctx_.release_client();
    ctx_.session_ended(id_);
}

void ClientSession::start()
{
    ctx_.session_started(shared_from_this());
    auto self = shared_from_this();
    asio::co_spawn(
        ctx_.io(), [self]() { return self->run(); }, close_on_failure("internal error"));
}

std::function<void(std::exception_ptr)> ClientSession::close_on_failure(const char* what)
{
    // One session's bug must not take the proxy down: log it and close.
    return [self = shared_from_this(), what](std::exception_ptr e) {
        if (!e)
            return;
        try {
            std::rethrow_exception(e);
        } catch (const std::exception& ex) {
            log::error("session ", self->id_, ": ", what, ": ", ex.what());
        }
        self->close();
    };
}

void ClientSession::push_client_segment(ServerLink& link)
{
    link.push(ServerLink::Segment::client);
    link.used = true;
    link.started.push_back(std::chrono::steady_clock::now());
    ctx_.statement_started(link);
}

void ClientSession::pop_client_segment(ServerLink& link, bool completed)
{
    if (link.started.empty())
        return;
    ctx_.statement_ended(link, link.started.front(), completed);
    link.started.pop_front();
}

void ClientSession::drop_backend(const std::string& backend)
{
    // Closing the socket ends the link's pump, and server_lost() decides what
    // the session loses: nothing for an idle connection, the session (08006)
    // when a statement or transaction was running there.
    for (const auto& link : links_.all())
        if (link->backend == backend && !link->dead && link->conn && link->conn->is_open()) {
            log::info("session ", id_, ": closing its connection to ", backend, ": fenced");
            link->fenced = true;
            link->conn->close();
        }
}

void ClientSession::close() noexcept
{
    if (closed_)
        return;
    closed_ = true;
    stream_.close();
    for (auto& link : links_.all()) {
        if (link->lease && link->conn)
            detach_leased(*link);
        if (const auto dropped = link->replies.clear(); dropped.client > 0)
            ctx_.statements_dropped(*link, dropped.client);
        link->started.clear();
        if (link->conn && !link->lease)
            link->conn->close();
    }
    drained_.cancel();
}

void ClientSession::on_drain()
{
    if (closed_)
        return;
    if (links_.all().empty() || idle()) {
        auto self = shared_from_this();
        asio::co_spawn(
            ctx_.io(),
            [self]() -> awaitable<void> {
                co_await self->send_fatal(
                    sqlstate::admin_shutdown,
                    "terminating connection due to administrator command (pgswitch is shutting down)",
                    SessionEnd::shutdown);
            },
            asio::detached);
    }
}

awaitable<void> ClientSession::cancel_running_query()
{
    // The statement runs where the last request went.
    auto link = links_.active;
    if (!link || !link->conn || !link->conn->is_open())
        co_return;
    // PostgreSQL takes a cancel only on a fresh connection to the postmaster
    // that runs the query (Protocol → Canceling Requests in Progress).
    const auto ep = link->conn->endpoint();
    const auto key = link->conn->key();
    tcp::socket s(ctx_.io());
    auto [ec] = co_await s.async_connect(ep, use_nothrow);
    if (ec) {
        log::warning("cancel: could not connect to ", ep.address().to_string(), ":", ep.port(), ": ", ec.message());
        co_return;
    }
    std::string msg;
    wire::build_cancel_request(msg, key.process_id, key.secret_key);
    auto [wec, n] = co_await asio::async_write(s, asio::buffer(msg), use_nothrow);
    if (wec)
        co_return;
    // The server closes the connection once it has acted on the request;
    // only then may the client hear that its cancel was delivered, or a
    // late cancel could hit the client's next query.
    char byte;
    auto [rec, rn] = co_await s.async_read_some(asio::buffer(&byte, 1), use_nothrow);
    (void)rec;
    (void)rn;
}

awaitable<std::optional<wire::Frame>> ClientSession::read_client_frame()
{
    for (;;) {
        auto next = input_.decoder.next();
        if (!next) {
            if (input_.decoder.phase() == wire::FrameDecoder::Phase::startup) {
                // A startup packet whose length makes no sense (a client that
                // sent a Terminate before its StartupMessage, node-postgres
                // when it ends at once): the server only logs it and hangs up
                // (postmaster.c "invalid length of startup packet"), so do we.
                log::info("session ", id_, " from ", client_.peer, ": invalid startup packet (", next.error().message(),
                          "): closing");
                end_ = end_.value_or(SessionEnd::client_protocol_error);
                close();
                co_return std::nullopt;
            }
            const std::string message = "invalid message from client: " + next.error().message();
            co_await send_fatal(sqlstate::protocol_violation, message, SessionEnd::client_protocol_error);
            co_return std::nullopt;
        }
        if (*next)
            co_return **next;
        auto region = input_.decoder.prepare();
        auto [ec, n] = co_await stream_.read_some(asio::buffer(region.data(), region.size()));
        if (ec) {
            end_ = end_.value_or(SessionEnd::client_closed);
            co_return std::nullopt;
        }
        input_.decoder.commit(n);
    }
}

awaitable<void> ClientSession::send_fatal(std::string_view state, std::string_view message, SessionEnd why)
{
    if (closed_)
        co_return;
    end_ = end_.value_or(why);
    std::string msg;
    be::build_error_response(msg, "FATAL", state, message);
    (void)co_await stream_.send(msg);
    close();
}

awaitable<void> ClientSession::run()
{
    const bool logged_in = co_await login();
    if (!logged_in)
        co_return;
    co_await relay_client();
    close();
    if (end_ && *end_ != SessionEnd::client_closed)
        log::info("session ", id_, " from ", client_.peer, " ended: ", to_string(*end_));
}

awaitable<bool> ClientSession::login()
{
    // Login watchdog: closes the connection if startup + auth drag on.
    asio::steady_timer login_deadline(ctx_.io(), login_timeout);
    login_deadline.async_wait([weak = weak_from_this()](error_code ec) {
        if (ec)
            return;
        if (auto s = weak.lock()) {
            log::info("session ", s->id_, ": login timed out");
            s->close();
        }
    });

    auto startup = co_await read_startup();
    if (!startup)
        co_return false;
    client_.startup = std::move(*startup);
    input_.decoder.set_phase(wire::FrameDecoder::Phase::regular);

    // A 3.x client asking for a newer minor version or _pq_ protocol options
    // is told what we speak, as the server does (Protocol → NegotiateProtocolVersion).
    {
        std::vector<std::string_view> unrecognized;
        for (const auto& [name, value] : client_.startup.params)
            if (name.starts_with("_pq_."))
                unrecognized.push_back(name);
        if ((client_.startup.protocol & 0xffff) != 0 || !unrecognized.empty()) {
            std::string msg;
            be::build_negotiate_protocol_version(msg, 0, unrecognized);
            if (co_await stream_.send(msg)) {
                close();
                co_return false;
            }
        }
    }

    client_.user = std::string(client_.startup.get("user"));
    client_.database = std::string(client_.startup.get("database"));
    if (client_.database.empty())
        client_.database = client_.user;  // libpq's and the server's default
    if (client_.user.empty()) {
        co_await send_fatal(sqlstate::invalid_authorization_specification,
                            "no PostgreSQL user name specified in startup packet", SessionEnd::client_protocol_error);
        co_return false;
    }
    if (!client_.startup.get("replication").empty()) {
        co_await send_fatal(sqlstate::feature_not_supported, "pgswitch does not proxy replication connections",
                            SessionEnd::auth_failed);
        co_return false;
    }
    if (ctx_.draining()) {
        co_await send_fatal(sqlstate::cannot_connect_now, "pgswitch is shutting down", SessionEnd::shutdown);
        co_return false;
    }
    if (!ctx_.try_admit_client()) {
        co_await send_fatal(sqlstate::too_many_connections, "sorry, too many clients already", SessionEnd::auth_failed);
        co_return false;
    }
    client_.admitted = true;

    const auto settings = ctx_.settings();
    if (!co_await authenticate(settings->config.find_user(client_.user)))
        co_return false;
    links_.pooling = settings->config.proxy.pool_mode == PoolMode::transaction;
    // (Two statements, not a conditional inside co_await: g++ 12 bug.)
    bool logged_in = false;
    if (links_.pooling)
        logged_in = co_await login_pooled();
    else
        logged_in = co_await connect_identity();
    if (!logged_in)
        co_return false;
    login_deadline.cancel();
    log::debug("session ", id_, " from ", client_.peer, ": user=", client_.user, " database=", client_.database);
    co_return true;
}

void ClientSession::add_link(std::shared_ptr<ServerLink> link)
{
    links_.add(link);
    // The pump is the spawned coroutine itself, with no wrapper around it:
    // an idle link holds one coroutine frame fewer.
    asio::co_spawn(ctx_.io(), pump_server(link),
                   [self = shared_from_this(), link](std::exception_ptr e) { self->on_pump_end(link, e); });
}

void ClientSession::on_pump_end(const std::shared_ptr<ServerLink>& link, std::exception_ptr e)
{
    if (e) {
        close_on_failure("server pump failed")(e);
        return;
    }
    // A borrowed connection the session still held when it ended (transaction pooling).
    if (link->lease && !link->released)
        asio::co_spawn(ctx_.io(), settle_link(link), close_on_failure("settling a server connection failed"));
}

void ClientSession::CopyBatch::add(std::string_view raw) noexcept
{
    if (!begin)
        begin = raw.data();
    len = static_cast<std::size_t>(raw.data() + raw.size() - begin);
}

std::string_view ClientSession::CopyBatch::take() noexcept
{
    const std::string_view bytes{begin, len};
    begin = nullptr;
    len = 0;
    return bytes;
}

awaitable<bool> ClientSession::forward_copy(CopyBatch& copy)
{
    const auto bytes = copy.take();
    if (bytes.empty() || !links_.active || links_.active->dead)
        co_return true;  // a server that is gone: its pump told the client
    co_return !co_await links_.active->conn->write(bytes);
}

awaitable<void> ClientSession::terminate_links()
{
    end_ = SessionEnd::client_closed;
    std::string bye;
    fe::build_terminate(bye);
    // A copy: pumps remove links from links_ as their servers hang up.
    const auto links = links_.all();
    for (const auto& link : links)
        if (!link->dead && !link->lease)  // pooled connections outlive the client
            (void)co_await link->conn->write(bye);
    close();
}

awaitable<bool> ClientSession::relay_buffered()
{
    // CopyData/CopyDone/CopyFail go straight to the link running the COPY,
    // batched per read; everything else is gathered into whole requests and
    // routed at their boundary.
    CopyBatch copy;
    for (;;) {
        auto next = input_.decoder.next();
        if (next && !*next)
            break;
        if (!next || !fe::is_known((**next).tag)) {
            (void)co_await forward_copy(copy);
            const std::string message = !next ? "invalid message from client: " + next.error().message()
                                              : "invalid frontend message type " +
                                                    std::to_string(static_cast<unsigned char>((**next).tag));
            co_await send_fatal(sqlstate::protocol_violation, message, SessionEnd::client_protocol_error);
            co_return false;
        }
        const auto& f = **next;
        const auto tag = f.frontend_tag();
        if (tag == fe::Tag::CopyData || tag == fe::Tag::CopyDone || tag == fe::Tag::CopyFail) {
            copy.add(f.raw);
            continue;
        }
        if (tag == fe::Tag::Terminate) {
            (void)co_await forward_copy(copy);
            co_await terminate_links();
            co_return false;
        }
        if (!copy.empty()) {
            const bool sent = co_await forward_copy(copy);
            if (!sent)
                co_return false;
        }
        // Parse/Bind/Describe/Execute/Close wait for a Sync or a Flush. A long
        // extended request (asyncpg's executemany: thousands of Bind/Execute
        // before one Sync) goes on in parts, so that a server error reaches
        // the client while it is still sending, and the request is never held
        // whole in memory.
        if (input_.assembler.push(f) || input_.assembler.pending_bytes() >= request_part_bytes) {
            const bool go_on = co_await dispatch_request(input_.assembler.take());
            if (!go_on)
                co_return false;
        }
    }
    if (copy.empty())
        co_return true;
    co_return co_await forward_copy(copy);
}

awaitable<void> ClientSession::relay_client()
{
    for (;;) {
        if (!co_await relay_buffered())
            co_return;
        // Messages of a request without its Sync yet, and nothing more to
        // read for now: the server must see them (libpq's pipeline mode sends
        // Bind/Execute and waits for their results before any Sync; the
        // server answers as messages come).
        if (input_.assembler.pending() > 0) {
            if (!co_await dispatch_request(input_.assembler.take()))
                co_return;
        }
        if (closed_)
            co_return;
        auto region = input_.decoder.prepare();
        auto [ec, n] = co_await stream_.read_some(asio::buffer(region.data(), region.size()));
        if (ec) {
            end_ = end_.value_or(SessionEnd::client_closed);
            co_return;
        }
        input_.decoder.commit(n);
    }
}

}  // namespace pgswitch::proxy
