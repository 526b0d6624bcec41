#include "http_client.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

namespace e2e::http {

namespace {

using Clock = std::chrono::steady_clock;

std::string lower(std::string s)
{
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    return s;
}

std::string trim(const std::string& s)
{
    const auto b = s.find_first_not_of(" \t");
    if (b == std::string::npos)
        return {};
    const auto e = s.find_last_not_of(" \t\r");
    return s.substr(b, e - b + 1);
}

int ms_left(Clock::time_point deadline)
{
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    return left < 0 ? 0 : int(left);
}

bool wait_fd(int fd, short events, Clock::time_point deadline)
{
    for (;;) {
        pollfd p{fd, events, 0};
        const int n = ::poll(&p, 1, ms_left(deadline));
        if (n > 0)
            return true;
        if (n == 0)
            return false;
        if (errno != EINTR)
            return false;
    }
}

struct Fd {
    int fd = -1;
    ~Fd()
    {
        if (fd >= 0)
            ::close(fd);
    }
};

/// Decodes a chunked body; false when malformed or incomplete.
bool dechunk(const std::string& in, std::string& out)
{
    size_t pos = 0;
    for (;;) {
        const auto eol = in.find("\r\n", pos);
        if (eol == std::string::npos)
            return false;
        size_t size = 0;
        try {
            size = std::stoul(in.substr(pos, eol - pos), nullptr, 16);
        } catch (...) {
            return false;
        }
        pos = eol + 2;
        if (size == 0)
            return true;
        if (in.size() < pos + size + 2)
            return false;
        out.append(in, pos, size);
        pos += size + 2;
    }
}

}  // namespace

std::string Response::header(const std::string& lower_name) const
{
    auto it = headers.find(lower_name);
    return it == headers.end() ? "" : it->second;
}

nlohmann::json Response::json() const
{
    return nlohmann::json::parse(body, nullptr, false);
}

std::string Response::str() const
{
    if (!error.empty())
        return "(request failed: " + error + ")";
    return std::to_string(status) + " " + (body.size() > 2000 ? body.substr(0, 2000) + "..." : body);
}

Response send(int port, const Request& req, std::chrono::milliseconds timeout)
{
    Response res;
    const auto deadline = Clock::now() + timeout;
    Fd s;
    s.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s.fd < 0) {
        res.error = std::string("socket: ") + std::strerror(errno);
        return res;
    }
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    if (::connect(s.fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        if (errno != EINPROGRESS) {
            res.error = std::string("connect: ") + std::strerror(errno);
            return res;
        }
        if (!wait_fd(s.fd, POLLOUT, deadline)) {
            res.error = "connect: timed out";
            return res;
        }
        int err = 0;
        socklen_t len = sizeof err;
        ::getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
            res.error = std::string("connect: ") + std::strerror(err);
            return res;
        }
    }

    std::string out = req.method + " " + req.path + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
                      "\r\nConnection: close\r\nUser-Agent: pgswitch-e2e\r\n";
    bool has_type = false;
    for (const auto& [k, v] : req.headers) {
        out += k + ": " + v + "\r\n";
        if (lower(k) == "content-type")
            has_type = true;
    }
    if (!req.body.empty() && !has_type)
        out += "Content-Type: application/json\r\n";
    if (!req.body.empty() || req.method == "POST" || req.method == "PUT")
        out += "Content-Length: " + std::to_string(req.body.size()) + "\r\n";
    out += "\r\n" + req.body;

    size_t sent = 0;
    while (sent < out.size()) {
        const ssize_t n = ::send(s.fd, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
        if (n > 0) {
            sent += size_t(n);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (!wait_fd(s.fd, POLLOUT, deadline)) {
                res.error = "send: timed out";
                return res;
            }
            continue;
        }
        res.error = std::string("send: ") + std::strerror(errno);
        return res;
    }

    // Read until the server closes (we asked for Connection: close) or, once the
    // head is in, until Content-Length bytes of body arrived.
    std::string in;
    size_t head_end = std::string::npos;
    long long content_length = -1;
    bool chunked = false;
    char buf[8192];
    for (;;) {
        if (head_end != std::string::npos && content_length >= 0 && in.size() >= head_end + 4 + size_t(content_length))
            break;
        if (!wait_fd(s.fd, POLLIN, deadline)) {
            res.error = "read: timed out after " + std::to_string(in.size()) + " bytes";
            return res;
        }
        const ssize_t n = ::recv(s.fd, buf, sizeof buf, 0);
        if (n == 0)
            break;
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                continue;
            if (errno == ECONNRESET && head_end != std::string::npos)
                break;
            res.error = std::string("read: ") + std::strerror(errno);
            return res;
        }
        in.append(buf, size_t(n));
        if (head_end == std::string::npos && (head_end = in.find("\r\n\r\n")) != std::string::npos) {
            // Parse the head now, to know the body length.
            size_t pos = in.find("\r\n");
            const std::string status_line = in.substr(0, pos);
            if (status_line.rfind("HTTP/1.", 0) != 0 || status_line.size() < 12) {
                res.error = "bad status line: " + status_line;
                return res;
            }
            res.status = std::atoi(status_line.c_str() + 9);
            pos += 2;
            while (pos < head_end) {
                const auto eol = in.find("\r\n", pos);
                const std::string line = in.substr(pos, eol - pos);
                pos = eol + 2;
                const auto colon = line.find(':');
                if (colon == std::string::npos)
                    continue;
                res.headers[lower(trim(line.substr(0, colon)))] = trim(line.substr(colon + 1));
            }
            if (auto cl = res.header("content-length"); !cl.empty())
                content_length = std::atoll(cl.c_str());
            chunked = lower(res.header("transfer-encoding")).find("chunked") != std::string::npos;
        }
    }
    if (head_end == std::string::npos) {
        res.status = 0;
        res.error = "connection closed before a complete response head (" + std::to_string(in.size()) + " bytes)";
        return res;
    }
    std::string body = in.substr(head_end + 4);
    if (chunked) {
        if (!dechunk(body, res.body)) {
            res.error = "malformed chunked body";
            return res;
        }
    } else if (content_length >= 0) {
        if (body.size() < size_t(content_length)) {
            res.error = "body truncated: " + std::to_string(body.size()) + " of " + std::to_string(content_length);
            return res;
        }
        res.body = body.substr(0, size_t(content_length));
    } else {
        res.body = std::move(body);
    }
    return res;
}

namespace {
Request make(const std::string& method, const std::string& path, const std::string& body, const std::string& token)
{
    Request r;
    r.method = method;
    r.path = path;
    r.body = body;
    if (!token.empty())
        r.headers.emplace_back("Authorization", "Bearer " + token);
    return r;
}
}  // namespace

Response get(int port, const std::string& path, const std::string& token)
{
    return send(port, make("GET", path, "", token));
}
Response post(int port, const std::string& path, const std::string& body, const std::string& token)
{
    return send(port, make("POST", path, body, token));
}
Response del(int port, const std::string& path, const std::string& token)
{
    return send(port, make("DELETE", path, "", token));
}

}  // namespace e2e::http
