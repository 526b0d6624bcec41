#include "request.h"

namespace pgswitch::wire {
namespace {

/// The body of a framed message (after the type byte and the length word).
std::string_view body_of(std::string_view raw) noexcept
{
    return raw.substr(5);
}

template <class T>
void store(RequestMessage& m, result<T> parsed)
{
    if (parsed)
        m.view = *parsed;
    else
        m.malformed = true;
}

void parse_view(RequestMessage& m)
{
    const auto body = body_of(m.raw);
    switch (m.tag) {
    case fe::Tag::Query:
        store(m, fe::parse_query(body));
        break;
    case fe::Tag::Parse:
        store(m, fe::parse_parse(body));
        break;
    case fe::Tag::Bind:
        store(m, fe::parse_bind(body));
        break;
    case fe::Tag::Describe:
        store(m, fe::parse_describe(body));
        break;
    case fe::Tag::Execute:
        store(m, fe::parse_execute(body));
        break;
    case fe::Tag::Close:
        store(m, fe::parse_close(body));
        break;
    case fe::Tag::FunctionCall:
        store(m, fe::parse_function_call(body));
        break;
    default:
        break;  // Sync, Flush: nothing to read
    }
}

}  // namespace

bool is_request_boundary(fe::Tag t) noexcept
{
    return t == fe::Tag::Query || t == fe::Tag::Sync || t == fe::Tag::Flush || t == fe::Tag::FunctionCall;
}

bool Request::synced() const noexcept
{
    if (messages_.empty())
        return false;
    const auto t = messages_.back().tag;
    return t == fe::Tag::Sync || t == fe::Tag::Query || t == fe::Tag::FunctionCall;
}

bool RequestAssembler::push(const Frame& frame)
{
    frames_.push_back({frame.tag, bytes_.size(), frame.raw.size()});
    bytes_.insert(bytes_.end(), frame.raw.begin(), frame.raw.end());
    return is_request_boundary(static_cast<fe::Tag>(frame.tag));
}

Request RequestAssembler::take()
{
    Request r;
    r.bytes_ = std::move(bytes_);
    bytes_ = {};
    // The next request is likely the same shape: one allocation, not a growth series.
    bytes_.reserve(r.bytes_.size());
    r.messages_.reserve(frames_.size());
    for (const auto& f : frames_) {
        RequestMessage m;
        m.tag = static_cast<fe::Tag>(f.tag);
        m.raw = std::string_view(r.bytes_.data() + f.offset, f.size);
        parse_view(m);
        switch (m.tag) {
        case fe::Tag::Query:
        case fe::Tag::FunctionCall:
            r.executes_ = true;
            ++r.sync_count_;
            break;
        case fe::Tag::Execute:
            r.executes_ = true;
            r.extended_ = true;
            break;
        case fe::Tag::Sync:
            ++r.sync_count_;
            r.extended_ = true;
            break;
        default:
            r.extended_ = true;
            break;
        }
        r.messages_.push_back(m);
    }
    frames_.clear();
    return r;
}

void RequestAssembler::clear() noexcept
{
    bytes_.clear();
    frames_.clear();
}

std::string describe(const Request& request)
{
    std::string desc;
    const auto named = [&desc](std::string_view name) {
        desc += '(';
        desc += name;
        desc += ')';
    };
    for (const auto& m : request.messages()) {
        if (!desc.empty())
            desc += ' ';
        desc += static_cast<char>(m.tag);
        if (const auto* p = m.as<fe::Parse>())
            named(p->statement);
        else if (const auto* b = m.as<fe::Bind>())
            named(b->statement);
        else if (const auto* d = m.as<fe::Describe>())
            named(std::string(1, d->kind) + std::string(d->name));
        else if (const auto* c = m.as<fe::Close>())
            named(std::string(1, c->kind) + std::string(c->name));
        else if (const auto* q = m.as<fe::Query>())
            named(q->sql.substr(0, 40));
    }
    return desc;
}

Request make_query_request(std::string_view sql)
{
    std::string bytes;
    fe::build_query(bytes, sql);
    RequestAssembler assembler;
    (void)assembler.push(Frame{static_cast<char>(fe::Tag::Query), body_of(bytes), bytes});
    return assembler.take();
}

}  // namespace pgswitch::wire
