// One client connection: startup (TLS, cancel, authentication), a server
// connection to the primary, then the relay of requests and replies.
// Lives on its worker's executor (SessionContext: what it may use of the
// process); owned by its own coroutines (shared_ptr).
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
#include "pg_wire/request.h"
#include "routing/request_analysis.h"
#include "routing/request_effects.h"
#include "routing/request_plan.h"
#include "routing/router.h"
#include "routing/session_state.h"
#include "server_link.h"
#include "session_links.h"

namespace pgswitch::proxy {

class SessionContext;

/// How a session ended; decides logging (ARCHITECTURE.md §5 SessionEnd).
enum class SessionEnd {
    client_closed,          ///< Terminate or EOF from the client
    client_protocol_error,  ///< malformed or oversized message: 08P01 then close
    auth_failed,            ///< login refused
    backend_lost,           ///< the server connection broke: 08006 then close
    shutdown,               ///< pgswitch is stopping
};
[[nodiscard]] std::string_view to_string(SessionEnd e) noexcept;

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
    ClientSession(SessionContext& ctx, tcp::socket socket);
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
    /// `backend` was fenced: closes the session's connection to it at once.
    /// A statement in flight there fails with 08006 (and the session ends, as
    /// when a server dies under a statement); an idle connection just goes.
    void drop_backend(const std::string& backend);

    [[nodiscard]] std::uint64_t id() const noexcept { return id_; }
    /// A snapshot for the admin API (client_session_info.cpp).
    [[nodiscard]] SessionInfo info() const;

private:
    awaitable<void> run();
    /// Startup, authentication and the first server connection; false when
    /// the session ended there. Its own coroutine, so that its large frame
    /// is gone while the session relays (or idles).
    [[nodiscard]] awaitable<bool> login();
    /// Completion handler for the session's coroutines: an exception is
    /// logged ("session N: <what>: ...") and closes the session.
    [[nodiscard]] std::function<void(std::exception_ptr)> close_on_failure(const char* what);
    /// Startup packets until a StartupMessage; answers SSL/GSSENC/Cancel.
    [[nodiscard]] awaitable<std::optional<wire::StartupMessage>> read_startup();
    /// Verifies the client per its user's auth_method (client_auth.cpp).
    [[nodiscard]] awaitable<bool> authenticate(const UserConfig* user);
    /// md5 or cleartext password ([[users]] auth_method).
    [[nodiscard]] awaitable<bool> authenticate_password(const UserConfig& user);
    /// SCRAM-SHA-256; an unknown user (null) fails only at the end.
    [[nodiscard]] awaitable<bool> authenticate_scram(const UserConfig* user);
    /// Sends an authentication request and reads the answer, which must be a
    /// password-type message (else FATAL naming `what`); nullopt when the session ends.
    [[nodiscard]] awaitable<std::optional<wire::Frame>> auth_round(const std::string& out, std::string_view what);
    /// Session mode: opens the connection whose process id the client is
    /// given (the primary's, or a replica's while there is none) and
    /// finishes the client's login.
    [[nodiscard]] awaitable<bool> connect_identity();
    [[nodiscard]] ServerStartup server_startup() const;
    awaitable<void> load_catalog(BackendConnection& conn);
    /// Looks up functions the catalog does not know (created behind
    /// pgswitch's back) on a server, refreshing the database's catalog; true
    /// when a new catalog was stored. Rate-limited per database.
    [[nodiscard]] awaitable<bool> learn_functions(const std::vector<std::string>& names);
    /// Adds `link` to the session and spawns its pump.
    void add_link(std::shared_ptr<ServerLink> link);
    /// The pump of `link` ended (`e`: with an exception); a borrowed connection
    /// the session still held is settled (settle_link()).
    void on_pump_end(const std::shared_ptr<ServerLink>& link, std::exception_ptr e);
    awaitable<void> server_lost(ServerLink& link, error_code ec);
    /// Queues / completes one client segment on `link` (in-flight count, latency).
    void push_client_segment(ServerLink& link);
    void pop_client_segment(ServerLink& link, bool completed);
    awaitable<void> relay_client();
    /// Relays the frames the decoder holds; false when the session stops.
    [[nodiscard]] awaitable<bool> relay_buffered();
    /// COPY frames of one read, forwarded to the COPY's server in one write.
    struct CopyBatch {
        const char* begin = nullptr;
        std::size_t len = 0;
        void add(std::string_view raw) noexcept;
        [[nodiscard]] bool empty() const noexcept { return len == 0; }
        std::string_view take() noexcept;
    };
    /// Sends what `copy` gathered (if anything) to the active link; false when it failed.
    [[nodiscard]] awaitable<bool> forward_copy(CopyBatch& copy);
    /// Terminate from the client: passed to the session's own connections, then close.
    awaitable<void> terminate_links();

    // ---- replies (session_pump.cpp) ---------------------------------------------
    /// One read's replies on their way to the client (session_pump.cpp).
    class ReplyBatch;
    /// Relays `link`'s replies until it closes, is released or the session ends.
    awaitable<void> pump_server(std::shared_ptr<ServerLink> link);
    /// A message for the client (a ReadyForQuery updates the session);
    /// returns what must be sent before it.
    [[nodiscard]] std::string_view forward_reply(ServerLink& link, const wire::Frame& f,
                                                 const wire::ResponseTracker::Action& a, ReplyBatch& batch);
    /// The same, once what was held back of the reply is sent; false when the client is gone.
    [[nodiscard]] awaitable<bool> release_reply(ServerLink& link, const wire::Frame& f,
                                                const wire::ResponseTracker::Action& a, ReplyBatch& batch);
    /// A hidden segment's message, once what came before it is sent.
    [[nodiscard]] awaitable<bool> hidden_reply(ServerLink& link, const wire::Frame& f,
                                               const wire::ResponseTracker::Action& a, ReplyBatch& batch);
    /// After a read's messages: sends the batch, then ends the pump when
    /// shutting down, released to the pool, or closed (false).
    [[nodiscard]] awaitable<bool> end_batch(ServerLink& link, ReplyBatch& batch);
    awaitable<void> malformed_reply(ServerLink& link, ReplyBatch& batch, error_code ec);
    /// Books one reply message for `link`'s prepared statements (before it is
    /// forwarded or dropped). True when the message answers a hidden Parse
    /// or Close slipped into the client's own request: it is dropped.
    [[nodiscard]] bool track_reply(ServerLink& link, const wire::Frame& f);
    /// What a message tells beyond its reply: a server about to restart, a
    /// segment done for `link`'s prepared statements.
    void note_reply(ServerLink& link, const wire::Frame& f, const wire::ResponseTracker::Action& a);
    /// The session keeps more than replies on `link`: an unfinished extended
    /// request, an open transaction, pinned session state.
    [[nodiscard]] bool holds_session(const ServerLink& link) const noexcept;
    /// A hidden segment's message: acted on (LSN, replay wait), never forwarded.
    void on_hidden_reply(ServerLink& link, const wire::Frame& f, const wire::ResponseTracker::Action& a);
    void on_lsn_captured(const wire::ResponseTracker::Segment& capture, const wire::ResponseTracker::Action& a);
    /// A replay wait for `lsn` on `link` ended at `reached_lsn` (none: unknown).
    void on_replay_waited(ServerLink& link, std::uint64_t lsn, std::optional<std::uint64_t> reached_lsn);
    /// A FATAL on a connection that owes the client nothing: the client hears
    /// it when fatal_reaches_client(), else the link closes silently. The
    /// pump ends.
    awaitable<void> on_idle_fatal(ServerLink& link, const wire::Frame& f, const wire::be::ErrorFields& error,
                                  ReplyBatch& batch);
    /// An idle connection (owing the client nothing) said FATAL: true when
    /// the client must hear it (pg_terminate_backend() of the pid it was
    /// given, its server still up), false to drop it and close the link.
    [[nodiscard]] awaitable<bool> fatal_reaches_client(ServerLink& link, const wire::be::ErrorFields& error);
    /// Re-runs `link`'s kept request (ResponseTracker::keep()) on the primary.
    awaitable<void> retry_on_primary(ServerLink& link);

    // ---- request routing (session_router.cpp) --------------------------------
    /// A complete client request: route and send it.
    [[nodiscard]] awaitable<bool> dispatch_request(wire::Request request);
    [[nodiscard]] routing::RequestFacts analyze(const wire::Request& request);
    /// Answers SHOW pgswitch.lsn / SET pgswitch.min_lsn itself.
    awaitable<bool> answer_pgswitch_setting(const routing::RequestFacts& facts);
    /// The primary link when a write there still needs its WAL position
    /// captured before routing (a COPY FROM, a transaction ended unseen).
    [[nodiscard]] std::shared_ptr<ServerLink> uncaptured_write_link() const;
    awaitable<void> capture_now(ServerLink& link);
    /// The request Parses a name the session already has (reject_parse_clash() decides).
    [[nodiscard]] bool parse_may_clash(const wire::Request& request) const;
    /// A Parse of a name the session has: answered 42P05 here (the name may
    /// live on another server than the chosen one). True when answered.
    [[nodiscard]] awaitable<bool> reject_parse_clash(const wire::Request& request, const routing::RequestFacts& facts);
    struct Route {
        std::shared_ptr<ServerLink> link;
        std::optional<std::uint64_t> wait_lsn;  ///< run a replay wait there first
    };
    /// Where the request must run; no link after the client was answered
    /// with an error (no primary...).
    [[nodiscard]] awaitable<Route> route_request(const wire::Request& request, const routing::RequestFacts& facts);
    /// Where the request must stay by routing::plan_sticky() (an open
    /// transaction, an unfinished or pipelined request, bookkeeping), or
    /// nullopt when choose_target() decides.
    [[nodiscard]] awaitable<std::optional<Route>> sticky_route(const routing::RequestFacts& facts);
    /// The route a sticky plan names (none for Stick::none and drain_first).
    [[nodiscard]] std::optional<Route> stuck_route(routing::Stick stick) const;
    /// Ends the active link's unfinished extended request with a hidden Sync.
    awaitable<void> end_unsynced_request();
    /// What the session's connections are doing, for routing::plan_sticky().
    [[nodiscard]] routing::SessionPlacement placement() const;
    /// Replica positions the worker's replay waits learned; `sc` points into them.
    struct ReplayPositions {
        std::vector<std::uint64_t> reached, behind;
    };
    /// choose_target() with this worker's in-flight counts and replay knowledge
    /// (kept in `positions`, which must outlive the use of `sc`).
    [[nodiscard]] routing::Decision decide_target(const routing::RouteRequest& rr, routing::SessionConstraints& sc,
                                                  ReplayPositions& positions, const routing::ClusterView& view,
                                                  const routing::Policy& policy);
    /// A link for a read whose chosen replica (`unreachable`) refused: another
    /// eligible replica, else the primary; null when none answers.
    [[nodiscard]] awaitable<std::shared_ptr<ServerLink>> link_for_read(const routing::ClusterView& view,
                                                                       const routing::Policy& policy,
                                                                       const routing::SessionConstraints& sc,
                                                                       std::size_t unreachable);
    /// The session's link to a backend, opened on first use.
    [[nodiscard]] awaitable<std::shared_ptr<ServerLink>> link_to(const routing::BackendView& backend);
    /// Sends `request` on `link`: checks and replays what the link lacks of
    /// the session's state, records what the request does, keeps it for a
    /// re-run when it may need one, and captures a write's position after it.
    [[nodiscard]] awaitable<bool> send_request(std::shared_ptr<ServerLink> link, wire::Request request,
                                               const routing::RequestFacts& facts,
                                               std::optional<std::uint64_t> wait_lsn, bool is_retry);
    /// The request may be kept on `link` for a re-run on the primary.
    [[nodiscard]] bool can_keep(const ServerLink& link, const wire::Request& request,
                                const routing::RequestFacts& facts) const noexcept;
    /// A read of the primary's WAL position goes right behind the request.
    [[nodiscard]] bool captures_after(const ServerLink& link, const wire::Request& request,
                                      const routing::RequestFacts& facts) const noexcept;
    /// Waits on `link` until it replayed `lsn`; the primary's link when it did not in time.
    [[nodiscard]] awaitable<std::shared_ptr<ServerLink>> wait_replay_first(std::shared_ptr<ServerLink> link,
                                                                           std::uint64_t lsn);
    /// Statements the client Described that `link` must prepare for this
    /// request are prepared there first and compared with what the client was
    /// shown (one round trip, once per statement and server). False (client
    /// answered 0A000) when they differ.
    [[nodiscard]] awaitable<bool> check_statements(ServerLink& link, const wire::Request& request);
    /// Statements the client Described that this request uses and `link`
    /// has not prepared (in the version the client has).
    [[nodiscard]] std::vector<std::pair<std::string_view, const routing::PreparedStatement*>>
    statements_to_check(const ServerLink& link, const wire::Request& request) const;
    /// `link` must prepare a statement the client Described before this request.
    [[nodiscard]] bool needs_check(const ServerLink& link, const wire::Request& request) const;
    /// Builds in out_.hidden what `link` lacks of the session's state before the
    /// request (routing::plan_catch_up()): DISCARD ALL, SET replay, named
    /// statements and SQL PREPAREs.
    void catch_up(ServerLink& link, const wire::Request& request, const routing::RequestFacts& facts);
    /// Appends a Parse of the session's statement `name` to `out` for `link`
    /// (`inline_hidden`: inside the client's unfinished extended request).
    void replay_parse(ServerLink& link, std::string& out, std::string_view name, const routing::PreparedStatement& ps,
                      bool close_first, bool inline_hidden);
    /// Appends a Close of statement `name` to `out` for `link`.
    void hidden_close(ServerLink& link, std::string& out, std::string_view name, bool inline_hidden);
    /// The replies `link` now owes for the request just recorded: its client
    /// segments and the statement confirmations (routing::record_effects()'s versions).
    void book_replies(ServerLink& link, const wire::Request& request, const routing::RequestEffects& effects);
    /// Updates SessionState from the request just sent to `link`.
    void record_request(ServerLink& link, const wire::Request& request, const routing::RequestFacts& facts);
    /// Queues a hidden read of the primary's WAL position behind a write.
    void push_capture(ServerLink& link, std::string& out);
    /// Answers the request with an ErrorResponse (+ ReadyForQuery when it
    /// ended in Sync/Query) without running it anywhere.
    awaitable<void> reject_request(const wire::Request& request, std::string_view sqlstate, std::string_view message);
    /// The same with an ErrorResponse already built in `error`.
    awaitable<void> reject_request(const wire::Request& request, std::string error);
    /// Waits until no link has replies outstanding.
    awaitable<void> wait_until_drained();
    /// Waits for `link`'s segment number `n` to complete.
    awaitable<void> wait_for_segment(ServerLink& link, std::uint64_t n);
    /// The limit of failover.wait_for_primary_ms for an attempt starting now.
    [[nodiscard]] std::chrono::steady_clock::time_point primary_deadline() const;
    /// After a failed attempt to reach a server (a login, a write with no
    /// primary): waits for the next cluster view, or the retry bound. False
    /// when the attempt should not be retried: past `deadline`, or closed.
    [[nodiscard]] awaitable<bool> wait_for_primary(std::chrono::steady_clock::time_point deadline);
    [[nodiscard]] bool any_pending() const noexcept;
    /// The link to the current primary (by the cluster view), if open.
    [[nodiscard]] std::shared_ptr<ServerLink> primary_link() const;

    // ---- transaction pooling (session_pooling.cpp) ----------------------------
    /// Login without holding a server connection; the client's pid is ours.
    [[nodiscard]] awaitable<bool> login_pooled();
    [[nodiscard]] ServerPool::Request pool_request(const routing::BackendView& backend) const;
    /// Borrows a connection to `backend` (waiting in the pool's queue); null
    /// on failure, with links_.pool_timed_out set when the wait timed out.
    [[nodiscard]] awaitable<std::shared_ptr<ServerLink>> borrow_link(const routing::BackendView& backend);
    /// Called by the pump after each batch of replies: gives a borrowed
    /// connection back when it is idle with nothing owed. True when released
    /// (the pump must stop reading it).
    [[nodiscard]] awaitable<bool> release_if_idle(ServerLink& link);
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
    [[nodiscard]] bool idle() const noexcept { return !any_pending() && tx_status_ == wire::TxStatus::idle; }
    [[nodiscard]] bool read_your_writes_lsn() const noexcept;

    /// What the client sends: framed, then gathered into requests.
    struct ClientInput {
        wire::FrameDecoder decoder;
        wire::RequestAssembler assembler;  ///< the request being gathered
    };
    /// Who the client is: its address, login and what servers get for it.
    struct ClientIdentity {
        std::string peer;       ///< "host:port"
        std::string peer_host;  ///< without the port, for ip_hash
        wire::StartupMessage startup;
        std::string user;
        std::string database;
        /// Credentials to log in to servers as this user (password, or SCRAM
        /// keys recovered from the client's proof when only a secret is configured).
        ServerCredentials credentials;
        std::int32_t pid = 0;  ///< given to the client (the identity link's, in session mode)
        std::int32_t secret = 0;
        std::string signature;  ///< startup parameters, canonical (ServerPool::make_signature)
        bool admitted = false;  ///< counted against max_client_connections
    };
    /// Where the client's stream of requests stands.
    struct RequestFlow {
        bool copy_in = false;  ///< COPY FROM STDIN in progress on the active link: CopyData goes there
        /// After an error answered by pgswitch in an unsynced extended
        /// request, messages are dropped until Sync, as the server does.
        bool discard_until_sync = false;
        bool retrying = false;  ///< a kept request is being moved to the primary
        /// An idle link said FATAL: is it pg_terminate_backend() of the client's pid?
        bool checking_termination = false;
    };
    /// Read your writes: the WAL positions captured behind the session's writes.
    struct WritePositions {
        int captures = 0;  ///< capture_lsn segments outstanding
        std::optional<std::uint64_t> captured;
    };
    /// Bytes built for the next write (kept to reuse their storage).
    struct Outgoing {
        std::string hidden;   ///< catch-up requests written before the client's request
        std::string capture;  ///< read-your-writes position query written after it
    };
    /// The database's function catalog as analyze() last read it (again
    /// only when Runtime::catalogs_changed() moved); `stale`: it needs a refresh.
    struct CatalogCopy {
        std::uint64_t seen = ~std::uint64_t{0};
        std::shared_ptr<const routing::FunctionCatalog> catalog;
        bool stale = true;
    };

    SessionContext& ctx_;
    std::uint64_t id_;
    ClientStream stream_;
    ClientInput input_;
    ClientIdentity client_;
    SessionLinks links_;
    RequestFlow flow_;
    WritePositions lsn_;
    Outgoing out_;
    CatalogCopy catalog_;
    wire::TxStatus tx_status_ = wire::TxStatus::idle;
    routing::SessionState state_;
    /// Notified when replies complete (segments done, links gone): waiters look again.
    asio::steady_timer drained_;
    bool closed_ = false;
    std::optional<SessionEnd> end_;
};

}  // namespace pgswitch::proxy
