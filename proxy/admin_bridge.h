// admin::AdminApi implemented on the running proxy: snapshots from Runtime
// and the health checker, operator commands applied to them. Owned by
// Runtime; everything runs on its event-loop thread.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "admin/admin_api.h"
#include "asio_common.h"
#include "routing/topology.h"

namespace pgswitch::proxy {

class Runtime;

class AdminBridge final : public admin::AdminApi {
public:
    explicit AdminBridge(Runtime& runtime);
    ~AdminBridge() override;

    /// Cancels pending removals' polling (shutdown).
    void stop() noexcept;

    [[nodiscard]] std::string token() const override;
    [[nodiscard]] admin::Snapshot snapshot() const override;
    [[nodiscard]] std::vector<admin::ClientInfo> clients() const override;
    [[nodiscard]] admin::Explanation explain(std::string_view sql, std::string_view database) const override;

    admin::CommandResult add_backend(const admin::NewBackend& backend) override;
    admin::CommandResult remove_backend(std::string_view name) override;
    admin::CommandResult drain_backend(std::string_view name) override;
    admin::CommandResult enable_backend(std::string_view name) override;
    admin::CommandResult reload() override;
    admin::CommandResult failover(std::optional<std::string> target) override;

private:
    /// A DELETE waiting for the backend's statements and transactions to end.
    struct PendingRemoval {
        std::string name;
        std::chrono::steady_clock::time_point deadline;  ///< removed then regardless
    };
    /// Nothing runs on `name` now: no statement in flight, no session
    /// inside a transaction (or owing replies) there.
    [[nodiscard]] bool idle(const std::string& name) const;
    void remove_now(const std::string& name);
    /// Several instances: applies `change` to the backend list in etcd (in
    /// the background; every instance, this one included, follows it).
    void share(std::function<std::string(std::vector<routing::SharedBackend>&)> change, std::string what);
    /// Sets the drained flag of `name` in the shared list.
    void share_drained(const std::string& name, bool drained);
    void schedule_poll();
    void poll_removals();

    Runtime& runtime_;
    std::vector<PendingRemoval> removals_;
    asio::steady_timer poll_;
    bool polling_ = false;
    bool stopped_ = false;
};

}  // namespace pgswitch::proxy
