#include "session_state.h"

#include <algorithm>

namespace pgswitch::routing {

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
    ++settings_version_;
}

void SessionState::record_discard_all()
{
    settings_.clear();
    statements_.clear();
    sql_prepared_.clear();
    pinned_to_primary = false;
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

}  // namespace pgswitch::routing
