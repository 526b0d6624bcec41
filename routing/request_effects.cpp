#include "routing/request_effects.h"

#include <algorithm>
#include <memory>
#include <string>

namespace pgswitch::routing {

namespace fe = wire::fe;

namespace {

/// Applies one message; returns the version to report for it.
class EffectRecorder {
public:
    EffectRecorder(const RequestFacts& facts, SessionState& session, LinkState& link, bool on_primary,
                   std::uint64_t generation, RequestEffects& out)
        : facts_(facts),
          session_(session),
          link_(link),
          on_primary_(on_primary),
          generation_(generation),
          out_(out)
    {
    }

    std::uint64_t apply(std::size_t index, const wire::RequestMessage& m,
                        const std::shared_ptr<const Classification>& cls)
    {
        switch (m.tag) {
        case fe::Tag::Query:
            apply_executed(index);
            // A simple Query destroys the unnamed statement (Protocol → Extended Query).
            session_.forget_unnamed();
            out_.forgot_unnamed = true;
            return RequestEffects::no_version;
        case fe::Tag::Execute:
            apply_executed(index);
            return RequestEffects::no_version;
        case fe::Tag::Parse:
            if (const auto* p = m.as<fe::Parse>())
                return parse(*p, cls);
            return RequestEffects::no_version;
        case fe::Tag::Describe:
            if (const auto* d = m.as<fe::Describe>(); d && d->kind == 'S' && !d->name.empty())
                if (const auto* ps = session_.statement(d->name))
                    return ps->version;
            return RequestEffects::no_version;
        case fe::Tag::Close:
            if (const auto* c = m.as<fe::Close>(); c && c->kind == 'S' && !c->name.empty()) {
                session_.record_close_statement(c->name);
                if (auto it = link_.statements.find(c->name); it != link_.statements.end())
                    link_.statements.erase(it);
            }
            return RequestEffects::no_version;
        default:
            return RequestEffects::no_version;
        }
    }

private:
    /// The effects of the statements message `index` runs (a Query's, an Execute's portal's).
    void apply_executed(std::size_t index)
    {
        for (const auto& e : facts_.executed) {
            if (e.message != index)
                continue;
            for (const auto& st : e.cls->statements) {
                const auto own = e.text.substr(std::min(st.offset, e.text.size()), st.length);
                if (session_.apply_effects(st, own, link_, on_primary_))
                    out_.catalog_stale = true;
            }
        }
    }

    std::uint64_t parse(const fe::Parse& p, const std::shared_ptr<const Classification>& cls)
    {
        const bool write = !cls || cls->write;
        if (p.statement.empty()) {
            session_.record_unnamed(p.query, p.param_types, p.param_type_count, write);
            return RequestEffects::no_version;
        }
        PreparedStatement ps;
        ps.query.assign(p.query);
        ps.param_types.assign(p.param_types);
        ps.param_count = p.param_type_count;
        ps.write = write;
        ps.classification = cls;
        ps.classified_with = generation_;
        const std::string name(p.statement);
        session_.record_parse(name, std::move(ps));
        const auto version = session_.statement(name)->version;
        link_.statements[name] = version;
        return version;
    }

    const RequestFacts& facts_;
    SessionState& session_;
    LinkState& link_;
    bool on_primary_;
    std::uint64_t generation_;
    RequestEffects& out_;
};

}  // namespace

RequestEffects record_effects(const wire::Request& request, const RequestFacts& facts, SessionState& session,
                              LinkState& link, bool on_primary, std::uint64_t catalog_generation)
{
    RequestEffects out;
    EffectRecorder recorder(facts, session, link, on_primary, catalog_generation, out);
    const auto messages = request.messages();
    std::size_t cls_index = 0;  // facts.classes has one entry per Query and Parse
    static const std::shared_ptr<const Classification> none;
    for (std::size_t i = 0; i < messages.size(); ++i) {
        const auto& m = messages[i];
        const bool has_class = m.tag == fe::Tag::Query || m.tag == fe::Tag::Parse;
        const auto& cls = has_class && cls_index < facts.classes.size() ? facts.classes[cls_index] : none;
        if (has_class)
            ++cls_index;
        out.versions.push_back(recorder.apply(i, m, cls));
    }
    if (facts.may_write)
        session.wrote = true;
    return out;
}

}  // namespace pgswitch::routing
