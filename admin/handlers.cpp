#include "admin/handlers.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <nlohmann/json.hpp>
#include <optional>

namespace pgswitch::admin {

using json = nlohmann::ordered_json;  // fields in the order written, for humans

namespace {

// ---- JSON views of the snapshot ---------------------------------------------

json lsn_or_null(const std::optional<std::uint64_t>& lsn)
{
    return lsn ? json(routing::format_lsn(*lsn)) : json(nullptr);
}

json backend_json(const BackendStats& b)
{
    const auto& v = b.view;
    const bool replica = v.role == routing::Role::replica;
    json j = {
        {"name", v.name},
        {"host", v.host},
        {"port", v.port},
        {"role", routing::to_string(v.role)},
        {"state", routing::to_string(v.state)},
        {"lag_bytes", v.lag_bytes ? json(*v.lag_bytes) : json(nullptr)},
        // A replica's replayed position; a primary replays nothing (its
        // current WAL position is wal_lsn).
        {"replay_lsn", replica ? lsn_or_null(v.wal_lsn) : json(nullptr)},
        {"wal_lsn", lsn_or_null(v.wal_lsn)},
        {"lagging", v.lagging},
        {"weight", v.weight},
        {"connections", {{"active", b.connections.active}, {"idle", b.connections.idle}}},
        {"queries", {{"reads", b.queries.reads}, {"writes", b.queries.writes}}},
        {"consecutive_failures", v.consecutive_failures},
        {"last_error", v.last_error.empty() ? json(nullptr) : json(v.last_error)},
        {"fence_reason", v.fence_reason.empty() ? json(nullptr) : json(v.fence_reason)},
    };
    return j;
}

json backends_json(const Snapshot& s)
{
    json a = json::array();
    for (const auto& b : s.backends)
        a.push_back(backend_json(b));
    return a;
}

json statement_json(const routing::StatementInfo& st, std::string_view sql)
{
    json j = {
        {"kind", routing::to_string(st.kind)},
        {"write", st.write},
        {"text", st.offset <= sql.size() ? std::string(sql.substr(st.offset, st.length)) : std::string()},
    };
    if (st.tx != routing::Tx::none)
        j["transaction"] = routing::to_string(st.tx);
    if (st.session != routing::SessionEffect::none)
        j["session"] = routing::to_string(st.session);
    if (st.pins_primary)
        j["pins_primary"] = true;
    if (st.hint != routing::Hint::none)
        j["hint"] = routing::to_string(st.hint);
    if (st.parse_error)
        j["parse_error"] = true;
    return j;
}

Response json_response(int status, const json& body)
{
    Response r;
    r.status = status;
    r.body = body.dump(2);
    r.body += '\n';
    return r;
}

/// The HTTP status for a command's outcome.
int status_of(CommandResult::Code c) noexcept
{
    switch (c) {
    case CommandResult::Code::done:
        return 200;
    case CommandResult::Code::accepted:
        return 202;
    case CommandResult::Code::not_found:
        return 404;
    case CommandResult::Code::conflict:
        return 409;
    case CommandResult::Code::invalid:
        return 400;
    case CommandResult::Code::unavailable:
        return 503;
    case CommandResult::Code::not_implemented:
        return 501;
    }
    return 500;
}

const BackendStats* find_backend(const Snapshot& s, std::string_view name)
{
    for (const auto& b : s.backends)
        if (b.view.name == name)
            return &b;
    return nullptr;
}

Response unknown_backend(std::string_view name)
{
    return error_response(404, "no backend named \"" + std::string(name) + "\"");
}

/// A JSON object body, or the 400 that says why not.
std::optional<json> parse_object(const Request& req, Response& error, bool empty_ok)
{
    if (req.body.find_first_not_of(" \t\r\n") == std::string::npos) {
        if (empty_ok)
            return json::object();
        error = error_response(400, "request body must be a JSON object");
        return std::nullopt;
    }
    json j = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) {
        error = error_response(400, "request body is not valid JSON");
        return std::nullopt;
    }
    if (!j.is_object()) {
        error = error_response(400, "request body must be a JSON object");
        return std::nullopt;
    }
    return j;
}

/// Rejects fields not in `known` (a typo must not pass silently, as in the config file).
bool only_fields(const json& j, std::initializer_list<std::string_view> known, Response& error)
{
    for (const auto& [key, value] : j.items()) {
        if (std::find(known.begin(), known.end(), key) == known.end()) {
            error = error_response(400, "unknown field \"" + key + "\"");
            return false;
        }
    }
    return true;
}

/// Backend names go into URLs and metric labels: keep them to a safe alphabet.
bool valid_backend_name(std::string_view name) noexcept
{
    if (name.empty() || name.size() > 63)
        return false;
    return std::all_of(name.begin(), name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
    });
}

// ---- handlers ---------------------------------------------------------------

using Handler = Response (*)(const Request&, std::string_view name, AdminApi&);

Response get_health(const Request&, std::string_view, AdminApi&)
{
    return json_response(200, {{"status", "ok"}});
}

Response get_ready(const Request&, std::string_view, AdminApi& api)
{
    const auto s = api.snapshot();
    if (s.draining)
        return json_response(
            503,
            {{"ready", false}, {"primary", s.primary ? json(*s.primary) : json(nullptr)}, {"error", "shutting down"}});
    if (!s.primary)
        return json_response(503, {{"ready", false}, {"primary", nullptr}, {"error", "no usable primary"}});
    return json_response(200, {{"ready", true}, {"primary", *s.primary}});
}

Response get_status(const Request&, std::string_view, AdminApi& api)
{
    const auto s = api.snapshot();
    json history = json::array();
    for (const auto& e : s.failover.history)
        history.push_back({{"at", e.at}, {"from", e.from}, {"to", e.to}, {"reason", e.reason}});
    std::uint64_t reads = 0;
    std::uint64_t writes = 0;
    json by_backend = json::object();
    for (const auto& b : s.backends) {
        reads += b.queries.reads;
        writes += b.queries.writes;
        by_backend[b.view.name] = {{"reads", b.queries.reads}, {"writes", b.queries.writes}};
    }
    json routing = {{"reads", reads}, {"writes", writes}, {"by_backend", by_backend}};
    if (!s.routing_decisions.empty()) {
        json reasons = json::object();
        for (const auto& [reason, n] : s.routing_decisions)
            reasons[reason] = n;
        routing["by_reason"] = reasons;
    }
    json j = {
        {"version", s.version},
        {"uptime_s", s.uptime_s},
        {"draining", s.draining},
        {"primary", s.primary ? json(*s.primary) : json(nullptr)},
        {"failover",
         {{"mode", s.failover.mode},
          {"state", s.failover.state},
          {"reason", s.failover.reason.empty() ? json(nullptr) : json(s.failover.reason)},
          {"history", history}}},
        {"backends", backends_json(s)},
        {"clients", {{"active", s.clients_active}, {"max", s.clients_max}}},
        {"routing", routing},
        {"statement_cache",
         {{"hits", s.statement_cache.hits},
          {"misses", s.statement_cache.misses},
          {"size", s.statement_cache.size},
          {"capacity", s.statement_cache.capacity}}},
    };
    if (s.cluster) {
        const auto& c = *s.cluster;
        json instances = json::array();
        for (const auto& i : c.instances)
            instances.push_back({{"name", i.name}, {"listen", i.listen}, {"admin", i.admin}, {"id", i.id}});
        j["cluster"] = {
            {"name", c.name},
            {"leader", c.leader.empty() ? json(nullptr) : json(c.leader)},
            {"epoch", c.epoch},
            {"etcd_seen_ms_ago", c.etcd_seen_ms_ago ? json(std::round(*c.etcd_seen_ms_ago)) : json(nullptr)},
            {"etcd_endpoint", c.etcd_endpoint},
            {"writes_blocked", c.writes_blocked.empty() ? json(nullptr) : json(c.writes_blocked)},
            {"instances", instances},
        };
    }
    return json_response(200, j);
}

Response list_backends(const Request&, std::string_view, AdminApi& api)
{
    return json_response(200, {{"backends", backends_json(api.snapshot())}});
}

Response get_backend(const Request&, std::string_view name, AdminApi& api)
{
    const auto s = api.snapshot();
    const auto* b = find_backend(s, name);
    return b ? json_response(200, backend_json(*b)) : unknown_backend(name);
}

/// After a command: the backend as it is now, with the command's note.
Response command_response(const CommandResult& r, std::string_view name, AdminApi& api, int success_status)
{
    if (r.code != CommandResult::Code::done && r.code != CommandResult::Code::accepted)
        return error_response(status_of(r.code), r.message);
    const auto s = api.snapshot();
    json j = json::object();
    if (const auto* b = find_backend(s, name))
        j = backend_json(*b);
    else
        j["name"] = name;
    if (!r.message.empty())
        j["message"] = r.message;
    return json_response(r.code == CommandResult::Code::accepted ? 202 : success_status, j);
}

Response add_backend(const Request& req, std::string_view, AdminApi& api)
{
    Response err;
    auto j = parse_object(req, err, false);
    if (!j || !only_fields(*j, {"name", "host", "port", "weight"}, err))
        return err;
    NewBackend b;
    const auto name = j->find("name");
    if (name == j->end() || !name->is_string())
        return error_response(400, "\"name\" is required and must be a string");
    b.name = name->get<std::string>();
    if (!valid_backend_name(b.name))
        return error_response(400, "\"name\" must be 1-63 characters of letters, digits, '_', '-' and '.'");
    const auto host = j->find("host");
    if (host == j->end() || !host->is_string() || host->get<std::string>().empty())
        return error_response(400, "\"host\" is required and must be a non-empty string");
    b.host = host->get<std::string>();
    const auto port = j->find("port");
    if (port == j->end() || !port->is_number_integer() || port->get<std::int64_t>() < 1 ||
        port->get<std::int64_t>() > 65535)
        return error_response(400, "\"port\" is required and must be an integer in 1..65535");
    b.port = static_cast<std::uint16_t>(port->get<std::int64_t>());
    if (const auto w = j->find("weight"); w != j->end()) {
        if (!w->is_number_integer() || w->get<std::int64_t>() < 0 || w->get<std::int64_t>() > 1000000)
            return error_response(400, "\"weight\" must be an integer in 0..1000000");
        b.weight = static_cast<int>(w->get<std::int64_t>());
    }
    const auto r = api.add_backend(b);
    auto resp = command_response(r, b.name, api, 201);
    if (resp.status == 201)
        resp.headers.emplace_back("Location", "/backends/" + b.name);
    return resp;
}

Response delete_backend(const Request&, std::string_view name, AdminApi& api)
{
    const auto r = api.remove_backend(name);
    if (r.code == CommandResult::Code::done)
        return json_response(200, {{"name", name}, {"removed", true}, {"message", r.message}});
    return command_response(r, name, api, 200);
}

Response drain_backend(const Request&, std::string_view name, AdminApi& api)
{
    return command_response(api.drain_backend(name), name, api, 200);
}

Response enable_backend(const Request&, std::string_view name, AdminApi& api)
{
    return command_response(api.enable_backend(name), name, api, 200);
}

Response post_failover(const Request& req, std::string_view, AdminApi& api)
{
    Response err;
    auto j = parse_object(req, err, true);
    if (!j || !only_fields(*j, {"target"}, err))
        return err;
    std::optional<std::string> target;
    if (const auto t = j->find("target"); t != j->end() && !t->is_null()) {
        if (!t->is_string())
            return error_response(400, "\"target\" must be a backend name");
        target = t->get<std::string>();
    }
    const auto r = api.failover(target);
    if (r.code != CommandResult::Code::done && r.code != CommandResult::Code::accepted)
        return error_response(status_of(r.code), r.message);
    return json_response(status_of(r.code), {{"message", r.message}});
}

Response post_reload(const Request&, std::string_view, AdminApi& api)
{
    const auto r = api.reload();
    if (r.code != CommandResult::Code::done)
        return error_response(status_of(r.code), r.message);
    return json_response(200, {{"reloaded", true}, {"message", r.message}});
}

Response get_metrics(const Request&, std::string_view, AdminApi& api)
{
    Response r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = render_prometheus(api.snapshot());
    return r;
}

Response get_clients(const Request&, std::string_view, AdminApi& api)
{
    json a = json::array();
    for (const auto& c : api.clients())
        a.push_back({{"id", c.id},
                     {"address", c.address},
                     {"user", c.user},
                     {"database", c.database},
                     {"application_name", c.application_name},
                     {"state", c.state},
                     {"backend", c.backend.empty() ? json(nullptr) : json(c.backend)},
                     {"connected_s", c.connected_s}});
    return json_response(200, {{"clients", a}});
}

Response post_explain(const Request& req, std::string_view, AdminApi& api)
{
    Response err;
    auto j = parse_object(req, err, false);
    if (!j || !only_fields(*j, {"sql", "database"}, err))
        return err;
    const auto sql = j->find("sql");
    if (sql == j->end() || !sql->is_string())
        return error_response(400, "\"sql\" is required and must be a string");
    std::string database;
    if (const auto d = j->find("database"); d != j->end()) {
        if (!d->is_string())
            return error_response(400, "\"database\" must be a string");
        database = d->get<std::string>();
    }
    const auto text = sql->get<std::string>();
    const auto e = api.explain(text, database);
    json statements = json::array();
    for (const auto& st : e.classification.statements)
        statements.push_back(statement_json(st, text));
    json out = {
        {"target", e.target ? json(*e.target) : json(nullptr)},
        {"kind", e.request.write ? "write" : "read"},
        {"reason", e.reason},
        {"statements", statements},
    };
    if (e.classification.parse_error)
        out["parse_error"] = true;
    if (e.classification.hint != routing::Hint::none)
        out["hint"] = routing::to_string(e.classification.hint);
    return json_response(200, out);
}

// ---- the route table (PgBouncer's cmd_lookup tables) -------------------------

struct Route {
    std::string_view method;
    std::string_view pattern;  ///< "{name}" matches one path segment
    Handler handler;
};

constexpr Route routes[] = {
    {"GET", "/health", &get_health},
    {"GET", "/ready", &get_ready},
    {"GET", "/status", &get_status},
    {"GET", "/backends", &list_backends},
    {"POST", "/backends", &add_backend},
    {"GET", "/backends/{name}", &get_backend},
    {"DELETE", "/backends/{name}", &delete_backend},
    {"POST", "/backends/{name}/drain", &drain_backend},
    {"POST", "/backends/{name}/enable", &enable_backend},
    {"POST", "/failover", &post_failover},
    {"POST", "/reload", &post_reload},
    {"GET", "/metrics", &get_metrics},
    {"GET", "/clients", &get_clients},
    {"POST", "/routing/explain", &post_explain},
};

/// Splits "/a/b" into {"a","b"}; a trailing slash is ignored ("/backends/").
std::vector<std::string_view> segments(std::string_view path)
{
    std::vector<std::string_view> out;
    std::size_t i = 0;
    while (i < path.size()) {
        if (path[i] == '/') {
            ++i;
            continue;
        }
        const auto end = path.find('/', i);
        const auto stop = end == std::string_view::npos ? path.size() : end;
        out.push_back(path.substr(i, stop - i));
        i = stop;
    }
    return out;
}

int hex_value(char c) noexcept
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/// Percent-decodes one path segment; nullopt when malformed.
std::optional<std::string> percent_decode(std::string_view s)
{
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '%') {
            out += s[i];
            continue;
        }
        const int hi = i + 1 < s.size() ? hex_value(s[i + 1]) : -1;
        const int lo = i + 2 < s.size() ? hex_value(s[i + 2]) : -1;
        if (hi < 0 || lo < 0)
            return std::nullopt;
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
    }
    return out;
}

/// Whether `path` fits `pattern`; the {name} segment goes to `name`.
bool matches(std::string_view pattern, const std::vector<std::string_view>& path, std::string_view& name)
{
    const auto want = segments(pattern);
    if (want.size() != path.size())
        return false;
    for (std::size_t i = 0; i < want.size(); ++i) {
        if (want[i] == "{name}")
            name = path[i];
        else if (want[i] != path[i])
            return false;
    }
    return true;
}

bool iequals(std::string_view a, std::string_view b) noexcept
{
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
           });
}

}  // namespace

Response error_response(int status, std::string_view message)
{
    return json_response(status, {{"error", message}});
}

bool authorized(std::string_view header, std::string_view token)
{
    constexpr std::string_view scheme = "Bearer ";
    std::string_view presented;
    if (header.size() > scheme.size() && iequals(header.substr(0, scheme.size()), scheme))
        presented = header.substr(scheme.size());
    while (!presented.empty() && presented.front() == ' ')
        presented.remove_prefix(1);
    while (!presented.empty() && (presented.back() == ' ' || presented.back() == '\t'))
        presented.remove_suffix(1);
    // Digests first: CRYPTO_memcmp needs equal lengths, and comparing lengths
    // directly would tell an attacker the token's length.
    std::array<unsigned char, SHA256_DIGEST_LENGTH> a{};
    std::array<unsigned char, SHA256_DIGEST_LENGTH> b{};
    SHA256(reinterpret_cast<const unsigned char*>(presented.data()), presented.size(), a.data());
    SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), b.data());
    const bool same = CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
    return same && !presented.empty();
}

Response handle_request(const Request& request, AdminApi& api)
{
    try {
        std::string_view path = request.target;
        if (const auto q = path.find('?'); q != std::string_view::npos)
            path = path.substr(0, q);
        const auto parts = segments(path);

        // Every endpoint but /health needs the token (before routing, so an
        // unauthenticated caller cannot even probe which paths exist).
        const bool is_health = parts.size() == 1 && parts[0] == "health";
        if (!is_health) {
            const auto token = api.token();
            if (!token.empty() && !authorized(request.authorization, token)) {
                auto r = error_response(401, request.authorization.empty()
                                                 ? "missing Authorization: Bearer <admin.token>"
                                                 : "invalid token");
                r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"pgswitch\"");
                return r;
            }
        }

        std::string allow;
        for (const auto& route : routes) {
            std::string_view raw_name;
            if (!matches(route.pattern, parts, raw_name))
                continue;
            if (route.method != request.method) {
                if (allow.find(route.method) == std::string::npos) {
                    if (!allow.empty())
                        allow += ", ";
                    allow += route.method;
                }
                continue;
            }
            const auto name = percent_decode(raw_name);
            if (!name)
                return error_response(400, "malformed percent-encoding in the path");
            return route.handler(request, *name, api);
        }
        if (!allow.empty()) {
            auto r = error_response(405, "method " + request.method + " not allowed on " + std::string(path) +
                                             " (allowed: " + allow + ")");
            r.headers.emplace_back("Allow", allow);
            return r;
        }
        return error_response(404, "no such endpoint: " + std::string(path));
    } catch (const std::exception& e) {
        return error_response(500, std::string("internal error: ") + e.what());
    }
}

}  // namespace pgswitch::admin
