// One client connection: startup (TLS, cancel, authentication), a server
// connection to the primary, then the relay of requests and replies.
// Lives on the runtime's executor; owned by its own coroutines (shared_ptr).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "asio_common.h"
#include "backend_connection.h"
#include "client_stream.h"
#include "config.h"
#include "server_pool.h"
#include "pg_wire/frame_decoder.h"
#include "pg_wire/startup.h"
#include "pg_wire/tags.h"
#include "routing/classifier.h"
#include "routing/cluster_view.h"
#include "routing/router.h"
#include "routing/session_state.h"

namespace pgswitch::proxy {

class Runtime;

/// How a session ended; decides logging (ARCHITECTURE.md §5 SessionEnd).
enum class SessionEnd {
    client_closed,          ///< Terminate or EOF from the client
    client_protocol_error,  ///< malformed or oversized message: 08P01 then close
    auth_failed,            ///< login refused
    backend_lost,           ///< the server connection broke: 08006 then close
    shutdown,               ///< pgswitch is stopping
};
[[nodiscard]] std::string_view to_string(SessionEnd e) noexcept;

/// One server connection a session uses, and what it still owes.
struct ServerLink {
    /// One unit of replies ending in ReadyForQuery, in the order requests
    /// were written: the client's own (forwarded) or pgswitch's hidden
    /// catch-up requests (swallowed).
    enum class Segment {
        client,       ///< a client Query/Sync/FunctionCall
        hidden,       ///< SET replay, lazy Parse/PREPARE, DISCARD: replies dropped
        capture_lsn,  ///< hidden SELECT pg_current_wal_lsn() after a write committed
    };
    std::string backend;  ///< backend name
    routing::Role role = routing::Role::unknown;
    std::unique_ptr<BackendConnection> conn;
    routing::LinkState state;
    std::deque<Segment> segments;
    /// When each client segment was sent, for the latency histogram.
    std::deque<std::chrono::steady_clock::time_point> started;
    /// Extended-protocol messages sent since the last Sync (a Flush-ended
    /// request): the link must get the rest of the request.
    bool unsynced = false;
    /// A write or a transaction ran here since the link was last idle: its
    /// commit position matters to read-your-writes.
    bool wrote = false;
    bool server_sent_fatal = false;
    bool dead = false;
    /// Safety net (issue 3 item 5): a simple-query read sent to this replica
    /// outside a transaction, kept until its reply starts, so that a 25006
    /// (read-only transaction) error can be re-run on the primary instead.
    std::string retry_request;
    bool segment_fresh = true;      ///< nothing of the front segment's reply seen yet
    bool swallowing_retry = false;  ///< dropping the 25006 reply up to its ReadyForQuery
    std::string retry_error;        ///< that ErrorResponse, forwarded if no primary can re-run it
    std::string held;               ///< a RowDescription held back while the reply may still be a 25006
    /// Transaction pooling: the pool's record of this borrowed connection
    /// (its conn is in `conn` meanwhile); null for a session's own connection.
    std::unique_ptr<PooledConnection> lease;
    bool released = false;          ///< given back to the pool: no longer the session's
    bool used = false;              ///< a client request was sent since it was borrowed
    // What close() saw, for settle_link(): replies owed, a transaction open,
    // session-level state (pins) living here.
    bool owed_at_close = false;
    bool open_tx_at_close = false;
    bool pinned_at_close = false;
    [[nodiscard]] int pending_client() const noexcept
    {
        int n = 0;
        for (auto s : segments)
            n += s == Segment::client;
        return n;
    }
};

/// What routing needs to know about one gathered request.
struct RequestInfo {
    /// Classification of each Query/Parse text, in frame order.
    std::vector<std::shared_ptr<const routing::Classification>> classes;
    bool write = false;              ///< must run on the primary
    bool hint_primary = false;
    bool hint_replica = false;
    bool pins = false;
    bool tx_begin = false;           ///< opens a read-write transaction
    bool tx_begin_read_only = false; ///< opens a read-only transaction
    bool tx_end = false;             ///< COMMIT/ROLLBACK/PREPARE TRANSACTION
    bool uses_currval = false;
    /// Every statement is SET/RESET/DISCARD/PREPARE/DEALLOCATE or transaction
    /// end: runs where the session already is.
    bool bookkeeping_only = true;
    bool bind_unnamed_without_parse = false;
    bool synced = false;             ///< ends with Sync, Query or FunctionCall
    bool extended = false;           ///< has extended-protocol messages
    bool copy_from = false;          ///< COPY ... FROM STDIN: copy-in mode follows
    bool show_lsn = false;           ///< SHOW pgswitch.lsn (answered by pgswitch)
    std::optional<std::string> set_min_lsn;  ///< SET pgswitch.min_lsn = '...'
};

/// What the admin API shows of one session (GET /clients, connection counts).
struct SessionInfo {
    std::uint64_t id = 0;
    std::string address;  ///< client "host:port"
    std::string user;
    std::string database;
    std::string application_name;
    /// "login", "idle", "active", "idle in transaction",
    /// "idle in transaction (aborted)", "copy", "closing" (pg_stat_activity's words).
    std::string state;
    std::string backend;  ///< where the last request went, "" before the first
    bool in_transaction = false;
    double connected_s = 0;  ///< since accept (filled by Runtime::session_infos())
    /// The session's open server connections and whether each is busy
    /// (replies owed, unfinished extended request, or an open transaction).
    struct Link {
        std::string backend;
        bool busy = false;
    };
    std::vector<Link> links;
};

class ClientSession : public std::enable_shared_from_this<ClientSession> {
public:
    ClientSession(Runtime& runtime, tcp::socket socket);
    ~ClientSession();

    /// Spawns the session's coroutine; it keeps the session alive.
    void start();
    /// Forwards a CancelRequest for whatever this session runs now (sent on
    /// a new connection to the session's server, as PostgreSQL requires);
    /// completes once the server has closed that connection.
    [[nodiscard]] awaitable<void> cancel_running_query();
    /// Shutdown: close now if idle, else once the open transaction ends.
    void on_drain();
    /// Closes both sides; pending operations end with errors.
    void close() noexcept;

    [[nodiscard]] std::uint64_t id() const noexcept { return id_; }
    /// A snapshot for the admin API (client_session_info.cpp).
    [[nodiscard]] SessionInfo info() const;

private:
    awaitable<void> run();
    /// Completion handler for the session's coroutines: an exception is
    /// logged ("session N: <what>: ...") and closes the session.
    [[nodiscard]] std::function<void(std::exception_ptr)> close_on_failure(const char* what);
    /// Startup packets until a StartupMessage; answers SSL/GSSENC/Cancel.
    [[nodiscard]] awaitable<std::optional<wire::StartupMessage>> read_startup();
    /// Verifies the client per its user's auth_method (client_auth.cpp).
    [[nodiscard]] awaitable<bool> authenticate(const UserConfig* user);
    [[nodiscard]] awaitable<bool> connect_primary();
    [[nodiscard]] ServerStartup server_startup() const;
    awaitable<void> load_catalog(BackendConnection& conn);
    void add_link(std::shared_ptr<ServerLink> link);
    awaitable<void> server_lost(ServerLink& link, error_code ec);
    /// Queues / completes one client segment on `link` (in-flight count, latency).
    void push_client_segment(ServerLink& link);
    void pop_client_segment(ServerLink& link, bool completed);
    /// Re-runs `link`'s misrouted read on the primary (see ServerLink::retry_request).
    awaitable<void> retry_on_primary(ServerLink& link);
    awaitable<void> relay_client();
    awaitable<void> pump_server(std::shared_ptr<ServerLink> link);

    // ---- request routing (session_router.cpp) --------------------------------
    /// A complete client request (Query, or extended messages up to Sync or
    /// Flush, or a FunctionCall) gathered in request_: route and send it.
    [[nodiscard]] awaitable<bool> dispatch_request();
    /// Fills info_ from request_ (classification, statement lookups).
    void analyze_request();
    /// Answers SHOW pgswitch.lsn / SET pgswitch.min_lsn itself.
    awaitable<bool> answer_pgswitch_setting();
    void apply_statement_effects(ServerLink& link, const routing::Classification& cls, std::string_view text);
    /// Where the gathered request must run, or null after the client was
    /// answered with an error (no primary...).
    [[nodiscard]] awaitable<std::shared_ptr<ServerLink>> route_request();
    /// The session's link to a backend, opened (and caught up) on first use.
    [[nodiscard]] awaitable<std::shared_ptr<ServerLink>> link_to(const routing::BackendView& backend);
    /// Sends what `link` lacks of the session's state before the request:
    /// DISCARD ALL, SET replay, named statements and SQL PREPAREs it uses.
    [[nodiscard]] awaitable<bool> catch_up(ServerLink& link);
    /// "DISCARD ALL; RESET ALL; SET ..." for what `link_state` lacks of the
    /// session's discards and settings ("" when nothing), marking it sent.
    [[nodiscard]] std::string settings_catch_up_script(routing::LinkState& link_state) const;
    /// Updates SessionState from the request just sent to `link`.
    void record_request(ServerLink& link);
    /// Answers the gathered request with an ErrorResponse (+ ReadyForQuery
    /// when it ended in Sync/Query) without running it anywhere.
    awaitable<void> reject_request(std::string_view sqlstate, std::string_view message);
    /// Waits until no link has replies outstanding.
    awaitable<void> wait_until_drained();
    [[nodiscard]] bool any_pending() const noexcept;
    [[nodiscard]] std::shared_ptr<ServerLink> primary_link() const;

    // ---- transaction pooling (session_pooling.cpp) ----------------------------
    /// Login without holding a server connection; the client's pid is ours.
    [[nodiscard]] awaitable<bool> login_pooled();
    [[nodiscard]] ServerPool::Request pool_request(const routing::BackendView& backend) const;
    /// Borrows a connection to `backend` (waiting in the pool's queue); null
    /// on failure, with pool_timed_out_ set when the wait timed out.
    [[nodiscard]] awaitable<std::shared_ptr<ServerLink>> borrow_link(const routing::BackendView& backend);
    /// Called by the pump after each batch of replies: gives a borrowed
    /// connection back when it is idle with nothing owed. True when released
    /// (the pump must stop reading it).
    [[nodiscard]] awaitable<bool> release_if_idle(ServerLink& link);
    /// The pump of one link, then, for a borrowed connection the session
    /// still held at its end, settle_link().
    awaitable<void> run_link(std::shared_ptr<ServerLink> link);
    /// Rolls back / resets a connection the session left dirty and gives it
    /// back, or closes it when that is not possible.
    awaitable<void> settle_link(std::shared_ptr<ServerLink> link);
    /// Runs `sql` as a simple query; true when it ended with ReadyForQuery 'I'
    /// and no error within a bounded time.
    [[nodiscard]] awaitable<bool> reset_connection(BackendConnection& conn, std::string_view sql);
    /// close() for a borrowed link: records its state and wakes its pump.
    void detach_leased(ServerLink& link) noexcept;

    [[nodiscard]] awaitable<std::optional<wire::Frame>> read_client_frame();
    /// Sends an ErrorResponse (and closes the session when FATAL).
    awaitable<void> send_fatal(std::string_view sqlstate, std::string_view message, SessionEnd why);
    [[nodiscard]] bool idle() const noexcept
    {
        return !any_pending() && tx_status_ == wire::TxStatus::idle;
    }

    /// One frame of the request being gathered, as offsets into request_.
    struct RequestFrame {
        char tag;
        std::size_t offset;  ///< of the whole message
        std::size_t size;
    };

    Runtime& runtime_;
    std::uint64_t id_;
    ClientStream stream_;
    std::string peer_;
    wire::FrameDecoder decoder_;
    wire::StartupMessage startup_;
    std::string user_;
    std::string database_;
    bool admitted_ = false;        // counted against max_client_connections
    bool closed_ = false;
    std::optional<SessionEnd> end_;
    /// Credentials to log in to servers as this user (password, or SCRAM keys
    /// recovered from the client's proof when only a secret is configured).
    ServerCredentials credentials_;
    std::vector<std::shared_ptr<ServerLink>> links_;
    /// The link the last request went to: requests stay there while it owes
    /// replies, during a transaction and during COPY.
    std::shared_ptr<ServerLink> active_;
    std::int32_t client_pid_ = 0;  // pid given to the client (the primary's, in session mode)
    std::int32_t client_secret_ = 0;
    wire::TxStatus tx_status_ = wire::TxStatus::idle;
    routing::SessionState state_;
    /// The request being gathered, and its frames.
    std::string request_;
    std::vector<RequestFrame> request_frames_;
    /// COPY FROM STDIN in progress on active_: CopyData goes straight there.
    bool copy_in_ = false;
    /// A read-your-writes position is being fetched from the primary.
    bool lsn_pending_ = false;
    int lsn_captures_ = 0;  // capture_lsn segments outstanding
    std::optional<std::uint64_t> captured_lsn_;
    /// The unnamed statement lives on this link (a Bind of "" must follow it).
    std::weak_ptr<ServerLink> unnamed_link_;
    asio::steady_timer drained_;
    RequestInfo info_;
    std::string hidden_;   // catch-up requests written before the client's request
    std::string capture_;  // read-your-writes position query written after it
    /// After an error answered by pgswitch in an unsynced extended request,
    /// messages are dropped until Sync, as the server itself does.
    bool discard_until_sync_ = false;
    /// default_transaction_read_only is on: BEGIN opens read-only transactions.
    bool default_read_only_ = false;
    bool parsed_unnamed_ = false;  // set by record_request()
    bool retrying_ = false;        // a misrouted read is being moved to the primary
    std::string peer_host_;        // client address without port, for ip_hash
    std::string scratch_;
    /// proxy.pool_mode = "transaction" when the session logged in.
    bool pooling_ = false;
    std::string signature_;          // startup parameters, canonical (ServerPool::make_signature)
    bool pool_timed_out_ = false;    // set by borrow_link()
};

}  // namespace pgswitch::proxy
