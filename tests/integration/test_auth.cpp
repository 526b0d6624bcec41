// Authentication through pgswitch: client side (SCRAM, md5, password) and
// server side (whatever method the server asks for).
#include "harness.h"
#include "rawpg.h"

#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

using namespace e2e;

TEST_CASE("wrong password and unknown user are refused with 28P01")
{
    Proxy& px = shared_proxy();
    const ClusterEnv& env = cluster();

    SUBCASE("libpq, wrong password")
    {
        Conn c = connect(px.conninfo(env.get("APP_USER"), "definitely-wrong"));
        CHECK(PQstatus(c.get()) == CONNECTION_BAD);
        const std::string msg = errmsg(c.get());
        INFO("libpq said: " << msg);
        CHECK(msg.find("password authentication failed for user \"" + env.get("APP_USER") + "\"") != std::string::npos);
    }
    SUBCASE("libpq, unknown user")
    {
        Conn c = connect(px.conninfo("e2e_nobody", "whatever"));
        CHECK(PQstatus(c.get()) == CONNECTION_BAD);
        const std::string msg = errmsg(c.get());
        INFO("libpq said: " << msg);
        CHECK(msg.find("e2e_nobody") != std::string::npos);
    }
    SUBCASE("raw protocol: SQLSTATE of a failed SCRAM login")
    {
        RawConn raw;
        REQUIRE(raw.connect(px.port()));
        std::string message;
        const std::string state = raw.login(env.get("APP_USER"), "definitely-wrong", env.get("APP_DB"), &message);
        INFO("message: " << message);
        CHECK(state == "28P01");
        // The server side closes after a failed login.
        CHECK(raw.wait_closed(Clock::now() + 5s));
    }
    SUBCASE("raw protocol: unknown user")
    {
        RawConn raw;
        REQUIRE(raw.connect(px.port()));
        std::string message;
        const std::string state = raw.login("e2e_nobody", "whatever", env.get("APP_DB"), &message);
        INFO("message: " << message);
        // PostgreSQL answers 28P01 (mock authentication, so role names do not leak);
        // 28000 (invalid authorization) is also a proper answer.
        CHECK((state == "28P01" || state == "28000"));
    }
    SUBCASE("raw protocol: the right password works (SCRAM through pgswitch)")
    {
        RawConn raw;
        REQUIRE(raw.connect(px.port()));
        std::string message;
        REQUIRE_MESSAGE(raw.login(env.get("APP_USER"), env.get("APP_PASSWORD"), env.get("APP_DB"), &message) == "",
                        message);
        std::string v;
        CHECK(raw.simple_query("SELECT 40 + 2", &v) == "");
        CHECK(v == "42");
        // SASL, SASLContinue, SASLFinal, Ok.
        CHECK(raw.auth_requests == std::vector<uint32_t>{10, 11, 12, 0});
    }
    // Failed logins disturbed nothing.
    Conn ok = px.connect_app();
    CHECK(query_value(ok.get(), "SELECT 1") == "1");
}

TEST_CASE("server auth methods md5 / password / SCRAM, and client auth md5 / password")
{
    const ClusterEnv& env = cluster();
    // md5user's server password is stored as md5 and pg_hba asks md5; pwuser gets a
    // cleartext password request; app gets SCRAM. pgswitch must answer each one.
    const std::string md5u = env.get("MD5_USER"), md5p = env.get("MD5_PASSWORD");
    const std::string pwu = env.get("PW_USER"), pwp = env.get("PW_PASSWORD");
    ProxyOptions opts;
    opts.users = {{env.get("APP_USER"), env.get("APP_PASSWORD"), ""}, {md5u, md5p, ""}, {pwu, pwp, ""}};
    Proxy dedicated(opts);
    dedicated.start();

    for (const auto& [user, password] : {std::pair{md5u, md5p}, std::pair{pwu, pwp}}) {
        INFO("user: " << user);
        Conn c = connect_ok(dedicated.conninfo(user, password));
        CHECK(query_value(c.get(), "SELECT 1") == "1");
        CHECK(query_value(c.get(), "SELECT current_user") == user);
    }
    {
        Conn c = dedicated.connect_app();
        CHECK(query_value(c.get(), "SELECT current_user") == env.get("APP_USER"));
    }

    SUBCASE("client auth: md5 and cleartext password towards the client")
    {
        E2E_SKIP_IF_DIRECT("client auth methods are pgswitch configuration");
        ProxyOptions o2;
        o2.users = {{env.get("APP_USER"), env.get("APP_PASSWORD"), "md5"}, {md5u, md5p, "md5"}, {pwu, pwp, "password"}};
        Proxy p2(o2);
        p2.start();  // its readiness probe already logs in as app via md5

        for (const auto& [user, password] : {std::pair{md5u, md5p}, std::pair{pwu, pwp}}) {
            INFO("user: " << user);
            Conn c = connect_ok(p2.conninfo(user, password));
            CHECK(query_value(c.get(), "SELECT current_user") == user);
        }
        Conn c = connect_ok(p2.conninfo(env.get("APP_USER"), env.get("APP_PASSWORD")));
        CHECK(query_value(c.get(), "SELECT 1") == "1");

        // Raw protocol: pgswitch asks each client for the configured method
        // (R code 5 = md5, 3 = cleartext), and a wrong password is 28P01.
        std::string message;
        RawConn raw;
        REQUIRE(raw.connect(p2.port()));
        CHECK(raw.login(md5u, "wrong", env.get("APP_DB"), &message) == "28P01");
        CHECK(raw.auth_requests == std::vector<uint32_t>{5});
        RawConn raw2;
        REQUIRE(raw2.connect(p2.port()));
        CHECK(raw2.login(pwu, "wrong", env.get("APP_DB"), &message) == "28P01");
        CHECK(raw2.auth_requests == std::vector<uint32_t>{3});
        RawConn raw3;
        REQUIRE(raw3.connect(p2.port()));
        REQUIRE_MESSAGE(raw3.login(md5u, md5p, env.get("APP_DB"), &message) == "", message);
        CHECK(raw3.auth_requests == std::vector<uint32_t>{5, 0});
        std::string v;
        CHECK(raw3.simple_query("SELECT current_user", &v) == "");
        CHECK(v == md5u);
    }
}
