// ClientSession's server side: one pump per server connection relays its
// replies to the client, cuts out the replies to pgswitch's hidden requests
// (acting on them: WAL positions, replay waits, statement checks), holds
// back the start of a reply that may still be re-run elsewhere, and decides
// what the loss of the connection means for the session.
#include <algorithm>

#include "client_session.h"
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
using Segment = ServerLink::Segment;

namespace {

/// Messages of a reply that come before anything the client could act on:
/// while only these arrived, the request can still be re-run elsewhere.
bool is_preamble(be::Tag t) noexcept
{
    switch (t) {
    case be::Tag::ParseComplete:
    case be::Tag::BindComplete:
    case be::Tag::CloseComplete:
    case be::Tag::ParameterDescription:
    case be::Tag::RowDescription:
    case be::Tag::NoData:
    case be::Tag::NoticeResponse:
        return true;
    default:
        return false;
    }
}

/// Messages a server may send at any time, outside any reply.
bool is_asynchronous(be::Tag t) noexcept
{
    return t == be::Tag::NoticeResponse || t == be::Tag::ParameterStatus || t == be::Tag::NotificationResponse;
}

/// What pg_terminate_backend() says (and a fast shutdown: the server tells
/// them apart only by still accepting logins).
/// What a standby answers to a statement it cannot run: a write (25006), or a
/// read of an UNLOGGED (or another session's temporary) table (0A000).
bool refused_by_standby(const be::ErrorFields& e)
{
    return e.sqlstate() == "25006" ||
           (e.sqlstate() == "0A000" &&
            (e.message() == "cannot access temporary or unlogged relations during recovery" ||
             e.message() == "cannot use serializable mode in a hot standby"));
}

bool is_terminate_by_administrator(const be::ErrorFields& e)
{
    return e.sqlstate() == "57P01" && e.message() == "terminating connection due to administrator command";
}

}  // namespace

bool ClientSession::track_reply(ServerLink& link, const wire::Frame& f)
{
    switch (static_cast<be::Tag>(f.tag)) {
    case be::Tag::ParseComplete:
        return link.statements.on_parse_complete();
    case be::Tag::CloseComplete:
        return link.statements.on_close_complete();
    case be::Tag::ParameterDescription:
        link.statements.on_parameter_description(f.body);
        break;
    case be::Tag::RowDescription:
        link.statements.on_row_description(f.body, state_);
        break;
    case be::Tag::NoData:
        link.statements.on_row_description(std::nullopt, state_);
        break;
    case be::Tag::ReadyForQuery:
        ++link.segments_done;
        if (const auto failed = link.statements.on_segment_done(link.segments_done, state_, link.state))
            log::debug("session ", id_, ": ", failed, " Parse(s) on ", link.backend, " failed: names freed");
        break;
    default:
        break;
    }
    return false;
}

void ClientSession::on_hidden_reply(ServerLink& link, const wire::Frame& f, const be::ErrorFields* error)
{
    const auto pending = link.segments.front();
    switch (static_cast<be::Tag>(f.tag)) {
    case be::Tag::ErrorResponse:
        if (pending.kind == Segment::replay_wait)
            log::info("session ", id_, ": replay wait on ", link.backend, " failed: ", error ? error->message() : "");
        else
            log::warning("session ", id_, ": catch-up on ", link.backend,
                         " failed: ", error ? error->message() : "(unreadable error)");
        break;
    case be::Tag::DataRow:
        if (pending.kind == Segment::capture_lsn || pending.kind == Segment::replay_wait)
            if (auto row = be::parse_data_row(f.body); row && row->size() == 1 && row->front())
                link.hidden_value = routing::parse_lsn(*row->front());
        break;
    case be::Tag::ReadyForQuery: {
        link.segments.pop_front();
        const auto value = std::exchange(link.hidden_value, std::nullopt);
        if (pending.kind == Segment::capture_lsn) {
            auto rfq = be::parse_ready_for_query(f.body);
            // Only a position read outside a transaction is past the commit.
            if (value && rfq && rfq->status == wire::TxStatus::idle) {
                state_.require_lsn(*value);
                if (pending.schema)
                    runtime_.publish_schema_lsn(*value);
            }
            --lsn_captures_;
        } else if (pending.kind == Segment::replay_wait) {
            const bool reached = value && *value >= pending.lsn;
            runtime_.count_replay_wait(reached);
            if (!reached && link.pending_client() > 0 && !link.can_rerun()) {
                // Requests were pipelined behind the read (route_request()
                // keeps them back, so this should not happen): a re-run would
                // reorder replies; the read is answered by the replica.
                log::warning("session ", id_, ": replay wait on ", link.backend,
                             " fell short with requests queued behind it; not re-running");
                runtime_.replay_knowledge().missed(link.backend, pending.lsn, std::chrono::steady_clock::now());
            } else if (reached) {
                // Good for every later read up to that position, this
                // session's and the worker's other sessions'.
                runtime_.replay_knowledge().reached(link.backend, *value);
            } else {
                runtime_.replay_knowledge().missed(link.backend, pending.lsn, std::chrono::steady_clock::now());
                link.next_client = ServerLink::Fate::rerun;
            }
        }
        drained_.cancel();
        break;
    }
    default:
        break;
    }
}

awaitable<bool> ClientSession::fatal_reaches_client(ServerLink& link, const be::ErrorFields& error)
{
    // Only pg_terminate_backend() of the pid the client was given ends the
    // client's session, as it would without pgswitch (SPEC §4). A server
    // shutting down or dying says the same, or worse, to every connection:
    // a session that is not using this one must not notice.
    if (!link.identity || !is_terminate_by_administrator(error))
        co_return false;
    const auto view = runtime_.cluster();
    const auto* backend = view->find(link.backend);
    if (!backend)
        co_return false;
    // A server that still lets us in was not stopping: the connection was
    // terminated on purpose.
    BackendConnection probe(runtime_.io().get_executor());
    const auto timeout = std::min(std::chrono::milliseconds(runtime_.settings()->config.proxy.connect_timeout_ms),
                                  std::chrono::milliseconds(2000));
    const auto err = co_await probe.connect(backend->host, backend->port, server_startup(), timeout);
    probe.close();
    co_return !err;
}

awaitable<void> ClientSession::pump_server(std::shared_ptr<ServerLink> link)
{
    auto& dec = link->conn->decoder();
    auto& sock = link->conn->socket();
    for (;;) {
        // Forward whole runs of client-owned replies with one write; replies
        // to hidden requests are cut out of the stream.
        const char* batch_begin = nullptr;
        std::size_t batch_len = 0;
        // The batch holds only the front segment's frames that may still be
        // dropped (the request may be re-run elsewhere).
        bool batch_held = false;
        bool became_idle = false;
        auto flush = [&]() -> awaitable<bool> {
            if (batch_len == 0)
                co_return true;
            const std::string_view bytes{batch_begin, batch_len};
            batch_begin = nullptr;
            batch_len = 0;
            co_return !co_await stream_.send(bytes);
        };
        auto drop_batch = [&] {
            batch_begin = nullptr;
            batch_len = 0;
            batch_held = false;
        };
        for (;;) {
            auto next = dec.next();
            if (!next) {
                log::error("session ", id_, ": malformed message from server ", link->backend, ": ",
                           next.error().message());
                if (!batch_held)
                    (void)co_await flush();
                co_await send_fatal(sqlstate::connection_failure, "server sent a malformed message",
                                    SessionEnd::backend_lost);
                co_return;
            }
            if (!*next)
                break;
            const auto f = **next;
            const auto tag = static_cast<be::Tag>(f.tag);
            // An ErrorResponse's fields, parsed once for the checks below.
            std::optional<be::ErrorFields> error;
            if (tag == be::Tag::ErrorResponse)
                if (auto fields = be::parse_error_fields(f.body))
                    error = std::move(*fields);
            const bool fatal = error && (error->severity() == "FATAL" || error->severity() == "PANIC");
            if (fatal && error->sqlstate() == "57P01") {
                // A fast shutdown says so on every connection: tell the health
                // checker, so a restart that comes straight back is no failover.
                if (routing::announces_restart(error->sqlstate(), error->message()))
                    runtime_.report_restart_announced(link->backend);
            }
            if (track_reply(*link, f))
                continue;  // a hidden Parse/Close slipped into the client's request

            // A FATAL on a connection that owes the client nothing and holds
            // nothing of its (no transaction, no pinned state) is not the
            // client's business ("unexpected postmaster exit" on an idle
            // primary connection while the session reads from replicas):
            // dropped, and the link closes silently in server_lost().
            if (fatal && !link->owes_client() && !(active_ == link && tx_status_ != wire::TxStatus::idle) &&
                !(state_.pinned_to_primary && link->role == routing::Role::primary)) {
                if (!batch_held) {
                    if (!co_await flush())
                        co_return;
                }
                // New requests wait for the verdict: when it is the client's
                // termination, its next statement must get the FATAL, as it
                // would from the server.
                checking_termination_ = true;
                const bool reaches_client = co_await fatal_reaches_client(*link, *error);
                checking_termination_ = false;
                drained_.cancel();
                if (reaches_client) {
                    log::info("session ", id_, ": its connection to ", link->backend,
                              " was terminated by an administrator: ending the session");
                    (void)co_await stream_.send(f.raw);
                    end_ = end_.value_or(SessionEnd::backend_lost);
                    close();
                    co_return;
                }
                log::info("session ", id_, ": idle connection to ", link->backend, " ending: ", error->message());
                link->dead = true;
                co_return co_await server_lost(*link, asio::error::connection_reset);
            }

            const bool hidden = !link->segments.empty() && link->segments.front().kind != Segment::client;
            if (hidden && tag != be::Tag::NotificationResponse) {
                // A hidden request's reply: act on it, never forward it.
                if (!batch_held) {
                    if (!co_await flush())
                        co_return;
                }
                on_hidden_reply(*link, f, error ? &*error : nullptr);
                continue;
            }

            if (link->swallowing) {
                // The reply of a request that is re-run elsewhere: never shown.
                if (tag == be::Tag::ReadyForQuery) {
                    link->swallowing = false;
                    link->segment_fresh = true;
                    if (!link->segments.empty())
                        pop_client_segment(*link, false);
                    co_await retry_on_primary(*link);
                }
                continue;
            }
            if (link->front_is(Segment::client) && link->segment_fresh &&
                !(is_asynchronous(tag) && tag != be::Tag::NoticeResponse)) {
                if (link->next_client == ServerLink::Fate::rerun) {
                    // Its replay wait fell short: this reply may be stale.
                    link->next_client = ServerLink::Fate::forward;
                    link->retry_error.clear();
                    link->swallowing = tag != be::Tag::ReadyForQuery;
                    if (tag == be::Tag::ReadyForQuery) {
                        pop_client_segment(*link, false);
                        co_await retry_on_primary(*link);
                    }
                    continue;
                }
                if (link->can_rerun()) {
                    if (error && refused_by_standby(*error)) {
                        // It writes after all (a function the classifier could
                        // not know), or reads an UNLOGGED table created behind
                        // pgswitch's back: run it where it can.
                        drop_batch();
                        link->held.clear();
                        link->swallowing = true;
                        link->retry_error.assign(f.raw);
                        continue;
                    }
                    if (is_preamble(tag)) {
                        if (!batch_held) {
                            if (!co_await flush())
                                co_return;
                            batch_held = true;
                        }
                    } else {
                        // Rows, a result, an error: the reply is the client's now.
                        link->segment_fresh = false;
                        if (!link->held.empty()) {
                            if (co_await stream_.send(link->held))
                                co_return;
                            link->held.clear();
                        }
                        batch_held = false;
                    }
                } else {
                    link->segment_fresh = false;
                }
            }
            switch (tag) {
            case be::Tag::ReadyForQuery:
                if (auto rfq = be::parse_ready_for_query(f.body)) {
                    tx_status_ = rfq->status;
                    if (link->front_is(Segment::client))
                        pop_client_segment(*link, true);
                    link->segment_fresh = true;
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
            if (!batch_begin) {
                batch_begin = f.raw.data();
            } else if (batch_begin + batch_len != f.raw.data()) {
                // A hidden reply was cut out in between: send what we have
                // first (or, still undecided, keep it).
                if (batch_held) {
                    link->held.append(batch_begin, batch_len);
                    batch_len = 0;
                } else if (!co_await flush()) {
                    co_return;
                }
                batch_begin = f.raw.data();
            }
            batch_len = static_cast<std::size_t>(f.raw.data() + f.raw.size() - batch_begin);
        }
        if (batch_held) {
            // Still undecided when the read ran out: keep a copy, the buffer
            // is reused by the next read.
            link->held.append(batch_begin, batch_len);
            drop_batch();
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
    if (!link.retry) {
        drained_.cancel();
        co_return;
    }
    retrying_ = true;
    wire::Request request = std::move(*link.retry);
    link.retry.reset();
    link.held.clear();
    const bool misroute = !link.retry_error.empty();
    const bool server_died = link.dead;
    std::shared_ptr<ServerLink> target;
    const auto view = runtime_.cluster();
    if (auto idx = view->primary_index())
        target = co_await link_to(view->backends[*idx]);
    if (!target && !misroute && !server_died && !link.dead) {
        // A replay wait fell short and there is no primary (a failover):
        // the replica is the freshest server there is.
        for (const auto& l : links_)
            if (l.get() == &link)
                target = l;
    }
    if (!target || closed_) {
        retrying_ = false;
        drained_.cancel();
        if (!misroute) {
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
    if (misroute) {
        std::string fingerprint;
        if (const auto* q = request.messages().front().as<fe::Query>())
            fingerprint = routing::literal_free_key(q->sql).substr(1);
        log::warning("session ", id_, ": misroute: read-only error on ", link.backend, ", re-running on ",
                     target->backend, (fingerprint.empty() ? "" : ": "), fingerprint);
        runtime_.count_misroute();
        // The classifier thought it a read: the function it calls is one the
        // catalog has wrong. The next lookup refreshes it.
        runtime_.invalidate_catalog(database_);
    }
    link.retry_error.clear();
    auto facts = analyze(request);
    if (misroute)
        facts.may_write = true;  // it wrote: its commit position matters to read-your-writes
    runtime_.count_query(target->backend, misroute);
    (void)co_await send_request(target, std::move(request), facts, std::nullopt, true);
    retrying_ = false;
    drained_.cancel();
}

awaitable<void> ClientSession::server_lost(ServerLink& link, error_code ec)
{
    // What the client loses with this connection decides whether the
    // session survives: replies it waits for, an open transaction, or state
    // that lives only there (pins). An idle connection is replaced silently
    // on next use, with the session's settings and statements replayed.
    const bool owed = link.owes_client();
    const bool in_tx_here = active_.get() == &link && tx_status_ != wire::TxStatus::idle;
    const bool state_here = link.role == routing::Role::primary && state_.pinned_to_primary;
    // An autocommit read whose server died before any of its reply reached
    // the client is re-run on the primary: the client never notices.
    const bool rerun = link.can_rerun() && link.segment_fresh && !link.swallowing && !in_tx_here && !state_here;
    link.dead = true;
    // The data path saw the primary go: probe it now rather than at the next interval.
    if (link.role == routing::Role::primary)
        runtime_.request_health_check();
    for (const auto& seg : link.segments)
        if (seg.kind == Segment::client)
            runtime_.add_in_flight(link, -1);
        else if (seg.kind == Segment::capture_lsn)
            --lsn_captures_;
    link.segments.clear();
    link.started.clear();
    link.statements.clear();
    link.conn->close();
    // Kept alive by the caller's shared_ptr until the end of this call.
    std::shared_ptr<ServerLink> keep;
    for (const auto& l : links_)
        if (l.get() == &link)
            keep = l;
    std::erase_if(links_, [&](const auto& l) { return l.get() == &link; });
    drained_.cancel();
    if (active_.get() == &link && (rerun || (!owed && !in_tx_here && !state_here)))
        active_.reset();
    if (rerun) {
        log::info("session ", id_, ": connection to ", link.backend, " lost (", ec.message(),
                  ") before its read answered; re-running it");
        runtime_.request_health_check();
        link.retry_error.clear();
        co_await retry_on_primary(link);
        co_return;
    }
    if (!owed && !in_tx_here && !state_here) {
        log::info("session ", id_, ": idle connection to ", link.backend, " closed (", ec.message(), ")");
        co_return;
    }
    if (link.server_sent_fatal) {
        end_ = end_.value_or(SessionEnd::backend_lost);
        close();
        co_return;
    }
    log::warning("session ", id_, ": connection to ", link.backend, " lost: ", ec.message());
    const std::string message = link.fenced ? "server connection to \"" + link.backend +
                                                  "\" was closed: the server was fenced (replaced by a new primary)"
                                            : "server connection to \"" + link.backend + "\" was lost";
    co_await send_fatal(sqlstate::connection_failure, message, SessionEnd::backend_lost);
}

}  // namespace pgswitch::proxy
