// Unit tests for pg_wire/auth: base64, md5, SCRAM secrets and both sides of a
// SCRAM-SHA-256 exchange. Expected values come from RFC 4648, RFC 7677 or an
// independent Python hashlib/hmac computation (shown next to each).
#include <doctest/doctest.h>

#include <string>

#include "pg_wire/auth.h"

using namespace pgswitch::wire;
using namespace pgswitch::wire::auth;

namespace {

// RFC 7677 §3 example.
constexpr std::string_view rfc_password = "pencil";
constexpr std::string_view rfc_client_nonce = "rOprNGfwEbeRWgbNEkqO";
constexpr std::string_view rfc_server_nonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
constexpr std::string_view rfc_salt_b64 = "W22ZaJ0SNY7soEsUEjb6gQ==";
constexpr std::string_view rfc_server_first =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";

// The RFC vector's secret in pg_authid form. Python:
//   sp = hashlib.pbkdf2_hmac('sha256', b'pencil', b64decode(salt), 4096)
//   ck = hmac(sp, b"Client Key"); StoredKey = sha256(ck); ServerKey = hmac(sp, b"Server Key")
constexpr std::string_view rfc_secret =
    "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
    ":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";
// ClientKey for that secret, hex (same Python).
constexpr std::string_view rfc_client_key_hex = "a60fc923d67e8644a92d16b96eda5ef4656b0c725c484374be25535576996e8b";

std::string hex(const Key& k)
{
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    for (auto b : k) {
        out += digits[b >> 4];
        out += digits[b & 0x0f];
    }
    return out;
}

ScramSecret rfc_scram_secret()
{
    return make_scram_secret(rfc_password, base64_decode(rfc_salt_b64).value(), 4096);
}

/// Runs a whole exchange; returns the first error, or {} on success.
boost::system::error_code exchange(ScramClient& client, ScramServer& server)
{
    auto server_first = server.handle_client_first(client.client_first());
    if (!server_first)
        return server_first.error();
    auto client_final = client.handle_server_first(*server_first);
    if (!client_final)
        return client_final.error();
    auto server_final = server.handle_client_final(*client_final);
    if (!server_final)
        return server_final.error();
    return client.handle_server_final(*server_final);
}

}  // namespace

TEST_CASE("base64 matches RFC 4648 test vectors")
{
    const std::pair<std::string_view, std::string_view> vectors[] = {
        {"", ""},
        {"f", "Zg=="},
        {"fo", "Zm8="},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="},
        {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"},
    };
    for (auto [raw, text] : vectors) {
        CAPTURE(raw);
        CHECK(base64_encode(raw) == text);
        auto decoded = base64_decode(text);
        REQUIRE(decoded);
        CHECK(*decoded == raw);
    }
    // The gs2 headers PostgreSQL's c= attribute carries.
    CHECK(base64_encode("n,,") == "biws");
    CHECK(base64_encode("y,,") == "eSws");
}

TEST_CASE("base64 round-trips every byte value at every length")
{
    std::string all;
    for (int i = 0; i < 256; ++i)
        all += static_cast<char>(i);
    for (std::size_t len = 0; len <= all.size(); ++len) {
        const std::string raw = all.substr(all.size() - len);
        auto decoded = base64_decode(base64_encode(raw));
        REQUIRE(decoded);
        CHECK(*decoded == raw);
    }
}

TEST_CASE("base64_decode is strict")
{
    const std::string_view bad[] = {
        "Zg",        // no padding
        "Zg=",       // short group
        "Zm9vY",     // not a multiple of 4
        "Zg=a",      // data after padding
        "Z===",      // three padding characters
        "====",      // padding only
        "Zg==Zm9v",  // padding in the middle
        "Zm9v!A==",  // outside the alphabet
        "Zm9v\nYmFy",
        " Zm9v",  // whitespace
        "Zm-_",   // URL-safe alphabet
        "Zh==",   // non-canonical: unused bits set ("f" is "Zg==")
        "Zm9=",   // non-canonical ("fo" is "Zm8=")
        std::string_view("Zm\0v", 4),
    };
    for (auto text : bad) {
        CAPTURE(text);
        auto decoded = base64_decode(text);
        REQUIRE_FALSE(decoded);
        CHECK(decoded.error() == errc::bad_value);
    }
}

TEST_CASE("random_nonce is printable base64 and differs each call")
{
    const std::string a = random_nonce();
    const std::string b = random_nonce();
    CHECK(a.size() == 24);  // 18 bytes → 24 characters, no padding
    CHECK(a != b);
    CHECK(base64_decode(a).value().size() == 18);
    CHECK(a.find(',') == std::string::npos);
    CHECK(random_nonce(1).size() == 4);
    CHECK(random_nonce(0).empty());
}

TEST_CASE("md5_hex and md5_response")
{
    // RFC 1321 appendix A.5.
    CHECK(md5_hex("") == "d41d8cd98f00b204e9800998ecf8427e");
    CHECK(md5_hex("abc") == "900150983cd24fb0d6963f7d28e17f72");

    // Python: m = lambda s: hashlib.md5(s).hexdigest()
    //         "md5" + m(m(b"secret" + b"postgres").encode() + bytes([1, 2, 3, 4]))
    CHECK(md5_response("postgres", "secret", {1, 2, 3, 4}) == "md5bb41a296aab6baccb36ff243a562abff");
    // The inner hash is what pg_authid stores: "md5" + md5(password || user).
    CHECK(md5_response("postgres", "secret", {1, 2, 3, 4}) ==
          "md5" + md5_hex(md5_hex("secretpostgres") + std::string("\x01\x02\x03\x04")));
    CHECK(md5_response("postgres", "secret", {1, 2, 3, 5}) != md5_response("postgres", "secret", {1, 2, 3, 4}));
}

TEST_CASE("SCRAM secret: derivation, format and parse")
{
    const ScramSecret s = rfc_scram_secret();
    CHECK(format_scram_secret(s) == rfc_secret);

    auto parsed = parse_scram_secret(rfc_secret);
    REQUIRE(parsed.has_value());
    CHECK(parsed->iterations == 4096);
    CHECK(parsed->salt == s.salt);
    CHECK(parsed->stored_key == s.stored_key);
    CHECK(parsed->server_key == s.server_key);
    CHECK(format_scram_secret(*parsed) == rfc_secret);

    // A fresh random salt, as PostgreSQL's 16-byte default, survives the round trip.
    const ScramSecret fresh = make_scram_secret("secret", base64_decode(random_nonce(16)).value());
    const std::string text = format_scram_secret(fresh);
    CHECK(text.rfind("SCRAM-SHA-256$4096:", 0) == 0);
    auto again = parse_scram_secret(text);
    REQUIRE(again.has_value());
    CHECK(format_scram_secret(*again) == text);
}

TEST_CASE("parse_scram_secret rejects malformed secrets")
{
    const std::string k = "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=";
    const std::string bad[] = {
        "",
        "md5bb41a296aab6baccb36ff243a562abff",
        "SCRAM-SHA-1$4096:W22ZaJ0SNY7soEsUEjb6gQ==$" + k + ":" + k,
        "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$" + k,           // one key
        "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==" + k + ":" + k,  // no second '$'
        "SCRAM-SHA-256$W22ZaJ0SNY7soEsUEjb6gQ==$" + k + ":" + k,      // no iterations
        "SCRAM-SHA-256$0:W22ZaJ0SNY7soEsUEjb6gQ==$" + k + ":" + k,
        "SCRAM-SHA-256$-1:W22ZaJ0SNY7soEsUEjb6gQ==$" + k + ":" + k,
        "SCRAM-SHA-256$+4096:W22ZaJ0SNY7soEsUEjb6gQ==$" + k + ":" + k,
        "SCRAM-SHA-256$4096x:W22ZaJ0SNY7soEsUEjb6gQ==$" + k + ":" + k,
        "SCRAM-SHA-256$99999999999:W22ZaJ0SNY7soEsUEjb6gQ==$" + k + ":" + k,
        "SCRAM-SHA-256$4096:$" + k + ":" + k,                         // empty salt
        "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ=$" + k + ":" + k,  // bad base64
        "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$Zm9v:" + k,      // short key
        "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$" + k + ":" + k + ":" + k,
        "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$" + k + ":" + k + "$",
    };
    for (const auto& text : bad) {
        CAPTURE(text);
        auto parsed = parse_scram_secret(text);
        REQUIRE_FALSE(parsed.has_value());
        CHECK(parsed.error() == errc::bad_value);
    }
}

TEST_CASE("ScramServer reproduces the RFC 7677 example")
{
    // The RFC's client sends n=user; the server ignores the name, so it must
    // produce exactly the RFC's messages.
    ScramServer server(rfc_scram_secret(), std::string(rfc_server_nonce));
    auto server_first = server.handle_client_first("n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
    REQUIRE(server_first);
    CHECK(*server_first == rfc_server_first);
    CHECK_FALSE(server.client_key());

    auto server_final = server.handle_client_final("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                                                   "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
    REQUIRE(server_final);
    CHECK(*server_final == "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    REQUIRE(server.client_key());
    CHECK(hex(*server.client_key()) == rfc_client_key_hex);
}

TEST_CASE("ScramClient produces PostgreSQL-style messages for the RFC 7677 inputs")
{
    // Same inputs as the RFC but with libpq's empty user name, so the
    // AuthMessage is "n=,r=...,<server-first>,c=biws,r=...". Expected proof
    // and signature from the Python computation above with that AuthMessage.
    ScramClient client{std::string(rfc_password), std::string(rfc_client_nonce)};
    CHECK(client.client_first() == "n,,n=,r=rOprNGfwEbeRWgbNEkqO");

    auto client_final = client.handle_server_first(rfc_server_first);
    REQUIRE(client_final);
    CHECK(*client_final == "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                           "p=qvT2SWdEH5Q06albL+hjSYuUhCG7VndFyzIb7CK4n9k=");
    CHECK_FALSE(client.handle_server_final("v=3HO6Qt1M4MKJrmlKaoOqLAI0/0TV0HZe7J9H3MBtSOg="));
}

TEST_CASE("ScramClient and ScramServer agree with random nonces")
{
    ScramClient client{std::string(rfc_password), random_nonce()};
    ScramServer server(rfc_scram_secret(), random_nonce());
    CHECK_FALSE(exchange(client, server));
    REQUIRE(server.client_key());
    CHECK(hex(*server.client_key()) == rfc_client_key_hex);

    // A different salt and iteration count, taken from the server's message.
    const ScramSecret other = make_scram_secret("s3cr3t", "0123456789abcdef", 1000);
    ScramClient client2("s3cr3t", random_nonce());
    ScramServer server2(other, random_nonce());
    CHECK_FALSE(exchange(client2, server2));
    CHECK(server2.client_key());
}

TEST_CASE("wrong password is auth_failed")
{
    ScramClient client("pencil2", random_nonce());
    ScramServer server(rfc_scram_secret(), random_nonce());
    auto server_first = server.handle_client_first(client.client_first());
    REQUIRE(server_first);
    auto client_final = client.handle_server_first(*server_first);
    REQUIRE(client_final);
    auto server_final = server.handle_client_final(*client_final);
    REQUIRE_FALSE(server_final);
    CHECK(server_final.error() == errc::auth_failed);
    CHECK_FALSE(server.client_key());
    // No second attempt within the same exchange.
    auto retry = server.handle_client_final(*client_final);
    REQUIRE_FALSE(retry);
    CHECK(retry.error() == errc::auth_protocol);
}

TEST_CASE("ScramClient rejects a server that does not know the password")
{
    // The server holds a StoredKey that accepts us but the wrong ServerKey:
    // its signature cannot match (mutual authentication).
    ScramSecret forged = rfc_scram_secret();
    forged.server_key[0] ^= 1;
    ScramClient client{std::string(rfc_password), random_nonce()};
    ScramServer server(forged, random_nonce());
    CHECK(exchange(client, server) == errc::auth_failed);
}

TEST_CASE("nonce tampering is auth_protocol")
{
    SUBCASE("client-final with a different nonce")
    {
        ScramClient client{std::string(rfc_password), "clientnonce"};
        ScramServer server(rfc_scram_secret(), "servernonce");
        auto server_first = server.handle_client_first(client.client_first());
        REQUIRE(server_first);
        auto client_final = client.handle_server_first(*server_first);
        REQUIRE(client_final);
        std::string tampered = *client_final;
        const auto pos = tampered.find("servernonce");
        REQUIRE(pos != std::string::npos);
        tampered[pos] = 'S';
        auto server_final = server.handle_client_final(tampered);
        REQUIRE_FALSE(server_final);
        CHECK(server_final.error() == errc::auth_protocol);
    }
    SUBCASE("server-first that does not extend the client nonce")
    {
        ScramClient client{std::string(rfc_password), "clientnonce"};
        const std::string_view bad[] = {
            "r=clientnonce,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",     // nothing added
            "r=clientnoncX123,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",  // changed
            "r=XXclientnonce,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",   // prefixed
        };
        for (auto text : bad) {
            CAPTURE(text);
            auto client_final = client.handle_server_first(text);
            REQUIRE_FALSE(client_final);
            CHECK(client_final.error() == errc::auth_protocol);
        }
    }
}

TEST_CASE("ScramClient from recovered keys logs in with the same secret")
{
    const ScramSecret secret = make_scram_secret("hunter2", "saltsaltsaltsalt", 4096);

    // The application logs in to the proxy; the proxy recovers ClientKey.
    ScramClient app("hunter2", random_nonce());
    ScramServer proxy(secret, random_nonce());
    REQUIRE_FALSE(exchange(app, proxy));
    REQUIRE(proxy.client_key());

    // The proxy logs in to a backend holding the same secret, without the password.
    ScramClient to_backend(*proxy.client_key(), secret.server_key, random_nonce());
    ScramServer backend(secret, random_nonce());
    CHECK_FALSE(exchange(to_backend, backend));
    CHECK(backend.client_key() == proxy.client_key());

    // A backend whose secret has another salt rejects the recovered keys.
    ScramClient to_other(*proxy.client_key(), secret.server_key, random_nonce());
    ScramServer other(make_scram_secret("hunter2", "another-salt", 4096), random_nonce());
    CHECK(exchange(to_other, other) == errc::auth_failed);
}

TEST_CASE("ScramServer accepts the y,, header with a matching c=")
{
    // "y,,": the client could bind but thinks we cannot. c= must then be
    // base64("y,,") = "eSws". Proof and signature from the Python computation
    // above with AuthMessage "n=,r=...,<server-first>,c=eSws,r=...".
    const std::string_view final_eSws = "c=eSws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                                        "p=VpuC5DGQa5ro9tXE9MnKs69NH1nxnuregZZcclqIGfM=";
    {
        ScramServer server(rfc_scram_secret(), std::string(rfc_server_nonce));
        REQUIRE(server.handle_client_first("y,,n=,r=rOprNGfwEbeRWgbNEkqO"));
        auto server_final = server.handle_client_final(final_eSws);
        REQUIRE(server_final);
        CHECK(*server_final == "v=FOmOj9BpTGwvnzwBtWQjBaPmVxT9I8IeHBOhcIPu3us=");
        REQUIRE(server.client_key());
        CHECK(hex(*server.client_key()) == rfc_client_key_hex);
    }
    // The flag changed between the two messages (e.g. stripped in transit).
    {
        ScramServer server(rfc_scram_secret(), std::string(rfc_server_nonce));
        REQUIRE(server.handle_client_first("n,,n=,r=rOprNGfwEbeRWgbNEkqO"));
        auto server_final = server.handle_client_final(final_eSws);
        REQUIRE_FALSE(server_final);
        CHECK(server_final.error() == errc::auth_protocol);
    }
    {
        ScramServer server(rfc_scram_secret(), std::string(rfc_server_nonce));
        REQUIRE(server.handle_client_first("y,,n=,r=rOprNGfwEbeRWgbNEkqO"));
        auto server_final = server.handle_client_final("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                                                       "p=qvT2SWdEH5Q06albL+hjSYuUhCG7VndFyzIb7CK4n9k=");
        REQUIRE_FALSE(server_final);
        CHECK(server_final.error() == errc::auth_protocol);
    }
}

TEST_CASE("ScramServer rejects malformed client-first-message")
{
    const std::string_view bad[] = {
        "",
        "n,",
        "p=tls-server-end-point,,n=,r=abc",  // channel binding: never offered
        "n,a=admin,n=,r=abc",                // authzid
        "x,,n=,r=abc",
        "n,,m=ext,n=,r=abc",  // unknown mandatory extension
        "n,,r=abc",           // no user attribute
        "n,,n=",              // no nonce
        "n,,n=,r=",           // empty nonce
        "n,,n=,r=a b",        // non-printable nonce
        "n,,n=,r=abc,",       // trailing comma
        "n,,n=,r=abc,1=x",    // bad attribute name
        "n,,n=,x=abc",
    };
    for (auto text : bad) {
        CAPTURE(text);
        ScramServer server(rfc_scram_secret(), "servernonce");
        auto server_first = server.handle_client_first(text);
        REQUIRE_FALSE(server_first);
        CHECK(server_first.error() == errc::auth_protocol);
    }

    // Extensions after the nonce are ignored; any user name is accepted.
    ScramServer server(rfc_scram_secret(), "servernonce");
    CHECK(server.handle_client_first("n,,n=someone=2Celse,r=abc,x=ext"));
}

TEST_CASE("ScramServer rejects malformed client-final-message")
{
    const std::string nonce = "r=clientnonceservernonce";
    const std::string proof = "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const std::string bad[] = {
        "",
        "c=eSws," + nonce + "," + proof,  // c= does not match "n,,"
        "c=cD10bHMtc2VydmVyLWVuZC1wb2ludCws," + nonce + "," + proof,
        nonce + ",c=biws," + proof,                   // wrong order
        "c=biws," + proof,                            // no nonce
        "c=biws," + nonce,                            // no proof
        "c=biws," + nonce + "," + proof + ",x=late",  // proof not last
        "c=biws," + nonce + ",p=Zm9v",                // proof not 32 bytes
        "c=biws," + nonce + ",p=!!!!",
        "c=biws," + nonce + "," + proof + ",",
    };
    for (const auto& text : bad) {
        CAPTURE(text);
        ScramServer server(rfc_scram_secret(), "servernonce");
        REQUIRE(server.handle_client_first("n,,n=,r=clientnonce"));
        auto server_final = server.handle_client_final(text);
        REQUIRE_FALSE(server_final);
        CHECK(server_final.error() == errc::auth_protocol);
    }
}

TEST_CASE("SCRAM calls out of order are auth_protocol")
{
    ScramServer server(rfc_scram_secret(), "servernonce");
    auto early = server.handle_client_final("c=biws,r=x,p=Zm9v");
    REQUIRE_FALSE(early);
    CHECK(early.error() == errc::auth_protocol);
    REQUIRE(server.handle_client_first("n,,n=,r=abc"));
    auto twice = server.handle_client_first("n,,n=,r=abc");
    REQUIRE_FALSE(twice);
    CHECK(twice.error() == errc::auth_protocol);

    ScramClient client{std::string(rfc_password), std::string(rfc_client_nonce)};
    CHECK(client.handle_server_final("v=3HO6Qt1M4MKJrmlKaoOqLAI0/0TV0HZe7J9H3MBtSOg=") == errc::auth_protocol);
    REQUIRE(client.handle_server_first(rfc_server_first));
    auto again = client.handle_server_first(rfc_server_first);
    REQUIRE_FALSE(again);
    CHECK(again.error() == errc::auth_protocol);
}

TEST_CASE("ScramClient rejects malformed server messages")
{
    const std::string_view bad_first[] = {
        "",
        "m=ext,r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        "r=rOprNGfwEbeRWgbNEkqOxyz,i=4096",
        "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==",
        "r=rOprNGfwEbeRWgbNEkqOxyz,s=,i=4096",
        "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ=,i=4096",
        "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0",
        "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=-1",
        "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4k",
        "s=W22ZaJ0SNY7soEsUEjb6gQ==,r=rOprNGfwEbeRWgbNEkqOxyz,i=4096",
    };
    for (auto text : bad_first) {
        CAPTURE(text);
        ScramClient client{std::string(rfc_password), std::string(rfc_client_nonce)};
        auto client_final = client.handle_server_first(text);
        REQUIRE_FALSE(client_final);
        CHECK(client_final.error() == errc::auth_protocol);
    }

    SUBCASE("server-final")
    {
        auto fresh = [] {
            ScramClient client{std::string(rfc_password), std::string(rfc_client_nonce)};
            REQUIRE(client.handle_server_first(rfc_server_first));
            return client;
        };
        auto c1 = fresh();
        CHECK(c1.handle_server_final("e=invalid-proof") == errc::auth_failed);
        auto c2 = fresh();
        CHECK(c2.handle_server_final("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=") ==
              errc::auth_failed);  // the RFC's signature: right form, wrong AuthMessage
        auto c3 = fresh();
        CHECK(c3.handle_server_final("v=3HO6Qt1M4MKJrmlKaoOqLAI0/0TV0HZe7J9H3MBtSOg=,x=1") == errc::auth_protocol);
        auto c4 = fresh();
        CHECK(c4.handle_server_final("") == errc::auth_protocol);
        auto c5 = fresh();
        CHECK(c5.handle_server_final("v=3HO6") == errc::auth_failed);
        // One verification per exchange.
        auto c6 = fresh();
        CHECK_FALSE(c6.handle_server_final("v=3HO6Qt1M4MKJrmlKaoOqLAI0/0TV0HZe7J9H3MBtSOg="));
        CHECK(c6.handle_server_final("v=3HO6Qt1M4MKJrmlKaoOqLAI0/0TV0HZe7J9H3MBtSOg=") == errc::auth_protocol);
    }
}
