// ClientSession::info(): what the admin API shows of a session. Kept apart
// from the session loop so the admin side can grow without touching it.
#include "client_session.h"

namespace pgswitch::proxy {

SessionInfo ClientSession::info() const
{
    SessionInfo i;
    i.id = id_;
    i.address = client_.peer;
    i.user = client_.user;
    i.database = client_.database;
    i.application_name = std::string(client_.startup.get("application_name"));
    i.in_transaction = tx_status_ != wire::TxStatus::idle;
    if (closed_)
        i.state = "closing";
    else if (!client_.admitted)
        i.state = "login";
    else if (flow_.copy_in)
        i.state = "copy";
    else if (any_pending())
        i.state = "active";
    else if (tx_status_ == wire::TxStatus::in_transaction)
        i.state = "idle in transaction";
    else if (tx_status_ == wire::TxStatus::failed)
        i.state = "idle in transaction (aborted)";
    else
        i.state = "idle";
    i.backend = links_.last_backend;
    for (const auto& l : links_.all()) {
        if (!l || l->dead)
            continue;
        const bool busy = !l->replies.empty() || l->unsynced || (l == links_.active && i.in_transaction);
        i.links.push_back({l->backend, busy});
    }
    return i;
}

}  // namespace pgswitch::proxy
