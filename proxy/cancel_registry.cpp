#include "cancel_registry.h"

#include "routing/topology.h"

#include <openssl/rand.h>

namespace pgswitch::proxy {

std::int32_t CancelRegistry::add(std::int32_t process_id, std::weak_ptr<ClientSession> session)
{
    for (;;) {
        std::int32_t secret = 0;
        // A guessable secret would let any client cancel others' queries.
        if (RAND_bytes(reinterpret_cast<unsigned char*>(&secret), sizeof secret) != 1)
            throw std::runtime_error("RAND_bytes failed");
        if (const int id = instance_id_.load(std::memory_order_relaxed); id != 0)
            secret = routing::secret_with_instance(secret, id);
        std::lock_guard lock(mutex_);
        auto [it, inserted] = sessions_.try_emplace(key(process_id, secret), session);
        if (inserted)
            return secret;
    }
}

void CancelRegistry::remove(std::int32_t process_id, std::int32_t secret) noexcept
{
    std::lock_guard lock(mutex_);
    sessions_.erase(key(process_id, secret));
}

std::shared_ptr<ClientSession> CancelRegistry::find(std::int32_t process_id, std::int32_t secret) const
{
    std::lock_guard lock(mutex_);
    auto it = sessions_.find(key(process_id, secret));
    return it == sessions_.end() ? nullptr : it->second.lock();
}

}  // namespace pgswitch::proxy
