#include "request_analysis.h"

#include <algorithm>

namespace pgswitch::routing {
namespace {

namespace fe = wire::fe;

/// Builds RequestFacts one message at a time.
class Analyzer {
public:
    Analyzer(RequestFacts& facts, const SessionState& session, const ClassifyFn& classify,
             std::optional<std::uint64_t> generation)
        : facts_(facts),
          session_(session),
          classify_(classify),
          generation_(generation)
    {
    }

    void add(std::size_t index, const wire::RequestMessage& m)
    {
        if (m.malformed) {
            // The server refuses it; the primary may as well.
            if (m.tag == fe::Tag::Query || m.tag == fe::Tag::Parse)
                facts_.classes.push_back(nullptr);  // keeps classes aligned with the messages
            facts_.must_primary = true;
            facts_.bookkeeping_only = false;
            return;
        }
        switch (m.tag) {
        case fe::Tag::Query:
            on_query(index, *m.as<fe::Query>());
            break;
        case fe::Tag::Parse:
            on_parse(*m.as<fe::Parse>());
            break;
        case fe::Tag::Bind:
            on_bind(*m.as<fe::Bind>());
            break;
        case fe::Tag::Describe:
            on_describe(*m.as<fe::Describe>());
            break;
        case fe::Tag::Execute:
            on_execute(index, *m.as<fe::Execute>());
            break;
        case fe::Tag::FunctionCall:
            // Fast-path calls can be anything.
            facts_.must_primary = true;
            facts_.may_write = true;
            facts_.bookkeeping_only = false;
            break;
        default:
            break;  // Close, Sync, Flush: where the session is
        }
    }

private:
    /// A statement the request knows by name: parsed in it, or the session's.
    struct Known {
        std::shared_ptr<const Classification> cls;
        std::string_view text;
    };

    void on_query(std::size_t index, const fe::Query& q)
    {
        auto cls = classify_(q.sql);
        facts_.classes.push_back(cls);
        merge_routing(*cls);
        merge_execution(index, cls, q.sql);
    }

    void on_parse(const fe::Parse& p)
    {
        auto cls = classify_(p.query);
        facts_.classes.push_back(cls);
        merge_routing(*cls);
        if (p.statement.empty()) {
            facts_.parses_unnamed = true;
            unnamed_ = Known{cls, p.query};
        } else {
            parsed_.push_back({p.statement, Known{cls, p.query}});
        }
    }

    void on_bind(const fe::Bind& b)
    {
        auto known = statement(b.statement);
        if (!known) {
            // The server answers "does not exist" (26000) or runs the unnamed
            // statement where it lives; either way not anywhere we choose.
            facts_.bookkeeping_only = false;
            if (!b.statement.empty())
                facts_.must_primary = true;
        }
        bound_.push_back({b.portal, known});
    }

    void on_describe(const fe::Describe& d)
    {
        if (d.kind != 'S')
            return;  // a portal: bound in this request, or where the session is
        if (!statement(d.name)) {
            facts_.bookkeeping_only = false;
            if (!d.name.empty())
                facts_.must_primary = true;  // 26000 from the server
            return;
        }
        facts_.bookkeeping_only = false;  // a server that has the statement answers
    }

    void on_execute(std::size_t index, const fe::Execute& e)
    {
        auto it = std::find_if(bound_.rbegin(), bound_.rend(), [&](const auto& b) { return b.first == e.portal; });
        if (it == bound_.rend() || !it->second) {
            // A portal of an earlier request (open transaction, unfinished
            // extended request: the session stays where it is) or of an
            // unknown statement: assume the worst for read-your-writes.
            facts_.may_write = true;
            facts_.bookkeeping_only = false;
            return;
        }
        merge_routing(*it->second->cls);
        merge_execution(index, it->second->cls, it->second->text);
    }

    /// The statement `name` as this request sees it: parsed earlier in it
    /// (the last Parse wins), else the session's; nullopt when unknown.
    std::optional<Known> statement(std::string_view name)
    {
        if (name.empty()) {
            if (unnamed_)
                return unnamed_;
            facts_.uses_unnamed_without_parse = true;
            if (const auto* u = session_.unnamed_statement())
                return Known{classify_(u->query), u->query};
            return std::nullopt;
        }
        for (auto it = parsed_.rbegin(); it != parsed_.rend(); ++it)
            if (it->first == name)
                return it->second;
        if (const auto* ps = session_.statement(name)) {
            // Classified when it was parsed, against the same catalog: reused.
            if (generation_ && ps->classification && ps->classified_with == *generation_)
                return Known{ps->classification, ps->query};
            return Known{classify_(ps->query), ps->query};
        }
        return std::nullopt;
    }

    /// What decides where the request may run.
    void merge_routing(const Classification& cls)
    {
        facts_.must_primary = facts_.must_primary || cls.write || cls.unlogged;
        facts_.hint_primary = facts_.hint_primary || cls.hint == Hint::primary;
        facts_.hint_replica = facts_.hint_replica || cls.hint == Hint::replica;
        facts_.pins = facts_.pins || cls.pins_primary;
        facts_.uses_currval = facts_.uses_currval || cls.uses_currval;
        facts_.session_identity = facts_.session_identity || cls.session_identity;
        for (const auto& f : cls.unknown_functions)
            if (std::find(facts_.unknown_functions.begin(), facts_.unknown_functions.end(), f) ==
                facts_.unknown_functions.end())
                facts_.unknown_functions.push_back(f);
        for (const auto& st : cls.statements)
            if (!is_bookkeeping(st))
                facts_.bookkeeping_only = false;
    }

    /// What running the statements does: transactions, writes, COPY.
    void merge_execution(std::size_t index, const std::shared_ptr<const Classification>& cls, std::string_view text)
    {
        facts_.may_write = facts_.may_write || cls->write;
        facts_.executed.push_back({index, cls, text});
        for (const auto& st : cls->statements) {
            switch (st.tx) {
            case Tx::begin:
            case Tx::begin_read_only: {
                const bool read_only = st.tx == Tx::begin_read_only || session_.default_read_only;
                // A standby refuses serializable transactions, read-only ones too.
                const bool serializable = st.serializable || session_.default_serializable;
                if (read_only && !serializable)
                    facts_.tx_begin_read_only = true;
                else
                    facts_.tx_begin = true;
                break;
            }
            case Tx::commit:
            case Tx::rollback:
            case Tx::prepare_transaction:
                facts_.tx_end = true;
                break;
            default:
                break;
            }
            if (st.execute_name) {
                // EXECUTE of an SQL PREPAREd statement, or of a protocol-level
                // one (one namespace: asyncpg's prepare(name=...) then
                // EXECUTE name), writes if what it runs does.
                const auto* sp = session_.sql_prepared(*st.execute_name);
                const auto* ps = sp ? nullptr : session_.statement(*st.execute_name);
                const bool writes = sp ? sp->write : !ps || ps->write;
                facts_.must_primary = facts_.must_primary || writes;
                facts_.may_write = facts_.may_write || writes;
            }
            if (st.kind == StatementKind::copy_from)
                facts_.copy_from = true;
            if (st.changes_schema)
                facts_.changes_schema = true;
            if (st.kind == StatementKind::show && st.set_name == "pgswitch.lsn")
                facts_.show_lsn = true;
            if (st.session == SessionEffect::set && st.set_name == "pgswitch.min_lsn")
                facts_.set_min_lsn = st.set_value;
        }
    }

    /// SET, PREPARE, a transaction end...: runs where the session already is.
    static bool is_bookkeeping(const StatementInfo& st) noexcept
    {
        if (st.session != SessionEffect::none || st.prepare_name || st.deallocate_name || st.deallocate_all)
            return true;
        switch (st.tx) {
        case Tx::commit:
        case Tx::rollback:
        case Tx::prepare_transaction:
            return !st.tx_chain;
        default:
            return false;
        }
    }

    RequestFacts& facts_;  ///< filled in place: the caller's (no move of its inline lists)
    const SessionState& session_;
    const ClassifyFn& classify_;
    std::optional<std::uint64_t> generation_;  ///< of the catalog classify_ uses
    boost::container::small_vector<std::pair<std::string_view, Known>, 2> parsed_;
    std::optional<Known> unnamed_;
    boost::container::small_vector<std::pair<std::string_view, std::optional<Known>>, 2>
        bound_;  ///< portal → its statement
};

}  // namespace

RequestFacts analyze_request(const wire::Request& request, const SessionState& session, const ClassifyFn& classify,
                             std::optional<std::uint64_t> catalog_generation)
{
    RequestFacts facts;
    Analyzer a(facts, session, classify, catalog_generation);
    const auto messages = request.messages();
    for (std::size_t i = 0; i < messages.size(); ++i)
        a.add(i, messages[i]);
    return facts;
}

}  // namespace pgswitch::routing
