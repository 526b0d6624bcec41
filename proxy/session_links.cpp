#include "session_links.h"

#include <algorithm>

namespace pgswitch::proxy {

SessionLinks::LinkPtr SessionLinks::remove(const ServerLink& link)
{
    auto kept = holder(link);
    std::erase_if(all_, [&](const auto& l) { return l.get() == &link; });
    return kept;
}

SessionLinks::LinkPtr SessionLinks::holder(const ServerLink& link) const
{
    for (const auto& l : all_)
        if (l.get() == &link)
            return l;
    return nullptr;
}

SessionLinks::LinkPtr SessionLinks::find(const routing::BackendView& backend) const
{
    for (const auto& l : all_)
        if (!l->dead && l->backend == backend.name) {
            l->role = backend.role;  // a replica may have been promoted since
            return l;
        }
    return nullptr;
}

SessionLinks::LinkPtr SessionLinks::to_primary(const routing::ClusterView& view) const
{
    const auto idx = view.primary_index();
    if (!idx)
        return nullptr;
    for (const auto& l : all_)
        if (!l->dead && l->backend == view.backends[*idx].name)
            return l;
    return nullptr;
}

void SessionLinks::reconcile(const routing::ClusterView& view) noexcept
{
    if (view.generation == view_generation_)
        return;
    view_generation_ = view.generation;
    for (auto& l : all_) {
        auto role = routing::Role::unknown;  // a backend gone from the view
        for (const auto& b : view.backends)
            if (b.name == l->backend) {
                role = b.role;
                break;
            }
        l->role = role;
    }
}

bool SessionLinks::any_owes_client() const noexcept
{
    return std::any_of(all_.begin(), all_.end(), [](const auto& l) { return l->owes_client(); });
}

}  // namespace pgswitch::proxy
