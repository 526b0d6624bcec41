#include "replay_knowledge.h"

#include <algorithm>

namespace pgswitch::routing {

ReplayKnowledge::Entry& ReplayKnowledge::entry(std::string_view backend)
{
    for (auto& e : entries_)
        if (e.backend == backend)
            return e;
    entries_.push_back(Entry{std::string(backend)});
    return entries_.back();
}

void ReplayKnowledge::reached(std::string_view backend, std::uint64_t lsn)
{
    auto& e = entry(backend);
    e.reached = std::max(e.reached, lsn);
    if (e.missed != 0 && e.missed <= lsn)
        e.missed = 0;  // it got there after all
}

void ReplayKnowledge::missed(std::string_view backend, std::uint64_t lsn, Clock::time_point now)
{
    auto& e = entry(backend);
    if (e.missed == 0 || lsn < e.missed || now - e.missed_at > std::chrono::seconds(60))
        e.missed = lsn;
    e.missed_at = now;
}

std::vector<std::uint64_t> ReplayKnowledge::reached_positions(const ClusterView& view) const
{
    std::vector<std::uint64_t> out(view.backends.size(), 0);
    for (const auto& e : entries_)
        for (std::size_t i = 0; i < view.backends.size(); ++i)
            if (view.backends[i].name == e.backend)
                out[i] = e.reached;
    return out;
}

std::vector<std::uint64_t> ReplayKnowledge::behind_positions(const ClusterView& view, Clock::time_point now,
                                                             Clock::duration memory) const
{
    std::vector<std::uint64_t> out(view.backends.size(), 0);
    for (const auto& e : entries_) {
        if (e.missed == 0 || now - e.missed_at > memory)
            continue;
        for (std::size_t i = 0; i < view.backends.size(); ++i) {
            const auto& b = view.backends[i];
            // The health round saw it past that position since: forget the miss.
            if (b.name == e.backend && !(b.wal_lsn && *b.wal_lsn >= e.missed))
                out[i] = e.missed;
        }
    }
    return out;
}

}  // namespace pgswitch::routing
