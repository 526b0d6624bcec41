// ClientSession's view of the database's functions and UNLOGGED tables
// (which SELECTs write, which a standby cannot read): loaded once per
// database at the first login, looked up again when a request calls a
// function the catalog does not know or DDL made it stale.
#include "client_session.h"

#include <chrono>

#include "log.h"
#include "pg_wire/backend.h"
#include "pg_wire/sqlstate.h"
#include "session_context.h"

namespace pgswitch::proxy {

namespace be = wire::be;
namespace sqlstate = wire::sqlstate;

namespace {

// Every function of the database ('f'): the VOLATILE ones outside
// pg_catalog write; the others are known, so that a call of a name missing
// from it (a function created behind pgswitch's back) is looked up before
// routing. And the UNLOGGED relations ('u'), which a standby cannot read.
constexpr std::string_view catalog_query =
    "SELECT 'f', n.nspname, p.proname, p.provolatile = 'v' FROM pg_catalog.pg_proc p "
    "JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace "
    "UNION ALL SELECT 'u', n.nspname, c.relname, false FROM pg_catalog.pg_class c "
    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relpersistence = 'u'";

std::optional<std::vector<Runtime::FunctionRow>> catalog_rows(const std::variant<QueryRows, ConnectError>& r)
{
    const auto* rows = std::get_if<QueryRows>(&r);
    if (!rows)
        return std::nullopt;
    std::vector<Runtime::FunctionRow> out;
    out.reserve(rows->rows.size());
    for (const auto& row : rows->rows)
        if (row.size() == 4 && row[0] && row[1] && row[2] && row[3])
            out.push_back({*row[1], *row[2], *row[3] == "t", *row[0] == "u"});
    return out;
}

}  // namespace

awaitable<void> ClientSession::load_catalog(BackendConnection& conn)
{
    const auto r = co_await conn.simple_query(catalog_query);
    if (auto rows = catalog_rows(r)) {
        (void)ctx_.store_catalog(client_.database, *rows);
        co_return;
    }
    log::warning("session ", id_, ": could not read the functions of ", client_.database, ": ",
                 std::get<ConnectError>(r).message);
    ctx_.end_catalog_refresh(client_.database);
}

awaitable<bool> ClientSession::learn_functions(const std::vector<std::string>& names)
{
    const bool urgent = names.empty();  // stale or missing: DDL was seen
    if (!ctx_.claim_catalog_refresh(client_.database, urgent))
        co_return false;
    // The primary has every function first; a replica may not have replayed
    // a CREATE FUNCTION yet.
    const auto view = ctx_.cluster();
    std::optional<std::size_t> idx = view->primary_index();
    if (!idx)
        for (std::size_t i = 0; i < view->backends.size() && !idx; ++i)
            if (view->backends[i].state == routing::BackendState::up &&
                view->backends[i].role == routing::Role::replica)
                idx = i;
    if (!idx) {
        ctx_.end_catalog_refresh(client_.database);
        co_return false;
    }
    const auto& b = view->backends[*idx];
    BackendConnection conn(ctx_.io().get_executor());
    const auto timeout = std::chrono::milliseconds(ctx_.settings()->config.proxy.connect_timeout_ms);
    if (auto err = co_await conn.connect(b.host, b.port, server_startup(), timeout)) {
        log::warning("session ", id_, ": could not look functions up on ", b.name, ": ", err->message);
        ctx_.end_catalog_refresh(client_.database);
        co_return false;
    }
    const auto r = co_await conn.simple_query(catalog_query);
    conn.close();
    auto rows = catalog_rows(r);
    if (!rows) {
        log::warning("session ", id_, ": could not read the functions of ", client_.database, ": ",
                     std::get<ConnectError>(r).message);
        ctx_.end_catalog_refresh(client_.database);
        co_return false;
    }
    (void)ctx_.store_catalog(client_.database, *rows, names);
    if (!names.empty())
        log::info("session ", id_, ": looked up functions unknown to pgswitch in ", client_.database, ": ",
                  names.front(), names.size() > 1 ? " and others" : "");
    co_return true;
}

}  // namespace pgswitch::proxy
