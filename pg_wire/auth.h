// Password authentication exchanges, both sides: SCRAM-SHA-256 (RFC 5802 /
// RFC 7677, as PostgreSQL does it: Protocol → SASL Authentication), md5 and
// cleartext. Pure apart from OpenSSL's hash functions: nonces are passed in.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "errc.h"

namespace pgswitch::wire::auth {

using Key = std::array<std::uint8_t, 32>;  ///< a SHA-256 sized key

[[nodiscard]] std::string base64_encode(std::string_view raw);
/// errc::bad_value on characters outside the alphabet or bad padding.
[[nodiscard]] result<std::string> base64_decode(std::string_view text);
/// `n` random bytes from OpenSSL's CSPRNG, base64-encoded (a printable nonce).
[[nodiscard]] std::string random_nonce(std::size_t n = 18);

// ---- md5 ----------------------------------------------------------------

/// Lower-case hex MD5 of `data`.
[[nodiscard]] std::string md5_hex(std::string_view data);
/// What a client sends for AuthenticationMD5Password:
/// "md5" + md5_hex(md5_hex(password + user) + salt).
[[nodiscard]] std::string md5_response(std::string_view user, std::string_view password,
                                       const std::array<char, 4>& salt);

// ---- SCRAM-SHA-256 -------------------------------------------------------

/// A stored SCRAM secret, PostgreSQL's pg_authid format:
/// "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>" (base64 fields).
struct ScramSecret {
    int iterations = 4096;
    std::string salt;  ///< raw bytes
    Key stored_key{};
    Key server_key{};
};

/// Derives a secret from a password (SaltedPassword = PBKDF2-HMAC-SHA-256).
[[nodiscard]] ScramSecret make_scram_secret(std::string_view password, std::string_view salt, int iterations = 4096);
[[nodiscard]] result<ScramSecret> parse_scram_secret(std::string_view text);
[[nodiscard]] std::string format_scram_secret(const ScramSecret& s);

/// The proxy's side when it verifies a client's SCRAM-SHA-256 login.
/// Call handle_client_first() with the SASLInitialResponse data, send the
/// result as AuthenticationSASLContinue, call handle_client_final() with the
/// SASLResponse data, send the result as AuthenticationSASLFinal.
class ScramServer {
public:
    /// `server_nonce` is the server's part of the combined nonce (printable).
    ScramServer(ScramSecret secret, std::string server_nonce);

    /// Returns server-first-message, or errc::auth_protocol for malformed input
    /// (channel binding "p=" is refused: we never offer SCRAM-SHA-256-PLUS).
    [[nodiscard]] result<std::string> handle_client_first(std::string_view client_first);
    /// Returns server-final-message ("v=..."), errc::auth_failed if the proof
    /// is wrong, errc::auth_protocol for malformed input or a nonce mismatch.
    [[nodiscard]] result<std::string> handle_client_final(std::string_view client_final);
    /// After a successful exchange: the ClientKey recovered from the proof
    /// (ClientProof XOR ClientSignature), which lets the proxy log in to a
    /// server holding the same secret without knowing the password.
    [[nodiscard]] const std::optional<Key>& client_key() const noexcept { return client_key_; }

private:
    ScramSecret secret_;
    std::string server_nonce_;
    std::string client_first_bare_;
    std::string server_first_;
    std::string combined_nonce_;
    std::optional<Key> client_key_;
};

/// The proxy's side when it logs in to a server with SCRAM-SHA-256.
class ScramClient {
public:
    /// Log in with a password (the usual case).
    ScramClient(std::string password, std::string client_nonce);
    /// Log in with keys recovered from a client's exchange; works only when the
    /// server's secret has the same salt and iterations as the one they came from.
    ScramClient(Key client_key, Key server_key, std::string client_nonce);

    /// client-first-message for SASLInitialResponse ("n,,n=,r=<nonce>").
    [[nodiscard]] std::string client_first() const;
    /// Takes server-first-message; returns client-final-message.
    [[nodiscard]] result<std::string> handle_server_first(std::string_view server_first);
    /// Verifies the server's signature in server-final-message
    /// (errc::auth_failed when it does not match: the server is not who it claims).
    [[nodiscard]] boost::system::error_code handle_server_final(std::string_view server_final);

private:
    std::optional<std::string> password_;
    std::optional<Key> client_key_;
    std::optional<Key> server_key_;
    std::string client_nonce_;
    std::string client_first_bare_;
    std::string expected_server_signature_;
};

}  // namespace pgswitch::wire::auth
