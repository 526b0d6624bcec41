#include "statement_replies.h"

namespace pgswitch::routing {

void StatementReplies::parse_sent(std::string name, std::uint64_t version, std::uint64_t segment, bool client,
                                  bool inline_hidden)
{
    parses_.push_back({std::move(name), version, segment, client, inline_hidden});
}

void StatementReplies::close_sent(std::uint64_t segment, bool inline_hidden)
{
    closes_.push_back({segment, inline_hidden});
}

void StatementReplies::describe_sent(std::string name, std::uint64_t version, std::uint64_t segment,
                                     std::optional<StatementShape> expected)
{
    describes_.push_back({std::move(name), version, segment, std::move(expected)});
}

bool StatementReplies::on_parse_complete() noexcept
{
    // ParseCompletes come in the order the Parses went out, and a Parse the
    // server skipped is resolved at its segment's ReadyForQuery, before any
    // later segment's reply: the front is the one confirmed.
    if (parses_.empty())
        return false;
    const bool drop = parses_.front().inline_hidden;
    parses_.pop_front();
    return drop;
}

bool StatementReplies::on_close_complete() noexcept
{
    if (closes_.empty())
        return false;
    const bool drop = closes_.front().inline_hidden;
    closes_.pop_front();
    return drop;
}

void StatementReplies::on_parameter_description(std::string_view body)
{
    if (!describes_.empty())
        parameters_ = std::string(body);
}

void StatementReplies::on_row_description(std::optional<std::string_view> rows, SessionState& session)
{
    // A RowDescription or NoData not preceded by a ParameterDescription
    // answers a portal's Describe or an Execute: not ours.
    if (!parameters_ || describes_.empty())
        return;
    StatementShape shape{std::move(*parameters_), rows ? std::string(*rows) : std::string()};
    parameters_.reset();
    auto d = std::move(describes_.front());
    describes_.pop_front();
    if (d.expected) {
        if (shape != *d.expected)
            check_failed_ = true;
        return;
    }
    if (const auto* ps = session.statement(d.name); ps && ps->version == d.version)
        session.record_shown(d.name, std::move(shape));
}

std::size_t StatementReplies::on_segment_done(std::uint64_t segment, SessionState& session, LinkState& link)
{
    std::size_t failed = 0;
    parameters_.reset();
    while (!parses_.empty() && parses_.front().segment <= segment) {
        // Never confirmed: skipped after an error, or failed itself.
        const auto& p = parses_.front();
        if (p.client) {
            ++failed;
            if (const auto* ps = session.statement(p.name); ps && ps->version == p.version)
                session.record_close_statement(p.name);
        }
        if (auto it = link.statements.find(p.name); it != link.statements.end() && it->second == p.version)
            link.statements.erase(it);
        parses_.pop_front();
    }
    while (!closes_.empty() && closes_.front().segment <= segment)
        closes_.pop_front();  // skipped after an error
    while (!describes_.empty() && describes_.front().segment <= segment) {
        if (describes_.front().expected)
            check_failed_ = true;  // the check itself failed (its Parse did)
        describes_.pop_front();
    }
    return failed;
}

bool StatementReplies::parse_pending(std::string_view name) const noexcept
{
    for (const auto& p : parses_)
        if (p.name == name)
            return true;
    return false;
}

bool StatementReplies::take_check_failure() noexcept
{
    const bool failed = check_failed_;
    check_failed_ = false;
    return failed;
}

void StatementReplies::clear() noexcept
{
    parses_.clear();
    describes_.clear();
    closes_.clear();
    parameters_.reset();
}

}  // namespace pgswitch::routing
