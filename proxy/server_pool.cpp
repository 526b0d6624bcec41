#include "server_pool.h"

#include <sys/socket.h>

#include <algorithm>

#include "log.h"

namespace pgswitch::proxy {

namespace {

std::string group_key(const std::string& backend, const std::string& user, const std::string& database)
{
    std::string k = backend;
    k.push_back('\0');
    k += user;
    k.push_back('\0');
    k += database;
    return k;
}

std::string status_key(const std::string& user, const std::string& database, const std::string& signature)
{
    return group_key(user, database, signature);
}

}  // namespace

std::string ServerPool::make_signature(const ServerStartup& startup)
{
    auto params = startup.params;
    std::sort(params.begin(), params.end());
    std::string s;
    for (const auto& [name, value] : params) {
        s += name;
        s.push_back('=');
        s += value;
        s.push_back('\0');
    }
    return s;
}

bool ServerPool::stale(BackendConnection& conn)
{
    if (!conn.is_open() || conn.decoder().buffered() != 0)
        return true;
    // Peek without blocking: 0 is EOF (the server closed it: idle timeout,
    // pg_terminate_backend), data is an unsolicited message (usually the
    // FATAL that precedes the close). Either way it is not fit to lend.
    char byte;
    const auto n = ::recv(conn.socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0 || n > 0)
        return true;
    return errno != EAGAIN && errno != EWOULDBLOCK;
}

awaitable<ServerPool::Acquired> ServerPool::acquire(const Request& req)
{
    // The address is part of the key: a backend re-added under the same name
    // elsewhere (admin API) must not get the old server's connections.
    const auto key = group_key(req.backend + '@' + req.host + ':' + std::to_string(req.port), req.startup.user,
                               req.startup.database);
    auto& g = groups_[key];
    g.backend = req.backend;

    // Requests already waiting go first (FIFO); otherwise an idle connection
    // logged in with the same parameters, most recently used first.
    if (g.waiters.empty()) {
        for (auto it = g.idle.rbegin(); it != g.idle.rend();) {
            if ((*it)->signature != req.signature) {
                ++it;
                continue;
            }
            auto pc = std::move(*it);
            g.idle.erase(std::next(it).base());
            if (stale(*pc->conn)) {
                // Dropped; its room is reused below or by a waiter.
                pc->conn->close();
                --g.open;
                it = g.idle.rbegin();
                continue;
            }
            co_return std::move(pc);
        }
        if (g.open < req.capacity) {
            ++g.open;
            co_return co_await open_new(g, key, req);
        }
        if (!g.idle.empty()) {
            // Full of connections for other parameters: replace the least
            // recently used idle one.
            g.idle.front()->conn->close();
            g.idle.pop_front();
            co_return co_await open_new(g, key, req);
        }
    }

    // Everything is lent out: wait for release() or discard(), or time out.
    log::debug("pool ", req.backend, ": all ", g.open, " connections busy, waiting (", g.waiters.size(), " ahead)");
    auto waiter = std::make_shared<Waiter>(co_await asio::this_coro::executor);
    waiter->timer.expires_after(req.wait_timeout);
    g.waiters.push_back(waiter);
    auto [ec] = co_await waiter->timer.async_wait(use_nothrow);
    (void)ec;  // cancelled by a hand-over, or expired: `served` tells
    if (!waiter->served) {
        std::erase(g.waiters, waiter);
        AcquireFailure f{AcquireFailure::Kind::timeout, {}};
        f.error.message = "no server connection became free within proxy.query_wait_timeout_ms (" +
                          std::to_string(req.wait_timeout.count()) + " ms)";
        co_return f;
    }
    if (waiter->conn) {
        if (waiter->conn->signature == req.signature && !stale(*waiter->conn->conn))
            co_return std::move(waiter->conn);
        // Not one we can use: its room is ours.
        waiter->conn->conn->close();
        waiter->conn.reset();
    }
    co_return co_await open_new(g, key, req);
}

awaitable<ServerPool::Acquired> ServerPool::open_new(Group& g, const std::string& key, const Request& req)
{
    // The caller has counted this connection in g.open already.
    auto pc = std::make_unique<PooledConnection>();
    pc->group = key;
    pc->backend = req.backend;
    pc->signature = req.signature;
    pc->conn = std::make_unique<BackendConnection>(co_await asio::this_coro::executor);
    auto err = co_await pc->conn->connect(req.host, req.port, req.startup, req.connect_timeout);
    if (err) {
        --g.open;
        pass_slot(g);
        co_return AcquireFailure{AcquireFailure::Kind::connect_failed, std::move(*err)};
    }
    parameter_status_[status_key(req.startup.user, req.startup.database, req.signature)] =
        pc->conn->parameter_status_messages();
    co_return std::move(pc);
}

void ServerPool::pass_slot(Group& g)
{
    if (g.waiters.empty())
        return;
    auto w = g.waiters.front();
    g.waiters.pop_front();
    ++g.open;
    w->slot = true;
    w->served = true;
    w->timer.cancel();
}

void ServerPool::release(std::unique_ptr<PooledConnection> pc)
{
    auto it = groups_.find(pc->group);
    if (it == groups_.end()) {
        pc->conn->close();
        return;
    }
    auto& g = it->second;
    if (!pc->conn || !pc->conn->is_open()) {
        --g.open;
        pass_slot(g);
        return;
    }
    if (!g.waiters.empty()) {
        // Straight to the longest waiter: no idle interval, FIFO order.
        auto w = g.waiters.front();
        g.waiters.pop_front();
        w->conn = std::move(pc);
        w->served = true;
        w->timer.cancel();
        return;
    }
    pc->idle_since = std::chrono::steady_clock::now();
    g.idle.push_back(std::move(pc));
}

void ServerPool::discard(std::unique_ptr<PooledConnection> pc)
{
    if (pc->conn)
        pc->conn->close();
    auto it = groups_.find(pc->group);
    if (it == groups_.end())
        return;
    --it->second.open;
    pass_slot(it->second);
}

void ServerPool::close_idle_before(std::chrono::steady_clock::time_point cutoff)
{
    for (auto& [key, g] : groups_) {
        while (!g.idle.empty() && g.idle.front()->idle_since < cutoff) {
            g.idle.front()->conn->close();
            g.idle.pop_front();
            --g.open;
        }
    }
}

void ServerPool::close_idle_to(std::string_view backend)
{
    for (auto& [key, g] : groups_) {
        if (g.backend != backend)
            continue;
        while (!g.idle.empty()) {
            g.idle.front()->conn->close();
            g.idle.pop_front();
            --g.open;
            pass_slot(g);
        }
    }
}

ServerPool::Counts ServerPool::counts(const std::string& backend) const
{
    Counts c;
    for (const auto& [key, g] : groups_) {
        if (g.backend != backend)
            continue;
        c.open += g.open;
        c.idle += static_cast<int>(g.idle.size());
        c.waiting += static_cast<int>(g.waiters.size());
    }
    return c;
}

ServerPool::Counts ServerPool::counts() const
{
    Counts c;
    for (const auto& [key, g] : groups_) {
        c.open += g.open;
        c.idle += static_cast<int>(g.idle.size());
        c.waiting += static_cast<int>(g.waiters.size());
    }
    return c;
}

const std::string* ServerPool::parameter_status(const std::string& user, const std::string& database,
                                                const std::string& signature) const
{
    auto it = parameter_status_.find(status_key(user, database, signature));
    return it == parameter_status_.end() ? nullptr : &it->second;
}

}  // namespace pgswitch::proxy
