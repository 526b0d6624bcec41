// Maps the BackendKeyData pgswitch gave each client to that client's session,
// so a CancelRequest on a new connection finds the query to cancel.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>

namespace pgswitch::proxy {

class ClientSession;

/// Shared by the workers (a cancel arrives on any of them): guarded by a mutex. Keys are (pid, secret);
/// the secret is pgswitch's own random number, so a client can only cancel
/// sessions whose key it was given.
class CancelRegistry {
public:
    /// Registers a session under `process_id` with a fresh random secret,
    /// returned; retries on the (unlikely) collision.
    [[nodiscard]] std::int32_t add(std::int32_t process_id, std::weak_ptr<ClientSession> session);
    /// Several instances: secrets handed out from now on carry `id`
    /// (routing::secret_with_instance), so a cancel sent to another instance
    /// can be forwarded here.
    void set_instance_id(int id) noexcept { instance_id_.store(id, std::memory_order_relaxed); }
    void remove(std::int32_t process_id, std::int32_t secret) noexcept;
    /// The session for a key, or null (unknown key, or the session ended).
    [[nodiscard]] std::shared_ptr<ClientSession> find(std::int32_t process_id, std::int32_t secret) const;
    [[nodiscard]] std::size_t size() const
    {
        std::lock_guard lock(mutex_);
        return sessions_.size();
    }

private:
    static std::uint64_t key(std::int32_t pid, std::int32_t secret) noexcept
    {
        return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(pid)) << 32) | static_cast<std::uint32_t>(secret);
    }
    std::atomic<int> instance_id_{0};
    mutable std::mutex mutex_;
    std::unordered_map<std::uint64_t, std::weak_ptr<ClientSession>> sessions_;
};

}  // namespace pgswitch::proxy
