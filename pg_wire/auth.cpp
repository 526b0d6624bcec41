// Password authentication exchanges (SCRAM-SHA-256, md5) on top of OpenSSL's
// one-shot hash/HMAC/PBKDF2 functions. No I/O: nonces come from the caller.
#include "auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <cassert>
#include <charconv>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <utility>

namespace pgswitch::wire::auth {
namespace {

constexpr std::string_view b64_alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// OpenSSL's one-shot functions fail only when memory runs out or the
/// algorithm is unavailable (e.g. MD5 under a FIPS-only provider). None of the
/// callers has an error path in the interface, and carrying on with a zeroed
/// key or nonce would be a security bug, so stop here.
[[noreturn]] void openssl_failure(const char* what) noexcept
{
    std::fprintf(stderr, "pg_wire/auth: OpenSSL %s failed\n", what);
    std::abort();
}

/// The value of one base64 character, or -1 outside the alphabet.
int b64_value(char c) noexcept
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

const unsigned char* bytes(std::string_view s) noexcept
{
    return reinterpret_cast<const unsigned char*>(s.data());
}

std::string_view as_view(const Key& k) noexcept
{
    return {reinterpret_cast<const char*>(k.data()), k.size()};
}

/// Lengths handed to OpenSSL's int-sized parameters. Every input here is a
/// protocol message (at most 1 GB) or a password, so this never truncates.
int int_len(std::size_t n) noexcept
{
    assert(n <= static_cast<std::size_t>(INT_MAX));
    return static_cast<int>(n);
}

Key sha256(std::string_view data) noexcept
{
    Key out{};
    if (SHA256(bytes(data), data.size(), out.data()) == nullptr)
        openssl_failure("SHA256");
    return out;
}

Key hmac_sha256(const Key& key, std::string_view data) noexcept
{
    Key out{};
    unsigned int len = 0;
    if (HMAC(EVP_sha256(), key.data(), int_len(key.size()), bytes(data), data.size(), out.data(), &len) == nullptr ||
        len != out.size())
        openssl_failure("HMAC-SHA-256");
    return out;
}

/// SaltedPassword := Hi(Normalize(password), salt, i) (RFC 5802 §3).
/// PostgreSQL normalizes with SASLprep (pg_saslprep); we use the bytes as
/// given. For ASCII passwords the two agree; a non-ASCII password whose
/// SASLprep form differs (e.g. not NFKC) will not match a secret PostgreSQL made.
Key salted_password(std::string_view password, std::string_view salt, int iterations) noexcept
{
    Key out{};
    if (PKCS5_PBKDF2_HMAC(password.data(), int_len(password.size()), bytes(salt), int_len(salt.size()), iterations,
                          EVP_sha256(), int_len(out.size()), out.data()) != 1)
        openssl_failure("PBKDF2-HMAC-SHA-256");
    return out;
}

Key xor_keys(const Key& a, const Key& b) noexcept
{
    Key out{};
    for (std::size_t i = 0; i < out.size(); ++i)
        out[i] = static_cast<std::uint8_t>(a[i] ^ b[i]);
    return out;
}

/// Decodes base64 that must hold exactly one Key.
std::optional<Key> decode_key(std::string_view text)
{
    auto raw = base64_decode(text);
    if (!raw || raw->size() != Key{}.size())
        return std::nullopt;
    Key k{};
    for (std::size_t i = 0; i < k.size(); ++i)
        k[i] = static_cast<std::uint8_t>((*raw)[i]);
    return k;
}

/// A strictly positive decimal int with nothing around it.
std::optional<int> parse_positive_int(std::string_view text) noexcept
{
    int v = 0;
    const char* end = text.data() + text.size();
    auto [ptr, ec] = std::from_chars(text.data(), end, v);
    if (text.empty() || ec != std::errc{} || ptr != end || v <= 0 || text[0] == '+')
        return std::nullopt;
    return v;
}

/// RFC 5802 "printable": %x21-2B / %x2D-7E, i.e. visible ASCII except ','.
bool is_printable_nonce(std::string_view s) noexcept
{
    if (s.empty())
        return false;
    for (char c : s)
        if (c < 0x21 || c > 0x7e || c == ',')
            return false;
    return true;
}

/// Walks the comma-separated "x=value" attributes of a SCRAM message
/// (RFC 5802 §5.1). Values may hold '=' but never ','.
class AttrReader {
public:
    explicit AttrReader(std::string_view text) noexcept : text_(text) {}

    [[nodiscard]] bool at_end() const noexcept { return pos_ >= text_.size() && !pending_comma_; }
    [[nodiscard]] std::size_t pos() const noexcept { return pos_; }
    /// The attribute name of the next attribute, or '\0' at the end.
    [[nodiscard]] char peek() const noexcept { return pos_ < text_.size() ? text_[pos_] : '\0'; }

    /// Reads the next attribute, which must be named `name`.
    [[nodiscard]] std::optional<std::string_view> read(char name) noexcept
    {
        if (peek() != name)
            return std::nullopt;
        return read_any();
    }

    /// Reads the next attribute whatever its name (an extension we skip).
    [[nodiscard]] std::optional<std::string_view> read_any() noexcept
    {
        const char name = peek();
        const bool is_alpha = (name >= 'a' && name <= 'z') || (name >= 'A' && name <= 'Z');
        if (!is_alpha || pos_ + 1 >= text_.size() || text_[pos_ + 1] != '=')
            return std::nullopt;
        const std::size_t start = pos_ + 2;
        std::size_t comma = text_.find(',', start);
        pending_comma_ = comma != std::string_view::npos;
        if (!pending_comma_)
            comma = text_.size();
        pos_ = pending_comma_ ? comma + 1 : comma;
        return text_.substr(start, comma - start);
    }

private:
    std::string_view text_;
    std::size_t pos_ = 0;
    bool pending_comma_ = false;  ///< a ',' was consumed, so another attribute must follow
};

/// The expected channel-binding attribute for the gs2 header we accepted:
/// without channel binding, c= is just base64 of the header itself.
std::string_view expected_cbind(char flag) noexcept
{
    return flag == 'y' ? "eSws" : "biws";  // base64("y,,") / base64("n,,")
}

}  // namespace

// ---- base64 -------------------------------------------------------------

std::string base64_encode(std::string_view raw)
{
    std::string out;
    out.reserve((raw.size() + 2) / 3 * 4);
    std::size_t i = 0;
    for (; i + 3 <= raw.size(); i += 3) {
        const std::uint32_t n = (std::uint32_t{static_cast<std::uint8_t>(raw[i])} << 16) |
                                (std::uint32_t{static_cast<std::uint8_t>(raw[i + 1])} << 8) |
                                std::uint32_t{static_cast<std::uint8_t>(raw[i + 2])};
        out += b64_alphabet[(n >> 18) & 63];
        out += b64_alphabet[(n >> 12) & 63];
        out += b64_alphabet[(n >> 6) & 63];
        out += b64_alphabet[n & 63];
    }
    const std::size_t rest = raw.size() - i;
    if (rest > 0) {
        std::uint32_t n = std::uint32_t{static_cast<std::uint8_t>(raw[i])} << 16;
        if (rest == 2)
            n |= std::uint32_t{static_cast<std::uint8_t>(raw[i + 1])} << 8;
        out += b64_alphabet[(n >> 18) & 63];
        out += b64_alphabet[(n >> 12) & 63];
        out += rest == 2 ? b64_alphabet[(n >> 6) & 63] : '=';
        out += '=';
    }
    return out;
}

result<std::string> base64_decode(std::string_view text)
{
    // Strict: whole 4-character groups, padding only at the very end, and the
    // unused low bits of the last group zero, so each value has one spelling.
    if (text.size() % 4 != 0)
        return errc::bad_value;
    std::size_t pad = 0;
    if (!text.empty() && text.back() == '=')
        pad = text.size() >= 2 && text[text.size() - 2] == '=' ? 2 : 1;

    std::string out;
    out.reserve(text.size() / 4 * 3);
    for (std::size_t i = 0; i < text.size(); i += 4) {
        const bool last = i + 4 == text.size();
        const std::size_t data_chars = last ? 4 - pad : 4;
        std::uint32_t n = 0;
        for (std::size_t j = 0; j < 4; ++j) {
            int v = 0;
            if (j < data_chars) {
                v = b64_value(text[i + j]);
                if (v < 0)
                    return errc::bad_value;  // includes a stray '=' mid-text
            }
            n = (n << 6) | static_cast<std::uint32_t>(v);
        }
        out += static_cast<char>((n >> 16) & 0xff);
        if (data_chars >= 3)
            out += static_cast<char>((n >> 8) & 0xff);
        if (data_chars == 4)
            out += static_cast<char>(n & 0xff);
        // Non-canonical: bits that padding says are unused are set.
        if ((data_chars == 2 && (n & 0xffff) != 0) || (data_chars == 3 && (n & 0xff) != 0))
            return errc::bad_value;
    }
    return out;
}

std::string random_nonce(std::size_t n)
{
    std::string raw(n, '\0');
    // A predictable nonce would allow replaying a SCRAM exchange, so there is
    // no fallback: without a seeded CSPRNG no login can be safe.
    if (n > 0 && RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), int_len(n)) != 1)
        openssl_failure("RAND_bytes");
    return base64_encode(raw);
}

// ---- md5 ----------------------------------------------------------------

std::string md5_hex(std::string_view data)
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_Digest(data.data(), data.size(), digest, &len, EVP_md5(), nullptr) != 1)
        openssl_failure("MD5");
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    out.reserve(2 * len);
    for (unsigned int i = 0; i < len; ++i) {
        out += hex[digest[i] >> 4];
        out += hex[digest[i] & 0x0f];
    }
    return out;
}

std::string md5_response(std::string_view user, std::string_view password, const std::array<char, 4>& salt)
{
    // Protocol → Message Formats, AuthenticationMD5Password: the inner hash
    // is what pg_authid stores ("md5" prefix aside); the salt makes the reply
    // single-use.
    std::string inner = md5_hex(std::string(password) + std::string(user));
    inner.append(salt.data(), salt.size());
    return "md5" + md5_hex(inner);
}

// ---- SCRAM secrets ------------------------------------------------------

ScramSecret make_scram_secret(std::string_view password, std::string_view salt, int iterations)
{
    assert(iterations > 0);
    const Key salted = salted_password(password, salt, iterations);
    ScramSecret s;
    s.iterations = iterations;
    s.salt = std::string(salt);
    s.stored_key = sha256(as_view(hmac_sha256(salted, "Client Key")));
    s.server_key = hmac_sha256(salted, "Server Key");
    return s;
}

result<ScramSecret> parse_scram_secret(std::string_view text)
{
    // SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>
    constexpr std::string_view prefix = "SCRAM-SHA-256$";
    if (text.substr(0, prefix.size()) != prefix)
        return errc::bad_value;
    text.remove_prefix(prefix.size());

    const std::size_t dollar = text.find('$');
    if (dollar == std::string_view::npos)
        return errc::bad_value;
    const std::string_view params = text.substr(0, dollar);
    const std::string_view keys = text.substr(dollar + 1);
    const std::size_t colon1 = params.find(':');
    const std::size_t colon2 = keys.find(':');
    if (colon1 == std::string_view::npos || colon2 == std::string_view::npos)
        return errc::bad_value;

    const auto iterations = parse_positive_int(params.substr(0, colon1));
    auto salt = base64_decode(params.substr(colon1 + 1));
    const auto stored = decode_key(keys.substr(0, colon2));
    const auto server = decode_key(keys.substr(colon2 + 1));  // a further ':' fails decoding
    if (!iterations || !salt || salt->empty() || !stored || !server)
        return errc::bad_value;

    ScramSecret s;
    s.iterations = *iterations;
    s.salt = std::move(*salt);
    s.stored_key = *stored;
    s.server_key = *server;
    return s;
}

std::string format_scram_secret(const ScramSecret& s)
{
    return "SCRAM-SHA-256$" + std::to_string(s.iterations) + ":" + base64_encode(s.salt) + "$" +
           base64_encode(as_view(s.stored_key)) + ":" + base64_encode(as_view(s.server_key));
}

// ---- ScramServer --------------------------------------------------------
//
// auth.h gives ScramServer no member for the client's gs2 header, yet
// client-final's c= must repeat it (RFC 5802 §7; PostgreSQL's
// read_client_final_message checks it so a stripped "y" flag is noticed).
// Accepted headers are exactly 3 bytes ("n,," or "y,,"), so client_first_bare_
// keeps the header in front: client_first_bare_ = gs2-header + client-first-bare.

ScramServer::ScramServer(ScramSecret secret, std::string server_nonce)
    : secret_(std::move(secret)),
      server_nonce_(std::move(server_nonce))
{
}

result<std::string> ScramServer::handle_client_first(std::string_view client_first)
{
    if (!client_first_bare_.empty())
        return errc::auth_protocol;  // second client-first in one exchange

    // gs2-header: cbind-flag "," [authzid] ",". "p=" asks for channel binding,
    // which we never advertise (no SCRAM-SHA-256-PLUS); PostgreSQL refuses an
    // authzid too, since the user comes from the startup packet.
    if (client_first.size() < 3 || (client_first[0] != 'n' && client_first[0] != 'y') || client_first[1] != ',' ||
        client_first[2] != ',')
        return errc::auth_protocol;
    const std::string_view bare = client_first.substr(3);

    AttrReader attrs(bare);
    // "m=" is a mandatory extension we do not know: the RFC says fail.
    if (attrs.peek() == 'm')
        return errc::auth_protocol;
    // The user name (PostgreSQL's libpq sends "n=") is ignored: the startup
    // packet named the role already.
    if (!attrs.read('n'))
        return errc::auth_protocol;
    const auto client_nonce = attrs.read('r');
    if (!client_nonce || !is_printable_nonce(*client_nonce))
        return errc::auth_protocol;
    while (!attrs.at_end())
        if (!attrs.read_any())
            return errc::auth_protocol;

    combined_nonce_ = std::string(*client_nonce) + server_nonce_;
    client_first_bare_ = std::string(client_first.substr(0, 3)) + std::string(bare);
    server_first_ = "r=" + combined_nonce_ + ",s=" + base64_encode(secret_.salt) +
                    ",i=" + std::to_string(secret_.iterations);
    return server_first_;
}

result<std::string> ScramServer::handle_client_final(std::string_view client_final)
{
    if (server_first_.empty() || client_key_)
        return errc::auth_protocol;  // out of order, or a second final
    // One attempt per exchange: whatever happens below, a retry is refused.
    const std::string server_first = std::exchange(server_first_, std::string());
    const char cbind_flag = client_first_bare_[0];
    const std::string_view client_first_bare = std::string_view(client_first_bare_).substr(3);

    AttrReader attrs(client_final);
    const auto cbind = attrs.read('c');
    if (!cbind || *cbind != expected_cbind(cbind_flag))
        return errc::auth_protocol;
    const auto nonce = attrs.read('r');
    if (!nonce || *nonce != combined_nonce_)
        return errc::auth_protocol;
    // Extensions may precede the proof, which must come last (RFC 5802 §7).
    std::optional<std::string_view> proof_b64;
    std::size_t proof_start = 0;
    while (!attrs.at_end()) {
        if (attrs.peek() == 'p') {
            proof_start = attrs.pos();
            proof_b64 = attrs.read('p');
            break;
        }
        if (!attrs.read_any())
            return errc::auth_protocol;
    }
    if (!proof_b64 || !attrs.at_end())
        return errc::auth_protocol;
    const auto proof = decode_key(*proof_b64);
    if (!proof)
        return errc::auth_protocol;

    // client-final-message-without-proof is everything before ",p=".
    const std::string_view final_without_proof = client_final.substr(0, proof_start - 1);
    const std::string auth_message = std::string(client_first_bare) + "," + server_first + "," +
                                     std::string(final_without_proof);

    // ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage); it is right
    // when H(ClientKey) is our StoredKey. Constant-time compare: the proof is
    // attacker-chosen.
    const Key client_signature = hmac_sha256(secret_.stored_key, auth_message);
    const Key client_key = xor_keys(*proof, client_signature);
    const Key stored = sha256(as_view(client_key));
    if (CRYPTO_memcmp(stored.data(), secret_.stored_key.data(), stored.size()) != 0)
        return errc::auth_failed;

    client_key_ = client_key;
    return "v=" + base64_encode(as_view(hmac_sha256(secret_.server_key, auth_message)));
}

// ---- ScramClient --------------------------------------------------------

ScramClient::ScramClient(std::string password, std::string client_nonce)
    : password_(std::move(password)),
      client_nonce_(std::move(client_nonce)),
      // PostgreSQL's client sends an empty user name: the server takes the
      // role from the startup packet (Protocol → SASL Authentication).
      client_first_bare_("n=,r=" + client_nonce_)
{
    assert(is_printable_nonce(client_nonce_));
}

ScramClient::ScramClient(Key client_key, Key server_key, std::string client_nonce)
    : client_key_(client_key),
      server_key_(server_key),
      client_nonce_(std::move(client_nonce)),
      client_first_bare_("n=,r=" + client_nonce_)
{
    assert(is_printable_nonce(client_nonce_));
}

std::string ScramClient::client_first() const
{
    // "n,,": no channel binding, and we do not claim the server lacks it.
    return "n,," + client_first_bare_;
}

result<std::string> ScramClient::handle_server_first(std::string_view server_first)
{
    if (!expected_server_signature_.empty())
        return errc::auth_protocol;  // second server-first in one exchange

    AttrReader attrs(server_first);
    if (attrs.peek() == 'm')
        return errc::auth_protocol;  // unknown mandatory extension
    const auto nonce = attrs.read('r');
    const auto salt_b64 = attrs.read('s');
    const auto iterations_text = attrs.read('i');
    if (!nonce || !salt_b64 || !iterations_text)
        return errc::auth_protocol;
    while (!attrs.at_end())
        if (!attrs.read_any())
            return errc::auth_protocol;

    // The server must extend our nonce, not replace it (replay protection).
    if (nonce->size() <= client_nonce_.size() || nonce->substr(0, client_nonce_.size()) != client_nonce_ ||
        !is_printable_nonce(*nonce))
        return errc::auth_protocol;
    auto salt = base64_decode(*salt_b64);
    const auto iterations = parse_positive_int(*iterations_text);
    if (!salt || salt->empty() || !iterations)
        return errc::auth_protocol;

    // With a password, derive the keys for the server's salt and iterations.
    // With recovered keys the server's parameters are ignored: the keys are
    // only right if the server's secret shares the salt and iterations of the
    // secret they came from (otherwise the server answers auth failure).
    Key client_key{};
    Key server_key{};
    if (password_) {
        // A hostile server could ask for a huge iteration count; the proxy
        // only talks to configured backends, so like libpq we do not cap it.
        const Key salted = salted_password(*password_, *salt, *iterations);
        client_key = hmac_sha256(salted, "Client Key");
        server_key = hmac_sha256(salted, "Server Key");
    } else {
        client_key = *client_key_;
        server_key = *server_key_;
    }

    const std::string final_without_proof = "c=biws,r=" + std::string(*nonce);
    const std::string auth_message = client_first_bare_ + "," + std::string(server_first) + "," + final_without_proof;
    const Key stored_key = sha256(as_view(client_key));
    const Key proof = xor_keys(client_key, hmac_sha256(stored_key, auth_message));
    expected_server_signature_ = base64_encode(as_view(hmac_sha256(server_key, auth_message)));
    return final_without_proof + ",p=" + base64_encode(as_view(proof));
}

boost::system::error_code ScramClient::handle_server_final(std::string_view server_final)
{
    if (expected_server_signature_.empty())
        return errc::auth_protocol;  // server-final before server-first, or twice
    const std::string expected = std::exchange(expected_server_signature_, std::string());

    AttrReader attrs(server_final);
    // server-error: the server rejected our proof (PostgreSQL normally sends
    // an ErrorResponse instead, but the RFC allows "e=").
    if (attrs.peek() == 'e')
        return errc::auth_failed;
    const auto verifier = attrs.read('v');
    if (!verifier || !attrs.at_end())
        return errc::auth_protocol;
    // Both are base64 of 32 bytes, so equal lengths mean equal-length encodings.
    if (verifier->size() != expected.size() || CRYPTO_memcmp(verifier->data(), expected.data(), expected.size()) != 0)
        return errc::auth_failed;
    return {};
}

}  // namespace pgswitch::wire::auth
