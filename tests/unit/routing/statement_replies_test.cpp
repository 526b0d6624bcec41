// StatementReplies: which Parses the server confirmed, what a Describe showed
// the client, whether a copy on another server agrees.
#include <doctest/doctest.h>

#include "routing/statement_replies.h"

using namespace pgswitch::routing;

namespace {

PreparedStatement statement(std::string query)
{
    PreparedStatement ps;
    ps.query = std::move(query);
    return ps;
}

}  // namespace

TEST_CASE("a confirmed Parse keeps its statement; one an error skipped frees the name")
{
    SessionState s;
    LinkState link;
    StatementReplies r;
    s.record_parse("good", statement("SELECT 1"));
    s.record_parse("bad", statement("SELEC 1"));
    link.statements["good"] = s.statement("good")->version;
    link.statements["bad"] = s.statement("bad")->version;
    r.parse_sent("good", s.statement("good")->version, 1, true);
    r.parse_sent("bad", s.statement("bad")->version, 2, true);
    CHECK(r.parse_pending("bad"));
    CHECK_FALSE(r.on_parse_complete());  // good, the client's
    r.on_segment_done(1, s, link);
    CHECK(s.statement("good"));
    CHECK(r.parse_pending("bad"));
    // segment 2: ErrorResponse, then ReadyForQuery; no ParseComplete
    r.on_segment_done(2, s, link);
    CHECK_FALSE(s.statement("bad"));
    CHECK_FALSE(link.statements.contains("bad"));
    CHECK(link.statements.contains("good"));
    CHECK(r.idle());
}

TEST_CASE("a failed replay of the session's statement leaves the session's statement alone")
{
    SessionState s;
    LinkState link;
    StatementReplies r;
    s.record_parse("x", statement("SELECT * FROM gone"));
    const auto v = s.statement("x")->version;
    link.statements["x"] = v;
    r.parse_sent("x", v, 1, false);
    r.on_segment_done(1, s, link);
    CHECK(s.statement("x"));                     // still the client's
    CHECK_FALSE(link.statements.contains("x"));  // but not on that server
}

TEST_CASE("a re-Parse after Close is not undone by the old Parse's failure")
{
    SessionState s;
    LinkState link;
    StatementReplies r;
    s.record_parse("n", statement("SELEC"));
    const auto old_version = s.statement("n")->version;
    r.parse_sent("n", old_version, 1, true);
    s.record_close_statement("n");
    s.record_parse("n", statement("SELECT 2"));
    link.statements["n"] = s.statement("n")->version;
    r.parse_sent("n", s.statement("n")->version, 2, true);
    r.on_segment_done(1, s, link);  // the old one failed
    REQUIRE(s.statement("n"));
    CHECK(s.statement("n")->query == "SELECT 2");
}

TEST_CASE("a Describe of a statement records what the client was shown")
{
    SessionState s;
    LinkState link;
    StatementReplies r;
    s.record_parse("d", statement("SELECT a FROM t"));
    r.describe_sent("d", s.statement("d")->version, 1);
    r.on_row_description("portal rows", s);  // a portal's description first: not ours
    CHECK_FALSE(s.statement("d")->shown);
    r.on_parameter_description("params");
    r.on_row_description("rows", s);
    REQUIRE(s.statement("d")->shown);
    CHECK(s.statement("d")->shown->parameters == "params");
    CHECK(s.statement("d")->shown->rows == "rows");
    r.on_segment_done(1, s, link);
    CHECK(r.idle());
}

TEST_CASE("a check fails when another server describes the statement differently, or cannot prepare it")
{
    SessionState s;
    LinkState link;
    StatementReplies r;
    const StatementShape shown{"p", "rows v1"};
    r.describe_sent("c", 1, 1, shown);
    r.on_parameter_description("p");
    r.on_row_description("rows v1", s);
    r.on_segment_done(1, s, link);
    CHECK_FALSE(r.take_check_failure());

    r.describe_sent("c", 1, 2, shown);
    r.on_parameter_description("p");
    r.on_row_description("rows v2", s);
    r.on_segment_done(2, s, link);
    CHECK(r.take_check_failure());
    CHECK_FALSE(r.take_check_failure());  // taken

    r.parse_sent("c", 1, 3, false);
    r.describe_sent("c", 1, 3, shown);
    r.on_segment_done(3, s, link);  // the Parse failed: no description at all
    CHECK(r.take_check_failure());
}
