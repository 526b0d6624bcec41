// A minimal raw protocol-v3 client over a POSIX socket, for what libpq cannot
// show: the SQLSTATE of a failed login, and bytes no real client would send.
#pragma once

#include "harness.h"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace e2e {

struct RawMessage {
    char type = 0;
    std::string body;  ///< without type byte and length
};

/// Fields of an ErrorResponse/NoticeResponse body, keyed by field code ('C', 'M', ...).
std::map<char, std::string> error_fields(const std::string& body);

class RawConn {
public:
    RawConn() = default;
    ~RawConn();
    RawConn(const RawConn&) = delete;
    RawConn& operator=(const RawConn&) = delete;

    /// TCP connect to 127.0.0.1:port; false when refused.
    bool connect(int port);
    int fd() const { return fd_; }
    void close();

    /// Sends raw bytes; false on error (e.g. the peer already closed).
    bool send_bytes(const std::string& bytes);
    /// Sends a typed message (type 0 = untyped, as StartupMessage).
    bool send_message(char type, const std::string& body);
    bool send_startup(const std::string& user, const std::string& database,
                      const std::map<std::string, std::string>& extra = {});

    /// Next message, or nullopt on EOF/error/deadline (see eof()).
    std::optional<RawMessage> read_message(Clock::time_point deadline);
    /// True when the last read ended because the peer closed (or reset) the socket.
    bool eof() const { return eof_; }

    /// Authentication request codes received by login(), in order (0 = Ok, 3 = cleartext,
    /// 5 = md5, 10/11/12 = SASL / continue / final).
    std::vector<uint32_t> auth_requests;
    /// BackendKeyData received by login() (the key a CancelRequest names).
    uint32_t backend_pid = 0, backend_secret = 0;

    /// Waits until the peer closes the socket (recv returns 0 or an error),
    /// discarding whatever it sends first. False on deadline.
    bool wait_closed(Clock::time_point deadline);

    /// Startup + authentication (cleartext, md5 or SCRAM-SHA-256 as the server asks).
    /// Returns "" once ReadyForQuery arrives, else the SQLSTATE of the ErrorResponse
    /// (or "EOF"/"TIMEOUT"/"PROTOCOL:<what>"). `message` receives the error text.
    std::string login(const std::string& user, const std::string& password, const std::string& database,
                      std::string* message = nullptr, Clock::time_point deadline = Clock::now() + 10s);

    /// Simple query; collects until ReadyForQuery. Returns the SQLSTATE of an error or "".
    std::string simple_query(const std::string& sql, std::string* first_value = nullptr,
                             Clock::time_point deadline = Clock::now() + 10s);

private:
    int fd_ = -1;
    bool eof_ = false;
    std::string buf_;
    bool fill(Clock::time_point deadline);
};

std::string be32(uint32_t v);
std::string be16(uint16_t v);

}  // namespace e2e
