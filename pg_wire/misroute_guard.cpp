#include "misroute_guard.h"

namespace pgswitch::wire {

bool is_reply_preamble(be::Tag t) noexcept
{
    switch (t) {
    case be::Tag::ParseComplete:
    case be::Tag::BindComplete:
    case be::Tag::CloseComplete:
    case be::Tag::ParameterDescription:
    case be::Tag::RowDescription:
    case be::Tag::NoData:
    case be::Tag::NoticeResponse:
        return true;
    default:
        return false;
    }
}

bool refused_by_standby(const be::ErrorFields& e)
{
    return e.sqlstate() == "25006" ||
           (e.sqlstate() == "0A000" &&
            (e.message() == "cannot access temporary or unlogged relations during recovery" ||
             e.message() == "cannot use serializable mode in a hot standby"));
}

const Request& MisrouteGuard::keep(Request request, std::uint64_t segment)
{
    kept_.emplace(std::move(request));
    segment_ = segment;
    return *kept_;
}

std::optional<Request> MisrouteGuard::take_request() noexcept
{
    holding_ = false;
    return std::exchange(kept_, std::nullopt);
}

MisrouteGuard::Verdict MisrouteGuard::judge(const Frame& f, const be::ErrorFields* error)
{
    if (error && refused_by_standby(*error)) {
        holding_ = false;
        refusal_.assign(f.raw);
        return Verdict::misrouted;
    }
    if (is_reply_preamble(static_cast<be::Tag>(f.tag))) {
        holding_ = true;
        return Verdict::hold;
    }
    return Verdict::release;
}

}  // namespace pgswitch::wire
