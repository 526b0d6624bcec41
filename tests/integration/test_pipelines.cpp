// Pipelines with errors (issue 10): a client that sends several requests
// before reading any reply, with a failing statement first, in the middle or
// last, with and without a Sync between them, over the extended and the
// simple protocol, must get through pgswitch exactly the replies the primary
// gives directly (no hang, nothing more, nothing less), and the table must end
// up the same.
#include "harness.h"
#include "rawpg.h"

#include <doctest/doctest.h>

#include <sstream>
#include <string>
#include <vector>

using namespace e2e;

namespace {

std::string message(char type, const std::string& body)
{
    return std::string(1, type) + be32(static_cast<uint32_t>(body.size() + 4)) + body;
}
std::string cstr(const std::string& s)
{
    return s + std::string(1, '\0');
}
std::string query(const std::string& sql)
{
    return message('Q', cstr(sql));
}
std::string sync_msg()
{
    return message('S', "");
}
std::string flush_msg()
{
    return message('H', "");
}
/// Parse/Bind/Execute of `sql` as the unnamed statement and portal.
std::string extended(const std::string& sql)
{
    return message('P', cstr("") + cstr(sql) + be16(0)) +
           message('B', cstr("") + cstr("") + be16(0) + be16(0) + be16(0)) + message('E', cstr("") + be32(0));
}

/// The replies that matter, in order: message types, with the SQLSTATE of
/// errors and the status of ReadyForQuery ("1 2 C Z:I E:23505 Z:I ...").
struct Transcript {
    std::string replies;
    bool complete = false;  ///< every ReadyForQuery arrived before the deadline
};

Transcript run(int port, const std::string& table, const std::string& bytes, int ready_for_query,
               const std::string& sql_after = "")
{
    const ClusterEnv& env = cluster();
    RawConn c;
    REQUIRE(c.connect(port));
    std::string why;
    REQUIRE_MESSAGE(c.login(env.get("APP_USER"), env.get("APP_PASSWORD"), env.get("APP_DB"), &why) == "", why);
    REQUIRE(c.simple_query("DROP TABLE IF EXISTS " + table + "; CREATE TABLE " + table +
                           " (id int PRIMARY KEY); "
                           "INSERT INTO " +
                           table + " VALUES (1)") == "");
    REQUIRE(c.send_bytes(bytes));
    Transcript t;
    std::ostringstream out;
    const auto deadline = Clock::now() + 10s;
    int seen = 0;
    while (seen < ready_for_query) {
        auto m = c.read_message(deadline);
        if (!m)
            break;
        switch (m->type) {
        case 'E':
            out << "E:" << error_fields(m->body)['C'] << ' ';
            break;
        case 'Z':
            out << "Z:" << m->body << ' ';
            ++seen;
            break;
        case 'N':
        case 'S':
            break;  // notices and parameter changes may differ
        default:
            out << m->type << ' ';
            break;
        }
    }
    t.complete = seen == ready_for_query;
    std::string rows;
    if (t.complete) {
        REQUIRE(c.simple_query("SELECT string_agg(id::text, ',' ORDER BY id) FROM " + table, &rows) == "");
        out << "| rows " << rows;
    }
    if (t.complete && !sql_after.empty())
        REQUIRE(c.simple_query(sql_after) == "");
    t.replies = out.str();
    return t;
}

struct Pattern {
    std::string name;
    std::string bytes;
    int ready_for_query;
};

std::vector<Pattern> patterns(const std::string& table)
{
    const auto ins = [&](const std::string& id) { return "INSERT INTO " + table + " VALUES (" + id + ")"; };
    const std::string dup = ins("1");  // violates the primary key
    std::vector<Pattern> p;
    // Extended, one Sync for all: the error skips the rest, one ReadyForQuery.
    p.push_back(
        {"extended, one Sync, error first", extended(dup) + extended(ins("2")) + extended(ins("3")) + sync_msg(), 1});
    p.push_back({"extended, one Sync, error in the middle",
                 extended(ins("2")) + extended(dup) + extended(ins("3")) + sync_msg(), 1});
    p.push_back(
        {"extended, one Sync, error last", extended(ins("2")) + extended(ins("3")) + extended(dup) + sync_msg(), 1});
    // Extended, a Sync after each: each its own transaction.
    p.push_back({"extended, Sync after each, error first",
                 extended(dup) + sync_msg() + extended(ins("2")) + sync_msg() + extended(ins("3")) + sync_msg(), 3});
    p.push_back({"extended, Sync after each, error in the middle",
                 extended(ins("2")) + sync_msg() + extended(dup) + sync_msg() + extended(ins("3")) + sync_msg(), 3});
    p.push_back({"extended, Sync after each, error last",
                 extended(ins("2")) + sync_msg() + extended(ins("3")) + sync_msg() + extended(dup) + sync_msg(), 3});
    // Reads and writes mixed in one pipeline (a read may go elsewhere than the write before it).
    p.push_back({"extended, reads between writes, error in the middle",
                 extended("SELECT 1") + sync_msg() + extended(ins("2")) + sync_msg() +
                     extended("SELECT count(*) FROM " + table) + sync_msg() + extended(dup) + sync_msg() +
                     extended("SELECT 2") + sync_msg(),
                 5});
    // Simple protocol: several Query messages sent at once.
    p.push_back({"simple, pipelined Queries, error first", query(dup) + query(ins("2")) + query(ins("3")), 3});
    p.push_back({"simple, pipelined Queries, error in the middle", query(ins("2")) + query(dup) + query(ins("3")), 3});
    p.push_back({"simple, pipelined Queries, error last", query(ins("2")) + query(ins("3")) + query(dup), 3});
    p.push_back(
        {"simple, one multi-statement Query, error in the middle", query(ins("2") + "; " + dup + "; " + ins("3")), 1});
    // In an explicit transaction.
    p.push_back({"transaction, error in the middle",
                 query("BEGIN") + extended(ins("2")) + sync_msg() + extended(dup) + sync_msg() + extended(ins("3")) +
                     sync_msg() + query("COMMIT"),
                 5});
    return p;
}

}  // namespace

TEST_CASE("pipelines with errors at every position get the replies the server gives directly")
{
    E2E_SKIP_IF_DIRECT("compares pgswitch with the primary");
    Proxy px;
    px.start();
    const std::string table = "pl_errors";
    for (const auto& p : patterns(table)) {
        const auto want = run(cluster().primary_port(), table, p.bytes, p.ready_for_query);
        const auto got = run(px.port(), table, p.bytes, p.ready_for_query, "DROP TABLE " + table);
        INFO("pattern: " << p.name);
        REQUIRE_MESSAGE(want.complete, "the server itself did not answer: [" << want.replies << "]");
        CHECK_MESSAGE(got.complete, "pgswitch did not answer every request within 10 s (a hang): " << got.replies);
        CHECK(got.replies == want.replies);
    }
}

TEST_CASE("an error after Flush reaches the client before its Sync")
{
    E2E_SKIP_IF_DIRECT("compares pgswitch with the primary");
    Proxy px;
    px.start();
    for (int port : {cluster().primary_port(), px.port()}) {
        const ClusterEnv& env = cluster();
        RawConn c;
        REQUIRE(c.connect(port));
        std::string why;
        REQUIRE_MESSAGE(c.login(env.get("APP_USER"), env.get("APP_PASSWORD"), env.get("APP_DB"), &why) == "", why);
        REQUIRE(c.simple_query("DROP TABLE IF EXISTS pl_flush; CREATE TABLE pl_flush (id int PRIMARY KEY); "
                               "INSERT INTO pl_flush VALUES (1)") == "");
        REQUIRE(c.send_bytes(extended("INSERT INTO pl_flush VALUES (1)") + flush_msg()));
        std::string state;
        const auto deadline = Clock::now() + 5s;
        while (state.empty()) {
            auto m = c.read_message(deadline);
            REQUIRE_MESSAGE(m, "no error within 5 s after Flush (port " << port << ")");
            if (m->type == 'E')
                state = error_fields(m->body)['C'];
        }
        CHECK(state == "23505");
        REQUIRE(c.send_bytes(sync_msg()));
        bool ready = false;
        while (!ready) {
            auto m = c.read_message(Clock::now() + 5s);
            REQUIRE(m);
            ready = m->type == 'Z';
        }
        CHECK(c.simple_query("DROP TABLE pl_flush") == "");
    }
}
