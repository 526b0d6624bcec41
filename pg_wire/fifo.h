// A first-in first-out queue over one vector, for the short queues a
// connection keeps (reply segments owed, statements awaiting confirmation).
// std::deque allocates a 512-byte block and its map when constructed, even
// empty: five of them made every idle server connection cost ~2.9 KB. This
// allocates nothing until the first push and then reuses its storage.
#pragma once

#include <cstddef>
#include <utility>
#include <vector>

namespace pgswitch::wire {

template <typename T>
class Fifo {
public:
    using iterator = typename std::vector<T>::iterator;
    using const_iterator = typename std::vector<T>::const_iterator;

    [[nodiscard]] bool empty() const noexcept { return head_ == items_.size(); }
    [[nodiscard]] std::size_t size() const noexcept { return items_.size() - head_; }
    [[nodiscard]] T& front() noexcept { return items_[head_]; }
    [[nodiscard]] const T& front() const noexcept { return items_[head_]; }
    [[nodiscard]] T& back() noexcept { return items_.back(); }

    void push_back(T item)
    {
        // A queue that never drains (a long pipeline) drops its consumed
        // front once it is at least half of the storage: amortised O(1).
        if (head_ > 0 && head_ >= items_.size() - head_ && items_.size() == items_.capacity())
            compact();
        items_.push_back(std::move(item));
    }
    void pop_front() noexcept
    {
        items_[head_] = T{};  // frees what the item owns (a name) now, not at the next compact()
        if (++head_ == items_.size())
            clear();
    }
    /// Forgets every item. The storage stays for reuse unless a burst (a
    /// long pipeline) grew it: an idle connection keeps only a few slots.
    void clear() noexcept
    {
        if (items_.capacity() > kept_capacity)
            std::vector<T>().swap(items_);
        else
            items_.clear();
        head_ = 0;
    }

    [[nodiscard]] iterator begin() noexcept { return items_.begin() + static_cast<std::ptrdiff_t>(head_); }
    [[nodiscard]] iterator end() noexcept { return items_.end(); }
    [[nodiscard]] const_iterator begin() const noexcept { return items_.begin() + static_cast<std::ptrdiff_t>(head_); }
    [[nodiscard]] const_iterator end() const noexcept { return items_.end(); }

private:
    static constexpr std::size_t kept_capacity = 16;

    void compact()
    {
        items_.erase(items_.begin(), begin());
        head_ = 0;
    }

    std::vector<T> items_;
    std::size_t head_ = 0;  ///< first unconsumed item
};

}  // namespace pgswitch::wire
