// Hostile or excessive clients: garbage bytes and connection limits. The rule
// (SPEC §6): the offending client is closed, nothing else is disturbed, and the
// proxy never crashes on client input.
#include "harness.h"
#include "rawpg.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <memory>
#include <cctype>
#include <random>
#include <string>
#include <thread>

using namespace e2e;

namespace {
std::string random_bytes(size_t n, uint64_t seed)
{
    std::mt19937_64 rng(seed);
    std::string s(n, '\0');
    for (auto& ch : s)
        ch = static_cast<char>(rng() & 0xff);
    return s;
}

// Reads until the peer closes; returns the SQLSTATE of an ErrorResponse seen on
// the way ("" when none). Fails the test when the socket stays open.
std::string expect_closed(RawConn& raw, const char* what)
{
    std::string state;
    const auto deadline = Clock::now() + 5s;
    for (;;) {
        auto m = raw.read_message(deadline);
        if (!m)
            break;
        if (m->type == 'E')
            state = error_fields(m->body)['C'];
    }
    // read_message stops on EOF, on a deadline, or on bytes it cannot frame.
    if (!raw.eof())
        CHECK_MESSAGE(raw.wait_closed(deadline), what << ": pgswitch kept the socket open for 5 s");
    return state;
}
}  // namespace

TEST_CASE("garbage on a raw socket closes only that client")
{
    // A dedicated instance: when some input crashes it, the case is reported and
    // the instance restarted, so every input still gets tried.
    const ClusterEnv& env = cluster();
    auto px = std::make_unique<Proxy>();
    px->start();
    Conn bystander = px->connect_app();
    exec_ok(bystander.get(), "BEGIN");
    CHECK(query_value(bystander.get(), "SELECT 'before'") == "before");
    bool crashed = false;

    auto check_survived = [&](const std::string& what) {
        if (direct_mode())
            return;
        // Crashes show up a moment after the close; give them a chance to.
        if (auto code = px->wait_exit(200ms)) {
            FAIL_CHECK("pgswitch died (status " << *code << ") on input: " << what << "; log:\n" << px->log_text());
            crashed = true;
            px = std::make_unique<Proxy>();
            px->start();
            bystander = px->connect_app();
            exec_ok(bystander.get(), "BEGIN");
        }
    };

    auto garbage_before_login = [&](const char* what, const std::string& bytes) {
        INFO("case: " << std::string(what));
        RawConn raw;
        REQUIRE_MESSAGE(raw.connect(px->port()), "cannot connect to pgswitch");
        raw.send_bytes(bytes);  // may fail half-way when the proxy closes early: fine
        expect_closed(raw, what);
        check_survived(what);
    };

    garbage_before_login("startup length 0x7fffffff",
                         be32(0x7fffffffu) + be32(196608) + std::string("user\0app\0\0", 10));
    garbage_before_login("startup length 3", be32(3) + "abcd");
    garbage_before_login("startup length 0", be32(0));
    garbage_before_login("unknown protocol version",
                         be32(8 + 10) + be32(0x12345678u) + std::string("user\0app\0\0", 10));
    garbage_before_login("startup without NUL terminators", be32(8 + 12) + be32(196608) + "userappxxxxx");
    {
        std::string r = random_bytes(4096, 1);
        const std::string framed = be32(4096) + r.substr(4);  // a complete packet of random content
        garbage_before_login("random 4 KB startup packet", framed);
    }
    garbage_before_login("HTTP request", "GET / HTTP/1.1\r\nHost: x\r\n\r\n");

    auto garbage_after_login = [&](const char* what, const std::string& bytes, bool expect_08P01) {
        INFO("case: " << std::string(what));
        RawConn raw;
        REQUIRE_MESSAGE(raw.connect(px->port()), "cannot connect to pgswitch");
        std::string message;
        REQUIRE_MESSAGE(raw.login(env.get("APP_USER"), env.get("APP_PASSWORD"), env.get("APP_DB"), &message) == "",
                        message);
        raw.send_bytes(bytes);
        const std::string state = expect_closed(raw, what);
        if (expect_08P01 && !state.empty())
            CHECK(state == "08P01");
        check_survived(what);
    };

    garbage_after_login("Query with length 0x7ffffff0", std::string("Q") + be32(0x7ffffff0u) + "SELECT 1", true);
    garbage_after_login("Query with length 2", std::string("Q") + be32(2) + "xx", true);
    garbage_after_login("unknown message type", std::string("\x01") + be32(8) + "abcd", false);
    garbage_after_login("random 64 KB", std::string("\xff") + random_bytes(65536, 2), false);

    // Nothing else was disturbed: the open transaction goes on and commits.
    CHECK(query_value(bystander.get(), "SELECT 'after'") == "after");
    exec_ok(bystander.get(), "COMMIT");
    Conn fresh = px->connect_app();
    CHECK(query_value(fresh.get(), "SELECT 1") == "1");
    if (!direct_mode())
        CHECK_MESSAGE(px->alive(), "pgswitch died; log:\n" << px->log_text());
    CHECK_FALSE(crashed);
}

TEST_CASE("max_client_connections: the client over the limit is refused with 53300")
{
    E2E_SKIP_IF_DIRECT("the limit is pgswitch configuration");
    const ClusterEnv& env = cluster();
    ProxyOptions opts;
    opts.max_client_connections = 2;
    Proxy px(opts);
    px.start();

    // The readiness probe's connection may take a moment to be accounted as closed.
    Conn a = px.connect_app();
    Conn b;
    const auto deadline = Clock::now() + 5s;
    for (;;) {
        b = connect(px.conninfo());
        if (PQstatus(b.get()) == CONNECTION_OK)
            break;
        REQUIRE_MESSAGE(Clock::now() < deadline, "second connection refused: " << errmsg(b.get()));
        std::this_thread::sleep_for(50ms);
    }
    CHECK(query_value(a.get(), "SELECT 1") == "1");
    CHECK(query_value(b.get(), "SELECT 2") == "2");

    Conn c = connect(px.conninfo());
    CHECK(PQstatus(c.get()) == CONNECTION_BAD);
    std::string msg = errmsg(c.get());
    std::transform(msg.begin(), msg.end(), msg.begin(), [](unsigned char ch) { return char(std::tolower(ch)); });
    INFO("libpq said: " << msg);
    CHECK(msg.find("too many") != std::string::npos);

    RawConn raw;
    REQUIRE(raw.connect(px.port()));
    std::string message;
    CHECK(raw.login(env.get("APP_USER"), env.get("APP_PASSWORD"), env.get("APP_DB"), &message) == "53300");

    // The two admitted sessions were not disturbed; closing one frees a slot.
    CHECK(query_value(a.get(), "SELECT 3") == "3");
    b.reset();
    Conn d;
    const auto deadline2 = Clock::now() + 5s;
    for (;;) {
        d = connect(px.conninfo());
        if (PQstatus(d.get()) == CONNECTION_OK)
            break;
        REQUIRE_MESSAGE(Clock::now() < deadline2, "slot not freed within 5 s: " << errmsg(d.get()));
        std::this_thread::sleep_for(50ms);
    }
    CHECK(query_value(d.get(), "SELECT 4") == "4");
}

TEST_CASE("a client that ends before or right after its StartupMessage gets what the server would say")
{
    // node-postgres ends a client at once by queueing a Terminate before the
    // StartupMessage (quick-disconnect-tests.js), or right behind it.
    E2E_SKIP_IF_DIRECT("compares pgswitch with the primary");
    Proxy px;
    px.start();
    const std::string startup_body = be32(196608) + std::string("user\0app\0database\0app\0\0", 23);
    const std::string startup = be32(static_cast<uint32_t>(startup_body.size() + 4)) + startup_body;
    const std::string terminate = std::string("X") + be32(4);
    auto replies = [](int port, const std::string& bytes) {
        RawConn raw;
        REQUIRE(raw.connect(port));
        raw.send_bytes(bytes);
        std::string seen;
        for (;;) {
            auto m = raw.read_message(Clock::now() + 5s);
            if (!m)
                break;
            seen += m->type;
            if (m->type == 'E')
                seen += ":" + error_fields(m->body)['C'] + ":" + error_fields(m->body)['M'];
            seen += ' ';
        }
        CHECK_MESSAGE(raw.eof(), "the connection stayed open");
        return seen;
    };
    const int primary = cluster().primary_port();
    // Terminate first: the server hangs up without a word (an invalid startup length).
    CHECK(replies(px.port(), terminate + startup) == replies(primary, terminate + startup));
    CHECK(replies(px.port(), terminate + startup).empty());
    // Terminate right behind the StartupMessage: the authentication request, then the server's complaint.
    CHECK(replies(px.port(), startup + terminate) == replies(primary, startup + terminate));
}
