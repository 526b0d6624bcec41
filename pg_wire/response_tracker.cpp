#include "response_tracker.h"

#include <algorithm>

namespace pgswitch::wire {

namespace {

/// Messages a server may send at any time, outside any reply, that do not
/// start one (a NoticeResponse may, and counts as its preamble).
bool is_unsolicited(be::Tag t) noexcept
{
    return t == be::Tag::ParameterStatus || t == be::Tag::NotificationResponse;
}

}  // namespace

bool ResponseTracker::Action::fatal() const noexcept
{
    return error && (error->severity() == "FATAL" || error->severity() == "PANIC");
}

std::uint64_t ResponseTracker::push(SegmentKind kind, std::uint64_t lsn, bool schema)
{
    owed_.push_back({kind, ++sent_, lsn, schema});
    clients_ += kind == SegmentKind::client;
    return sent_;
}

ResponseTracker::Action ResponseTracker::on_message(const Frame& f, bool session_holds_link)
{
    Action a;
    const auto tag = static_cast<be::Tag>(f.tag);
    if (tag == be::Tag::ErrorResponse) {
        if (auto fields = be::parse_error_fields(f.body))
            a.error = std::move(*fields);
    } else if (tag == be::Tag::ReadyForQuery) {
        ++done_;
        if (auto rfq = be::parse_ready_for_query(f.body))
            a.ready = rfq->status;
    }
    if (a.fatal() && clients_ == 0 && !session_holds_link) {
        // Not the client's business unless the caller finds it is (its
        // session was terminated on purpose): nothing of its is here.
        a.kind = Kind::fatal_idle;
        return a;
    }
    // A notification is nobody's reply: it goes to the client whoever's
    // segment it arrives in (but not in the middle of a reply to re-run).
    if (front_is_hidden() && tag != be::Tag::NotificationResponse) {
        on_hidden_message(f, a);
        return a;
    }
    if (swallowing_) {
        on_swallowed_message(f, a);
        return a;
    }
    if (!owed_.empty() && fresh_ && !is_unsolicited(tag) && judge_reply_start(f, a))
        return a;
    if (guard_.holding() && is_unsolicited(tag)) {
        // Keeps its place behind the held start of the reply.
        a.kind = Kind::hold;
        return a;
    }
    on_forwarded(a);
    return a;
}

void ResponseTracker::on_hidden_message(const Frame& f, Action& a)
{
    const auto tag = static_cast<be::Tag>(f.tag);
    a.kind = Kind::hidden;
    a.segment = owed_.front();
    const auto kind = a.segment->kind;
    if (tag == be::Tag::DataRow && (kind == SegmentKind::capture_lsn || kind == SegmentKind::replay_wait)) {
        if (auto row = be::parse_data_row(f.body); row && row->size() == 1 && row->front())
            hidden_value_.emplace(*row->front());
    } else if (tag == be::Tag::ReadyForQuery) {
        a.kind = Kind::hidden_done;
        a.value = std::exchange(hidden_value_, std::nullopt);
        pop_front();
    }
}

void ResponseTracker::on_swallowed_message(const Frame& f, Action& a)
{
    a.kind = Kind::drop;
    if (static_cast<be::Tag>(f.tag) != be::Tag::ReadyForQuery)
        return;
    a.kind = Kind::rerun;
    swallowing_ = false;
    fresh_ = true;
    if (!owed_.empty())
        a.segment = pop_front();
}

bool ResponseTracker::judge_reply_start(const Frame& f, Action& a)
{
    // owed_.front() is the client's: hidden fronts were handled before.
    if (rerun_next_) {
        // Its replay wait fell short: this reply may be stale.
        rerun_next_ = false;
        guard_.forget_refusal();
        if (static_cast<be::Tag>(f.tag) == be::Tag::ReadyForQuery) {
            a.kind = Kind::rerun;
            a.segment = pop_front();
        } else {
            a.kind = Kind::drop;
            swallowing_ = true;
        }
        return true;
    }
    if (!can_rerun()) {
        fresh_ = false;
        return false;
    }
    switch (guard_.judge(f, a.error ? &*a.error : nullptr)) {
    case MisrouteGuard::Verdict::misrouted:
        a.kind = Kind::misrouted;
        swallowing_ = true;
        return true;
    case MisrouteGuard::Verdict::hold:
        a.kind = Kind::hold;
        return true;
    case MisrouteGuard::Verdict::release:
        fresh_ = false;
        return false;
    }
    return false;
}

void ResponseTracker::on_forwarded(Action& a)
{
    a.kind = guard_.release() ? Kind::release : Kind::forward;
    if (!a.ready)
        return;
    if (!owed_.empty() && owed_.front().kind == SegmentKind::client)
        a.segment = pop_front();
    fresh_ = true;
}

ResponseTracker::Segment ResponseTracker::pop_front() noexcept
{
    const auto s = owed_.front();
    owed_.pop_front();
    clients_ -= s.kind == SegmentKind::client;
    return s;
}

bool ResponseTracker::rerun_next_client() noexcept
{
    if (clients_ > 0 && !can_rerun())
        return false;
    rerun_next_ = true;
    return true;
}

ResponseTracker::Dropped ResponseTracker::clear() noexcept
{
    Dropped d;
    for (const auto& s : owed_) {
        d.client += s.kind == SegmentKind::client;
        d.capture_lsn += s.kind == SegmentKind::capture_lsn;
    }
    owed_.clear();
    clients_ = 0;
    return d;
}

bool ResponseTracker::awaiting_replay() const noexcept
{
    return rerun_next_ || swallowing_ ||
           std::any_of(owed_.begin(), owed_.end(), [](const Segment& s) { return s.kind == SegmentKind::replay_wait; });
}

bool ResponseTracker::can_rerun() const noexcept
{
    if (!guard_.has_request() || clients_ != 1)
        return false;
    const auto it = std::find_if(owed_.begin(), owed_.end(),
                                 [](const Segment& s) { return s.kind == SegmentKind::client; });
    return it != owed_.end() && guard_.keeps(it->number);
}

}  // namespace pgswitch::wire
