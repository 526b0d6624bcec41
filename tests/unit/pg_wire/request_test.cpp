// RequestAssembler and Request: frames grouped at request boundaries, each
// message parsed once, views that survive moving the request.
#include <doctest/doctest.h>

#include "support/builders.h"
#include "pg_wire/request.h"

using namespace pgswitch;
using namespace pgswitch::test;
namespace wfe = pgswitch::wire::fe;

namespace {

/// Feeds a byte stream through a decoder into an assembler; returns the
/// requests it completed.
std::vector<wire::Request> assemble(std::string_view stream)
{
    wire::FrameDecoder dec;
    dec.feed(stream);
    wire::RequestAssembler a;
    std::vector<wire::Request> out;
    for (;;) {
        auto f = dec.next();
        REQUIRE(f);
        if (!*f)
            break;
        if (a.push(**f))
            out.push_back(a.take());
    }
    CHECK(a.pending() == 0);
    return out;
}

}  // namespace

TEST_CASE("a simple Query is one request")
{
    auto rs = assemble(fe::query("SELECT 1"));
    REQUIRE(rs.size() == 1);
    const auto& r = rs.front();
    CHECK(r.is_single_query());
    CHECK(r.synced());
    CHECK_FALSE(r.extended());
    CHECK(r.executes());
    CHECK(r.sync_count() == 1);
    REQUIRE(r.messages().front().as<wfe::Query>());
    CHECK(r.messages().front().as<wfe::Query>()->sql == "SELECT 1");
    CHECK(r.bytes() == fe::query("SELECT 1"));
}

TEST_CASE("extended messages gather until Sync, each parsed once")
{
    const auto stream = concat(fe::parse("s1", "SELECT $1::int", {23}), fe::bind("", "s1", {"7"}),
                               fe::describe('P', ""), fe::execute("", 0), fe::sync(), fe::query("SELECT 2"));
    auto rs = assemble(stream);
    REQUIRE(rs.size() == 2);
    const auto& r = rs[0];
    CHECK(r.extended());
    CHECK(r.synced());
    CHECK(r.executes());
    CHECK(r.boundary() == wfe::Tag::Sync);
    REQUIRE(r.messages().size() == 5);
    const auto* p = r.messages()[0].as<wfe::Parse>();
    REQUIRE(p);
    CHECK(p->statement == "s1");
    CHECK(p->query == "SELECT $1::int");
    CHECK(p->param_type_count == 1);
    const auto* b = r.messages()[1].as<wfe::Bind>();
    REQUIRE(b);
    CHECK(b->statement == "s1");
    CHECK(b->portal == "");
    const auto* d = r.messages()[2].as<wfe::Describe>();
    REQUIRE(d);
    CHECK(d->kind == 'P');
    CHECK(r.messages()[3].as<wfe::Execute>());
    CHECK(r.messages()[4].tag == wfe::Tag::Sync);
    CHECK(rs[1].is_single_query());
}

TEST_CASE("Flush ends a request that is not synced; a prepare alone executes nothing")
{
    auto rs = assemble(concat(fe::parse("a", "SELECT 1"), fe::describe('S', "a"), fe::flush()));
    REQUIRE(rs.size() == 1);
    CHECK_FALSE(rs[0].synced());
    CHECK(rs[0].boundary() == wfe::Tag::Flush);
    CHECK_FALSE(rs[0].executes());
    CHECK(rs[0].sync_count() == 0);
}

TEST_CASE("views stay valid when the request moves, even a tiny one")
{
    auto rs = assemble(concat(fe::sync(), fe::query("SELECT 'moved'")));
    REQUIRE(rs.size() == 2);
    wire::Request moved = std::move(rs[1]);
    std::vector<wire::Request> holder;
    holder.push_back(std::move(moved));
    holder.reserve(64);  // reallocates: the Request moves again
    REQUIRE(holder[0].messages().front().as<wfe::Query>());
    CHECK(holder[0].messages().front().as<wfe::Query>()->sql == "SELECT 'moved'");
    CHECK(holder[0].messages().front().raw.data() == holder[0].bytes().data());
    CHECK(rs[0].messages().size() == 1);
    CHECK(rs[0].messages().front().tag == wfe::Tag::Sync);
}

TEST_CASE("a message whose body does not parse is marked, not dropped")
{
    // A Bind whose format count says 2 but carries none.
    std::string bad;
    wire::MessageWriter w(bad);
    w.begin('B');
    w.cstring("");
    w.cstring("s");
    w.i16(2);
    w.finish();
    auto rs = assemble(concat(bad, fe::sync()));
    REQUIRE(rs.size() == 1);
    REQUIRE(rs[0].messages().size() == 2);
    CHECK(rs[0].messages()[0].malformed);
    CHECK(rs[0].messages()[0].tag == wfe::Tag::Bind);
    CHECK_FALSE(rs[0].messages()[1].malformed);
}

TEST_CASE("clear() drops a request under way")
{
    wire::FrameDecoder dec;
    dec.feed(fe::parse("x", "SELECT 1"));
    auto f = dec.next();
    REQUIRE(f);
    REQUIRE(*f);
    wire::RequestAssembler a;
    CHECK_FALSE(a.push(**f));
    CHECK(a.pending() == 1);
    a.clear();
    CHECK(a.pending() == 0);
}
