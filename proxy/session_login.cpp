// ClientSession's login: startup packets (SSL/GSSENC negotiation, cancel
// requests, the StartupMessage), the connection whose process id the client
// is given, and the startup parameters servers get for this client.
#include "client_session.h"

#include <chrono>

#include "log.h"
#include "pg_wire/backend.h"
#include "pg_wire/sqlstate.h"
#include "session_context.h"

namespace pgswitch::proxy {

namespace be = wire::be;
namespace sqlstate = wire::sqlstate;

awaitable<std::optional<wire::StartupMessage>> ClientSession::read_startup()
{
    for (;;) {
        auto frame = co_await read_client_frame();
        if (!frame)
            co_return std::nullopt;
        auto packet = wire::parse_startup_packet(frame->body);
        if (!packet) {
            // Messages are built before the co_await: g++ 12 destroys temporaries
            // of a conditional inside a co_await expression twice.
            const bool unsupported = packet.error() == wire::errc::unsupported_protocol;
            const std::string message = unsupported
                                            ? std::string("unsupported frontend protocol: pgswitch speaks protocol 3.0")
                                            : "invalid startup packet: " + packet.error().message();
            co_await send_fatal(unsupported ? sqlstate::feature_not_supported : sqlstate::protocol_violation, message,
                                SessionEnd::client_protocol_error);
            co_return std::nullopt;
        }
        if (std::holds_alternative<wire::SslRequest>(*packet)) {
            // Bytes after an SSLRequest, before our answer, would be read as if
            // they came over TLS: a man-in-the-middle injection (CVE-2021-23222).
            if (input_.decoder.buffered() != 0 || stream_.is_tls()) {
                co_await send_fatal(sqlstate::protocol_violation, "unexpected data after SSLRequest",
                                    SessionEnd::client_protocol_error);
                co_return std::nullopt;
            }
            auto* tls = ctx_.tls();
            const std::string answer = tls ? "S" : "N";
            if (co_await stream_.send(answer)) {
                close();
                co_return std::nullopt;
            }
            if (tls) {
                if (auto ec = co_await stream_.start_tls(*tls)) {
                    log::info("session ", id_, " from ", client_.peer, ": TLS handshake failed: ", ec.message());
                    close();
                    co_return std::nullopt;
                }
            }
            continue;
        }
        if (std::holds_alternative<wire::GssEncRequest>(*packet)) {
            if (input_.decoder.buffered() != 0) {
                co_await send_fatal(sqlstate::protocol_violation, "unexpected data after GSSENCRequest",
                                    SessionEnd::client_protocol_error);
                co_return std::nullopt;
            }
            if (co_await stream_.send("N")) {
                close();
                co_return std::nullopt;
            }
            continue;
        }
        if (auto* cancel = std::get_if<wire::CancelRequest>(&*packet)) {
            if (auto target = ctx_.cancels().find(cancel->process_id, cancel->secret_key)) {
                // The target may run on another worker: its state is read on its own thread.
                auto target_executor = target->stream_.socket().get_executor();
                co_await asio::co_spawn(target_executor, target->cancel_running_query(), asio::use_awaitable);
            } else if (ctx_.can_forward_cancel())
                // Another instance's client, sent here by a load balancer.
                co_await ctx_.forward_cancel(*cancel);
            else
                log::debug("cancel request with an unknown key ignored");
            close();
            co_return std::nullopt;
        }
        co_return std::get<wire::StartupMessage>(std::move(*packet));
    }
}

awaitable<bool> ClientSession::connect_identity()
{
    const auto settings = ctx_.settings();
    const auto& cfg = settings->config;
    // The client is given the process id of its first server connection:
    // the primary's, so that pg_backend_pid(), NOTIFY sender pids and
    // pg_terminate_backend() agree with it; a replica's while there is no
    // primary (a failover), so that reads need not wait for one. At start-up
    // the first health round may still be running: wait for any server, up
    // to failover.wait_for_primary_ms.
    const auto deadline = primary_deadline();
    std::shared_ptr<ServerLink> link;
    std::string last_error = "no server is available";
    for (;;) {
        const auto view = ctx_.cluster();
        for (auto i : routing::login_order(*view)) {
            const auto target = view->backends[i];
            auto candidate = std::make_shared<ServerLink>();
            candidate->backend = target.name;
            candidate->role = target.role;
            candidate->identity = true;
            candidate->conn = std::make_unique<BackendConnection>(ctx_.io().get_executor());
            auto err = co_await candidate->conn->connect(target.host, target.port, server_startup(),
                                                         std::chrono::milliseconds(cfg.proxy.connect_timeout_ms));
            if (!err) {
                link = std::move(candidate);
                break;
            }
            log::warning("session ", id_, ": login to ", target.name, " failed: ", err->message);
            // 57P03 (shutting down, starting up) is a server passing through a
            // stop or restart: try the next one, or wait, as when refused.
            const bool transient = err->sqlstate == sqlstate::cannot_connect_now;
            if (!err->server_error.empty() && !transient) {
                // The server's own refusal (unknown database, bad parameter...)
                // says it best: pass it on verbatim.
                (void)co_await stream_.send(err->server_error);
                end_ = SessionEnd::auth_failed;
                close();
                co_return false;
            }
            ctx_.request_health_check();
            last_error = "could not connect to server \"" + target.name + "\": " + err->message;
        }
        if (link)
            break;
        const bool retry = co_await wait_for_primary(deadline);  // g++ 12: not inside if (!...)
        if (!retry)
            break;
    }
    if (!link) {
        const std::string message = last_error + " (waited failover.wait_for_primary_ms)";
        co_await send_fatal(sqlstate::cannot_connect_now, message, SessionEnd::backend_lost);
        co_return false;
    }
    // The database's functions decide which SELECTs write; load them once
    // per database (before the pump owns this connection).
    if (!ctx_.catalog(client_.database) && ctx_.claim_catalog_refresh(client_.database, true))
        co_await load_catalog(*link->conn);

    client_.pid = link->conn->key().process_id;
    client_.secret = ctx_.cancels().add(client_.pid, weak_from_this());
    // A local, not a member: built once per session, and an idle session
    // should not keep the ~0.7 KB of it.
    std::string reply;
    be::build_authentication_ok(reply);
    reply.append(link->conn->parameter_status_messages());
    link->conn->forget_parameter_status();
    be::build_backend_key_data(reply, client_.pid, client_.secret);
    be::build_ready_for_query(reply, wire::TxStatus::idle);
    add_link(link);
    links_.active = link;
    if (co_await stream_.send(reply)) {
        close();
        co_return false;
    }
    co_return true;
}

ServerStartup ClientSession::server_startup() const
{
    ServerStartup s;
    s.user = client_.user;
    s.database = client_.database;
    for (const auto& [name, value] : client_.startup.params) {
        // user/database are set explicitly; _pq_.* are protocol options we do not pass on.
        if (name == "user" || name == "database" || name.starts_with("_pq_."))
            continue;
        s.params.emplace_back(name, value);
    }
    s.credentials = client_.credentials;
    return s;
}

}  // namespace pgswitch::proxy
