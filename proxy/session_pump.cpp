// ClientSession's server side: one pump per server connection relays its
// replies to the client, cuts out the replies to pgswitch's hidden requests
// (acting on them: WAL positions, replay waits, statement checks), holds
// back the start of a reply that may still be re-run elsewhere, and decides
// what the loss of the connection means for the session. What each message
// is for is ServerLink::replies' (wire::ResponseTracker) to say; the pump
// does what it says.
#include <algorithm>

#include "client_session.h"
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
using Segment = ServerLink::Segment;
using Action = wire::ResponseTracker::Action;
using Kind = wire::ResponseTracker::Kind;

namespace {

/// What pg_terminate_backend() says (and a fast shutdown: the server tells
/// them apart only by still accepting logins).
bool is_terminate_by_administrator(const be::ErrorFields& e)
{
    return e.sqlstate() == "57P01" && e.message() == "terminating connection due to administrator command";
}

}  // namespace

/// The replies of one read on their way to the client: a run of frames
/// adjacent in the decoder's buffer, sent with one write. While held, the run
/// is the start of a reply that may still be re-run elsewhere: it stays back,
/// and is copied to the link's held bytes when the run breaks (a reply cut
/// out in between) or the read ends (the buffer is reused). No I/O: each call
/// returns what the caller must send first, most often nothing.
class ClientSession::ReplyBatch {
public:
    explicit ReplyBatch(std::string& held_bytes) noexcept : held_bytes_(held_bytes) {}

    /// Adds a frame; returns the run it could not join, to send first.
    [[nodiscard]] std::string_view add(std::string_view raw)
    {
        std::string_view before;
        if (begin_ && begin_ + size_ != raw.data()) {
            // A reply was cut out in between: what we have goes first (or,
            // still undecided, is kept).
            if (held_)
                held_bytes_.append(take());
            else
                before = take();
        }
        if (!begin_)
            begin_ = raw.data();
        size_ = static_cast<std::size_t>(raw.data() + raw.size() - begin_);
        return before;
    }
    /// Adds a frame to hold back; returns the run so far (the client's), to send first.
    [[nodiscard]] std::string_view hold(std::string_view raw)
    {
        std::string_view before;
        if (!held_) {
            before = take();
            held_ = true;
        }
        const auto kept = add(raw);  // held: nothing to send
        (void)kept;
        return before;
    }
    /// What was held back is the client's: returns the copy from earlier
    /// reads, to send first (the held run of this read now goes with the run).
    [[nodiscard]] std::string release()
    {
        held_ = false;
        return std::exchange(held_bytes_, {});
    }
    /// The held reply is dropped (its request is re-run elsewhere).
    void drop_held() noexcept
    {
        if (held_)
            take();
        held_ = false;
        held_bytes_.clear();
    }
    /// The run, to send now; nothing while it is held.
    [[nodiscard]] std::string_view take_unheld() noexcept { return held_ ? std::string_view{} : take(); }
    /// The read is used up: a held run is copied; returns the rest, to send.
    [[nodiscard]] std::string_view finish()
    {
        if (held_) {
            held_bytes_.append(take());
            held_ = false;
        }
        return take();
    }

    /// The last ReadyForQuery of the read left the session idle.
    bool became_idle = false;

private:
    std::string_view take() noexcept
    {
        const std::string_view bytes{begin_, size_};
        begin_ = nullptr;
        size_ = 0;
        return bytes;
    }

    std::string& held_bytes_;
    const char* begin_ = nullptr;
    std::size_t size_ = 0;
    bool held_ = false;
};

bool ClientSession::track_reply(ServerLink& link, const wire::Frame& f)
{
    switch (f.backend_tag()) {
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
    default:
        break;
    }
    return false;
}

void ClientSession::note_reply(ServerLink& link, const wire::Frame& f, const Action& a)
{
    // A fast shutdown says so on every connection: tell the health checker,
    // so a restart that comes straight back is no failover.
    if (a.fatal() && a.error->sqlstate() == "57P01" &&
        routing::announces_restart(a.error->sqlstate(), a.error->message()))
        ctx_.report_restart_announced(link.backend);
    if (f.backend_tag() == be::Tag::ReadyForQuery)
        if (const auto failed = link.statements.on_segment_done(link.replies.segments_done(), state_, link.state))
            log::debug("session ", id_, ": ", failed, " Parse(s) on ", link.backend, " failed: names freed");
}

bool ClientSession::holds_session(const ServerLink& link) const noexcept
{
    return link.unsynced || (links_.active.get() == &link && tx_status_ != wire::TxStatus::idle) ||
           (state_.pinned_to_primary && link.role == routing::Role::primary);
}

awaitable<void> ClientSession::pump_server(std::shared_ptr<ServerLink> link)
{
    auto& dec = link->conn->decoder();
    auto& sock = link->conn->socket();
    for (;;) {
        ReplyBatch batch(link->held);
        for (;;) {
            auto next = dec.next();
            if (!next) {
                co_await malformed_reply(*link, batch, next.error());
                co_return;
            }
            if (!*next)
                break;
            const auto f = **next;
            if (track_reply(*link, f))
                continue;  // a hidden Parse/Close slipped into the client's request
            const auto a = link->replies.on_message(f, holds_session(*link));
            note_reply(*link, f, a);
            std::string_view send_first;  // replies that must reach the client before this one
            bool go_on = true;
            switch (a.kind) {
            case Kind::forward:
                send_first = forward_reply(*link, f, a, batch);
                break;
            case Kind::hold:
                send_first = batch.hold(f.raw);
                break;
            case Kind::drop:
                break;
            case Kind::release:
                go_on = co_await release_reply(*link, f, a, batch);
                break;
            case Kind::misrouted:
                // It writes after all (a function the classifier could not
                // know), or reads an UNLOGGED table created behind pgswitch's
                // back: it runs where it can once its reply has ended.
                batch.drop_held();
                break;
            case Kind::hidden:
            case Kind::hidden_done:
                go_on = co_await hidden_reply(*link, f, a, batch);
                break;
            case Kind::rerun:
                if (a.segment)
                    pop_client_segment(*link, false);
                co_await retry_on_primary(*link);
                break;
            case Kind::fatal_idle:
                co_await on_idle_fatal(*link, f, *a.error, batch);
                co_return;
            }
            if (!go_on)
                co_return;
            if (!send_first.empty()) {
                if (co_await stream_.send(send_first))
                    co_return;
            }
        }
        if (!co_await end_batch(*link, batch))
            co_return;
        auto region = dec.prepare();
        auto [ec, n] = co_await sock.async_read_some(asio::buffer(region.data(), region.size()), use_nothrow);
        if (ec) {
            if (!closed_ && !link->dead)
                co_await server_lost(*link, ec);
            co_return;
        }
        dec.commit(n);
    }
}

std::string_view ClientSession::forward_reply(ServerLink& link, const wire::Frame& f, const Action& a,
                                              ReplyBatch& batch)
{
    if (a.ready) {
        tx_status_ = *a.ready;
        if (a.segment)
            pop_client_segment(link, true);
        batch.became_idle = idle();
        drained_.cancel();
    }
    // A FATAL from the server (pg_terminate_backend: 57P01) is the client's
    // explanation; no need for our own 08006 after it.
    if (a.fatal())
        link.server_sent_fatal = true;
    return batch.add(f.raw);
}

awaitable<bool> ClientSession::release_reply(ServerLink& link, const wire::Frame& f, const Action& a, ReplyBatch& batch)
{
    // Rows, a result, an error: the reply is the client's now, and what was
    // held back of its start goes first.
    if (const auto held = batch.release(); !held.empty()) {
        if (co_await stream_.send(held))
            co_return false;
    }
    const auto before = forward_reply(link, f, a, batch);
    if (before.empty())
        co_return true;
    const bool sent = !co_await stream_.send(before);
    co_return sent;
}

awaitable<bool> ClientSession::hidden_reply(ServerLink& link, const wire::Frame& f, const Action& a, ReplyBatch& batch)
{
    // What came before it goes first: acting on it may wake the session.
    if (const auto before = batch.take_unheld(); !before.empty()) {
        if (co_await stream_.send(before))
            co_return false;
    }
    on_hidden_reply(link, f, a);
    co_return true;
}

awaitable<bool> ClientSession::end_batch(ServerLink& link, ReplyBatch& batch)
{
    if (const auto rest = batch.finish(); !rest.empty()) {
        if (co_await stream_.send(rest)) {
            end_ = end_.value_or(SessionEnd::client_closed);
            close();
            co_return false;
        }
    }
    if (batch.became_idle && ctx_.draining()) {
        const std::string_view message =
            "terminating connection due to administrator command (pgswitch is shutting down)";
        co_await send_fatal(sqlstate::admin_shutdown, message, SessionEnd::shutdown);
        co_return false;
    }
    if (co_await release_if_idle(link))
        co_return false;
    co_return !closed_ && !link.dead;
}

awaitable<void> ClientSession::malformed_reply(ServerLink& link, ReplyBatch& batch, error_code ec)
{
    log::error("session ", id_, ": malformed message from server ", link.backend, ": ", ec.message());
    if (const auto before = batch.take_unheld(); !before.empty())
        (void)co_await stream_.send(before);
    const std::string_view message = "server sent a malformed message";
    co_await send_fatal(sqlstate::connection_failure, message, SessionEnd::backend_lost);
}

void ClientSession::on_hidden_reply(ServerLink& link, const wire::Frame& f, const Action& a)
{
    if (a.kind == Kind::hidden_done) {
        if (a.segment->kind == Segment::capture_lsn)
            on_lsn_captured(*a.segment, a);
        else if (a.segment->kind == Segment::replay_wait)
            on_replay_waited(link, a.segment->lsn, a.value ? routing::parse_lsn(*a.value) : std::nullopt);
        drained_.cancel();
        return;
    }
    if (f.backend_tag() != be::Tag::ErrorResponse)
        return;
    if (a.segment->kind == Segment::replay_wait)
        log::info("session ", id_, ": replay wait on ", link.backend, " failed: ", a.error ? a.error->message() : "");
    else
        log::warning("session ", id_, ": catch-up on ", link.backend,
                     " failed: ", a.error ? a.error->message() : "(unreadable error)");
}

void ClientSession::on_lsn_captured(const wire::ResponseTracker::Segment& capture, const Action& a)
{
    // Only a position read outside a transaction is past the commit.
    const auto value = a.value ? routing::parse_lsn(*a.value) : std::nullopt;
    if (value && a.ready == wire::TxStatus::idle) {
        state_.require_lsn(*value);
        if (capture.schema)
            ctx_.publish_schema_lsn(*value);
    }
    --lsn_.captures;
}

void ClientSession::on_replay_waited(ServerLink& link, std::uint64_t lsn, std::optional<std::uint64_t> reached_lsn)
{
    const bool reached = reached_lsn && *reached_lsn >= lsn;
    ctx_.count_replay_wait(reached);
    if (reached) {
        // Good for every later read up to that position, this session's and
        // the worker's other sessions'.
        ctx_.replay_knowledge().reached(link.backend, *reached_lsn);
        return;
    }
    ctx_.replay_knowledge().missed(link.backend, lsn, std::chrono::steady_clock::now());
    if (!link.replies.rerun_next_client()) {
        // Requests were pipelined behind the read (route_request() keeps
        // them back, so this should not happen): a re-run would reorder
        // replies; the read is answered by the replica.
        log::warning("session ", id_, ": replay wait on ", link.backend,
                     " fell short with requests queued behind it; not re-running");
    }
}

awaitable<void> ClientSession::on_idle_fatal(ServerLink& link, const wire::Frame& f, const be::ErrorFields& error,
                                             ReplyBatch& batch)
{
    // A FATAL on a connection that owes the client nothing and holds nothing
    // of its (no transaction, no pinned state) is not the client's business
    // ("unexpected postmaster exit" on an idle primary connection while the
    // session reads from replicas): dropped, and the link closes silently in
    // server_lost().
    if (const auto before = batch.take_unheld(); !before.empty()) {
        if (co_await stream_.send(before))
            co_return;
    }
    // New requests wait for the verdict: when it is the client's
    // termination, its next statement must get the FATAL, as it would from
    // the server.
    flow_.checking_termination = true;
    const bool reaches_client = co_await fatal_reaches_client(link, error);
    flow_.checking_termination = false;
    drained_.cancel();
    if (reaches_client) {
        log::info("session ", id_, ": its connection to ", link.backend,
                  " was terminated by an administrator: ending the session");
        (void)co_await stream_.send(f.raw);
        end_ = end_.value_or(SessionEnd::backend_lost);
        close();
        co_return;
    }
    log::info("session ", id_, ": idle connection to ", link.backend, " ending: ", error.message());
    link.dead = true;
    co_await server_lost(link, asio::error::connection_reset);
}

awaitable<bool> ClientSession::fatal_reaches_client(ServerLink& link, const be::ErrorFields& error)
{
    // Only pg_terminate_backend() of the pid the client was given ends the
    // client's session, as it would without pgswitch (SPEC §4). A server
    // shutting down or dying says the same, or worse, to every connection:
    // a session that is not using this one must not notice.
    if (!link.identity || !is_terminate_by_administrator(error))
        co_return false;
    const auto view = ctx_.cluster();
    const auto* backend = view->find(link.backend);
    if (!backend)
        co_return false;
    // A server that still lets a new connection in was not stopping: the
    // connection was terminated on purpose. Asked without a login, so the
    // FATAL reaches the client one round trip after the server sent it, as
    // close to "at once" as the question allows.
    BackendConnection probe(ctx_.io().get_executor());
    const auto timeout = std::min(std::chrono::milliseconds(ctx_.settings()->config.proxy.connect_timeout_ms),
                                  std::chrono::milliseconds(2000));
    const bool admitted = co_await probe.admits(backend->host, backend->port, server_startup(), timeout);
    co_return admitted;
}

awaitable<void> ClientSession::retry_on_primary(ServerLink& link)
{
    auto kept = link.replies.take_kept();
    if (!kept) {
        drained_.cancel();
        co_return;
    }
    flow_.retrying = true;
    wire::Request request = std::move(*kept);
    link.held.clear();
    // The standby's own answer, for when nothing else can run it.
    const std::string refusal = link.replies.take_refusal();
    const bool misroute = !refusal.empty();
    const bool server_died = link.dead;
    std::shared_ptr<ServerLink> target;
    const auto view = ctx_.cluster();
    if (auto idx = view->primary_index())
        target = co_await link_to(view->backends[*idx]);
    if (!target && !misroute && !server_died && !link.dead) {
        // A replay wait fell short and there is no primary (a failover):
        // the replica is the freshest server there is.
        target = links_.holder(link);
    }
    if (!target || closed_) {
        flow_.retrying = false;
        drained_.cancel();
        if (!misroute) {
            // The read's server died and no primary can take it over.
            const std::string message = "server connection to \"" + link.backend + "\" was lost";
            co_await send_fatal(sqlstate::connection_failure, message, SessionEnd::backend_lost);
            co_return;
        }
        // Nowhere to re-run it: the client gets the server's own answer.
        std::string out = refusal;
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
        ctx_.count_misroute();
        // The classifier thought it a read: the function it calls is one the
        // catalog has wrong. The next lookup refreshes it.
        ctx_.invalidate_catalog(client_.database);
    }
    auto facts = analyze(request);
    if (misroute)
        facts.may_write = true;  // it wrote: its commit position matters to read-your-writes
    ctx_.count_query(*target, misroute);
    (void)co_await send_request(target, std::move(request), facts, std::nullopt, true);
    flow_.retrying = false;
    drained_.cancel();
}

awaitable<void> ClientSession::server_lost(ServerLink& link, error_code ec)
{
    // What the client loses with this connection decides whether the
    // session survives: replies it waits for, an open transaction, or state
    // that lives only there (pins). An idle connection is replaced silently
    // on next use, with the session's settings and statements replayed.
    const bool owed = link.owes_client();
    const bool in_tx_here = links_.active.get() == &link && tx_status_ != wire::TxStatus::idle;
    const bool state_here = link.role == routing::Role::primary && state_.pinned_to_primary;
    // An autocommit read whose server died before any of its reply reached
    // the client is re-run on the primary: the client never notices.
    const bool rerun = link.replies.can_rerun_unseen() && !in_tx_here && !state_here;
    link.dead = true;
    // The data path saw the primary go: probe it now rather than at the next interval.
    if (link.role == routing::Role::primary)
        ctx_.request_health_check();
    const auto dropped = link.replies.clear();
    if (dropped.client > 0)
        ctx_.statements_dropped(link, dropped.client);
    lsn_.captures -= dropped.capture_lsn;
    link.started.clear();
    link.statements.clear();
    link.conn->close();
    // Kept alive by the caller's shared_ptr until the end of this call.
    const auto keep = links_.remove(link);
    drained_.cancel();
    if (links_.active.get() == &link && (rerun || (!owed && !in_tx_here && !state_here)))
        links_.active.reset();
    if (rerun) {
        log::info("session ", id_, ": connection to ", link.backend, " lost (", ec.message(),
                  ") before its read answered; re-running it");
        ctx_.request_health_check();
        link.replies.forget_refusal();
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
