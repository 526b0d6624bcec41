#include "rawpg.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace e2e {

std::string be32(uint32_t v)
{
    std::string s(4, '\0');
    s[0] = static_cast<char>((v >> 24) & 0xff);
    s[1] = static_cast<char>((v >> 16) & 0xff);
    s[2] = static_cast<char>((v >> 8) & 0xff);
    s[3] = static_cast<char>(v & 0xff);
    return s;
}
std::string be16(uint16_t v)
{
    std::string s(2, '\0');
    s[0] = static_cast<char>((v >> 8) & 0xff);
    s[1] = static_cast<char>(v & 0xff);
    return s;
}

namespace {
uint32_t rd32(const std::string& s, size_t at)
{
    return (uint32_t(uint8_t(s[at])) << 24) | (uint32_t(uint8_t(s[at + 1])) << 16) |
           (uint32_t(uint8_t(s[at + 2])) << 8) | uint32_t(uint8_t(s[at + 3]));
}

std::string hex(const unsigned char* p, size_t n)
{
    static const char* d = "0123456789abcdef";
    std::string s;
    for (size_t i = 0; i < n; ++i) {
        s += d[p[i] >> 4];
        s += d[p[i] & 15];
    }
    return s;
}

std::string md5_hex(const std::string& in)
{
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_Digest(in.data(), in.size(), out, &len, EVP_md5(), nullptr);
    return hex(out, len);
}

std::string b64(const std::string& in)
{
    std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
    const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                  reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
    out.resize(static_cast<size_t>(n));
    return out;
}

std::string unb64(const std::string& in)
{
    std::string out(in.size(), '\0');
    int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                            reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
    if (n < 0)
        return {};
    size_t len = static_cast<size_t>(n);
    if (!in.empty() && in.back() == '=')
        --len;
    if (in.size() > 1 && in[in.size() - 2] == '=')
        --len;
    out.resize(len);
    return out;
}

std::string hmac256(const std::string& key, const std::string& msg)
{
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(msg.data()),
         msg.size(), out, &len);
    return std::string(reinterpret_cast<char*>(out), len);
}

std::string sha256(const std::string& in)
{
    unsigned char out[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>(in.data()), in.size(), out);
    return std::string(reinterpret_cast<char*>(out), sizeof out);
}

// "k=v,k=v" attribute lookup.
std::string scram_attr(const std::string& msg, char key)
{
    size_t pos = 0;
    while (pos < msg.size()) {
        size_t end = msg.find(',', pos);
        if (end == std::string::npos)
            end = msg.size();
        if (end - pos >= 2 && msg[pos] == key && msg[pos + 1] == '=')
            return msg.substr(pos + 2, end - pos - 2);
        pos = end + 1;
    }
    return {};
}
}  // namespace

std::map<char, std::string> error_fields(const std::string& body)
{
    std::map<char, std::string> f;
    size_t pos = 0;
    while (pos < body.size() && body[pos] != '\0') {
        const char code = body[pos++];
        const size_t end = body.find('\0', pos);
        if (end == std::string::npos)
            break;
        f[code] = body.substr(pos, end - pos);
        pos = end + 1;
    }
    return f;
}

RawConn::~RawConn()
{
    close();
}

void RawConn::close()
{
    if (fd_ >= 0)
        ::close(fd_);
    fd_ = -1;
}

bool RawConn::connect(int port)
{
    close();
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0)
        return false;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        close();
        return false;
    }
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    eof_ = false;
    buf_.clear();
    return true;
}

bool RawConn::send_bytes(const std::string& bytes)
{
    size_t off = 0;
    while (off < bytes.size()) {
        const ssize_t n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        off += static_cast<size_t>(n);
    }
    return true;
}

bool RawConn::send_message(char type, const std::string& body)
{
    std::string m;
    if (type)
        m += type;
    m += be32(static_cast<uint32_t>(body.size() + 4));
    m += body;
    return send_bytes(m);
}

bool RawConn::send_startup(const std::string& user, const std::string& database,
                           const std::map<std::string, std::string>& extra)
{
    std::string body = be32(196608);
    auto kv = [&](const std::string& k, const std::string& v) {
        body += k;
        body += '\0';
        body += v;
        body += '\0';
    };
    kv("user", user);
    kv("database", database);
    for (const auto& [k, v] : extra)
        kv(k, v);
    body += '\0';
    return send_message(0, body);
}

bool RawConn::fill(Clock::time_point deadline)
{
    if (!wait_readable(fd_, deadline))
        return false;
    char tmp[65536];
    const ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n <= 0) {
        if (n < 0 && errno == EINTR)
            return true;
        eof_ = true;
        return false;
    }
    buf_.append(tmp, static_cast<size_t>(n));
    return true;
}

std::optional<RawMessage> RawConn::read_message(Clock::time_point deadline)
{
    for (;;) {
        if (buf_.size() >= 5) {
            const uint32_t len = rd32(buf_, 1);
            if (len < 4)
                return std::nullopt;
            if (buf_.size() >= 1 + size_t(len)) {
                RawMessage m{buf_[0], buf_.substr(5, len - 4)};
                buf_.erase(0, 1 + size_t(len));
                return m;
            }
        }
        if (fd_ < 0 || eof_ || !fill(deadline))
            return std::nullopt;
    }
}

bool RawConn::wait_closed(Clock::time_point deadline)
{
    char tmp[65536];
    for (;;) {
        if (!wait_readable(fd_, deadline))
            return false;
        const ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
        if (n == 0)
            return true;
        if (n < 0 && errno != EINTR && errno != EAGAIN)
            return true;  // reset counts as closed
    }
}

std::string RawConn::login(const std::string& user, const std::string& password, const std::string& database,
                           std::string* message, Clock::time_point deadline)
{
    auth_requests.clear();
    if (!send_startup(user, database))
        return "EOF";
    std::string client_first_bare, server_first, client_nonce, expected_server_sig;
    for (;;) {
        auto m = read_message(deadline);
        if (!m)
            return eof_ ? "EOF" : "TIMEOUT";
        if (m->type == 'E') {
            auto f = error_fields(m->body);
            if (message)
                *message = f['M'];
            return f['C'].empty() ? "PROTOCOL:error without SQLSTATE" : f['C'];
        }
        if (m->type == 'Z')
            return "";
        if (m->type == 'K' && m->body.size() == 8) {
            backend_pid = rd32(m->body, 0);
            backend_secret = rd32(m->body, 4);
        }
        if (m->type != 'R')
            continue;  // ParameterStatus, BackendKeyData, NoticeResponse
        if (m->body.size() < 4)
            return "PROTOCOL:short R";
        const uint32_t code = rd32(m->body, 0);
        auth_requests.push_back(code);
        switch (code) {
        case 0:
            break;
        case 3:  // cleartext
            send_message('p', password + std::string(1, '\0'));
            break;
        case 5: {  // md5
            if (m->body.size() < 8)
                return "PROTOCOL:short md5 salt";
            const std::string salt = m->body.substr(4, 4);
            const std::string inner = md5_hex(password + user);
            send_message('p', "md5" + md5_hex(inner + salt) + std::string(1, '\0'));
            break;
        }
        case 10: {  // SASL: mechanisms list
            if (m->body.find("SCRAM-SHA-256") == std::string::npos)
                return "PROTOCOL:no SCRAM-SHA-256";
            unsigned char rnd[18];
            RAND_bytes(rnd, sizeof rnd);
            client_nonce = b64(std::string(reinterpret_cast<char*>(rnd), sizeof rnd));
            client_first_bare = "n=,r=" + client_nonce;
            const std::string first = "n,," + client_first_bare;
            std::string body = "SCRAM-SHA-256";
            body += '\0';
            body += be32(static_cast<uint32_t>(first.size()));
            body += first;
            send_message('p', body);
            break;
        }
        case 11: {  // SASLContinue: server-first
            server_first = m->body.substr(4);
            const std::string nonce = scram_attr(server_first, 'r');
            const std::string salt = unb64(scram_attr(server_first, 's'));
            const int iters = std::atoi(scram_attr(server_first, 'i').c_str());
            if (nonce.rfind(client_nonce, 0) != 0 || iters <= 0)
                return "PROTOCOL:bad server-first";
            unsigned char salted[32];
            PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                              reinterpret_cast<const unsigned char*>(salt.data()), static_cast<int>(salt.size()), iters,
                              EVP_sha256(), sizeof salted, salted);
            const std::string salted_s(reinterpret_cast<char*>(salted), sizeof salted);
            const std::string client_key = hmac256(salted_s, "Client Key");
            const std::string stored_key = sha256(client_key);
            const std::string final_bare = "c=biws,r=" + nonce;
            const std::string auth_msg = client_first_bare + "," + server_first + "," + final_bare;
            const std::string client_sig = hmac256(stored_key, auth_msg);
            std::string proof = client_key;
            for (size_t i = 0; i < proof.size(); ++i)
                proof[i] = static_cast<char>(proof[i] ^ client_sig[i]);
            const std::string server_key = hmac256(salted_s, "Server Key");
            expected_server_sig = b64(hmac256(server_key, auth_msg));
            send_message('p', final_bare + ",p=" + b64(proof));
            break;
        }
        case 12: {  // SASLFinal
            const std::string v = scram_attr(m->body.substr(4), 'v');
            if (v != expected_server_sig)
                return "PROTOCOL:bad server signature";
            break;
        }
        default:
            return "PROTOCOL:unsupported auth " + std::to_string(code);
        }
    }
}

std::string RawConn::simple_query(const std::string& sql, std::string* first_value, Clock::time_point deadline)
{
    if (!send_message('Q', sql + std::string(1, '\0')))
        return "EOF";
    std::string state;
    bool got_value = false;
    for (;;) {
        auto m = read_message(deadline);
        if (!m)
            return eof_ ? "EOF" : "TIMEOUT";
        if (m->type == 'E')
            state = error_fields(m->body)['C'];
        if (m->type == 'D' && first_value && !got_value && m->body.size() >= 6) {
            const uint32_t len = rd32(m->body, 2);
            if (len != 0xffffffffu)
                *first_value = m->body.substr(6, len);
            got_value = true;
        }
        if (m->type == 'Z')
            return state;
    }
}

}  // namespace e2e
