// The hold-back of a read sent to a standby that may turn out to need the
// primary: a function the classifier took for a read writes after all (the
// standby answers 25006), or the read touches an UNLOGGED table (0A000). As
// long as the client has seen nothing of the reply, pgswitch can drop it and
// run the request again on the primary, so the guard keeps the request and
// tells, message by message, whether the start of its reply must still be
// held back. Pure: no I/O; the caller keeps the held bytes.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "backend.h"
#include "frame.h"
#include "request.h"

namespace pgswitch::wire {

/// Messages of a reply that come before anything the client could act on:
/// while only these arrived, the request can still be re-run elsewhere.
[[nodiscard]] bool is_reply_preamble(be::Tag t) noexcept;

/// What a standby answers to a statement it cannot run: a write (25006), or a
/// read of an UNLOGGED (or another session's temporary) table, or a
/// serializable transaction (0A000 with those messages).
[[nodiscard]] bool refused_by_standby(const be::ErrorFields& e);

class MisrouteGuard {
public:
    /// What becomes of one message at the start of the kept request's reply.
    enum class Verdict : std::uint8_t {
        hold,       ///< a preamble (ParseComplete, RowDescription...): held back
        release,    ///< rows, a result, an error: the reply is the client's now
        misrouted,  ///< the standby refused it: drop what was held, re-run it
    };

    /// Keeps `request`, whose reply is the `segment`-th of its connection,
    /// for a re-run; returns the kept copy (its bytes are the ones to send).
    const Request& keep(Request request, std::uint64_t segment);
    [[nodiscard]] bool keeps(std::uint64_t segment) const noexcept { return kept_ && segment_ == segment; }
    [[nodiscard]] bool has_request() const noexcept { return kept_.has_value(); }
    /// The kept request, for its re-run: nothing is kept nor held any more.
    [[nodiscard]] std::optional<Request> take_request() noexcept;

    /// A message `f` (its fields in `error` for a parsed ErrorResponse) that
    /// may start the kept request's reply, nothing of which was released yet.
    [[nodiscard]] Verdict judge(const Frame& f, const be::ErrorFields* error);
    /// Part of the reply is held back (judged `hold` and not released since).
    [[nodiscard]] bool holding() const noexcept { return holding_; }
    /// The held part goes to the client after all; true when there was one.
    bool release() noexcept { return std::exchange(holding_, false); }

    /// The standby's ErrorResponse of a misrouted request (what the client
    /// gets when no primary can run it), empty when there is none.
    [[nodiscard]] const std::string& refusal() const noexcept { return refusal_; }
    [[nodiscard]] std::string take_refusal() noexcept { return std::exchange(refusal_, {}); }
    void forget_refusal() noexcept { refusal_.clear(); }

private:
    std::optional<Request> kept_;
    std::uint64_t segment_ = 0;
    bool holding_ = false;
    std::string refusal_;
};

}  // namespace pgswitch::wire
