#include "session_context.h"

#include <algorithm>

#include "server_link.h"

namespace pgswitch::proxy {

awaitable<void> SessionContext::wait_for_cluster_change(std::chrono::steady_clock::time_point deadline)
{
    // A new view wakes the waiter at once; the bound retries what no view
    // change announces (a server that refused one connection, then accepts).
    const auto bound = std::min(deadline, std::chrono::steady_clock::now() + cluster_change_retry);
    co_await worker_.cluster_changed.wait_until(bound);
}

void SessionContext::statement_started(ServerLink& link) noexcept
{
    if (!link.load)
        link.load = &worker_.loads.of(link.backend);
    link.load->add(1);
}

void SessionContext::statement_ended(ServerLink& link, std::chrono::steady_clock::time_point sent,
                                     bool completed) noexcept
{
    if (!link.load)  // set by statement_started()
        return;
    link.load->add(-1);
    if (!completed)
        return;
    const auto now = std::chrono::steady_clock::now();
    link.load->latency.observe(now - sent, now);
    worker_.stats.query_latency.observe(std::chrono::duration<double>(now - sent).count());
}

void SessionContext::statements_dropped(ServerLink& link, int n) noexcept
{
    if (link.load)
        link.load->add(-n);
}

void SessionContext::count_query(ServerLink& link, bool write)
{
    // Entries are never erased (and an unordered_map's elements never move):
    // the link keeps its counters' address.
    if (!link.query_counts)
        link.query_counts = &worker_.stats.queries[link.backend];
    ++(write ? link.query_counts->writes : link.query_counts->reads);
}

awaitable<void> SessionContext::forward_cancel(wire::CancelRequest cancel)
{
    co_await asio::co_spawn(runtime_.main_io(), runtime_.forward_cancel(cancel), asio::use_awaitable);
}

}  // namespace pgswitch::proxy
