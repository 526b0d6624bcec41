#include "etcd_client.h"

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "pg_wire/auth.h"

namespace pgswitch::proxy {

namespace beast = boost::beast;
namespace http = beast::http;
using json = nlohmann::json;

namespace {

// The gateway's paths (named: g++ 12 mishandles a string literal argument
// inside a co_await expression).
constexpr std::string_view lease_grant_path = "/v3/lease/grant";
constexpr std::string_view lease_keepalive_path = "/v3/lease/keepalive";
constexpr std::string_view lease_revoke_path = "/v3/lease/revoke";
constexpr std::string_view kv_range_path = "/v3/kv/range";
constexpr std::string_view kv_put_path = "/v3/kv/put";
constexpr std::string_view kv_txn_path = "/v3/kv/txn";

std::string b64(std::string_view s)
{
    return wire::auth::base64_encode(s);
}

std::string unb64(const json& j)
{
    if (!j.is_string())
        return {};
    auto r = wire::auth::base64_decode(j.get<std::string>());
    return r ? *r : std::string();
}

/// etcd's int64 fields are JSON strings ("123"); absent means 0.
std::int64_t number(const json& j, const char* key)
{
    auto it = j.find(key);
    if (it == j.end())
        return 0;
    if (it->is_string())
        return std::strtoll(it->get<std::string>().c_str(), nullptr, 10);
    return it->is_number() ? it->get<std::int64_t>() : 0;
}

/// The end of the key range of every key starting with `prefix`: the prefix
/// with its last byte incremented (etcd's WithPrefix).
std::string prefix_end(std::string_view prefix)
{
    std::string end(prefix);
    while (!end.empty()) {
        auto& c = reinterpret_cast<unsigned char&>(end.back());
        if (c < 0xff) {
            ++c;
            return end;
        }
        end.pop_back();
    }
    return std::string(1, '\0');
}

json op_json(const EtcdOp& op)
{
    if (op.put) {
        json put{{"key", b64(op.key)}, {"value", b64(*op.put)}};
        if (op.lease != 0)
            put["lease"] = std::to_string(op.lease);
        return json{{"request_put", put}};
    }
    return json{{"request_delete_range", {{"key", b64(op.key)}}}};
}

json compare_json(const EtcdCompare& c)
{
    json j{{"key", b64(c.key)}, {"result", "EQUAL"}};
    switch (c.target) {
    case EtcdCompare::Target::create_revision:
        j["target"] = "CREATE";
        j["create_revision"] = std::to_string(c.number);
        break;
    case EtcdCompare::Target::mod_revision:
        j["target"] = "MOD";
        j["mod_revision"] = std::to_string(c.number);
        break;
    case EtcdCompare::Target::value:
        j["target"] = "VALUE";
        j["value"] = b64(c.value);
        break;
    case EtcdCompare::Target::lease:
        j["target"] = "LEASE";
        j["lease"] = std::to_string(c.number);
        break;
    }
    return j;
}

}  // namespace

EtcdClient::EtcdClient(asio::any_io_executor ex, std::vector<std::string> endpoints, std::chrono::milliseconds timeout)
    : ex_(std::move(ex)),
      endpoints_(std::move(endpoints)),
      timeout_(timeout)
{
}

awaitable<EtcdResult<json>> EtcdClient::call_one(const std::string& endpoint, std::string_view path,
                                                 const std::string& body)
{
    // "http://host:port" (checked by the config validator).
    const auto hostport = std::string_view(endpoint).substr(7);
    const auto colon = hostport.rfind(':');
    const std::string host(hostport.substr(0, colon));
    const std::string port(hostport.substr(colon + 1));
    tcp::resolver resolver(ex_);
    auto [rec, results] = co_await resolver.async_resolve(host, port, use_nothrow);
    if (rec)
        co_return EtcdResult<json>{std::nullopt, endpoint + ": " + rec.message()};
    beast::tcp_stream stream(ex_);
    stream.expires_after(timeout_);
    auto [cec, ep] = co_await stream.async_connect(results, use_nothrow);
    (void)ep;
    if (cec)
        co_return EtcdResult<json>{std::nullopt, endpoint + ": connect: " + cec.message()};
    http::request<http::string_body> req{http::verb::post, std::string(path), 11};
    req.set(http::field::host, hostport);
    req.set(http::field::content_type, "application/json");
    req.keep_alive(false);
    req.body() = body;
    req.prepare_payload();
    auto [wec, wn] = co_await http::async_write(stream, req, use_nothrow);
    (void)wn;
    if (wec)
        co_return EtcdResult<json>{std::nullopt, endpoint + ": write: " + wec.message()};
    beast::flat_buffer buffer;
    http::response<http::string_body> res;
    auto [rdec, rn] = co_await http::async_read(stream, buffer, res, use_nothrow);
    (void)rn;
    error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    if (rdec)
        co_return EtcdResult<json>{std::nullopt, endpoint + ": read: " + rdec.message()};
    json reply = json::parse(res.body(), nullptr, /*allow_exceptions=*/false);
    if (reply.is_discarded())
        co_return EtcdResult<json>{std::nullopt,
                                   endpoint + ": reply is not JSON (HTTP " + std::to_string(res.result_int()) + ")"};
    if (res.result() != http::status::ok) {
        const std::string what = reply.is_object() && reply.contains("message") && reply["message"].is_string()
                                     ? reply["message"].get<std::string>()
                                     : res.body();
        co_return EtcdResult<json>{std::nullopt, endpoint + ": HTTP " + std::to_string(res.result_int()) + ": " + what};
    }
    co_return EtcdResult<json>{std::move(reply), {}};
}

awaitable<EtcdResult<json>> EtcdClient::call(std::string_view path, const json& body)
{
    const std::string text = body.dump();
    EtcdResult<json> last{std::nullopt, std::string("no etcd endpoint")};
    for (std::size_t tried = 0; tried < endpoints_.size(); ++tried) {
        const std::size_t i = (current_ + tried) % endpoints_.size();
        last = co_await call_one(endpoints_[i], path, text);
        // An HTTP error from a member that answered is etcd's verdict, not a
        // dead member: do not ask the next one.
        if (last || last.error.find(": HTTP ") != std::string::npos) {
            current_ = i;
            co_return last;
        }
    }
    co_return last;
}

awaitable<EtcdResult<std::int64_t>> EtcdClient::grant_lease(std::chrono::milliseconds ttl)
{
    const auto seconds = std::max<std::int64_t>(1, (ttl.count() + 999) / 1000);
    const json body{{"TTL", std::to_string(seconds)}};
    auto r = co_await call(lease_grant_path, body);
    if (!r)
        co_return EtcdResult<std::int64_t>{std::nullopt, r.error};
    const auto id = number(*r.value, "ID");
    if (id == 0)
        co_return EtcdResult<std::int64_t>{std::nullopt, std::string("lease grant returned no ID")};
    co_return EtcdResult<std::int64_t>{id, {}};
}

awaitable<EtcdResult<std::int64_t>> EtcdClient::keep_alive(std::int64_t lease)
{
    const json body{{"ID", std::to_string(lease)}};
    auto r = co_await call(lease_keepalive_path, body);
    if (!r)
        co_return EtcdResult<std::int64_t>{std::nullopt, r.error};
    const json& result = r.value->contains("result") ? (*r.value)["result"] : *r.value;
    co_return EtcdResult<std::int64_t>{number(result, "TTL"), {}};
}

awaitable<EtcdResult<bool>> EtcdClient::revoke(std::int64_t lease)
{
    const json body{{"ID", std::to_string(lease)}};
    auto r = co_await call(lease_revoke_path, body);
    if (!r)
        co_return EtcdResult<bool>{std::nullopt, r.error};
    co_return EtcdResult<bool>{true, {}};
}

awaitable<EtcdResult<std::vector<EtcdKeyValue>>> EtcdClient::range_prefix(std::string_view prefix)
{
    const json body{{"key", b64(prefix)}, {"range_end", b64(prefix_end(prefix))}};
    auto r = co_await call(kv_range_path, body);
    if (!r)
        co_return EtcdResult<std::vector<EtcdKeyValue>>{std::nullopt, r.error};
    std::vector<EtcdKeyValue> out;
    if (auto it = r.value->find("kvs"); it != r.value->end() && it->is_array())
        for (const auto& kv : *it)
            out.push_back({unb64(kv.value("key", json())), unb64(kv.value("value", json())),
                           number(kv, "create_revision"), number(kv, "mod_revision"), number(kv, "lease")});
    co_return EtcdResult<std::vector<EtcdKeyValue>>{std::move(out), {}};
}

awaitable<EtcdResult<bool>> EtcdClient::put(std::string_view key, std::string_view value, std::int64_t lease)
{
    json body{{"key", b64(key)}, {"value", b64(value)}};
    if (lease != 0)
        body["lease"] = std::to_string(lease);
    auto r = co_await call(kv_put_path, body);
    if (!r)
        co_return EtcdResult<bool>{std::nullopt, r.error};
    co_return EtcdResult<bool>{true, {}};
}

awaitable<EtcdResult<bool>> EtcdClient::txn(const std::vector<EtcdCompare>& compare, const std::vector<EtcdOp>& success,
                                            const std::vector<EtcdOp>& failure)
{
    json body{{"compare", json::array()}, {"success", json::array()}, {"failure", json::array()}};
    for (const auto& c : compare)
        body["compare"].push_back(compare_json(c));
    for (const auto& op : success)
        body["success"].push_back(op_json(op));
    for (const auto& op : failure)
        body["failure"].push_back(op_json(op));
    auto r = co_await call(kv_txn_path, body);
    if (!r)
        co_return EtcdResult<bool>{std::nullopt, r.error};
    co_return EtcdResult<bool>{r.value->value("succeeded", false), {}};
}

}  // namespace pgswitch::proxy
