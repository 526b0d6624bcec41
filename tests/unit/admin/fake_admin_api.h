// A fake admin::AdminApi for the admin unit tests: a canned snapshot with a
// primary and a replica, commands that edit it and record what they got.
#pragma once

#include <optional>
#include <string>

#include "admin/admin_api.h"

namespace pgswitch::test {

using namespace pgswitch::admin;

inline routing::BackendView fake_backend_view(std::string name, routing::Role role, routing::BackendState state,
                                              std::uint16_t port)
{
    routing::BackendView v;
    v.name = std::move(name);
    v.host = "127.0.0.1";
    v.port = port;
    v.role = role;
    v.state = state;
    v.wal_lsn = 0x1000050;
    if (role == routing::Role::replica)
        v.lag_bytes = 16;
    return v;
}

/// Records the commands it gets; answers from a canned snapshot.
class FakeApi : public AdminApi {
public:
    FakeApi()
    {
        snap.version = "9.9.9";
        snap.uptime_s = 12.5;
        snap.primary = "pg1";
        snap.backends.push_back(
            {fake_backend_view("pg1", routing::Role::primary, routing::BackendState::up, 5432), {2, 1}, {3, 7}});
        snap.backends.push_back(
            {fake_backend_view("pg2", routing::Role::replica, routing::BackendState::up, 5433), {0, 4}, {11, 0}});
        snap.clients_active = 3;
        snap.clients_max = 100;
        snap.statement_cache = {5, 2, 2, 10000};
        snap.failover.mode = "auto";
        snap.query_latency.observe(0.0003);
        snap.query_latency.observe(0.2);
        snap.routing_decisions = {{"read on replica", 11}, {"write", 10}};
    }

    std::string token() const override { return token_value; }
    Snapshot snapshot() const override { return snap; }
    std::vector<ClientInfo> clients() const override
    {
        ClientInfo c;
        c.id = 7;
        c.address = "127.0.0.1:50000";
        c.user = "app";
        c.database = "appdb";
        c.application_name = "psql";
        c.state = "idle";
        c.backend = "pg2";
        return {c};
    }
    Explanation explain(std::string_view sql, std::string_view database) const override
    {
        last_sql = std::string(sql);
        last_database = std::string(database);
        Explanation e;
        routing::StatementInfo st;
        st.kind = routing::StatementKind::select;
        st.write = false;
        st.offset = 0;
        st.length = sql.size();
        e.classification.statements.push_back(st);
        e.request.write = false;
        e.target = "pg2";
        e.reason = "read on replica";
        return e;
    }
    CommandResult add_backend(const NewBackend& b) override
    {
        added = b;
        for (const auto& x : snap.backends)
            if (x.view.name == b.name)
                return CommandResult::error(CommandResult::Code::conflict,
                                            "a backend named \"" + b.name + "\" already exists");
        auto v = fake_backend_view(b.name, routing::Role::unknown, routing::BackendState::down, b.port);
        v.weight = b.weight;
        v.lag_bytes.reset();
        v.wal_lsn.reset();
        snap.backends.push_back({v, {}, {}});
        return CommandResult::ok("added");
    }
    CommandResult remove_backend(std::string_view name) override
    {
        if (name == "pg2")
            return CommandResult::error(CommandResult::Code::accepted, "draining");
        if (name == "pg3")
            return CommandResult::ok("removed");
        return CommandResult::error(CommandResult::Code::not_found, "no backend named \"" + std::string(name) + "\"");
    }
    CommandResult drain_backend(std::string_view name) override
    {
        for (auto& b : snap.backends)
            if (b.view.name == name) {
                b.view.state = routing::BackendState::drained;
                return CommandResult::ok("drained");
            }
        return CommandResult::error(CommandResult::Code::not_found, "no backend named \"" + std::string(name) + "\"");
    }
    CommandResult enable_backend(std::string_view name) override
    {
        for (auto& b : snap.backends)
            if (b.view.name == name) {
                b.view.state = routing::BackendState::up;
                return CommandResult::ok("enabled");
            }
        return CommandResult::error(CommandResult::Code::not_found, "no backend named \"" + std::string(name) + "\"");
    }
    CommandResult reload() override { return reload_result; }
    CommandResult failover(std::optional<std::string> target) override
    {
        failover_target = target;
        return CommandResult::error(CommandResult::Code::not_implemented, "failover is not implemented yet (issue 6)");
    }

    Snapshot snap;
    std::string token_value;
    std::optional<NewBackend> added;
    std::optional<std::string> failover_target;
    CommandResult reload_result = CommandResult::ok("configuration reloaded");
    mutable std::string last_sql;
    mutable std::string last_database;
};

}  // namespace pgswitch::test
