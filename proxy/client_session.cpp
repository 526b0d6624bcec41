#include "client_session.h"

#include <chrono>

#include "log.h"
#include "pg_wire/backend.h"
#include "pg_wire/frontend.h"
#include "pg_wire/sqlstate.h"
#include "routing/failover_policy.h"
#include "routing/literal_key.h"
#include "runtime.h"

namespace pgswitch::proxy {

namespace be = wire::be;
namespace fe = wire::fe;
namespace sqlstate = wire::sqlstate;

namespace {

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
    case SessionEnd::client_closed: return "client closed";
    case SessionEnd::client_protocol_error: return "client protocol error";
    case SessionEnd::auth_failed: return "authentication failed";
    case SessionEnd::backend_lost: return "server connection lost";
    case SessionEnd::shutdown: return "shutdown";
    }
    return "unknown";
}

ClientSession::ClientSession(Runtime& runtime, tcp::socket socket)
    : runtime_(runtime),
      id_(runtime.next_session_id()),
      stream_(std::move(socket)),
      decoder_(client_limits(runtime.settings()->config), wire::FrameDecoder::Phase::startup),
      drained_(runtime.io(), asio::steady_timer::time_point::max())
{
    peer_ = stream_.remote_address();
    peer_host_ = peer_.substr(0, peer_.rfind(':'));
    error_code ignored;
    stream_.socket().set_option(tcp::no_delay(true), ignored);
}

ClientSession::~ClientSession()
{
    if (client_secret_ != 0)
        runtime_.cancels().remove(client_pid_, client_secret_);
    if (admitted_)
        runtime_.release_client();
    runtime_.session_ended(id_);
}

void ClientSession::start()
{
    runtime_.session_started(shared_from_this());
    auto self = shared_from_this();
    asio::co_spawn(runtime_.io(), [self]() { return self->run(); }, close_on_failure("internal error"));
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
    link.segments.push_back(ServerLink::Segment::client);
    link.used = true;
    link.started.push_back(std::chrono::steady_clock::now());
    runtime_.add_in_flight(link.backend, 1);
}

void ClientSession::pop_client_segment(ServerLink& link, bool completed)
{
    link.segments.pop_front();
    runtime_.add_in_flight(link.backend, -1);
    if (!link.started.empty()) {
        if (completed)
            runtime_.observe_query_latency(
                std::chrono::duration<double>(std::chrono::steady_clock::now() - link.started.front()).count());
        link.started.pop_front();
    }
}

void ClientSession::close() noexcept
{
    if (closed_)
        return;
    closed_ = true;
    stream_.close();
    for (auto& link : links_) {
        if (link->lease && link->conn)
            detach_leased(*link);
        for (auto seg : link->segments)
            if (seg == ServerLink::Segment::client)
                runtime_.add_in_flight(link->backend, -1);
        link->segments.clear();
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
    if (links_.empty() || idle()) {
        auto self = shared_from_this();
        asio::co_spawn(runtime_.io(), [self]() -> awaitable<void> {
            co_await self->send_fatal(sqlstate::admin_shutdown,
                                      "terminating connection due to administrator command (pgswitch is shutting down)",
                                      SessionEnd::shutdown);
        }, asio::detached);
    }
}

awaitable<void> ClientSession::cancel_running_query()
{
    // The statement runs where the last request went.
    auto link = active_;
    if (!link || !link->conn || !link->conn->is_open())
        co_return;
    // PostgreSQL takes a cancel only on a fresh connection to the postmaster
    // that runs the query (Protocol → Canceling Requests in Progress).
    const auto ep = link->conn->endpoint();
    const auto key = link->conn->key();
    tcp::socket s(runtime_.io());
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
        auto next = decoder_.next();
        if (!next) {
            const std::string message = "invalid message from client: " + next.error().message();
            co_await send_fatal(sqlstate::protocol_violation, message, SessionEnd::client_protocol_error);
            co_return std::nullopt;
        }
        if (*next)
            co_return **next;
        auto region = decoder_.prepare();
        auto [ec, n] = co_await stream_.read_some(asio::buffer(region.data(), region.size()));
        if (ec) {
            end_ = end_.value_or(SessionEnd::client_closed);
            co_return std::nullopt;
        }
        decoder_.commit(n);
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

awaitable<std::optional<wire::StartupMessage>> ClientSession::read_startup()
{
    for (;;) {
        auto frame = co_await read_client_frame();
        if (!frame)
            co_return std::nullopt;
        auto packet = wire::parse_startup_packet(frame->body);
        if (!packet) {
            // Messages are built before the co_await: g++ 12 destroys temporaries
            // of a conditional inside a co_await expression twice.
            const bool unsupported = packet.error() == wire::errc::unsupported_protocol;
            const std::string message = unsupported
                                            ? std::string("unsupported frontend protocol: pgswitch speaks protocol 3.0")
                                            : "invalid startup packet: " + packet.error().message();
            co_await send_fatal(unsupported ? sqlstate::feature_not_supported : sqlstate::protocol_violation,
                                message, SessionEnd::client_protocol_error);
            co_return std::nullopt;
        }
        if (std::holds_alternative<wire::SslRequest>(*packet)) {
            // Bytes after an SSLRequest, before our answer, would be read as if
            // they came over TLS: a man-in-the-middle injection (CVE-2021-23222).
            if (decoder_.buffered() != 0 || stream_.is_tls()) {
                co_await send_fatal(sqlstate::protocol_violation, "unexpected data after SSLRequest",
                                    SessionEnd::client_protocol_error);
                co_return std::nullopt;
            }
            auto* tls = runtime_.tls();
            const std::string answer = tls ? "S" : "N";
            if (co_await stream_.send(answer)) {
                close();
                co_return std::nullopt;
            }
            if (tls) {
                if (auto ec = co_await stream_.start_tls(*tls)) {
                    log::info("session ", id_, " from ", peer_, ": TLS handshake failed: ", ec.message());
                    close();
                    co_return std::nullopt;
                }
            }
            continue;
        }
        if (std::holds_alternative<wire::GssEncRequest>(*packet)) {
            if (decoder_.buffered() != 0) {
                co_await send_fatal(sqlstate::protocol_violation, "unexpected data after GSSENCRequest",
                                    SessionEnd::client_protocol_error);
                co_return std::nullopt;
            }
            if (co_await stream_.send("N")) {
                close();
                co_return std::nullopt;
            }
            continue;
        }
        if (auto* cancel = std::get_if<wire::CancelRequest>(&*packet)) {
            if (auto target = runtime_.cancels().find(cancel->process_id, cancel->secret_key)) {
                // The target may run on another worker: its state is read on its own thread.
                auto target_executor = target->stream_.socket().get_executor();
                co_await asio::co_spawn(target_executor, target->cancel_running_query(), asio::use_awaitable);
            }
            else
                log::debug("cancel request with an unknown key ignored");
            close();
            co_return std::nullopt;
        }
        co_return std::get<wire::StartupMessage>(std::move(*packet));
    }
}

awaitable<void> ClientSession::run()
{
    // Login watchdog: closes the connection if startup + auth drag on.
    asio::steady_timer login_deadline(runtime_.io(), login_timeout);
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
        co_return;
    startup_ = std::move(*startup);
    decoder_.set_phase(wire::FrameDecoder::Phase::regular);

    // A 3.x client asking for a newer minor version or _pq_ protocol options
    // is told what we speak, as the server does (Protocol → NegotiateProtocolVersion).
    {
        std::vector<std::string_view> unrecognized;
        for (const auto& [name, value] : startup_.params)
            if (name.starts_with("_pq_."))
                unrecognized.push_back(name);
        if ((startup_.protocol & 0xffff) != 0 || !unrecognized.empty()) {
            std::string msg;
            be::build_negotiate_protocol_version(msg, 0, unrecognized);
            if (co_await stream_.send(msg)) {
                close();
                co_return;
            }
        }
    }

    user_ = std::string(startup_.get("user"));
    database_ = std::string(startup_.get("database"));
    if (database_.empty())
        database_ = user_;  // libpq's and the server's default
    if (user_.empty()) {
        co_await send_fatal(sqlstate::invalid_authorization_specification,
                            "no PostgreSQL user name specified in startup packet",
                            SessionEnd::client_protocol_error);
        co_return;
    }
    if (!startup_.get("replication").empty()) {
        co_await send_fatal(sqlstate::feature_not_supported,
                            "pgswitch does not proxy replication connections", SessionEnd::auth_failed);
        co_return;
    }
    if (runtime_.draining()) {
        co_await send_fatal(sqlstate::cannot_connect_now, "pgswitch is shutting down", SessionEnd::shutdown);
        co_return;
    }
    if (!runtime_.try_admit_client()) {
        co_await send_fatal(sqlstate::too_many_connections, "sorry, too many clients already",
                            SessionEnd::auth_failed);
        co_return;
    }
    admitted_ = true;

    const auto settings = runtime_.settings();
    if (!co_await authenticate(settings->config.find_user(user_)))
        co_return;
    pooling_ = settings->config.proxy.pool_mode == PoolMode::transaction;
    // (Two statements, not a conditional inside co_await: g++ 12 bug.)
    bool logged_in = false;
    if (pooling_)
        logged_in = co_await login_pooled();
    else
        logged_in = co_await connect_primary();
    if (!logged_in)
        co_return;
    login_deadline.cancel();
    log::debug("session ", id_, " from ", peer_, ": user=", user_, " database=", database_);
    co_await relay_client();
    close();
    if (end_ && *end_ != SessionEnd::client_closed)
        log::info("session ", id_, " from ", peer_, " ended: ", to_string(*end_));
}


awaitable<bool> ClientSession::connect_primary()
{
    const auto settings = runtime_.settings();
    const auto& cfg = settings->config;
    // Wait for a usable primary up to failover.wait_for_primary_ms: at start-up
    // the first health round may still be running, and during a failover the
    // old primary refuses connections until the new one is published.
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::milliseconds(cfg.failover.wait_for_primary_ms);
    asio::steady_timer poll(runtime_.io());
    std::shared_ptr<ServerLink> link;
    std::string last_error = "no primary server is available";
    for (;;) {
        auto view = runtime_.cluster();
        if (auto idx = view->primary_index()) {
            const auto target = view->backends[*idx];
            auto candidate = std::make_shared<ServerLink>();
            candidate->backend = target.name;
            candidate->role = routing::Role::primary;
            candidate->conn = std::make_unique<BackendConnection>(runtime_.io().get_executor());
            auto err = co_await candidate->conn->connect(target.host, target.port, server_startup(),
                                                         std::chrono::milliseconds(cfg.proxy.connect_timeout_ms));
            if (!err) {
                link = std::move(candidate);
                break;
            }
            log::warning("session ", id_, ": login to ", target.name, " failed: ", err->message);
            // 57P03 (shutting down, starting up) is a primary passing through a
            // stop or restart: wait for it, or for the new one, as when refused.
            const bool transient = err->message.ends_with("(SQLSTATE 57P03)");
            if (!err->server_error.empty() && !transient) {
                // The server's own refusal (unknown database, bad parameter...)
                // says it best: pass it on verbatim.
                (void)co_await stream_.send(err->server_error);
                end_ = SessionEnd::auth_failed;
                close();
                co_return false;
            }
            runtime_.request_health_check();
            last_error = "could not connect to server \"" + target.name + "\": " + err->message;
        }
        if (std::chrono::steady_clock::now() >= deadline || closed_)
            break;
        poll.expires_after(std::chrono::milliseconds(20));
        auto [ec] = co_await poll.async_wait(use_nothrow);
        (void)ec;
    }
    if (!link) {
        const std::string message = last_error + " (waited failover.wait_for_primary_ms)";
        co_await send_fatal(sqlstate::cannot_connect_now, message, SessionEnd::backend_lost);
        co_return false;
    }
    // The database's volatile functions decide which SELECTs write; load
    // them once per database (before the pump owns this connection).
    if (!runtime_.catalog(database_))
        co_await load_catalog(*link->conn);

    // Session mode: the client sees the primary connection's pid, so
    // pg_backend_pid() and NOTIFY sender pids agree; the secret is ours.
    client_pid_ = link->conn->key().process_id;
    client_secret_ = runtime_.cancels().add(client_pid_, weak_from_this());
    scratch_.clear();
    be::build_authentication_ok(scratch_);
    scratch_.append(link->conn->parameter_status_messages());
    be::build_backend_key_data(scratch_, client_pid_, client_secret_);
    be::build_ready_for_query(scratch_, wire::TxStatus::idle);
    add_link(link);
    active_ = link;
    if (co_await stream_.send(scratch_)) {
        close();
        co_return false;
    }
    co_return true;
}

ServerStartup ClientSession::server_startup() const
{
    ServerStartup s;
    s.user = user_;
    s.database = database_;
    for (const auto& [name, value] : startup_.params) {
        // user/database are set explicitly; _pq_.* are protocol options we do not pass on.
        if (name == "user" || name == "database" || name.starts_with("_pq_."))
            continue;
        s.params.emplace_back(name, value);
    }
    s.credentials = credentials_;
    return s;
}

awaitable<void> ClientSession::load_catalog(BackendConnection& conn)
{
    auto r = co_await conn.simple_query(
        "SELECT n.nspname, p.proname FROM pg_catalog.pg_proc p "
        "JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace "
        "WHERE p.provolatile = 'v' AND n.nspname NOT IN ('pg_catalog', 'information_schema')");
    std::vector<std::pair<std::string, std::string>> functions;
    if (auto* rows = std::get_if<QueryRows>(&r)) {
        for (const auto& row : rows->rows)
            if (row.size() == 2 && row[0] && row[1])
                functions.emplace_back(*row[0], *row[1]);
    } else {
        log::warning("session ", id_, ": could not read volatile functions of ", database_, ": ",
                     std::get<ConnectError>(r).message);
    }
    (void)runtime_.store_catalog(database_, functions);
}

void ClientSession::add_link(std::shared_ptr<ServerLink> link)
{
    links_.push_back(link);
    auto self = shared_from_this();
    asio::co_spawn(runtime_.io(), [self, link]() { return self->run_link(link); },
                   close_on_failure("server pump failed"));
}

awaitable<void> ClientSession::relay_client()
{
    for (;;) {
        // CopyData/CopyDone/CopyFail go straight to the link running the
        // COPY, batched per read; everything else is gathered into whole
        // requests and routed at their boundary.
        const char* copy_begin = nullptr;
        std::size_t copy_len = 0;
        auto flush_copy = [&]() -> awaitable<bool> {
            if (copy_len == 0)
                co_return true;
            const std::string_view bytes{copy_begin, copy_len};
            copy_begin = nullptr;
            copy_len = 0;
            if (!active_ || active_->dead)
                co_return true;  // the server is gone; its pump told the client
            co_return !co_await active_->conn->write(bytes);
        };
        for (;;) {
            auto next = decoder_.next();
            if (!next) {
                (void)co_await flush_copy();
                const std::string message = "invalid message from client: " + next.error().message();
                co_await send_fatal(sqlstate::protocol_violation, message, SessionEnd::client_protocol_error);
                co_return;
            }
            if (!*next)
                break;
            const auto f = **next;
            if (!fe::is_known(f.tag)) {
                (void)co_await flush_copy();
                const std::string message =
                    "invalid frontend message type " + std::to_string(static_cast<unsigned char>(f.tag));
                co_await send_fatal(sqlstate::protocol_violation, message, SessionEnd::client_protocol_error);
                co_return;
            }
            switch (static_cast<fe::Tag>(f.tag)) {
            case fe::Tag::Terminate: {
                (void)co_await flush_copy();
                end_ = SessionEnd::client_closed;
                std::string bye;
                fe::build_terminate(bye);
                // A copy: pumps remove links from links_ as their servers hang up.
                const auto links = links_;
                for (const auto& link : links)
                    if (!link->dead && !link->lease)  // pooled connections outlive the client
                        (void)co_await link->conn->write(bye);
                close();
                co_return;
            }
            case fe::Tag::CopyData:
            case fe::Tag::CopyDone:
            case fe::Tag::CopyFail:
                if (!copy_begin)
                    copy_begin = f.raw.data();
                copy_len = static_cast<std::size_t>(f.raw.data() + f.raw.size() - copy_begin);
                continue;
            default:
                break;
            }
            if (!co_await flush_copy())
                co_return;
            request_frames_.push_back({f.tag, request_.size(), f.raw.size()});
            request_.append(f.raw);
            switch (static_cast<fe::Tag>(f.tag)) {
            case fe::Tag::Query:
            case fe::Tag::Sync:
            case fe::Tag::Flush:
            case fe::Tag::FunctionCall:
                if (!co_await dispatch_request())
                    co_return;
                break;
            default:
                break;  // Parse/Bind/Describe/Execute/Close: wait for Sync or Flush
            }
        }
        if (!co_await flush_copy())
            co_return;
        if (closed_)
            co_return;
        auto region = decoder_.prepare();
        auto [ec, n] = co_await stream_.read_some(asio::buffer(region.data(), region.size()));
        if (ec) {
            end_ = end_.value_or(SessionEnd::client_closed);
            co_return;
        }
        decoder_.commit(n);
    }
}

awaitable<void> ClientSession::pump_server(std::shared_ptr<ServerLink> link)
{
    auto& dec = link->conn->decoder();
    auto& sock = link->conn->socket();
    std::string dropped_error;
    for (;;) {
        // Forward whole runs of client-owned replies with one write; replies
        // to hidden catch-up requests are cut out of the stream.
        const char* batch_begin = nullptr;
        std::size_t batch_len = 0;
        // Where link->held sits in this read's buffer, if it arrived in it.
        const char* held_at = nullptr;
        bool became_idle = false;
        auto flush = [&]() -> awaitable<bool> {
            if (batch_len == 0)
                co_return true;
            const std::string_view bytes{batch_begin, batch_len};
            batch_begin = nullptr;
            batch_len = 0;
            co_return !co_await stream_.send(bytes);
        };
        for (;;) {
            auto next = dec.next();
            if (!next) {
                log::error("session ", id_, ": malformed message from server ", link->backend, ": ",
                           next.error().message());
                (void)co_await flush();
                co_await send_fatal(sqlstate::connection_failure, "server sent a malformed message",
                                    SessionEnd::backend_lost);
                co_return;
            }
            if (!*next)
                break;
            const auto f = **next;
            const auto tag = static_cast<be::Tag>(f.tag);
            if (link->swallowing_retry) {
                // The misrouted read's error and ReadyForQuery: never shown.
                if (tag == be::Tag::ReadyForQuery) {
                    link->swallowing_retry = false;
                    link->segment_fresh = true;
                    if (!link->segments.empty())
                        pop_client_segment(*link, false);
                    co_await retry_on_primary(*link);
                }
                continue;
            }
            // An ErrorResponse's fields, parsed once for the checks below.
            std::optional<be::ErrorFields> error;
            if (tag == be::Tag::ErrorResponse)
                if (auto fields = be::parse_error_fields(f.body))
                    error = std::move(*fields);
            const bool fatal = error && (error->severity() == "FATAL" || error->severity() == "PANIC");
            if (fatal && error->sqlstate() == "57P01") {
                // A fast shutdown says so on every connection: tell the health
                // checker, so a restart that comes straight back is no failover.
                const std::string said = std::string(error->message()) + " (SQLSTATE 57P01)";
                if (routing::announces_restart(said))
                    runtime_.report_restart_announced(link->backend);
            }
            // A FATAL on a connection that owes the client nothing, while another
            // connection's reply is on its way ("terminating connection due to
            // unexpected postmaster exit" from an idle primary link during a
            // read on a replica), must not land inside that reply, where the
            // client would take it for the read's error: drop it; the link
            // closes silently in server_lost() like any idle one.
            if (fatal && link->segments.empty() && !link->unsynced &&
                std::any_of(links_.begin(), links_.end(),
                            [&](const auto& other) { return other != link && other->pending_client() > 0; })) {
                log::info("session ", id_, ": idle connection to ", link->backend, " ending: ", error->message());
                continue;
            }
            const bool hidden = !link->segments.empty() && link->segments.front() != ServerLink::Segment::client;
            // Notices, ParameterStatus and notifications can come at any time
            // (a server shutting down sends a WARNING first): they do not start
            // the reply.
            const bool asynchronous = tag == be::Tag::NoticeResponse || tag == be::Tag::ParameterStatus ||
                                      tag == be::Tag::NotificationResponse;
            if (!hidden && !asynchronous && link->segment_fresh && !link->segments.empty()) {
                // The reply starts with 25006 and no row reached the client yet:
                // the statement writes after all (a function the classifier could
                // not know); run it where it can. A RowDescription comes before
                // the executor fails, so it is held back until we know.
                const bool retryable = !link->retry_request.empty() && link->segments.size() == 1;
                if (retryable && tag == be::Tag::RowDescription && link->held.empty()) {
                    if (!co_await flush())
                        co_return;
                    link->held.assign(f.raw);
                    held_at = f.raw.data();
                    continue;
                }
                link->segment_fresh = false;
                if (retryable && error) {
                    if (error->sqlstate() == "25006") {
                        if (!co_await flush())
                            co_return;
                        link->held.clear();
                        link->swallowing_retry = true;
                        link->retry_error.assign(f.raw);
                        continue;
                    }
                }
                if (!link->held.empty()) {
                    if (batch_len == 0 && held_at && held_at + link->held.size() == f.raw.data()) {
                        // Still in the buffer right before this frame: it goes
                        // out in the same write as the rest of the reply.
                        batch_begin = held_at;
                        batch_len = link->held.size();
                    } else if (!co_await flush() || co_await stream_.send(link->held)) {
                        co_return;
                    }
                    link->held.clear();
                    held_at = nullptr;
                }
            }
            if (hidden && tag != be::Tag::NotificationResponse) {
                // A hidden request's reply: act on it, never forward it.
                if (!co_await flush())
                    co_return;
                const auto kind = link->segments.front();
                if (tag == be::Tag::ErrorResponse) {
                    if (error)
                        dropped_error = std::string(error->message());
                    log::warning("session ", id_, ": catch-up on ", link->backend, " failed: ", dropped_error);
                } else if (tag == be::Tag::DataRow && kind == ServerLink::Segment::capture_lsn) {
                    if (auto row = be::parse_data_row(f.body); row && row->size() == 1 && row->front())
                        captured_lsn_ = routing::parse_lsn(*row->front());
                } else if (tag == be::Tag::ReadyForQuery) {
                    link->segments.pop_front();
                    if (kind == ServerLink::Segment::capture_lsn) {
                        auto rfq = be::parse_ready_for_query(f.body);
                        // Only a position read outside a transaction is past the commit.
                        if (captured_lsn_ && rfq && rfq->status == wire::TxStatus::idle)
                            state_.require_lsn(*captured_lsn_);
                        captured_lsn_.reset();
                        if (--lsn_captures_ == 0)
                            lsn_pending_ = false;
                    }
                    drained_.cancel();
                }
                continue;
            }
            switch (tag) {
            case be::Tag::ReadyForQuery:
                if (auto rfq = be::parse_ready_for_query(f.body)) {
                    tx_status_ = rfq->status;
                    if (!link->segments.empty())
                        pop_client_segment(*link, true);
                    link->segment_fresh = true;
                    if (link->pending_client() == 0)
                        link->retry_request.clear();
                    became_idle = idle();
                    drained_.cancel();
                }
                break;
            case be::Tag::ErrorResponse:
                // A FATAL from the server (pg_terminate_backend: 57P01) is the
                // client's explanation; no need for our own 08006 after it.
                if (fatal)
                    link->server_sent_fatal = true;
                break;
            default:
                break;
            }
            if (!batch_begin)
                batch_begin = f.raw.data();
            else if (batch_begin + batch_len != f.raw.data()) {
                // A hidden reply was cut out in between: send what we have first.
                if (!co_await flush())
                    co_return;
                batch_begin = f.raw.data();
            }
            batch_len = static_cast<std::size_t>(f.raw.data() + f.raw.size() - batch_begin);
        }
        if (!co_await flush()) {
            end_ = end_.value_or(SessionEnd::client_closed);
            close();
            co_return;
        }
        if (became_idle && runtime_.draining()) {
            co_await send_fatal(sqlstate::admin_shutdown,
                                "terminating connection due to administrator command (pgswitch is shutting down)",
                                SessionEnd::shutdown);
            co_return;
        }
        if (co_await release_if_idle(*link))
            co_return;
        if (closed_ || link->dead)
            co_return;
        auto region = dec.prepare();
        auto [ec, n] = co_await sock.async_read_some(asio::buffer(region.data(), region.size()), use_nothrow);
        if (ec) {
            if (closed_ || link->dead)
                co_return;
            co_await server_lost(*link, ec);
            co_return;
        }
        dec.commit(n);
    }
}

awaitable<void> ClientSession::retry_on_primary(ServerLink& link)
{
    retrying_ = true;
    const std::string request = std::move(link.retry_request);
    link.retry_request.clear();
    std::shared_ptr<ServerLink> primary;
    const auto view = runtime_.cluster();
    if (auto idx = view->primary_index())
        primary = co_await link_to(view->backends[*idx]);
    if (!primary || closed_) {
        retrying_ = false;
        drained_.cancel();
        if (link.retry_error.empty()) {
            // The read's server died and no primary can take it over.
            const std::string message = "server connection to \"" + link.backend + "\" was lost";
            co_await send_fatal(sqlstate::connection_failure, message, SessionEnd::backend_lost);
            co_return;
        }
        // Nowhere to re-run it: the client gets the server's own answer.
        std::string out = link.retry_error;
        be::build_ready_for_query(out, tx_status_);
        (void)co_await stream_.send(out);
        co_return;
    }
    std::string fingerprint;
    if (request.size() > 5)
        if (auto q = fe::parse_query(std::string_view(request).substr(5)))
            fingerprint = routing::literal_free_key(q->sql).substr(1);
    const bool misroute = !link.retry_error.empty();  // else: its server died
    if (misroute) {
        log::warning("session ", id_, ": misroute: read-only error on ", link.backend, ", re-running on ",
                     primary->backend, ": ", fingerprint);
        runtime_.count_misroute();
    }

    std::string out;
    const std::string script = settings_catch_up_script(primary->state);
    if (!script.empty()) {
        fe::build_query(out, script);
        primary->segments.push_back(ServerLink::Segment::hidden);
    }
    out.append(request);
    push_client_segment(*primary);
    runtime_.count_query(primary->backend, misroute);
    if (misroute) {
        primary->wrote = true;  // it wrote: its commit position matters to read-your-writes
        state_.wrote = true;
    }
    active_ = primary;
    (void)co_await primary->conn->write(out);
    retrying_ = false;
    drained_.cancel();
}

awaitable<void> ClientSession::server_lost(ServerLink& link, error_code ec)
{
    // What the client loses with this connection decides whether the
    // session survives: replies it waits for, an open transaction, or state
    // that lives only there (pins). An idle replica connection is replaced
    // silently on next use.
    const bool owed = link.pending_client() > 0 || link.unsynced;
    const bool in_tx_here = active_.get() == &link && tx_status_ != wire::TxStatus::idle;
    const bool state_here = link.role == routing::Role::primary && state_.pinned_to_primary;
    // An autocommit read whose server died before any of its reply reached
    // the client is re-run on the primary: the client never notices.
    const bool rerun = link.pending_client() == 1 && link.segments.size() == 1 && !link.retry_request.empty() &&
                       link.segment_fresh && !link.swallowing_retry && !in_tx_here && !state_here;
    link.dead = true;
    // The data path saw the primary go: probe it now rather than at the next interval.
    if (link.role == routing::Role::primary)
        runtime_.request_health_check();
    for (auto seg : link.segments)
        if (seg == ServerLink::Segment::client)
            runtime_.add_in_flight(link.backend, -1);
        else if (seg == ServerLink::Segment::capture_lsn && --lsn_captures_ == 0)
            lsn_pending_ = false;
    link.segments.clear();
    link.started.clear();
    link.conn->close();
    std::erase_if(links_, [&](const auto& l) { return l.get() == &link; });
    drained_.cancel();
    if (rerun) {
        log::info("session ", id_, ": connection to ", link.backend, " lost (", ec.message(),
                  ") before its read answered; re-running it");
        runtime_.request_health_check();
        link.retry_error.clear();
        if (active_.get() == &link)
            active_.reset();
        co_await retry_on_primary(link);
        co_return;
    }
    if (!owed && !in_tx_here && !state_here) {
        log::info("session ", id_, ": idle connection to ", link.backend, " closed (", ec.message(), ")");
        if (active_.get() == &link)
            active_.reset();
        co_return;
    }
    if (link.server_sent_fatal) {
        end_ = end_.value_or(SessionEnd::backend_lost);
        close();
        co_return;
    }
    log::warning("session ", id_, ": connection to ", link.backend, " lost: ", ec.message());
    const std::string message = "server connection to \"" + link.backend + "\" was lost";
    co_await send_fatal(sqlstate::connection_failure, message, SessionEnd::backend_lost);
}

}  // namespace pgswitch::proxy
