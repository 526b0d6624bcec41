#include "backend_connection.h"

#include "log.h"
#include "pg_wire/frontend.h"
#include "pg_wire/startup.h"
#include "pg_wire/tags.h"

namespace pgswitch::proxy {

using namespace asio::experimental::awaitable_operators;
namespace be = wire::be;
namespace fe = wire::fe;

namespace {

wire::Limits server_limits()
{
    wire::Limits l;
    l.max_message = std::size_t{1} << 30;  // PostgreSQL's own MaxAllocSize
    l.max_short_message = 30000;           // libpq's sanity limit for other types
    return l;
}

ConnectError io_error(error_code ec, std::string what)
{
    return ConnectError{ec, std::move(what) + ": " + ec.message(), {}, {}};
}

ConnectError server_error(const wire::Frame& f)
{
    ConnectError e;
    e.ec = wire::errc::auth_failed;
    e.server_error.assign(f.raw);
    if (auto fields = be::parse_error_fields(f.body)) {
        e.sqlstate = fields->sqlstate();
        e.message = std::string(fields->message()) + " (SQLSTATE " + e.sqlstate + ")";
    } else
        e.message = "malformed ErrorResponse from server";
    return e;
}

ConnectError protocol_error(std::string what)
{
    return ConnectError{wire::errc::unexpected_tag, std::move(what), {}, {}};
}

std::vector<std::pair<std::string, std::string>> startup_parameters(const ServerStartup& startup)
{
    std::vector<std::pair<std::string, std::string>> params;
    params.emplace_back("user", startup.user);
    params.emplace_back("database", startup.database);
    for (const auto& p : startup.params)
        params.push_back(p);
    return params;
}

}  // namespace

BackendConnection::BackendConnection(asio::any_io_executor ex)
    : socket_(ex),
      decoder_(server_limits(), wire::FrameDecoder::Phase::regular)
{
}

void BackendConnection::close() noexcept
{
    error_code ignored;
    if (socket_.is_open()) {
        socket_.shutdown(tcp::socket::shutdown_both, ignored);
        socket_.close(ignored);
    }
}

awaitable<error_code> BackendConnection::write(std::string_view bytes)
{
    co_return co_await write_all_fast(socket_, bytes);
}

awaitable<std::variant<wire::Frame, error_code>> BackendConnection::read_frame()
{
    for (;;) {
        auto next = decoder_.next();
        if (!next)
            co_return next.error();
        if (*next)
            co_return **next;
        auto region = decoder_.prepare();
        auto [ec, n] = co_await socket_.async_read_some(asio::buffer(region.data(), region.size()), use_nothrow);
        if (ec)
            co_return ec;
        decoder_.commit(n);
    }
}

awaitable<std::optional<ConnectError>> BackendConnection::connect(const std::string& host, std::uint16_t port,
                                                                  const ServerStartup& startup,
                                                                  std::chrono::milliseconds timeout)
{
    auto ex = co_await asio::this_coro::executor;
    asio::steady_timer deadline(ex, timeout);
    // The whole login races one timer: a server that accepts and then says
    // nothing must not hold the session forever.
    auto attempt = [&]() -> awaitable<std::optional<ConnectError>> {
        if (auto err = co_await open_socket(host, port))
            co_return err;
        co_return co_await login(startup);
    };
    auto result = co_await (attempt() || deadline.async_wait(use_nothrow));
    if (result.index() == 1) {
        close();
        co_return ConnectError{
            asio::error::timed_out, "timeout connecting to " + host + ":" + std::to_string(port), {}, {}};
    }
    auto err = std::get<0>(std::move(result));
    if (err)
        close();
    co_return err;
}

awaitable<std::optional<ConnectError>> BackendConnection::open_socket(const std::string& host, std::uint16_t port)
{
    tcp::resolver resolver(socket_.get_executor());
    auto [rec, results] = co_await resolver.async_resolve(host, std::to_string(port), use_nothrow);
    if (rec)
        co_return io_error(rec, "could not resolve \"" + host + "\"");
    auto [cec, ep] = co_await asio::async_connect(socket_, results, use_nothrow);
    if (cec)
        co_return io_error(cec, "could not connect to " + host + ":" + std::to_string(port));
    endpoint_ = ep;
    socket_.set_option(tcp::no_delay(true));
    co_return std::nullopt;
}

awaitable<bool> BackendConnection::admits(const std::string& host, std::uint16_t port, const ServerStartup& startup,
                                          std::chrono::milliseconds timeout)
{
    asio::steady_timer deadline(socket_.get_executor(), timeout);
    auto first_answer = [&]() -> awaitable<bool> {
        if (auto err = co_await open_socket(host, port))
            co_return false;
        out_.clear();
        wire::build_startup_message(out_, startup_parameters(startup));
        if (auto ec = co_await write(out_))
            co_return false;
        auto r = co_await read_frame();
        // A server that is shutting down (or not yet up) answers the startup
        // packet with an ErrorResponse; one that admits the connection asks
        // for a password, or lets it in.
        const auto* f = std::get_if<wire::Frame>(&r);
        co_return f && f->backend_tag() == be::Tag::Authentication;
    };
    auto result = co_await (first_answer() || deadline.async_wait(use_nothrow));
    // Left unanswered: PostgreSQL ends a login the client walked away from
    // without logging it.
    close();
    co_return result.index() == 0 && std::get<0>(result);
}

awaitable<std::optional<ConnectError>> BackendConnection::send_password(std::string_view password)
{
    out_.clear();
    fe::build_password_message(out_, password);
    if (auto ec = co_await write(out_))
        co_return io_error(ec, "could not send password");
    co_return std::nullopt;
}

awaitable<std::optional<ConnectError>> BackendConnection::answer_authentication(const wire::Frame& f,
                                                                                const ServerStartup& startup)
{
    auto auth = be::parse_authentication(f.body);
    if (!auth)
        co_return protocol_error("malformed authentication request from server");
    const auto& pw = startup.credentials.password;
    switch (auth->code) {
    case wire::AuthCode::ok:
        co_return std::nullopt;
    case wire::AuthCode::cleartext_password:
        if (!pw)
            co_return protocol_error("server asked for a cleartext password; only a SCRAM secret is configured");
        co_return co_await send_password(*pw);
    case wire::AuthCode::md5_password: {
        if (!pw || auth->data.size() != 4)
            co_return protocol_error(pw ? "malformed md5 request"
                                        : "server asked for md5; only a SCRAM secret is configured");
        std::array<char, 4> salt{};
        std::copy(auth->data.begin(), auth->data.end(), salt.begin());
        const auto response = wire::auth::md5_response(startup.user, *pw, salt);
        co_return co_await send_password(response);
    }
    case wire::AuthCode::sasl: {
        // authenticate_sasl() consumes the data view before reading again.
        const std::string mechanisms(auth->data);
        co_return co_await authenticate_sasl(mechanisms, startup);
    }
    default:
        co_return protocol_error("server asked for an unsupported authentication method (code " +
                                 std::to_string(static_cast<int>(auth->code)) + ")");
    }
}

awaitable<std::optional<ConnectError>> BackendConnection::login(const ServerStartup& startup)
{
    out_.clear();
    wire::build_startup_message(out_, startup_parameters(startup));
    if (auto ec = co_await write(out_))
        co_return io_error(ec, "could not send startup packet");

    for (;;) {
        auto r = co_await read_frame();
        if (auto* ec = std::get_if<error_code>(&r))
            co_return io_error(*ec, "server closed the connection during login");
        const auto f = std::get<wire::Frame>(r);
        switch (f.backend_tag()) {
        case be::Tag::ErrorResponse:
            co_return server_error(f);
        case be::Tag::NoticeResponse:
            continue;
        case be::Tag::NegotiateProtocolVersion:
            // We asked for 3.0 with no _pq_ options: nothing to negotiate.
            continue;
        case be::Tag::Authentication:
            if (auto err = co_await answer_authentication(f, startup))
                co_return err;
            continue;
        case be::Tag::ParameterStatus:
            parameter_status_.append(f.raw);
            continue;
        case be::Tag::BackendKeyData: {
            auto k = be::parse_backend_key_data(f.body);
            if (!k)
                co_return protocol_error("malformed BackendKeyData from server");
            key_ = *k;
            continue;
        }
        case be::Tag::ReadyForQuery:
            // The login's messages (SCRAM's are the largest) were out_'s main
            // use: an idle connection need not keep their storage.
            std::string().swap(out_);
            co_return std::nullopt;
        default:
            co_return protocol_error("unexpected message during login: " + std::string(be::to_string(f.backend_tag())));
        }
    }
}

awaitable<std::optional<ConnectError>> BackendConnection::authenticate_sasl(std::string_view mechanisms,
                                                                            const ServerStartup& startup)
{
    auto list = be::parse_sasl_mechanisms(mechanisms);
    if (!list)
        co_return protocol_error("malformed SASL mechanism list");
    bool offered = false;
    for (auto m : *list)
        offered = offered || m == "SCRAM-SHA-256";
    if (!offered)
        co_return protocol_error("server offers no SASL mechanism we support (need SCRAM-SHA-256)");

    const auto& c = startup.credentials;
    std::optional<wire::auth::ScramClient> scram;
    if (c.password)
        scram.emplace(*c.password, wire::auth::random_nonce());
    else if (c.client_key && c.server_key)
        scram.emplace(*c.client_key, *c.server_key, wire::auth::random_nonce());
    else
        co_return protocol_error("no password to log in to the server with");

    out_.clear();
    fe::build_sasl_initial_response(out_, "SCRAM-SHA-256", scram->client_first());
    if (auto ec = co_await write(out_))
        co_return io_error(ec, "could not send SASL response");

    // SASLContinue carries server-first-message.
    auto r = co_await read_frame();
    if (auto* ec = std::get_if<error_code>(&r))
        co_return io_error(*ec, "server closed the connection during SCRAM");
    auto f = std::get<wire::Frame>(r);
    if (f.backend_tag() == be::Tag::ErrorResponse)
        co_return server_error(f);
    auto cont = be::parse_authentication(f.body);
    if (f.backend_tag() != be::Tag::Authentication || !cont || cont->code != wire::AuthCode::sasl_continue)
        co_return protocol_error("expected AuthenticationSASLContinue");
    auto final_msg = scram->handle_server_first(cont->data);
    if (!final_msg)
        co_return protocol_error("malformed SCRAM server-first-message");
    out_.clear();
    fe::build_sasl_response(out_, *final_msg);
    if (auto ec = co_await write(out_))
        co_return io_error(ec, "could not send SASL response");

    // SASLFinal carries the server's signature; a wrong password gets an ErrorResponse instead.
    r = co_await read_frame();
    if (auto* ec = std::get_if<error_code>(&r))
        co_return io_error(*ec, "server closed the connection during SCRAM");
    f = std::get<wire::Frame>(r);
    if (f.backend_tag() == be::Tag::ErrorResponse)
        co_return server_error(f);
    auto fin = be::parse_authentication(f.body);
    if (f.backend_tag() != be::Tag::Authentication || !fin || fin->code != wire::AuthCode::sasl_final)
        co_return protocol_error("expected AuthenticationSASLFinal");
    if (auto ec = scram->handle_server_final(fin->data))
        co_return ConnectError{ec, "server's SCRAM signature did not verify", {}, {}};
    co_return std::nullopt;
}

awaitable<std::variant<QueryRows, ConnectError>> BackendConnection::simple_query(std::string_view sql)
{
    out_.clear();
    fe::build_query(out_, sql);
    if (auto ec = co_await write(out_))
        co_return io_error(ec, "write failed");
    QueryRows rows;
    std::optional<ConnectError> failure;
    for (;;) {
        auto r = co_await read_frame();
        if (auto* ec = std::get_if<error_code>(&r))
            co_return io_error(*ec, "read failed");
        const auto f = std::get<wire::Frame>(r);
        switch (f.backend_tag()) {
        case be::Tag::DataRow: {
            auto row = be::parse_data_row(f.body);
            if (!row)
                co_return protocol_error("malformed DataRow");
            auto& out = rows.rows.emplace_back();
            for (const auto& v : *row)
                out.push_back(v ? std::optional<std::string>(std::string(*v)) : std::nullopt);
            break;
        }
        case be::Tag::ErrorResponse:
            failure = server_error(f);
            break;
        case be::Tag::ReadyForQuery:
            if (failure)
                co_return *failure;
            co_return rows;
        default:
            break;  // RowDescription, CommandComplete, notices, ParameterStatus
        }
    }
}

}  // namespace pgswitch::proxy
