// A session's server connections: which it has open (own or borrowed from
// the pool), which the last request went to, where the unnamed statement
// lives, and each link's role in the cluster view the session last saw.
// No I/O: the session opens, pumps and closes the connections; this keeps
// the set and answers which one a request may use.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "routing/cluster_view.h"
#include "server_link.h"

namespace pgswitch::proxy {

class SessionLinks {
public:
    using LinkPtr = std::shared_ptr<ServerLink>;

    [[nodiscard]] const std::vector<LinkPtr>& all() const noexcept { return all_; }
    void add(LinkPtr link) { all_.push_back(std::move(link)); }
    /// Takes `link` out of the set (`active` is the caller's to reset);
    /// returns it (null if it was not there), to keep it alive meanwhile.
    LinkPtr remove(const ServerLink& link);
    /// The holder of `link` in the set, or null.
    [[nodiscard]] LinkPtr holder(const ServerLink& link) const;
    /// The live link to `backend`, with its role refreshed; null if none is open.
    [[nodiscard]] LinkPtr find(const routing::BackendView& backend) const;
    /// The live link to `view`'s primary, or null.
    [[nodiscard]] LinkPtr to_primary(const routing::ClusterView& view) const;
    /// Gives each link its backend's role in `view` (unknown when the backend
    /// left it): after a failover the old primary's link is not the primary's.
    /// Cheap when `view` is the one last reconciled with.
    void reconcile(const routing::ClusterView& view) noexcept;
    /// Some link owes the client replies or has an unfinished extended request.
    [[nodiscard]] bool any_owes_client() const noexcept;

    /// The link the last request went to: requests stay there while it owes
    /// replies, during a transaction and during COPY.
    LinkPtr active;
    /// The unnamed statement lives on this link (a Bind of "" must follow it).
    std::weak_ptr<ServerLink> unnamed;
    /// Where the last request went (GET /clients), also once a pooled connection is back.
    std::string last_backend;
    bool pooling = false;         ///< proxy.pool_mode = "transaction" when the session logged in
    bool pool_timed_out = false;  ///< the last borrow timed out in the pool's queue

private:
    std::vector<LinkPtr> all_;
    /// The view generation the links' roles were last reconciled with.
    std::uint64_t view_generation_ = ~std::uint64_t{0};
};

}  // namespace pgswitch::proxy
