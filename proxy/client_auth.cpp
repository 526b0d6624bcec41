// ClientSession's authentication step: pgswitch verifies clients itself
// against [[users]] (SCRAM-SHA-256 by default, md5 or cleartext when configured).
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "client_session.h"
#include "log.h"
#include "pg_wire/auth.h"
#include "pg_wire/backend.h"
#include "pg_wire/frontend.h"
#include "pg_wire/sqlstate.h"
#include "session_context.h"

namespace pgswitch::proxy {

namespace be = wire::be;
namespace fe = wire::fe;
namespace auth = wire::auth;

namespace {

/// The server's words for a client that answers an authentication request
/// with another message (a Terminate right after its StartupMessage, say).
std::string unexpected_message(std::string_view expected, char tag)
{
    return "expected " + std::string(expected) + " response, got message type " +
           std::to_string(static_cast<unsigned char>(tag));
}

bool equal_constant_time(std::string_view a, std::string_view b)
{
    if (a.size() != b.size())
        return false;
    return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string failed_message(const std::string& user)
{
    // The server's wording, which clients and people grep for.
    return "password authentication failed for user \"" + user + "\"";
}

/// The client's SASLInitialResponse checked and answered with the server-first
/// message; nullopt with `error` set (the server's words) when it is wrong.
std::optional<std::string> scram_first(auth::ScramServer& scram, const wire::Frame& frame, std::string& error)
{
    const auto initial = fe::parse_sasl_initial_response(frame.body);
    if (!initial || !initial->data) {
        error = "malformed SASLInitialResponse";
        return std::nullopt;
    }
    if (initial->mechanism != "SCRAM-SHA-256") {
        error = "client selected an invalid SASL authentication mechanism";
        return std::nullopt;
    }
    auto server_first = scram.handle_client_first(*initial->data);
    if (!server_first) {
        error = "malformed SCRAM message";
        return std::nullopt;
    }
    return std::move(*server_first);
}

}  // namespace

awaitable<std::optional<wire::Frame>> ClientSession::auth_round(const std::string& out, std::string_view what)
{
    if (co_await stream_.send(out)) {
        close();
        co_return std::nullopt;
    }
    auto frame = co_await read_client_frame();
    if (!frame)
        co_return std::nullopt;
    if (frame->frontend_tag() != fe::Tag::Password) {
        const std::string message = unexpected_message(what, frame->tag);
        co_await send_fatal(wire::sqlstate::protocol_violation, message, SessionEnd::client_protocol_error);
        co_return std::nullopt;
    }
    co_return frame;
}

awaitable<bool> ClientSession::authenticate(const UserConfig* user)
{
    // An unknown user still goes through a full SCRAM exchange against a
    // random secret, so the answer does not reveal which users exist.
    const AuthMethod method = user ? user->auth_method : AuthMethod::scram_sha_256;
    if (method == AuthMethod::md5 || method == AuthMethod::password)
        co_return co_await authenticate_password(*user);
    co_return co_await authenticate_scram(user);
}

awaitable<bool> ClientSession::authenticate_password(const UserConfig& user)
{
    const bool md5 = user.auth_method == AuthMethod::md5;
    std::array<char, 4> salt{};
    std::string out;
    if (md5) {
        if (RAND_bytes(reinterpret_cast<unsigned char*>(salt.data()), 4) != 1)
            throw std::runtime_error("RAND_bytes failed");
        be::build_authentication_md5_password(out, salt);
    } else {
        be::build_authentication_cleartext_password(out);
    }
    const std::string_view what = "password";
    const auto frame = co_await auth_round(out, what);
    if (!frame)
        co_return false;
    const auto msg = fe::parse_password_message(frame->body);
    if (!msg) {
        co_await send_fatal(wire::sqlstate::protocol_violation, "invalid password packet size",
                            SessionEnd::client_protocol_error);
        co_return false;
    }
    const std::string expected = md5 ? auth::md5_response(client_.user, *user.password, salt) : *user.password;
    if (!equal_constant_time(msg->password, expected)) {
        const std::string failed = failed_message(client_.user);  // named: see read_startup() on g++ 12
        co_await send_fatal(wire::sqlstate::invalid_password, failed, SessionEnd::auth_failed);
        co_return false;
    }
    client_.credentials.password = user.password;
    co_return true;
}

awaitable<bool> ClientSession::authenticate_scram(const UserConfig* user)
{
    // SCRAM-SHA-256 (Protocol → SASL Authentication).
    const auto settings = ctx_.settings();
    auth::ScramSecret secret;
    if (!user) {
        secret = auth::make_scram_secret(auth::random_nonce(), auth::random_nonce(), 4096);
    } else if (auto it = settings->scram_secrets.find(user->name); it != settings->scram_secrets.end()) {
        secret = it->second;
    }
    const std::string failed = failed_message(client_.user);  // named: see read_startup() on g++ 12
    const std::string_view what = "SASL";
    std::string out;
    be::build_authentication_sasl(out, {"SCRAM-SHA-256"});
    auto frame = co_await auth_round(out, what);
    if (!frame)
        co_return false;
    auth::ScramServer scram(secret, auth::random_nonce());
    std::string error;
    const auto server_first = scram_first(scram, *frame, error);
    if (!server_first) {
        co_await send_fatal(wire::sqlstate::protocol_violation, error, SessionEnd::client_protocol_error);
        co_return false;
    }
    out.clear();
    be::build_authentication_sasl_continue(out, *server_first);
    frame = co_await auth_round(out, what);
    if (!frame)
        co_return false;
    auto server_final = scram.handle_client_final(frame->body);
    if (!server_final || !user) {
        // A random secret (unknown user) never verifies; never let it through anyway.
        if (!user || server_final.error() == wire::errc::auth_failed)
            co_await send_fatal(wire::sqlstate::invalid_password, failed, SessionEnd::auth_failed);
        else
            co_await send_fatal(wire::sqlstate::protocol_violation, "malformed SCRAM message",
                                SessionEnd::client_protocol_error);
        co_return false;
    }
    out.clear();
    be::build_authentication_sasl_final(out, *server_final);
    if (co_await stream_.send(out)) {
        close();
        co_return false;
    }
    if (user->password) {
        client_.credentials.password = user->password;
    } else {
        client_.credentials.client_key = scram.client_key();
        client_.credentials.server_key = secret.server_key;
    }
    co_return true;
}

}  // namespace pgswitch::proxy
