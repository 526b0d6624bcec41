// Frontend and backend message codecs: byte-exact encodings, round trips
// build → FrameDecoder → parse for every message type, and strict rejection.
#include <doctest/doctest.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "pg_wire/backend.h"
#include "pg_wire/frontend.h"
#include "support/builders.h"

namespace wire = pgswitch::wire;
namespace t = pgswitch::test;
using namespace std::string_literals;
using boost::system::error_code;

namespace {

char tag(wire::fe::Tag x)
{
    return static_cast<char>(x);
}
char tag(wire::be::Tag x)
{
    return static_cast<char>(x);
}

/// Any parse_* reduced to "did it accept the body", for table-driven checks.
using Checker = std::function<error_code(std::string_view)>;

template <class Parser>
Checker checker(Parser p)
{
    return [p](std::string_view body) -> error_code {
        auto r = p(body);
        return r ? error_code{} : r.error();
    };
}

/// A valid message body with the parser that must accept it.
struct Case {
    const char* name;
    std::string msg;
    Checker check;
    bool open_ended = false;  ///< last field is "rest of body": extra bytes are data
};

std::vector<Case> strict_cases()
{
    namespace wf = wire::fe;
    namespace wb = wire::be;
    return {
        {"Query", t::fe::query("SELECT 1"), checker(&wf::parse_query)},
        {"Parse", t::fe::parse("s", "SELECT $1, $2", {23, 25}), checker(&wf::parse_parse)},
        {"Bind", t::fe::bind("p", "s", {"1", std::nullopt, ""}), checker(&wf::parse_bind)},
        {"Describe", t::fe::describe('S', "s"), checker(&wf::parse_describe)},
        {"Close", t::fe::close('P', "p"), checker(&wf::parse_close)},
        {"Execute", t::fe::execute("p", 10), checker(&wf::parse_execute)},
        {"CopyFail", t::fe::copy_fail("oops"), checker(&wf::parse_copy_fail)},
        {"FunctionCall", t::fe::function_call(1598, {"a", std::nullopt}), checker(&wf::parse_function_call)},
        {"PasswordMessage", t::fe::password("secret"), checker(&wf::parse_password_message)},
        {"SASLInitialResponse", t::fe::sasl_initial_response("SCRAM-SHA-256", "n,,n=,r=abc"),
         checker(&wf::parse_sasl_initial_response)},
        {"AuthenticationOk", t::be::auth_ok(), checker(&wb::parse_authentication)},
        {"AuthenticationMD5Password", t::be::auth_md5({'a', 'b', 'c', 'd'}), checker(&wb::parse_authentication)},
        {"AuthenticationSASL", t::be::auth_sasl({"SCRAM-SHA-256"}), checker(&wb::parse_authentication)},
        {"BackendKeyData", t::be::backend_key_data(1, 2), checker(&wb::parse_backend_key_data)},
        {"ParameterStatus", t::be::parameter_status("TimeZone", "UTC"), checker(&wb::parse_parameter_status)},
        {"ReadyForQuery", t::be::ready_for_query(), checker(&wb::parse_ready_for_query)},
        {"CommandComplete", t::be::command_complete("SELECT 1"), checker(&wb::parse_command_complete)},
        {"NotificationResponse", t::be::notification_response(5, "ch", "hi"),
         checker(&wb::parse_notification_response)},
        {"CopyInResponse", t::be::copy_response(wb::Tag::CopyInResponse, 0, {0, 0}), checker(&wb::parse_copy_response)},
        {"NegotiateProtocolVersion", t::be::negotiate_protocol_version(0, {"_pq_.x"}),
         checker(&wb::parse_negotiate_protocol_version)},
        {"ErrorResponse", t::be::error_response("ERROR", "42000", "bad"), checker(&wb::parse_error_fields)},
        {"RowDescription", t::be::row_description({t::be::column("a"), t::be::column("b", 23)}),
         checker(&wb::parse_row_description)},
        {"DataRow", t::be::data_row({"x", std::nullopt, ""}), checker(&wb::parse_data_row)},
        {"ParameterDescription", t::be::parameter_description({23, 25}), checker(&wb::parse_parameter_description)},
        {"FunctionCallResponse", t::be::function_call_response("v"), checker(&wb::parse_function_call_response)},
        // Open-ended ones: only truncation inside fixed fields can be detected.
        {"AuthenticationSASLContinue", t::be::auth_sasl_continue("r=abc,s=xyz,i=4096"),
         checker(&wb::parse_authentication), true},
    };
}

}  // namespace

// ---- byte-exact encodings ------------------------------------------------------

TEST_CASE("byte-exact: Query")
{
    CHECK(t::fe::query("SELECT 1") == "Q\0\0\0\x0dSELECT 1\0"s);
}

TEST_CASE("byte-exact: Parse, Bind, Sync")
{
    // 4 + "s1\0" + "SELECT $1\0" + Int16 1 + Int32 23 = 23
    CHECK(t::fe::parse("s1", "SELECT $1", {23}) == "P\0\0\0\x17s1\0SELECT $1\0\0\x01\0\0\0\x17"s);
    // 4 + "\0" + "s1\0" + Int16 0 formats + Int16 2 + (4 + "42") + (-1) + Int16 0 = 24
    CHECK(t::fe::bind("", "s1", {"42", std::nullopt}) == "B\0\0\0\x18\0s1\0\0\0\0\x02\0\0\0\x02"
                                                         "42\xff\xff\xff\xff\0\0"s);
    CHECK(t::fe::sync() == "S\0\0\0\x04"s);
}

TEST_CASE("byte-exact: ReadyForQuery and ErrorResponse")
{
    CHECK(t::be::ready_for_query(wire::TxStatus::idle) == "Z\0\0\0\x05I"s);
    // 4 + "SERROR\0" + "VERROR\0" + "C57P01\0" + "Mbye\0" + "\0" = 31
    CHECK(t::be::error_response("ERROR", "57P01", "bye") == "E\0\0\0\x1fSERROR\0VERROR\0C57P01\0Mbye\0\0"s);
}

TEST_CASE("byte-exact: AuthenticationSASL and DataRow")
{
    // 4 + Int32 10 + "SCRAM-SHA-256\0" + "\0" = 23
    CHECK(t::be::auth_sasl({"SCRAM-SHA-256"}) == "R\0\0\0\x17\0\0\0\x0aSCRAM-SHA-256\0\0"s);
    // 4 + Int16 2 + (Int32 1 + "a") + Int32 -1 = 15
    CHECK(t::be::data_row({"a", std::nullopt}) == "D\0\0\0\x0f\0\x02\0\0\0\x01"
                                                  "a\xff\xff\xff\xff"s);
}

// ---- frontend round trips ---------------------------------------------------------

TEST_CASE("round trip frontend: Query")
{
    const auto f = t::decode_one(t::fe::query("SELECT * FROM t WHERE a = 'x'"));
    REQUIRE(f.tag == tag(wire::fe::Tag::Query));
    auto q = wire::fe::parse_query(f.body);
    REQUIRE(q);
    CHECK(q->sql == "SELECT * FROM t WHERE a = 'x'");
}

TEST_CASE("round trip frontend: Parse")
{
    const auto f = t::decode_one(t::fe::parse("stmt", "SELECT $1, $2", {23, -1}));
    REQUIRE(f.tag == tag(wire::fe::Tag::Parse));
    auto p = wire::fe::parse_parse(f.body);
    REQUIRE(p);
    CHECK(p->statement == "stmt");
    CHECK(p->query == "SELECT $1, $2");
    CHECK(p->param_type_count == 2);
    CHECK(p->param_types == "\0\0\0\x17\xff\xff\xff\xff"s);

    auto unnamed = wire::fe::parse_parse(t::body_of(t::fe::parse("", "SELECT 1")));
    REQUIRE(unnamed);
    CHECK(unnamed->statement.empty());
    CHECK(unnamed->param_type_count == 0);
    CHECK(unnamed->param_types.empty());
}

TEST_CASE("round trip frontend: Bind, both builders")
{
    const auto msg = t::fe::bind("portal", "stmt", {"1", std::nullopt, ""});
    const auto f = t::decode_one(msg);
    REQUIRE(f.tag == tag(wire::fe::Tag::Bind));
    auto b = wire::fe::parse_bind(f.body);
    REQUIRE(b);
    CHECK(b->portal == "portal");
    CHECK(b->statement == "stmt");
    // rest = formats, values and result formats exactly as sent.
    CHECK(b->rest == std::string_view(f.body).substr(7 + 5));

    // Re-assembling from the view (with a renamed statement) keeps the values.
    auto renamed = *b;
    renamed.statement = "pgswitch_1";
    std::string out;
    wire::fe::build_bind(out, renamed);
    const auto g = t::decode_one(out);
    REQUIRE(g.tag == tag(wire::fe::Tag::Bind));
    auto b2 = wire::fe::parse_bind(g.body);
    REQUIRE(b2);
    CHECK(b2->portal == "portal");
    CHECK(b2->statement == "pgswitch_1");
    CHECK(b2->rest == b->rest);

    // Unchanged, the rebuilt message is byte-identical.
    std::string same;
    wire::fe::build_bind(same, *b);
    CHECK(same == msg);
}

TEST_CASE("round trip frontend: Bind with binary formats and result formats")
{
    // Hand-built rest: one format code applying to all, two values, two result formats.
    const auto rest = t::raw_body([](auto& w) {
        w.i16(1).i16(1).i16(2).nullable_bytes("\0\0\0\x01"s).nullable_bytes(std::nullopt);
        w.i16(2).i16(0).i16(1);
    });
    std::string out;
    wire::fe::build_bind(out, wire::fe::Bind{"", "s", rest});
    const auto f = t::decode_one(out);
    auto b = wire::fe::parse_bind(f.body);
    REQUIRE(b);
    CHECK(b->rest == rest);
}

TEST_CASE("round trip frontend: Describe and Close")
{
    for (char kind : {'S', 'P'}) {
        CAPTURE(kind);
        const auto d = t::decode_one(t::fe::describe(kind, "name"));
        REQUIRE(d.tag == tag(wire::fe::Tag::Describe));
        auto dv = wire::fe::parse_describe(d.body);
        REQUIRE(dv);
        CHECK(dv->kind == kind);
        CHECK(dv->name == "name");

        const auto c = t::decode_one(t::fe::close(kind, ""));
        REQUIRE(c.tag == tag(wire::fe::Tag::Close));
        auto cv = wire::fe::parse_close(c.body);
        REQUIRE(cv);
        CHECK(cv->kind == kind);
        CHECK(cv->name.empty());
    }
}

TEST_CASE("round trip frontend: Execute")
{
    const auto f = t::decode_one(t::fe::execute("c1", 100));
    REQUIRE(f.tag == tag(wire::fe::Tag::Execute));
    auto e = wire::fe::parse_execute(f.body);
    REQUIRE(e);
    CHECK(e->portal == "c1");
    CHECK(e->max_rows == 100);

    auto all = wire::fe::parse_execute(t::body_of(t::fe::execute("")));
    REQUIRE(all);
    CHECK(all->max_rows == 0);
    // The server reads max_rows <= 0 as "all rows", so a negative value is passed on.
    auto negative = wire::fe::parse_execute(t::body_of(t::fe::execute("", -1)));
    REQUIRE(negative);
    CHECK(negative->max_rows == -1);
}

TEST_CASE("round trip frontend: Sync, Flush, Terminate, CopyDone have empty bodies")
{
    const std::vector<std::pair<std::string, wire::fe::Tag>> empties = {
        {t::fe::sync(), wire::fe::Tag::Sync},
        {t::fe::flush(), wire::fe::Tag::Flush},
        {t::fe::terminate(), wire::fe::Tag::Terminate},
        {t::fe::copy_done(), wire::fe::Tag::CopyDone},
    };
    for (const auto& [msg, expected] : empties) {
        CAPTURE(wire::fe::to_string(expected));
        const auto f = t::decode_one(msg);
        CHECK(f.tag == tag(expected));
        CHECK_FALSE(wire::fe::parse_empty(f.body));
        CHECK(wire::fe::parse_empty("x") == wire::errc::trailing_bytes);
    }
}

TEST_CASE("round trip frontend: CopyData and CopyFail")
{
    const auto payload = "1\tone\n2\t\\N\n\0binary\xff"s;
    const auto d = t::decode_one(t::fe::copy_data(payload));
    REQUIRE(d.tag == tag(wire::fe::Tag::CopyData));
    auto cd = wire::fe::parse_copy_data(d.body);
    REQUIRE(cd);
    CHECK(cd->data == payload);

    auto empty = wire::fe::parse_copy_data(t::body_of(t::fe::copy_data("")));
    REQUIRE(empty);
    CHECK(empty->data.empty());

    const auto c = t::decode_one(t::fe::copy_fail("client gave up"));
    REQUIRE(c.tag == tag(wire::fe::Tag::CopyFail));
    auto cf = wire::fe::parse_copy_fail(c.body);
    REQUIRE(cf);
    CHECK(cf->message == "client gave up");
}

TEST_CASE("round trip frontend: FunctionCall")
{
    const auto f = t::decode_one(t::fe::function_call(1598, {"abc", std::nullopt}));
    REQUIRE(f.tag == tag(wire::fe::Tag::FunctionCall));
    auto fc = wire::fe::parse_function_call(f.body);
    REQUIRE(fc);
    CHECK(fc->function_oid == 1598);
    const auto expected_rest = t::raw_body(
        [](auto& w) { w.i16(0).i16(2).nullable_bytes("abc"s).nullable_bytes(std::nullopt).i16(0); });
    CHECK(fc->rest == expected_rest);
}

TEST_CASE("round trip frontend: PasswordMessage, SASLInitialResponse, SASLResponse")
{
    const auto p = t::decode_one(t::fe::password("md5abcdef"));
    REQUIRE(p.tag == tag(wire::fe::Tag::Password));
    auto pm = wire::fe::parse_password_message(p.body);
    REQUIRE(pm);
    CHECK(pm->password == "md5abcdef");

    const auto i = t::decode_one(t::fe::sasl_initial_response("SCRAM-SHA-256", "n,,n=,r=nonce"));
    REQUIRE(i.tag == tag(wire::fe::Tag::Password));
    auto ir = wire::fe::parse_sasl_initial_response(i.body);
    REQUIRE(ir);
    CHECK(ir->mechanism == "SCRAM-SHA-256");
    REQUIRE(ir->data.has_value());
    CHECK(*ir->data == "n,,n=,r=nonce");

    // Length -1: the mechanism without an initial response.
    const auto no_data = t::raw_body([](auto& w) { w.cstring("SCRAM-SHA-256").i32(-1); });
    auto nd = wire::fe::parse_sasl_initial_response(no_data);
    REQUIRE(nd);
    CHECK_FALSE(nd->data.has_value());

    const auto r = t::decode_one(t::fe::sasl_response("c=biws,r=nonce,p=proof"));
    REQUIRE(r.tag == tag(wire::fe::Tag::Password));
    auto rr = wire::fe::parse_sasl_response(r.body);
    REQUIRE(rr);
    CHECK(*rr == "c=biws,r=nonce,p=proof");
}

// ---- backend round trips ----------------------------------------------------------

TEST_CASE("round trip backend: Authentication requests")
{
    using wire::AuthCode;
    SUBCASE("Ok and CleartextPassword")
    {
        for (auto [msg, code] : {std::pair{t::be::auth_ok(), AuthCode::ok},
                                 std::pair{t::be::auth_cleartext(), AuthCode::cleartext_password}}) {
            const auto f = t::decode_one(msg);
            REQUIRE(f.tag == tag(wire::be::Tag::Authentication));
            auto a = wire::be::parse_authentication(f.body);
            REQUIRE(a);
            CHECK(a->code == code);
            CHECK(a->data.empty());
        }
    }
    SUBCASE("MD5Password carries the salt")
    {
        const auto f = t::decode_one(t::be::auth_md5({'\x01', '\0', '\xff', 'z'}));
        auto a = wire::be::parse_authentication(f.body);
        REQUIRE(a);
        CHECK(a->code == AuthCode::md5_password);
        CHECK(a->data == "\x01\0\xffz"s);
    }
    SUBCASE("SASL lists mechanisms")
    {
        const auto f = t::decode_one(t::be::auth_sasl({"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"}));
        auto a = wire::be::parse_authentication(f.body);
        REQUIRE(a);
        CHECK(a->code == AuthCode::sasl);
        auto names = wire::be::parse_sasl_mechanisms(a->data);
        REQUIRE(names);
        CHECK(*names == std::vector<std::string_view>{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"});
    }
    SUBCASE("SASLContinue and SASLFinal carry raw data")
    {
        const auto cf = t::decode_one(t::be::auth_sasl_continue("r=abc,s=c2FsdA==,i=4096"));
        auto c = wire::be::parse_authentication(cf.body);
        REQUIRE(c);
        CHECK(c->code == AuthCode::sasl_continue);
        CHECK(c->data == "r=abc,s=c2FsdA==,i=4096");

        const auto ff = t::decode_one(t::be::auth_sasl_final("v=signature"));
        auto f = wire::be::parse_authentication(ff.body);
        REQUIRE(f);
        CHECK(f->code == AuthCode::sasl_final);
        CHECK(f->data == "v=signature");
    }
}

TEST_CASE("round trip backend: BackendKeyData, ParameterStatus, ReadyForQuery")
{
    const auto k = t::decode_one(t::be::backend_key_data(4242, -559038737));
    REQUIRE(k.tag == tag(wire::be::Tag::BackendKeyData));
    auto kd = wire::be::parse_backend_key_data(k.body);
    REQUIRE(kd);
    CHECK(kd->process_id == 4242);
    CHECK(kd->secret_key == -559038737);

    const auto p = t::decode_one(t::be::parameter_status("server_version", "15.4"));
    REQUIRE(p.tag == tag(wire::be::Tag::ParameterStatus));
    auto ps = wire::be::parse_parameter_status(p.body);
    REQUIRE(ps);
    CHECK(ps->name == "server_version");
    CHECK(ps->value == "15.4");

    for (auto s : {wire::TxStatus::idle, wire::TxStatus::in_transaction, wire::TxStatus::failed}) {
        const auto z = t::decode_one(t::be::ready_for_query(s));
        REQUIRE(z.tag == tag(wire::be::Tag::ReadyForQuery));
        auto rq = wire::be::parse_ready_for_query(z.body);
        REQUIRE(rq);
        CHECK(rq->status == s);
    }
}

TEST_CASE("round trip backend: CommandComplete and the empty responses")
{
    const auto c = t::decode_one(t::be::command_complete("INSERT 0 3"));
    REQUIRE(c.tag == tag(wire::be::Tag::CommandComplete));
    auto cc = wire::be::parse_command_complete(c.body);
    REQUIRE(cc);
    CHECK(cc->tag == "INSERT 0 3");

    // The body-less backend messages share fe::parse_empty's rule.
    const std::vector<std::pair<std::string, wire::be::Tag>> empties = {
        {t::be::empty_query_response(), wire::be::Tag::EmptyQueryResponse},
        {t::be::parse_complete(), wire::be::Tag::ParseComplete},
        {t::be::bind_complete(), wire::be::Tag::BindComplete},
        {t::be::close_complete(), wire::be::Tag::CloseComplete},
        {t::be::no_data(), wire::be::Tag::NoData},
        {t::be::portal_suspended(), wire::be::Tag::PortalSuspended},
        {t::be::copy_done(), wire::be::Tag::CopyDone},
    };
    for (const auto& [msg, expected] : empties) {
        CAPTURE(wire::be::to_string(expected));
        const auto f = t::decode_one(msg);
        CHECK(f.tag == tag(expected));
        CHECK(f.body.empty());
        CHECK_FALSE(wire::fe::parse_empty(f.body));
    }
}

TEST_CASE("round trip backend: RowDescription")
{
    wire::be::FieldDescription a = t::be::column("id", 23);
    a.table_oid = 16384;
    a.column = 1;
    a.type_size = 4;
    a.type_modifier = -1;
    a.format = 1;
    const auto b = t::be::column("name");
    const auto f = t::decode_one(t::be::row_description({a, b}));
    REQUIRE(f.tag == tag(wire::be::Tag::RowDescription));
    auto rd = wire::be::parse_row_description(f.body);
    REQUIRE(rd);
    REQUIRE(rd->size() == 2);
    const auto& x = (*rd)[0];
    CHECK(x.name == "id");
    CHECK(x.table_oid == 16384);
    CHECK(x.column == 1);
    CHECK(x.type_oid == 23);
    CHECK(x.type_size == 4);
    CHECK(x.type_modifier == -1);
    CHECK(x.format == 1);
    CHECK((*rd)[1].name == "name");
    CHECK((*rd)[1].type_oid == 25);
    CHECK((*rd)[1].type_size == -1);

    auto none = wire::be::parse_row_description(t::body_of(t::be::row_description({})));
    REQUIRE(none);
    CHECK(none->empty());
}

TEST_CASE("round trip backend: DataRow with NULL and empty values")
{
    const auto f = t::decode_one(t::be::data_row({"42", std::nullopt, "", "a\0b"s}));
    REQUIRE(f.tag == tag(wire::be::Tag::DataRow));
    auto row = wire::be::parse_data_row(f.body);
    REQUIRE(row);
    REQUIRE(row->size() == 4);
    CHECK((*row)[0] == "42");
    CHECK_FALSE((*row)[1].has_value());
    REQUIRE((*row)[2].has_value());
    CHECK((*row)[2]->empty());  // empty string is not NULL
    CHECK((*row)[3] == "a\0b"s);
}

TEST_CASE("round trip backend: ParameterDescription")
{
    const auto f = t::decode_one(t::be::parameter_description({23, 25, 1043}));
    REQUIRE(f.tag == tag(wire::be::Tag::ParameterDescription));
    auto pd = wire::be::parse_parameter_description(f.body);
    REQUIRE(pd);
    CHECK(*pd == std::vector<std::int32_t>{23, 25, 1043});
}

TEST_CASE("round trip backend: NotificationResponse")
{
    const auto f = t::decode_one(t::be::notification_response(77, "jobs", "{\"id\":1}"));
    REQUIRE(f.tag == tag(wire::be::Tag::NotificationResponse));
    auto n = wire::be::parse_notification_response(f.body);
    REQUIRE(n);
    CHECK(n->process_id == 77);
    CHECK(n->channel == "jobs");
    CHECK(n->payload == "{\"id\":1}");
}

TEST_CASE("round trip backend: CopyIn/CopyOut/CopyBothResponse")
{
    for (auto copy_tag :
         {wire::be::Tag::CopyInResponse, wire::be::Tag::CopyOutResponse, wire::be::Tag::CopyBothResponse}) {
        CAPTURE(wire::be::to_string(copy_tag));
        const auto f = t::decode_one(t::be::copy_response(copy_tag, 1, {1, 0, 1}));
        REQUIRE(f.tag == tag(copy_tag));
        auto c = wire::be::parse_copy_response(f.body);
        REQUIRE(c);
        CHECK(c->format == 1);
        CHECK(c->column_formats == std::vector<std::int16_t>{1, 0, 1});
    }
}

TEST_CASE("round trip backend: CopyData")
{
    const auto f = t::decode_one(t::be::copy_data("row\n"));
    REQUIRE(f.tag == tag(wire::be::Tag::CopyData));
    auto d = wire::fe::parse_copy_data(f.body);  // same layout in both directions
    REQUIRE(d);
    CHECK(d->data == "row\n");
}

TEST_CASE("round trip backend: FunctionCallResponse")
{
    const auto f = t::decode_one(t::be::function_call_response("result"));
    REQUIRE(f.tag == tag(wire::be::Tag::FunctionCallResponse));
    auto v = wire::be::parse_function_call_response(f.body);
    REQUIRE(v);
    CHECK(*v == "result");

    auto null = wire::be::parse_function_call_response(t::body_of(t::be::function_call_response(std::nullopt)));
    REQUIRE(null);
    CHECK_FALSE(null->has_value());
}

TEST_CASE("round trip backend: NegotiateProtocolVersion")
{
    const auto f = t::decode_one(t::be::negotiate_protocol_version(0, {"_pq_.a", "_pq_.b"}));
    REQUIRE(f.tag == tag(wire::be::Tag::NegotiateProtocolVersion));
    auto n = wire::be::parse_negotiate_protocol_version(f.body);
    REQUIRE(n);
    CHECK(n->newest_minor == 0);
    CHECK(n->unrecognized == std::vector<std::string_view>{"_pq_.a", "_pq_.b"});
}

TEST_CASE("round trip backend: ErrorResponse and NoticeResponse")
{
    const auto e = t::decode_one(t::be::error_response("FATAL", "57P01", "terminating"));
    REQUIRE(e.tag == tag(wire::be::Tag::ErrorResponse));
    auto ef = wire::be::parse_error_fields(e.body);
    REQUIRE(ef);
    CHECK(ef->get('S') == "FATAL");
    CHECK(ef->severity() == "FATAL");
    CHECK(ef->sqlstate() == "57P01");
    CHECK(ef->message() == "terminating");
    CHECK(ef->get('D').empty());  // absent field → empty view
    CHECK(ef->fields.size() == 4);

    const std::vector<std::pair<char, std::string>> fields = {
        {'S', "NOTICE"}, {'V', "NOTICE"}, {'C', "00000"}, {'M', "hello"},
        {'D', "detail"}, {'H', "hint"},   {'P', "12"},    {'Z', "unknown code kept"}};
    const auto n = t::decode_one(t::be::error_fields(fields, true));
    REQUIRE(n.tag == tag(wire::be::Tag::NoticeResponse));
    auto nf = wire::be::parse_error_fields(n.body);
    REQUIRE(nf);
    REQUIRE(nf->fields.size() == fields.size());
    for (std::size_t i = 0; i < fields.size(); ++i) {
        CHECK(nf->fields[i].first == fields[i].first);
        CHECK(nf->fields[i].second == fields[i].second);
    }
    CHECK(nf->get('H') == "hint");

    // An ErrorResponse with no fields at all is well-formed.
    auto bare = wire::be::parse_error_fields(t::body_of(t::be::error_fields({})));
    REQUIRE(bare);
    CHECK(bare->fields.empty());
    CHECK(bare->message().empty());
}

// ---- strict rejection -------------------------------------------------------------

TEST_CASE("strict: every proper prefix of a valid body is rejected")
{
    for (const auto& c : strict_cases()) {
        CAPTURE(c.name);
        const auto body = t::body_of(c.msg);
        REQUIRE_FALSE(c.check(body));
        if (c.open_ended)
            continue;
        for (std::size_t n = 0; n < body.size(); ++n) {
            CAPTURE(n);
            const auto ec = c.check(std::string_view(body).substr(0, n));
            CHECK(ec);
            // Running out of bytes is reported as running out, never as a bad value.
            CHECK((ec == wire::errc::truncated || ec == wire::errc::missing_nul));
        }
    }
}

TEST_CASE("strict: a byte after the last field is trailing_bytes")
{
    for (const auto& c : strict_cases()) {
        if (c.open_ended)
            continue;
        CAPTURE(c.name);
        CHECK(c.check(t::body_of(c.msg) + "x") == wire::errc::trailing_bytes);
        CHECK(c.check(t::body_of(c.msg) + '\0') == wire::errc::trailing_bytes);
    }
}

TEST_CASE("strict: missing NUL terminators")
{
    CHECK(wire::fe::parse_query("SELECT 1").error() == wire::errc::missing_nul);
    CHECK(wire::fe::parse_query("").error() == wire::errc::missing_nul);
    CHECK(wire::be::parse_parameter_status("a\0b"s).error() == wire::errc::missing_nul);
    // ErrorResponse whose field list never ends.
    CHECK(wire::be::parse_error_fields("SERROR\0"s).error() == wire::errc::missing_nul);
    // SASL mechanism list without the final empty name.
    CHECK(wire::be::parse_sasl_mechanisms("SCRAM-SHA-256\0"s).error() == wire::errc::missing_nul);
    CHECK(wire::be::parse_authentication(t::raw_body([](auto& w) {
              w.i32(static_cast<std::int32_t>(wire::AuthCode::sasl)).cstring("SCRAM-SHA-256");
          })).error() == wire::errc::missing_nul);
}

TEST_CASE("strict: negative counts and lengths are bad_value, -1 only means NULL")
{
    auto bad = [](auto r) { return !r && r.error() == wire::errc::bad_value; };

    CHECK(bad(wire::fe::parse_parse(t::raw_body([](auto& w) { w.cstring("").cstring("x").i16(-1); }))));
    CHECK(bad(wire::fe::parse_bind(t::raw_body([](auto& w) { w.cstring("").cstring("").i16(-2); }))));
    CHECK(bad(wire::fe::parse_bind(t::raw_body([](auto& w) { w.cstring("").cstring("").i16(0).i16(-1); }))));
    CHECK(bad(wire::fe::parse_bind(t::raw_body([](auto& w) { w.cstring("").cstring("").i16(0).i16(1).i32(-2); }))));
    CHECK(bad(wire::fe::parse_bind(t::raw_body([](auto& w) { w.cstring("").cstring("").i16(0).i16(0).i16(-1); }))));
    CHECK(bad(wire::fe::parse_function_call(t::raw_body([](auto& w) { w.i32(1).i16(-1); }))));
    CHECK(bad(wire::fe::parse_sasl_initial_response(t::raw_body([](auto& w) { w.cstring("SCRAM-SHA-256").i32(-2); }))));

    CHECK(bad(wire::be::parse_data_row(t::raw_body([](auto& w) { w.i16(-1); }))));
    CHECK(bad(wire::be::parse_data_row(t::raw_body([](auto& w) { w.i16(1).i32(-2); }))));
    CHECK(bad(wire::be::parse_data_row(t::raw_body([](auto& w) { w.i16(1).i32(INT32_MIN); }))));
    CHECK(bad(wire::be::parse_row_description(t::raw_body([](auto& w) { w.i16(-1); }))));
    CHECK(bad(wire::be::parse_parameter_description(t::raw_body([](auto& w) { w.i16(-5); }))));
    CHECK(bad(wire::be::parse_copy_response(t::raw_body([](auto& w) { w.u8(0).i16(-1); }))));
    CHECK(bad(wire::be::parse_negotiate_protocol_version(t::raw_body([](auto& w) { w.i32(0).i32(-1); }))));
    CHECK(bad(wire::be::parse_function_call_response(t::raw_body([](auto& w) { w.i32(-3); }))));

    // -1 is SQL NULL where a value may be NULL.
    auto null_value = wire::be::parse_data_row(t::raw_body([](auto& w) { w.i16(1).i32(-1); }));
    REQUIRE(null_value);
    CHECK_FALSE(null_value->front().has_value());
}

TEST_CASE("strict: huge declared counts fail as truncated without allocating for them")
{
    auto truncated = [](auto r) { return !r && r.error() == wire::errc::truncated; };
    CHECK(truncated(wire::be::parse_data_row(t::raw_body([](auto& w) { w.i16(32767); }))));
    // The first column name runs out before any fixed field.
    auto rd = wire::be::parse_row_description(t::raw_body([](auto& w) { w.i16(32767); }));
    REQUIRE_FALSE(rd);
    CHECK(rd.error() == wire::errc::missing_nul);
    CHECK(truncated(wire::be::parse_parameter_description(t::raw_body([](auto& w) { w.i16(32767); }))));
    CHECK(truncated(wire::be::parse_copy_response(t::raw_body([](auto& w) { w.u8(0).i16(32767); }))));
    CHECK(truncated(wire::fe::parse_parse(t::raw_body([](auto& w) { w.cstring("").cstring("").i16(32767); }))));
    CHECK(truncated(wire::be::parse_data_row(t::raw_body([](auto& w) { w.i16(1).i32(INT32_MAX); }))));
    // Cstrings run out before the count does.
    auto npv = wire::be::parse_negotiate_protocol_version(
        t::raw_body([](auto& w) { w.i32(0).i32(INT32_MAX).cstring("a"); }));
    REQUIRE_FALSE(npv);
    CHECK(npv.error() == wire::errc::missing_nul);
}

TEST_CASE("strict: values outside their domain are bad_value")
{
    auto bad = [](auto r) { return !r && r.error() == wire::errc::bad_value; };
    // Describe/Close target must be 'S' or 'P'.
    CHECK(bad(wire::fe::parse_describe("X\0"s)));
    CHECK(bad(wire::fe::parse_close("s\0"s)));
    // ReadyForQuery status must be I, T or E.
    CHECK(bad(wire::be::parse_ready_for_query("X")));
    // Copy format codes are 0 or 1.
    CHECK(bad(wire::be::parse_copy_response(t::raw_body([](auto& w) { w.u8(2).i16(0); }))));
    CHECK(bad(wire::be::parse_copy_response(t::raw_body([](auto& w) { w.u8(0).i16(1).i16(7); }))));
    // Unknown or obsolete authentication code (SCMCredential = 6).
    CHECK(bad(wire::be::parse_authentication(t::raw_body([](auto& w) { w.i32(6); }))));
    CHECK(bad(wire::be::parse_authentication(t::raw_body([](auto& w) { w.i32(-1); }))));
    // Bind: format count must be 0, 1 or the parameter count (the server calls
    // anything else a protocol violation).
    CHECK(bad(wire::fe::parse_bind(t::raw_body([](auto& w) {
        w.cstring("").cstring("").i16(2).i16(0).i16(0).i16(3);
        w.nullable_bytes("a"s).nullable_bytes("b"s).nullable_bytes("c"s).i16(0);
    }))));
    CHECK(bad(wire::fe::parse_function_call(
        t::raw_body([](auto& w) { w.i32(1).i16(2).i16(0).i16(0).i16(1).nullable_bytes("a"s).i16(0); }))));
}

TEST_CASE("strict: authentication data must match its code")
{
    auto err = [](std::string body) {
        auto r = wire::be::parse_authentication(body);
        return r ? error_code{} : r.error();
    };
    using wire::AuthCode;
    auto code = [](AuthCode c) { return static_cast<std::int32_t>(c); };
    CHECK(err(t::raw_body([&](auto& w) { w.i32(code(AuthCode::ok)).u8(0); })) == wire::errc::trailing_bytes);
    CHECK(err(t::raw_body([&](auto& w) { w.i32(code(AuthCode::md5_password)).bytes("abc"); })) ==
          wire::errc::truncated);
    CHECK(err(t::raw_body([&](auto& w) { w.i32(code(AuthCode::md5_password)).bytes("abcde"); })) ==
          wire::errc::trailing_bytes);
    CHECK(err(t::raw_body([&](auto& w) { w.i32(code(AuthCode::sasl)).bytes("A\0\0x"s); })) ==
          wire::errc::trailing_bytes);
    CHECK(err("\0\0"s) == wire::errc::truncated);
}

TEST_CASE("ErrorFields::get returns the first value for a code, empty when absent")
{
    wire::be::ErrorFields e;
    CHECK(e.get('M').empty());
    e.fields = {{'M', "first"}, {'M', "second"}};
    CHECK(e.message() == "first");
    CHECK(e.sqlstate().empty());
}

TEST_CASE("parsed views point into the body, not into copies")
{
    const auto body = t::body_of(t::fe::bind("portal", "stmt", {"v"}));
    auto b = wire::fe::parse_bind(body);
    REQUIRE(b);
    const auto* lo = body.data();
    const auto* hi = body.data() + body.size();
    for (auto v : {b->portal, b->statement, b->rest}) {
        CHECK(v.data() >= lo);
        CHECK(v.data() + v.size() <= hi);
    }
    const auto row_body = t::body_of(t::be::data_row({"abc"}));
    auto row = wire::be::parse_data_row(row_body);
    REQUIRE(row);
    CHECK(row->front()->data() == row_body.data() + 2 + 4);
}
