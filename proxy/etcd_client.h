// A small etcd v3 client over etcd's documented HTTP/JSON gateway (/v3/kv,
// /v3/lease), with Boost.Beast: what the cluster coordinator needs — leases,
// prefix reads, puts and compare-and-swap transactions. Keys and values are
// plain strings here (base64 on the wire). Requests go to one endpoint at a
// time and move to the next when one fails; each is bounded by a timeout.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "asio_common.h"

namespace pgswitch::proxy {

struct EtcdKeyValue {
    std::string key;
    std::string value;
    std::int64_t create_revision = 0;
    std::int64_t mod_revision = 0;
    std::int64_t lease = 0;
};

/// One request's outcome: a value, or why there is none.
template <class T>
struct EtcdResult {
    std::optional<T> value;
    std::string error;
    [[nodiscard]] explicit operator bool() const noexcept { return value.has_value(); }
};

/// A comparison of a transaction (KV.Txn), on one key.
struct EtcdCompare {
    enum class Target { create_revision, mod_revision, value, lease };
    std::string key;
    Target target = Target::create_revision;
    std::int64_t number = 0;  ///< for the revisions and the lease
    std::string value;        ///< for Target::value
};

/// An operation of a transaction: a put (optionally with a lease) or a delete.
struct EtcdOp {
    std::string key;
    std::optional<std::string> put;  ///< nullopt: delete the key
    std::int64_t lease = 0;
};

class EtcdClient {
public:
    EtcdClient(asio::any_io_executor ex, std::vector<std::string> endpoints, std::chrono::milliseconds timeout);

    /// A lease of `ttl` (rounded up to whole seconds, at least 1); its id.
    [[nodiscard]] awaitable<EtcdResult<std::int64_t>> grant_lease(std::chrono::milliseconds ttl);
    /// Renews a lease; the TTL left in seconds (0 or an error: it is gone).
    [[nodiscard]] awaitable<EtcdResult<std::int64_t>> keep_alive(std::int64_t lease);
    [[nodiscard]] awaitable<EtcdResult<bool>> revoke(std::int64_t lease);
    /// Every key starting with `prefix`.
    [[nodiscard]] awaitable<EtcdResult<std::vector<EtcdKeyValue>>> range_prefix(std::string_view prefix);
    [[nodiscard]] awaitable<EtcdResult<bool>> put(std::string_view key, std::string_view value, std::int64_t lease = 0);
    /// All `compare` hold → `success` runs (true), else `failure` (false).
    [[nodiscard]] awaitable<EtcdResult<bool>> txn(const std::vector<EtcdCompare>& compare,
                                                  const std::vector<EtcdOp>& success,
                                                  const std::vector<EtcdOp>& failure = {});

    /// The endpoint that answered last (for /status and logs).
    [[nodiscard]] const std::string& endpoint() const noexcept { return endpoints_[current_]; }

private:
    /// POSTs `body` to `path` on the current endpoint, then the others in
    /// turn; the parsed reply, or the last error.
    [[nodiscard]] awaitable<EtcdResult<nlohmann::json>> call(std::string_view path, const nlohmann::json& body);
    [[nodiscard]] awaitable<EtcdResult<nlohmann::json>> call_one(const std::string& endpoint, std::string_view path,
                                                                 const std::string& body);

    asio::any_io_executor ex_;
    std::vector<std::string> endpoints_;
    std::size_t current_ = 0;
    std::chrono::milliseconds timeout_;
};

}  // namespace pgswitch::proxy
