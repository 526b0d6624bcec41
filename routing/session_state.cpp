#include "session_state.h"

#include <algorithm>
#include <cctype>

namespace pgswitch::routing {
namespace {

std::string lower_unquoted(std::string_view v)
{
    std::string out;
    for (char c : v)
        if (c != '\'' && c != ' ' && c != '"')
            out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    return out;
}

/// A boolean GUC value as the server reads it ("on", 'true', yes, 1...).
bool is_true_setting(std::string_view v)
{
    const auto s = lower_unquoted(v);
    return s == "on" || s == "true" || s == "yes" || s == "1" || s == "t" || s == "y";
}

/// DDL that may change what the catalog lists: which functions write, which
/// relations are UNLOGGED (CREATE UNLOGGED TABLE, ALTER TABLE SET [UN]LOGGED).
bool may_change_catalog(std::string_view text)
{
    std::string lower(text);
    for (auto& ch : lower)
        ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    return lower.find("function") != std::string::npos || lower.find("procedure") != std::string::npos ||
           lower.find("logged") != std::string::npos;
}

}  // namespace

void SessionState::record_set(std::string name, std::string statement)
{
    auto it = std::find_if(settings_.begin(), settings_.end(), [&](const auto& p) { return p.first == name; });
    if (it != settings_.end())
        it->second = std::move(statement);
    else
        settings_.emplace_back(std::move(name), std::move(statement));
    ++settings_version_;
}

void SessionState::record_reset(std::string_view name)
{
    std::erase_if(settings_, [&](const auto& p) { return p.first == name; });
    ++settings_version_;
}

void SessionState::record_reset_all()
{
    settings_.clear();
    default_read_only = login_read_only_;
    default_serializable = login_serializable_;
    ++settings_version_;
}

void SessionState::set_login_defaults(bool read_only, bool serializable) noexcept
{
    login_read_only_ = default_read_only = read_only;
    login_serializable_ = default_serializable = serializable;
}

void SessionState::record_discard_all()
{
    settings_.clear();
    statements_.clear();
    sql_prepared_.clear();
    pinned_to_primary = false;
    default_read_only = login_read_only_;
    default_serializable = login_serializable_;
    ++settings_version_;
    ++discard_epoch_;
}

std::string SessionState::settings_script() const
{
    std::string s = "RESET ALL";
    for (const auto& [name, stmt] : settings_) {
        s += "; ";
        s += stmt;
    }
    return s;
}

std::optional<std::string> SessionState::setting_value(std::string_view name) const
{
    for (const auto& [n, stmt] : settings_)
        if (n == name)
            return stmt;
    return std::nullopt;
}

void SessionState::record_parse(std::string name, PreparedStatement s)
{
    s.version = ++next_version_;
    statements_[std::move(name)] = std::move(s);
}

void SessionState::record_close_statement(std::string_view name)
{
    if (auto it = statements_.find(name); it != statements_.end())
        statements_.erase(it);
}

void SessionState::record_shown(std::string_view name, StatementShape shape)
{
    if (auto it = statements_.find(name); it != statements_.end()) {
        it->second.shown = std::move(shape);
        any_shown_ = true;
    }
}

const PreparedStatement* SessionState::statement(std::string_view name) const
{
    auto it = statements_.find(name);
    return it == statements_.end() ? nullptr : &it->second;
}

void SessionState::record_sql_prepare(std::string name, std::string prepare_text, bool write)
{
    sql_prepared_[std::move(name)] = SqlPrepared{std::move(prepare_text), write, ++next_version_};
}

void SessionState::record_deallocate(std::string_view name)
{
    // SQL PREPARE and protocol Parse share one namespace: DEALLOCATE drops either.
    if (auto it = sql_prepared_.find(name); it != sql_prepared_.end())
        sql_prepared_.erase(it);
    if (auto it = statements_.find(name); it != statements_.end())
        statements_.erase(it);
}

void SessionState::record_deallocate_all()
{
    sql_prepared_.clear();
    statements_.clear();
}

const SqlPrepared* SessionState::sql_prepared(std::string_view name) const
{
    auto it = sql_prepared_.find(name);
    return it == sql_prepared_.end() ? nullptr : &it->second;
}

SessionState::Catchup SessionState::catch_up(LinkState& link) const
{
    Catchup c;
    if (link.discard_epoch != discard_epoch_) {
        c.discard_all = true;
        link.discard_epoch = discard_epoch_;
        link.statements.clear();
        link.sql_prepared.clear();
        link.settings_version = 0;  // DISCARD ALL reset them too
    }
    if (link.settings_version != settings_version_) {
        // A fresh link (version 0) with nothing SET needs nothing.
        if (!(link.settings_version == 0 && settings_.empty() && !c.discard_all))
            c.settings = settings_script();
        if (c.discard_all && settings_.empty())
            c.settings.reset();
        link.settings_version = settings_version_;
    }
    return c;
}

bool SessionState::apply_effects(const StatementInfo& st, std::string_view text, LinkState& link, bool on_primary)
{
    switch (st.session) {
    case SessionEffect::set:
        if (st.set_name == "pgswitch.min_lsn")
            break;  // answered by pgswitch, never sent
        record_set(st.set_name, std::string(text));
        link.settings_version = settings_version_;
        if (st.set_name == "default_transaction_read_only")
            default_read_only = is_true_setting(st.set_value);
        else if (st.set_name == "default_transaction_isolation")
            default_serializable = lower_unquoted(st.set_value) == "serializable";
        break;
    case SessionEffect::reset:
        record_reset(st.set_name);
        link.settings_version = settings_version_;
        if (st.set_name == "default_transaction_read_only")
            default_read_only = login_read_only_;
        else if (st.set_name == "default_transaction_isolation")
            default_serializable = login_serializable_;
        break;
    case SessionEffect::reset_all:
        record_reset_all();
        link.settings_version = settings_version_;
        break;
    case SessionEffect::discard_all:
        record_discard_all();
        link.discard_epoch = discard_epoch_;
        link.settings_version = settings_version_;
        link.statements.clear();
        link.sql_prepared.clear();
        break;
    default:
        break;
    }
    if (st.prepare_name) {
        record_sql_prepare(*st.prepare_name, std::string(text), st.prepared_statement_is_write);
        link.sql_prepared[*st.prepare_name] = sql_prepared(*st.prepare_name)->version;
    }
    if (st.deallocate_name) {
        record_deallocate(*st.deallocate_name);
        link.sql_prepared.erase(*st.deallocate_name);
        if (auto it = link.statements.find(*st.deallocate_name); it != link.statements.end())
            link.statements.erase(it);
    }
    if (st.deallocate_all) {
        record_deallocate_all();
        link.sql_prepared.clear();
        link.statements.clear();
    }
    if (st.pins_primary && on_primary)
        pinned_to_primary = true;
    // CREATE/ALTER/DROP FUNCTION may change which calls write.
    return st.kind == StatementKind::other && may_change_catalog(text);
}

}  // namespace pgswitch::routing
