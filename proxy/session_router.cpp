// ClientSession's routing step (SPEC §3): each gathered request is classified,
// placed by routing::choose_target() and sent to that backend's connection,
// after pgswitch caught the connection up with the session's state.
#include <algorithm>
#include <chrono>

#include "client_session.h"
#include "log.h"
#include "pg_wire/backend.h"
#include "pg_wire/frontend.h"
#include "pg_wire/sqlstate.h"
#include "routing/server_prepared.h"
#include "runtime.h"

namespace pgswitch::proxy {

namespace be = wire::be;
namespace fe = wire::fe;
namespace sqlstate = wire::sqlstate;
using routing::SessionEffect;
using routing::Tx;

namespace {

std::string_view body_of(std::string_view raw) noexcept
{
    return raw.substr(5);  // type byte and length word
}

bool is_true_setting(std::string_view v) noexcept
{
    std::string lower;
    for (char c : v)
        if (c != '\'' && c != ' ')
            lower.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    return lower == "on" || lower == "true" || lower == "yes" || lower == "1" || lower == "t";
}

std::vector<std::int32_t> param_oids(std::string_view raw)
{
    std::vector<std::int32_t> out;
    for (std::size_t i = 0; i + 4 <= raw.size(); i += 4) {
        std::uint32_t v = 0;
        for (std::size_t k = 0; k < 4; ++k)
            v = (v << 8) | static_cast<unsigned char>(raw[i + k]);
        out.push_back(static_cast<std::int32_t>(v));
    }
    return out;
}

std::string quote_ident(std::string_view name)
{
    std::string out = "\"";
    for (char c : name) {
        if (c == '"')
            out.push_back('"');
        out.push_back(c);
    }
    out.push_back('"');
    return out;
}

}  // namespace

bool ClientSession::any_pending() const noexcept
{
    for (const auto& l : links_)
        if (l->pending_client() > 0 || l->unsynced)
            return true;
    return false;
}

std::shared_ptr<ServerLink> ClientSession::primary_link() const
{
    for (const auto& l : links_)
        if (!l->dead && l->role == routing::Role::primary)
            return l;
    return nullptr;
}

awaitable<void> ClientSession::wait_until_drained()
{
    while (!closed_ && any_pending()) {
        auto [ec] = co_await drained_.async_wait(use_nothrow);
        (void)ec;
    }
}

void ClientSession::analyze_request()
{
    info_ = RequestInfo{};
    const auto catalog = runtime_.catalog(database_);
    auto& cache = runtime_.statement_cache();
    bool parsed_unnamed = false;

    auto merge = [&](const routing::Classification& cls) {
        info_.write = info_.write || cls.write;
        if (cls.hint == routing::Hint::primary)
            info_.hint_primary = true;
        if (cls.hint == routing::Hint::replica)
            info_.hint_replica = true;
        info_.pins = info_.pins || cls.pins_primary;
        info_.uses_currval = info_.uses_currval || cls.uses_currval;
        for (const auto& st : cls.statements) {
            bool bookkeeping = false;
            switch (st.tx) {
            case Tx::begin:
                if (default_read_only_)
                    info_.tx_begin_read_only = true;
                else
                    info_.tx_begin = true;
                break;
            case Tx::begin_read_only: info_.tx_begin_read_only = true; break;
            case Tx::commit:
            case Tx::rollback:
            case Tx::prepare_transaction:
                info_.tx_end = true;
                bookkeeping = !st.tx_chain;
                break;
            default: break;
            }
            if (st.session != SessionEffect::none || st.prepare_name || st.deallocate_name || st.deallocate_all)
                bookkeeping = true;
            if (st.execute_name) {
                const auto* sp = state_.sql_prepared(*st.execute_name);
                info_.write = info_.write || !sp || sp->write;
            }
            if (st.kind == routing::StatementKind::copy_from)
                info_.copy_from = true;
            if (st.kind == routing::StatementKind::show && st.set_name == "pgswitch.lsn")
                info_.show_lsn = true;
            if (st.session == SessionEffect::set && st.set_name == "pgswitch.min_lsn")
                info_.set_min_lsn = st.set_value;
            if (!bookkeeping)
                info_.bookkeeping_only = false;
        }
    };

    for (const auto& fr : request_frames_) {
        const auto body = body_of(std::string_view(request_).substr(fr.offset, fr.size));
        switch (static_cast<fe::Tag>(fr.tag)) {
        case fe::Tag::Query:
            if (auto q = fe::parse_query(body)) {
                auto cls = routing::classify_cached(cache, q->sql, catalog.get());
                merge(*cls);
                info_.classes.push_back(std::move(cls));
            } else {
                info_.write = true;
            }
            info_.synced = true;
            break;
        case fe::Tag::Parse:
            info_.extended = true;
            if (auto p = fe::parse_parse(body)) {
                auto cls = routing::classify_cached(cache, p->query, catalog.get());
                merge(*cls);
                info_.classes.push_back(std::move(cls));
                if (p->statement.empty())
                    parsed_unnamed = true;
            } else {
                info_.write = true;
            }
            break;
        case fe::Tag::Bind:
            info_.extended = true;
            info_.bookkeeping_only = false;
            if (auto b = fe::parse_bind(body)) {
                if (b->statement.empty()) {
                    if (!parsed_unnamed)
                        info_.bind_unnamed_without_parse = true;
                } else {
                    const auto* ps = state_.statement(b->statement);
                    // Unknown to us: the primary answers "does not exist" as the server would.
                    info_.write = info_.write || !ps || ps->write;
                    // Executing a prepared BEGIN/COMMIT (pgbench -M prepared) opens or
                    // ends a transaction just as the Query would: route it so.
                    if (ps)
                        merge(*routing::classify_cached(cache, ps->query, catalog.get()));
                }
            }
            break;
        case fe::Tag::FunctionCall:
            info_.write = true;  // fast-path calls can be anything
            info_.bookkeeping_only = false;
            info_.synced = true;
            break;
        case fe::Tag::Sync:
            info_.synced = true;
            break;
        default:
            info_.extended = true;
            break;
        }
    }
    if (info_.classes.empty() && !info_.write)
        info_.bookkeeping_only = info_.bookkeeping_only && !info_.extended;
}

awaitable<std::shared_ptr<ServerLink>> ClientSession::link_to(const routing::BackendView& backend)
{
    for (const auto& l : links_)
        if (!l->dead && l->backend == backend.name)
            co_return l;
    if (pooling_)
        co_return co_await borrow_link(backend);
    auto link = std::make_shared<ServerLink>();
    link->backend = backend.name;
    link->role = backend.role;
    link->conn = std::make_unique<BackendConnection>(runtime_.io().get_executor());
    const auto timeout = std::chrono::milliseconds(runtime_.settings()->config.proxy.connect_timeout_ms);
    if (auto err = co_await link->conn->connect(backend.host, backend.port, server_startup(), timeout)) {
        log::warning("session ", id_, ": could not open a connection to ", backend.name, ": ", err->message);
        runtime_.request_health_check();
        co_return nullptr;
    }
    if (closed_) {
        link->conn->close();
        co_return nullptr;
    }
    add_link(link);
    co_return link;
}

awaitable<std::shared_ptr<ServerLink>> ClientSession::route_request()
{
    // Sticky cases: an open transaction or an unfinished extended request
    // stays on its server; pipelined requests stay while replies are owed,
    // unless they need another server, which waits for them to drain.
    if (active_ && !active_->dead) {
        if (tx_status_ != wire::TxStatus::idle || active_->unsynced)
            co_return active_;
        if (active_->pending_client() > 0) {
            const bool fits = !info_.write || active_->role == routing::Role::primary;
            if (fits && !info_.tx_begin)
                co_return active_;
            co_await wait_until_drained();
            if (closed_)
                co_return nullptr;
            if (active_ && !active_->dead && tx_status_ != wire::TxStatus::idle)
                co_return active_;
        }
    }
    if (info_.bind_unnamed_without_parse) {
        if (auto l = unnamed_link_.lock(); l && !l->dead)
            co_return l;
    }
    // SET, PREPARE, COMMIT outside a transaction...: where the session is; the
    // state is replayed on other servers when they are next used.
    if (info_.bookkeeping_only && !info_.write && !info_.tx_begin && !info_.tx_begin_read_only) {
        if (active_ && !active_->dead)
            co_return active_;
        if (auto p = primary_link())
            co_return p;
    }

    const auto settings = runtime_.settings();
    const auto policy = runtime_.policy();
    routing::RouteRequest rr;
    rr.write = info_.write || info_.tx_begin || info_.uses_currval || info_.pins;
    rr.prefer_primary = info_.hint_primary;
    rr.prefer_replica = info_.hint_replica;
    routing::SessionConstraints sc;
    sc.pinned_to_primary = state_.pinned_to_primary;
    sc.wrote = state_.wrote;
    sc.min_lsn = state_.min_lsn;
    sc.lsn_pending = lsn_pending_;

    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::milliseconds(settings->config.failover.wait_for_primary_ms);
    std::optional<asio::steady_timer> poll;  // only while waiting for a primary
    for (;;) {
        const auto view = runtime_.cluster();
        // In-flight counts are read (under a lock shared by the workers) only
        // when the policy uses them.
        std::vector<int> in_flight;
        if (policy.load_balancing == routing::LoadBalancing::least_connections)
            in_flight = runtime_.in_flight(*view);
        const auto d = routing::choose_target(rr, sc, *view, policy, runtime_.balancer(), peer_host_, in_flight);
        if (d.backend) {
            const auto& target = view->backends[*d.backend];
            auto link = co_await link_to(target);
            if (!link && pool_timed_out_) {
                // Transaction pooling: every connection stayed busy (issue 5).
                const std::string message = "no server connection to \"" + target.name +
                                            "\" became free within proxy.query_wait_timeout_ms";
                co_await reject_request(sqlstate::too_many_connections, message);
                co_return nullptr;
            }
            if (!link && !rr.write) {
                // A replica we could not reach: another one serves the read,
                // else the primary.
                for (auto i : routing::eligible_replicas(*view, policy, sc)) {
                    if (i == *d.backend)
                        continue;
                    if ((link = co_await link_to(view->backends[i])))
                        break;
                }
                if (!link)
                    if (auto p = view->primary_index())
                        link = co_await link_to(view->backends[*p]);
            }
            if (!link && !rr.write) {
                const std::string message = "could not connect to server \"" + target.name + "\"";
                co_await reject_request(sqlstate::connection_failure, message);
                co_return nullptr;
            }
            if (link) {
            runtime_.count_query(link->backend, rr.write);
            runtime_.count_route_decision(d.reason);
            log::debug("session ", id_, ": ", rr.write ? "write" : "read", " to ", link->backend, " (",
                       routing::to_string(d.reason), ")");
            co_return link;
            }
            // The primary refuses connections: it may be dying. Probe it now and
            // wait for the health checker's verdict (or a new primary).
            runtime_.request_health_check();
        }
        // No primary (failover in progress): wait for one, up to the limit.
        if (std::chrono::steady_clock::now() >= deadline || closed_)
            break;
        if (!poll)
            poll.emplace(runtime_.io());
        poll->expires_after(std::chrono::milliseconds(20));
        auto [ec] = co_await poll->async_wait(use_nothrow);
        (void)ec;
    }
    co_await reject_request(sqlstate::cannot_connect_now,
                            "no primary server is available: writes waited failover.wait_for_primary_ms");
    co_return nullptr;
}

awaitable<void> ClientSession::reject_request(std::string_view state, std::string_view message)
{
    std::string out;
    be::build_error_response(out, "ERROR", state, message);
    if (info_.synced)
        be::build_ready_for_query(out, tx_status_);
    else
        discard_until_sync_ = info_.extended;  // the server would skip to Sync too
    (void)co_await stream_.send(out);
}

awaitable<bool> ClientSession::answer_pgswitch_setting()
{
    std::string out;
    if (info_.show_lsn) {
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
        std::string text = *info_.set_min_lsn;
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

std::string ClientSession::settings_catch_up_script(routing::LinkState& link_state) const
{
    const auto c = state_.catch_up(link_state);
    std::string script;
    if (c.discard_all)
        script = "DISCARD ALL";
    if (c.settings)
        script += (script.empty() ? "" : "; ") + *c.settings;
    return script;
}

awaitable<bool> ClientSession::catch_up(ServerLink& link)
{
    hidden_.clear();
    // In the middle of an unfinished extended request nothing may be slipped
    // in: a Sync would end the implicit transaction and its portals.
    if (link.unsynced)
        co_return true;
    std::string script = settings_catch_up_script(link.state);

    // SQL PREPAREd statements this request EXECUTEs, and stale names it re-PREPAREs.
    for (const auto& cls : info_.classes) {
        for (const auto& st : cls->statements) {
            if (st.execute_name) {
                const auto* sp = state_.sql_prepared(*st.execute_name);
                auto it = link.state.sql_prepared.find(*st.execute_name);
                if (!sp && it != link.state.sql_prepared.end() && it->second == routing::foreign_version) {
                    // Another client's (transaction pooling): gone before this EXECUTE.
                    script += (script.empty() ? "" : "; ") + ("DEALLOCATE " + quote_ident(*st.execute_name));
                    link.state.sql_prepared.erase(it);
                }
                if (sp && (it == link.state.sql_prepared.end() || it->second != sp->version)) {
                    if (it != link.state.sql_prepared.end())
                        script += (script.empty() ? "" : "; ") + ("DEALLOCATE " + quote_ident(*st.execute_name));
                    script += (script.empty() ? "" : "; ") + sp->prepare_text;
                    link.state.sql_prepared[*st.execute_name] = sp->version;
                }
            }
            if (st.prepare_name) {
                auto it = link.state.sql_prepared.find(*st.prepare_name);
                if (it != link.state.sql_prepared.end()) {
                    script += (script.empty() ? "" : "; ") + ("DEALLOCATE " + quote_ident(*st.prepare_name));
                    link.state.sql_prepared.erase(it);
                }
            }
        }
    }
    if (!script.empty()) {
        fe::build_query(hidden_, script);
        link.segments.push_back(ServerLink::Segment::hidden);
    }

    // Protocol-level named statements: prepared lazily where they are used.
    bool parsed = false;
    for (const auto& fr : request_frames_) {
        const auto body = body_of(std::string_view(request_).substr(fr.offset, fr.size));
        std::string_view name;
        bool defines = false;
        if (fr.tag == static_cast<char>(fe::Tag::Bind)) {
            if (auto b = fe::parse_bind(body))
                name = b->statement;
        } else if (fr.tag == static_cast<char>(fe::Tag::Describe)) {
            if (auto d = fe::parse_describe(body); d && d->kind == 'S')
                name = d->name;
        } else if (fr.tag == static_cast<char>(fe::Tag::Parse)) {
            if (auto p = fe::parse_parse(body)) {
                name = p->statement;
                defines = true;
            }
        }
        if (name.empty())
            continue;
        auto it = link.state.statements.find(name);
        if (defines) {
            // The client defines this name now; a stale copy here would clash.
            if (it != link.state.statements.end()) {
                fe::build_close(hidden_, 'S', name);
                link.state.statements.erase(it);
                parsed = true;
            }
            continue;
        }
        const auto* ps = state_.statement(name);
        if (!ps && it != link.state.statements.end()) {
            // This client has no statement of that name, but the connection
            // has one: another client's (transaction pooling), or the
            // session's own that it closed or DEALLOCATEd on another server.
            // The server must say it is gone (26000).
            fe::build_close(hidden_, 'S', name);
            link.state.statements.erase(it);
            parsed = true;
            continue;
        }
        if (!ps || (it != link.state.statements.end() && it->second == ps->version))
            continue;
        if (it != link.state.statements.end())
            fe::build_close(hidden_, 'S', name);
        fe::build_parse(hidden_, name, ps->query, param_oids(ps->param_types));
        link.state.statements[std::string(name)] = ps->version;
        parsed = true;
    }
    if (parsed) {
        fe::build_sync(hidden_);
        link.segments.push_back(ServerLink::Segment::hidden);
    }
    co_return true;
}

void ClientSession::apply_statement_effects(ServerLink& link, const routing::Classification& cls,
                                            std::string_view text)
{
    for (const auto& st : cls.statements) {
        const auto own = text.substr(std::min(st.offset, text.size()), st.length);
        switch (st.session) {
        case SessionEffect::set:
            if (st.set_name == "pgswitch.min_lsn")
                break;
            state_.record_set(st.set_name, std::string(own));
            link.state.settings_version = state_.settings_version();
            if (st.set_name == "default_transaction_read_only")
                default_read_only_ = is_true_setting(st.set_value);
            break;
        case SessionEffect::reset:
            state_.record_reset(st.set_name);
            link.state.settings_version = state_.settings_version();
            if (st.set_name == "default_transaction_read_only")
                default_read_only_ = false;
            break;
        case SessionEffect::reset_all:
            state_.record_reset_all();
            link.state.settings_version = state_.settings_version();
            default_read_only_ = false;
            break;
        case SessionEffect::discard_all:
            state_.record_discard_all();
            link.state.discard_epoch = state_.discard_epoch();
            link.state.settings_version = state_.settings_version();
            link.state.statements.clear();
            link.state.sql_prepared.clear();
            default_read_only_ = false;
            break;
        default:
            break;
        }
        if (st.prepare_name) {
            state_.record_sql_prepare(*st.prepare_name, std::string(own), st.prepared_statement_is_write);
            link.state.sql_prepared[*st.prepare_name] = state_.sql_prepared(*st.prepare_name)->version;
        }
        if (st.deallocate_name) {
            state_.record_deallocate(*st.deallocate_name);
            link.state.sql_prepared.erase(*st.deallocate_name);
        }
        if (st.deallocate_all) {
            state_.record_deallocate_all();
            link.state.sql_prepared.clear();
        }
        if (st.pins_primary && link.role == routing::Role::primary)
            state_.pinned_to_primary = true;
        if (st.kind == routing::StatementKind::other) {
            // CREATE/ALTER/DROP FUNCTION may change which calls write.
            std::string lower(own);
            for (auto& ch : lower)
                ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
            if (lower.find("function") != std::string::npos || lower.find("procedure") != std::string::npos)
                runtime_.invalidate_catalog(database_);
        }
    }
}

void ClientSession::record_request(ServerLink& link)
{
    std::size_t cls_index = 0;
    char last = 0;
    for (const auto& fr : request_frames_) {
        const auto body = body_of(std::string_view(request_).substr(fr.offset, fr.size));
        last = fr.tag;
        switch (static_cast<fe::Tag>(fr.tag)) {
        case fe::Tag::Query: {
            push_client_segment(link);
            if (cls_index < info_.classes.size()) {
                if (auto q = fe::parse_query(body))
                    apply_statement_effects(link, *info_.classes[cls_index], q->sql);
                ++cls_index;
            }
            break;
        }
        case fe::Tag::Sync:
        case fe::Tag::FunctionCall:
            push_client_segment(link);
            break;
        case fe::Tag::Parse: {
            auto p = fe::parse_parse(body);
            if (p && cls_index < info_.classes.size()) {
                const auto& cls = *info_.classes[cls_index];
                apply_statement_effects(link, cls, p->query);
                if (p->statement.empty()) {
                    parsed_unnamed_ = true;
                } else {
                    routing::PreparedStatement ps;
                    ps.query.assign(p->query);
                    ps.param_types.assign(p->param_types);
                    ps.param_count = p->param_type_count;
                    ps.write = cls.write;
                    state_.record_parse(std::string(p->statement), std::move(ps));
                    link.state.statements[std::string(p->statement)] = state_.statement(p->statement)->version;
                }
            }
            ++cls_index;
            break;
        }
        case fe::Tag::Close:
            if (auto c = fe::parse_close(body); c && c->kind == 'S' && !c->name.empty()) {
                state_.record_close_statement(c->name);
                if (auto it = link.state.statements.find(c->name); it != link.state.statements.end())
                    link.state.statements.erase(it);
            }
            break;
        default:
            break;
        }
    }
    if (info_.extended)
        link.unsynced = last != static_cast<char>(fe::Tag::Sync);
    bool executes = false;  // a Parse/Describe alone changes no data
    for (const auto& fr : request_frames_)
        if (fr.tag == static_cast<char>(fe::Tag::Execute) || fr.tag == static_cast<char>(fe::Tag::Query) ||
            fr.tag == static_cast<char>(fe::Tag::FunctionCall))
            executes = true;
    if (info_.write && executes) {
        state_.wrote = true;
        link.wrote = true;
    }
    if (info_.tx_begin)
        link.wrote = true;
}

awaitable<bool> ClientSession::dispatch_request()
{
    // After pgswitch answered part of an extended request with an error,
    // the rest up to Sync is dropped, then ReadyForQuery closes it.
    if (discard_until_sync_) {
        const bool sync = !request_frames_.empty() && request_frames_.back().tag == static_cast<char>(fe::Tag::Sync);
        request_.clear();
        request_frames_.clear();
        if (!sync)
            co_return true;
        discard_until_sync_ = false;
        std::string out;
        be::build_ready_for_query(out, tx_status_);
        co_return !co_await stream_.send(out);
    }

    // A write whose WAL position was not captured yet (COPY FROM, or a
    // transaction that ended without a COMMIT we saw): capture it now,
    // before routing, while the primary connection is idle.
    if (auto p = primary_link(); p && p->wrote && p->segments.empty() && !p->unsynced &&
        tx_status_ == wire::TxStatus::idle && runtime_.policy().read_your_writes == routing::ReadYourWrites::lsn) {
        std::string q;
        fe::build_query(q, "SELECT pg_current_wal_lsn()");
        p->segments.push_back(ServerLink::Segment::capture_lsn);
        ++lsn_captures_;
        lsn_pending_ = true;
        p->wrote = false;
        (void)co_await p->conn->write(q);
    }

    // A misrouted read is moving to the primary: later requests queue behind it.
    while (retrying_ && !closed_) {
        auto [ec] = co_await drained_.async_wait(use_nothrow);
        (void)ec;
    }

    analyze_request();
    // SHOW pgswitch.lsn must include the session's last write: wait for its capture.
    while (info_.show_lsn && lsn_captures_ > 0 && !closed_) {
        auto [ec] = co_await drained_.async_wait(use_nothrow);
        (void)ec;
    }
    if ((info_.show_lsn || info_.set_min_lsn) && request_frames_.size() == 1 && info_.classes.size() == 1 &&
        info_.classes.front()->statements.size() == 1 && !any_pending()) {
        request_.clear();
        request_frames_.clear();
        co_return co_await answer_pgswitch_setting();
    }

    // Parse of a name the session still has: the server would say 42P05,
    // but the name may live on another server than the one chosen now.
    for (const auto& fr : request_frames_) {
        if (fr.tag != static_cast<char>(fe::Tag::Parse))
            continue;
        auto p = fe::parse_parse(body_of(std::string_view(request_).substr(fr.offset, fr.size)));
        if (p && !p->statement.empty() && state_.statement(p->statement)) {
            const std::string message = "prepared statement \"" + std::string(p->statement) + "\" already exists";
            co_await reject_request("42P05", message);
            request_.clear();
            request_frames_.clear();
            co_return !closed_;
        }
    }

    auto link = co_await route_request();
    if (!link) {
        request_.clear();
        request_frames_.clear();
        co_return !closed_;
    }
    (void)co_await catch_up(*link);
    // Segments are queued before the bytes leave, so the pump can never see
    // a reply it does not expect.
    parsed_unnamed_ = false;
    record_request(*link);
    if (parsed_unnamed_)
        unnamed_link_ = link;

    // Read your writes (lsn): right behind a request that may commit a write,
    // ask the primary for its WAL position. It is pipelined: the client gets
    // its own ReadyForQuery first and waits for nothing.
    // Not after COPY FROM: the server is then in copy-in mode and a Query
    // would break the protocol; that write is captured before the next request.
    capture_.clear();
    const auto policy = runtime_.policy();
    if (policy.read_your_writes == routing::ReadYourWrites::lsn && link->role == routing::Role::primary &&
        info_.synced && link->wrote && !info_.copy_from &&
        ((tx_status_ == wire::TxStatus::idle && !info_.tx_begin && !info_.tx_begin_read_only) || info_.tx_end)) {
        fe::build_query(capture_, "SELECT pg_current_wal_lsn()");
        link->segments.push_back(ServerLink::Segment::capture_lsn);
        ++lsn_captures_;
        lsn_pending_ = true;
        link->wrote = false;
    } else if (link->wrote && link->role == routing::Role::primary &&
               policy.read_your_writes == routing::ReadYourWrites::lsn) {
        lsn_pending_ = true;  // until a capture after this write lands
    }
    active_ = link;
    // Keep a replica read's bytes until its reply starts (25006 safety net).
    constexpr std::size_t retry_keep_limit = 64 * 1024;
    if (link->role == routing::Role::replica && tx_status_ == wire::TxStatus::idle && !info_.extended &&
        request_frames_.size() == 1 && request_frames_.front().tag == static_cast<char>(fe::Tag::Query) &&
        !info_.tx_begin_read_only && request_.size() <= retry_keep_limit && link->pending_client() == 1)
        link->retry_request = request_;
    else
        link->retry_request.clear();

    std::array<asio::const_buffer, 3> buffers{asio::buffer(hidden_), asio::buffer(request_), asio::buffer(capture_)};
    auto ec = co_await write_all_fast(link->conn->socket(), buffers);
    request_.clear();
    request_frames_.clear();
    if (request_.capacity() > (1u << 20))
        std::string().swap(request_);
    // A failed write shows up in the link's pump, which tells the client.
    (void)ec;
    co_return !closed_;
}

}  // namespace pgswitch::proxy
