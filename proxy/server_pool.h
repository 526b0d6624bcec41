// Transaction pooling (issue 5): server connections per (backend, user,
// database), at most proxy.pool_size of them, lent to one session at a time
// and waited for in FIFO order when all are busy. Single-threaded: one pool
// per event loop, owned by Runtime; no globals.
#pragma once

#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>

#include "asio_common.h"
#include "backend_connection.h"
#include "routing/server_prepared.h"

namespace pgswitch::proxy {

/// A pooled server connection and what it carries between borrowers.
struct PooledConnection {
    std::unique_ptr<BackendConnection> conn;  ///< null while lent to a session's ServerLink
    std::string group;                        ///< the pool's key: backend, user, database
    std::string backend;                      ///< backend name
    /// The client startup parameters the connection logged in with; only
    /// sessions with the same ones reuse it (login values are what RESET ALL
    /// returns to, and what the client was told in ParameterStatus).
    std::string signature;
    routing::ServerPrepared prepared;
    std::chrono::steady_clock::time_point idle_since{};
};

/// Why acquire() gave no connection.
struct AcquireFailure {
    enum class Kind {
        timeout,         ///< every connection stayed busy for proxy.query_wait_timeout_ms
        connect_failed,  ///< opening a new server connection failed (see error)
    } kind;
    ConnectError error;
};

class ServerPool {
public:
    using Acquired = std::variant<std::unique_ptr<PooledConnection>, AcquireFailure>;

    /// Where and how to open a connection, and the limits (from the current config).
    struct Request {
        std::string backend;
        std::string host;
        std::uint16_t port = 0;
        ServerStartup startup;                            ///< user, database, client parameters, credentials
        std::string signature;                            ///< canonical form of startup.params
        int capacity = 20;                                ///< proxy.pool_size
        std::chrono::milliseconds wait_timeout{5000};     ///< proxy.query_wait_timeout_ms
        std::chrono::milliseconds connect_timeout{3000};  ///< proxy.connect_timeout_ms
    };

    /// An idle connection with the same signature, else a new one while the
    /// pool has room, else the first one given back (FIFO), up to
    /// wait_timeout. New connections run on the caller's executor.
    [[nodiscard]] awaitable<Acquired> acquire(const Request& req);
    /// Gives back a clean connection: idle outside a transaction, nothing owed.
    void release(std::unique_ptr<PooledConnection> pc);
    /// Closes a connection that cannot be reused (broken, or dirty beyond repair).
    void discard(std::unique_ptr<PooledConnection> pc);
    /// Closes idle connections unused since before `cutoff`.
    void close_idle_before(std::chrono::steady_clock::time_point cutoff);
    /// Closes every idle connection to `backend` (fenced: nothing it says may
    /// reach a client any more).
    void close_idle_to(std::string_view backend);

    struct Counts {
        int open = 0;  ///< idle + lent + being opened
        int idle = 0;
        int waiting = 0;  ///< requests queued for a connection
    };
    /// Totals over every (user, database) of one backend.
    [[nodiscard]] Counts counts(const std::string& backend) const;
    /// Totals over everything.
    [[nodiscard]] Counts counts() const;

    /// The ParameterStatus messages a login with this (user, database,
    /// signature) got from a server, remembered so that later logins need no
    /// server connection; null until one connected.
    [[nodiscard]] const std::string* parameter_status(const std::string& user, const std::string& database,
                                                      const std::string& signature) const;

    /// Canonical text of startup parameters (sorted name=value), the signature.
    [[nodiscard]] static std::string make_signature(const ServerStartup& startup);

private:
    struct Waiter {
        explicit Waiter(asio::any_io_executor ex) : timer(ex) {}
        asio::steady_timer timer;
        std::unique_ptr<PooledConnection> conn;  ///< handed over by release()
        bool slot = false;                       ///< room freed by discard(): open a new one
        bool served = false;
    };
    struct Group {
        std::string backend;
        int open = 0;
        std::deque<std::unique_ptr<PooledConnection>> idle;  ///< most recently used at the back
        std::deque<std::shared_ptr<Waiter>> waiters;
    };
    [[nodiscard]] awaitable<Acquired> open_new(Group& g, const std::string& key, const Request& req);
    /// True when an idle connection's server hung up or spoke unasked
    /// (a FATAL before closing): it must not be lent.
    [[nodiscard]] static bool stale(BackendConnection& conn);
    /// Room for one more connection: the first waiter gets it.
    void pass_slot(Group& g);

    std::map<std::string, Group, std::less<>> groups_;
    std::map<std::string, std::string, std::less<>> parameter_status_;
};

}  // namespace pgswitch::proxy
