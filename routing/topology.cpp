#include "topology.h"

#include <nlohmann/json.hpp>

namespace pgswitch::routing {

using json = nlohmann::json;

namespace {

/// nlohmann throws on a type mismatch; a shared record that does not decode
/// is reported as nullopt by the callers.
template <class T>
T field(const json& j, const char* key, T fallback)
{
    auto it = j.find(key);
    return it == j.end() || it->is_null() ? fallback : it->get<T>();
}

template <class Fn>
auto decode(std::string_view text, Fn&& fn) -> std::optional<decltype(fn(json{}))>
{
    const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded())
        return std::nullopt;
    try {
        return fn(j);
    } catch (const json::exception&) {
        return std::nullopt;
    }
}

}  // namespace

Topology after_promotion(const Topology& t, const std::string& candidate, const std::string& old_primary,
                         const std::string& reason, const std::string& at, std::size_t history_limit)
{
    Topology next = t;
    ++next.epoch;
    next.primary = candidate;
    next.fenced.erase(candidate);
    if (!old_primary.empty() && old_primary != candidate)
        next.fenced[old_primary] = "old primary, replaced by \"" + candidate + "\" (" + reason +
                                   "); re-join it as a replica, then POST /backends/" + old_primary + "/enable";
    next.history.push_back({next.epoch, at, old_primary, candidate, reason});
    if (next.history.size() > history_limit)
        next.history.erase(next.history.begin(),
                           next.history.begin() + static_cast<std::ptrdiff_t>(next.history.size() - history_limit));
    return next;
}

std::string encode(const Topology& t)
{
    json j{{"epoch", t.epoch}, {"primary", t.primary}, {"fenced", t.fenced}, {"history", json::array()}};
    for (const auto& h : t.history)
        j["history"].push_back(
            {{"epoch", h.epoch}, {"at", h.at}, {"from", h.from}, {"to", h.to}, {"reason", h.reason}});
    return j.dump();
}

std::optional<Topology> decode_topology(std::string_view text)
{
    return decode(text, [](const json& j) {
        Topology t;
        t.epoch = field<std::uint64_t>(j, "epoch", 0);
        t.primary = field<std::string>(j, "primary", "");
        t.fenced = field<std::map<std::string, std::string>>(j, "fenced", {});
        if (auto it = j.find("history"); it != j.end() && it->is_array())
            for (const auto& h : *it)
                t.history.push_back({field<std::uint64_t>(h, "epoch", 0), field<std::string>(h, "at", ""),
                                     field<std::string>(h, "from", ""), field<std::string>(h, "to", ""),
                                     field<std::string>(h, "reason", "")});
        return t;
    });
}

std::string encode(const std::vector<SharedBackend>& backends)
{
    json j = json::array();
    for (const auto& b : backends)
        j.push_back(
            {{"name", b.name}, {"host", b.host}, {"port", b.port}, {"weight", b.weight}, {"drained", b.drained}});
    return j.dump();
}

std::optional<std::vector<SharedBackend>> decode_backends(std::string_view text)
{
    return decode(text, [](const json& j) {
        std::vector<SharedBackend> out;
        for (const auto& b : j) {
            // get<std::uint16_t> would wrap 70000 into a port: read wide, check the range.
            const auto port = b.at("port").get<std::int64_t>();
            if (port < 1 || port > 65535)
                throw json::other_error::create(501, "port out of range", &b);
            out.push_back({b.at("name").get<std::string>(), b.at("host").get<std::string>(),
                           static_cast<std::uint16_t>(port), field<int>(b, "weight", 1),
                           field<bool>(b, "drained", false)});
        }
        return out;
    });
}

std::string encode(const InstanceInfo& i)
{
    return json{{"name", i.name}, {"listen", i.listen}, {"admin", i.admin}, {"id", i.id}}.dump();
}

std::optional<InstanceInfo> decode_instance(std::string_view text)
{
    return decode(text, [](const json& j) {
        return InstanceInfo{j.at("name").get<std::string>(), field<std::string>(j, "listen", ""),
                            field<std::string>(j, "admin", ""), field<int>(j, "id", 0)};
    });
}

}  // namespace pgswitch::routing
