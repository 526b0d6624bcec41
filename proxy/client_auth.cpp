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
#include "runtime.h"

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

}  // namespace

awaitable<bool> ClientSession::authenticate(const UserConfig* user)
{
    const auto settings = runtime_.settings();
    // An unknown user still goes through a full SCRAM exchange against a
    // random secret, so the answer does not reveal which users exist.
    const AuthMethod method = user ? user->auth_method : AuthMethod::scram_sha_256;
    const std::string failed = failed_message(user_);  // named: see read_startup() on g++ 12
    std::string out;

    if (method == AuthMethod::md5 || method == AuthMethod::password) {
        std::array<char, 4> salt{};
        if (method == AuthMethod::md5) {
            if (RAND_bytes(reinterpret_cast<unsigned char*>(salt.data()), 4) != 1)
                throw std::runtime_error("RAND_bytes failed");
            be::build_authentication_md5_password(out, salt);
        } else {
            be::build_authentication_cleartext_password(out);
        }
        if (co_await stream_.send(out)) {
            close();
            co_return false;
        }
        auto frame = co_await read_client_frame();
        if (!frame)
            co_return false;
        auto msg = fe::parse_password_message(frame->body);
        if (static_cast<fe::Tag>(frame->tag) != fe::Tag::Password) {
            co_await send_fatal(wire::sqlstate::protocol_violation, unexpected_message("password", frame->tag),
                                SessionEnd::client_protocol_error);
            co_return false;
        }
        if (!msg) {
            co_await send_fatal(wire::sqlstate::protocol_violation, "invalid password packet size",
                                SessionEnd::client_protocol_error);
            co_return false;
        }
        const std::string expected = method == AuthMethod::md5 ? auth::md5_response(user_, *user->password, salt)
                                                               : *user->password;
        if (!equal_constant_time(msg->password, expected)) {
            co_await send_fatal(wire::sqlstate::invalid_password, failed, SessionEnd::auth_failed);
            co_return false;
        }
        credentials_.password = user->password;
        co_return true;
    }

    // SCRAM-SHA-256 (Protocol → SASL Authentication).
    auth::ScramSecret secret;
    if (user) {
        auto it = settings->scram_secrets.find(user->name);
        if (it != settings->scram_secrets.end())
            secret = it->second;
    }
    if (!user)
        secret = auth::make_scram_secret(auth::random_nonce(), auth::random_nonce(), 4096);

    be::build_authentication_sasl(out, {"SCRAM-SHA-256"});
    if (co_await stream_.send(out)) {
        close();
        co_return false;
    }
    auto frame = co_await read_client_frame();
    if (!frame)
        co_return false;
    auto initial = fe::parse_sasl_initial_response(frame->body);
    if (static_cast<fe::Tag>(frame->tag) != fe::Tag::Password) {
        co_await send_fatal(wire::sqlstate::protocol_violation, unexpected_message("SASL", frame->tag),
                            SessionEnd::client_protocol_error);
        co_return false;
    }
    if (!initial || !initial->data) {
        co_await send_fatal(wire::sqlstate::protocol_violation, "malformed SASLInitialResponse",
                            SessionEnd::client_protocol_error);
        co_return false;
    }
    if (initial->mechanism != "SCRAM-SHA-256") {
        co_await send_fatal(wire::sqlstate::protocol_violation,
                            "client selected an invalid SASL authentication mechanism",
                            SessionEnd::client_protocol_error);
        co_return false;
    }
    auth::ScramServer scram(secret, auth::random_nonce());
    auto server_first = scram.handle_client_first(*initial->data);
    if (!server_first) {
        co_await send_fatal(wire::sqlstate::protocol_violation, "malformed SCRAM message",
                            SessionEnd::client_protocol_error);
        co_return false;
    }
    out.clear();
    be::build_authentication_sasl_continue(out, *server_first);
    if (co_await stream_.send(out)) {
        close();
        co_return false;
    }
    frame = co_await read_client_frame();
    if (!frame)
        co_return false;
    if (static_cast<fe::Tag>(frame->tag) != fe::Tag::Password) {
        co_await send_fatal(wire::sqlstate::protocol_violation, unexpected_message("SASL", frame->tag),
                            SessionEnd::client_protocol_error);
        co_return false;
    }
    auto server_final = scram.handle_client_final(frame->body);
    if (!server_final) {
        if (server_final.error() == wire::errc::auth_failed || !user)
            co_await send_fatal(wire::sqlstate::invalid_password, failed, SessionEnd::auth_failed);
        else
            co_await send_fatal(wire::sqlstate::protocol_violation, "malformed SCRAM message",
                                SessionEnd::client_protocol_error);
        co_return false;
    }
    if (!user) {
        // Unreachable in practice (a random secret never verifies), but never let it through.
        co_await send_fatal(wire::sqlstate::invalid_password, failed, SessionEnd::auth_failed);
        co_return false;
    }
    out.clear();
    be::build_authentication_sasl_final(out, *server_final);
    if (co_await stream_.send(out)) {
        close();
        co_return false;
    }
    if (user->password) {
        credentials_.password = user->password;
    } else {
        credentials_.client_key = scram.client_key();
        credentials_.server_key = secret.server_key;
    }
    co_return true;
}

}  // namespace pgswitch::proxy
