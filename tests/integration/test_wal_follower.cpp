// The result cache's WAL follower (issue 14 item 2) against the shared cluster's
// primary (wal_level = logical, tests/pg_cluster.sh): commits made straight to
// the primary are reported with the tables they changed, TRUNCATE too, the
// decoded position reaches the primary's WAL position while nothing commits,
// following changes nothing users may do (UPDATE and DELETE on a table without
// a primary key still work; no publication is created), the temporary slot
// goes with the connection, and a user who may not replicate gets a permanent
// stop that says why.
#include "harness.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>

#include "proxy/wal_follower.h"
#include "routing/relation_catalog.h"
#include "routing/cluster_view.h"

using namespace e2e;
using namespace std::chrono_literals;
namespace px = pgswitch::proxy;
namespace wire = pgswitch::wire;

namespace {

/// What the follower reported, readable from the test's thread.
class Recorder final : public px::WalObserver {
public:
    void on_streaming(wire::Lsn at) override
    {
        std::lock_guard lock(mutex_);
        streaming_ = true;
        decoded_ = std::max(decoded_, at);
    }
    void on_commit(const wire::test_decoding::CommittedTables& c) override
    {
        std::lock_guard lock(mutex_);
        commits_.push_back(c);
    }
    void on_decoded(wire::Lsn lsn) override
    {
        std::lock_guard lock(mutex_);
        decoded_ = std::max(decoded_, lsn);
    }
    bool streaming() const
    {
        std::lock_guard lock(mutex_);
        return streaming_;
    }
    wire::Lsn decoded() const
    {
        std::lock_guard lock(mutex_);
        return decoded_;
    }
    /// The first reported commit that changed public.`table`, if any.
    std::optional<wire::test_decoding::CommittedTables> commit_of(const std::string& table) const
    {
        return commit_of_in("public", table);
    }
    std::optional<wire::test_decoding::CommittedTables> commit_of_in(const std::string& schema,
                                                                     const std::string& table) const
    {
        std::lock_guard lock(mutex_);
        const wire::test_decoding::TableName name{schema, table};
        for (const auto& c : commits_)
            if (std::find(c.tables.begin(), c.tables.end(), name) != c.tables.end())
                return c;
        return std::nullopt;
    }

private:
    mutable std::mutex mutex_;
    bool streaming_ = false;
    wire::Lsn decoded_ = 0;
    std::vector<wire::test_decoding::CommittedTables> commits_;
};

/// A follower on its own io_context thread; stopped and joined on destruction.
class RunningFollower {
public:
    RunningFollower(const std::string& user, const std::string& password, const std::string& slot)
    {
        px::WalFollowerSettings s;
        s.host = "127.0.0.1";
        s.port = static_cast<std::uint16_t>(cluster().primary_port());
        s.startup.user = user;
        s.startup.database = cluster().get("APP_DB");
        s.startup.credentials.password = password;
        s.slot = slot;
        s.status_interval = 200ms;
        follower_ = std::make_unique<px::WalFollower>(io_.get_executor(), std::move(s));
        px::asio::co_spawn(
            io_, [this]() -> px::awaitable<void> { stop_ = co_await follower_->run(recorder_); },
            [this](std::exception_ptr e) {
                if (e)
                    stop_ = px::WalFollowerStop{"exception", false};
                done_ = true;
            });
        thread_ = std::thread([this] { io_.run(); });
    }
    ~RunningFollower()
    {
        px::asio::post(io_, [this] { follower_->stop(); });
        thread_.join();
    }
    const Recorder& recorder() const { return recorder_; }
    bool done() const { return done_; }
    /// Stops the follower and waits for run() to return.
    px::WalFollowerStop stop_and_wait()
    {
        px::asio::post(io_, [this] { follower_->stop(); });
        const auto deadline = Clock::now() + 10s;
        while (!done_ && Clock::now() < deadline)
            std::this_thread::sleep_for(10ms);
        REQUIRE_MESSAGE(done_.load(), "WalFollower::run() did not return within 10 s of stop()");
        return stop_;
    }
    px::WalFollowerStop wait_done(std::chrono::seconds limit)
    {
        const auto deadline = Clock::now() + limit;
        while (!done_ && Clock::now() < deadline)
            std::this_thread::sleep_for(10ms);
        REQUIRE_MESSAGE(done_.load(), "WalFollower::run() did not return");
        return stop_;
    }

private:
    px::asio::io_context io_;
    Recorder recorder_;
    std::unique_ptr<px::WalFollower> follower_;
    px::WalFollowerStop stop_;
    std::atomic<bool> done_{false};
    std::thread thread_;
};

template <class Pred>
bool poll_until(Pred pred, std::chrono::milliseconds limit)
{
    const auto deadline = Clock::now() + limit;
    while (Clock::now() < deadline) {
        if (pred())
            return true;
        std::this_thread::sleep_for(10ms);
    }
    return pred();
}

Conn primary_superuser()
{
    return connect_ok("host=127.0.0.1 port=" + std::to_string(cluster().primary_port()) +
                      " dbname=" + cq(cluster().get("APP_DB")) + " user=" + cq(cluster().get("SUPERUSER")) +
                      " password=" + cq(cluster().get("SUPERPASS")) + " connect_timeout=5 sslmode=disable");
}

/// Whether the cluster decodes logically; says the test is skipped when not.
bool logical_wal(PGconn* c)
{
    if (query_value(c, "SHOW wal_level") == "logical")
        return true;
    MESSAGE("skipped: the cluster's wal_level is not logical");
    return false;
}

wire::Lsn current_lsn(PGconn* c)
{
    const auto lsn = pgswitch::routing::parse_lsn(query_value(c, "SELECT pg_current_wal_lsn()"));
    REQUIRE(lsn.has_value());
    return *lsn;
}

}  // namespace

TEST_CASE("wal follower: commits straight to the primary arrive with their tables")
{
    auto db = primary_superuser();
    if (!logical_wal(db.get()))
        return;
    exec_ok(db.get(), "DROP TABLE IF EXISTS wf_a, wf_b, wf_nopk");
    exec_ok(db.get(), "CREATE TABLE wf_a (id int PRIMARY KEY, v text)");
    exec_ok(db.get(), "CREATE TABLE wf_b (id int PRIMARY KEY)");
    exec_ok(db.get(), "CREATE TABLE wf_nopk (v int)");
    const std::string publications = query_value(db.get(), "SELECT count(*) FROM pg_publication");

    const std::string slot = "pgswitch_test_wf_" + std::to_string(::getpid());
    RunningFollower f(cluster().get("SUPERUSER"), cluster().get("SUPERPASS"), slot);
    REQUIRE_MESSAGE(poll_until([&] { return f.recorder().streaming() || f.done(); }, 15s), "not streaming after 15 s");
    REQUIRE_FALSE(f.done());
    CHECK(query_value(db.get(), "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '" + slot +
                                    "' AND temporary AND plugin = 'test_decoding'") == "1");
    CHECK(query_value(db.get(), "SELECT count(*) FROM pg_publication") == publications);

    SUBCASE("insert, update, delete: each commit names exactly the tables it changed")
    {
        exec_ok(db.get(), "INSERT INTO wf_a VALUES (1, 'x')");
        const auto after_insert = current_lsn(db.get());
        REQUIRE_MESSAGE(poll_until([&] { return f.recorder().commit_of("wf_a").has_value(); }, 10s),
                        "the INSERT's commit was not reported within 10 s");
        const auto c = *f.recorder().commit_of("wf_a");
        CHECK(c.tables == std::vector<wire::test_decoding::TableName>{{"public", "wf_a"}});
        CHECK(c.end_lsn <= after_insert);
        CHECK(poll_until([&] { return f.recorder().decoded() >= c.end_lsn; }, 5s));

        exec_ok(db.get(), "BEGIN");
        exec_ok(db.get(), "UPDATE wf_a SET v = 'y' WHERE id = 1");
        exec_ok(db.get(), "INSERT INTO wf_b VALUES (1)");
        exec_ok(db.get(), "COMMIT");
        REQUIRE(poll_until([&] { return f.recorder().commit_of("wf_b").has_value(); }, 10s));
        CHECK(f.recorder().commit_of("wf_b")->tables ==
              std::vector<wire::test_decoding::TableName>{{"public", "wf_a"}, {"public", "wf_b"}});
    }
    SUBCASE("a table without a primary key can still be updated and deleted from, and its commits arrive")
    {
        exec_ok(db.get(), "INSERT INTO wf_nopk VALUES (1)");
        exec_ok(db.get(), "UPDATE wf_nopk SET v = 2");
        exec_ok(db.get(), "DELETE FROM wf_nopk");
        CHECK(poll_until([&] { return f.recorder().commit_of("wf_nopk").has_value(); }, 10s));
    }
    SUBCASE("TRUNCATE is reported")
    {
        exec_ok(db.get(), "TRUNCATE wf_b");
        CHECK(poll_until([&] { return f.recorder().commit_of("wf_b").has_value(); }, 10s));
    }
    SUBCASE("while nothing commits, the decoded position still reaches the primary's")
    {
        exec_ok(db.get(), "CHECKPOINT");  // WAL without a transaction
        const auto target = current_lsn(db.get());
        CHECK_MESSAGE(poll_until([&] { return f.recorder().decoded() >= target; }, 10s),
                      "decoded " << pgswitch::routing::format_lsn(f.recorder().decoded()) << ", primary at "
                                 << pgswitch::routing::format_lsn(target));
    }

    const auto stop = f.stop_and_wait();
    CHECK_FALSE(stop.permanent);
    CHECK(poll_until(
        [&] {
            return query_value(db.get(),
                               "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '" + slot + "'") == "0";
        },
        10s));
    exec_ok(db.get(), "DROP TABLE wf_a, wf_b, wf_nopk");
}

TEST_CASE("wal follower: a user who may not replicate gets a permanent stop that says why")
{
    auto db = primary_superuser();
    if (!logical_wal(db.get()))
        return;
    // app is neither superuser nor REPLICATION (unless a peer suite made it one).
    if (query_value(db.get(), "SELECT rolsuper OR rolreplication FROM pg_roles WHERE rolname = '" +
                                  cluster().get("APP_USER") + "'") == "t") {
        MESSAGE("skipped: " << cluster().get("APP_USER") << " may replicate here");
        return;
    }
    RunningFollower f(cluster().get("APP_USER"), cluster().get("APP_PASSWORD"), "pgswitch_test_denied");
    const auto stop = f.wait_done(15s);
    CHECK(stop.permanent);
    CHECK_MESSAGE(stop.reason.find("42501") != std::string::npos, stop.reason);
}

namespace {

pgswitch::routing::RelationCatalog load_relation_catalog(PGconn* c)
{
    auto r = exec_ok(c, std::string(pgswitch::routing::relation_catalog_query()), PGRES_TUPLES_OK);
    pgswitch::routing::RelationCatalog catalog;
    for (int i = 0; i < PQntuples(r.get()); ++i) {
        std::vector<std::optional<std::string>> cols;
        for (int j = 0; j < PQnfields(r.get()); ++j)
            cols.push_back(PQgetisnull(r.get(), i, j) ? std::nullopt
                                                      : std::optional<std::string>(PQgetvalue(r.get(), i, j)));
        auto row = pgswitch::routing::relation_row_from(cols);
        REQUIRE_MESSAGE(row.has_value(), "row " << i << " of the relation catalog query is not one");
        catalog.add(std::move(*row));
    }
    return catalog;
}

/// wf_cat: one relation of every kind the cache must tell apart, and this session's temp table.
void create_catalog_schema(PGconn* c)
{
    exec_ok(c, "DROP SCHEMA IF EXISTS wf_cat CASCADE");
    exec_ok(c, "CREATE SCHEMA wf_cat");
    exec_ok(c, "CREATE TABLE wf_cat.plain (id int PRIMARY KEY, v int)");
    exec_ok(c, "CREATE TABLE wf_cat.\"Quoted\" (id int)");
    exec_ok(c, "CREATE TABLE wf_cat.events (at int) PARTITION BY RANGE (at)");
    exec_ok(c, "CREATE TABLE wf_cat.events_1 PARTITION OF wf_cat.events FOR VALUES FROM (0) TO (100)");
    exec_ok(c, "CREATE TABLE wf_cat.parent (id int)");
    exec_ok(c, "CREATE TABLE wf_cat.child () INHERITS (wf_cat.parent)");
    exec_ok(c, "CREATE VIEW wf_cat.v AS SELECT * FROM wf_cat.plain");
    exec_ok(c, "CREATE MATERIALIZED VIEW wf_cat.mv AS SELECT count(*) FROM wf_cat.plain");
    exec_ok(c, "CREATE UNLOGGED TABLE wf_cat.scratch (id int)");
    exec_ok(c, "CREATE TEMP TABLE wf_tmp (id int)");  // this session's: listed, refused
}

}  // namespace

TEST_CASE("wal follower: the primary's catalog and its decoded commits name the same tables")
{
    namespace rt = pgswitch::routing;
    auto db = primary_superuser();
    if (!logical_wal(db.get()))
        return;
    create_catalog_schema(db.get());

    const auto catalog = load_relation_catalog(db.get());
    rt::RelationInterner ids;
    const auto path = rt::effective_search_path("wf_cat, public", "postgres");
    const auto resolve = [&](const char* sql) {
        auto c = rt::classify(sql, nullptr);
        REQUIRE(c.statements.size() == 1);
        return rt::resolve_cached_tables(c.statements[0].relations, path, catalog, ids);
    };
    const auto refusal = [&](const char* sql) {
        const auto r = resolve(sql);
        REQUIRE_MESSAGE(std::holds_alternative<rt::RelationRefused>(r), sql);
        return std::get<rt::RelationRefused>(r).why;
    };
    CHECK(refusal("SELECT * FROM events") == rt::RelationRefusal::inheritance);
    CHECK(refusal("SELECT * FROM parent") == rt::RelationRefusal::inheritance);
    CHECK(refusal("SELECT * FROM v") == rt::RelationRefusal::view);
    CHECK(refusal("SELECT * FROM mv") == rt::RelationRefusal::view);
    CHECK(refusal("SELECT * FROM scratch") == rt::RelationRefusal::not_permanent);
    CHECK(refusal("SELECT * FROM pg_temp.wf_tmp") == rt::RelationRefusal::unknown);  // pg_temp is not a schema name
    CHECK(refusal("SELECT * FROM pg_class") == rt::RelationRefusal::system);

    const auto plain = resolve("SELECT v FROM plain WHERE id = 1");
    const auto leaf = resolve("SELECT * FROM events_1");
    const auto child = resolve("SELECT * FROM child");
    const auto quoted = resolve("SELECT * FROM \"Quoted\"");
    for (const auto* r : {&plain, &leaf, &child, &quoted})
        REQUIRE(std::holds_alternative<std::vector<rt::RelationId>>(*r));

    const std::string slot = "pgswitch_test_wfcat_" + std::to_string(::getpid());
    RunningFollower f(cluster().get("SUPERUSER"), cluster().get("SUPERPASS"), slot);
    REQUIRE_MESSAGE(poll_until([&] { return f.recorder().streaming() || f.done(); }, 15s), "not streaming after 15 s");
    exec_ok(db.get(), "INSERT INTO wf_cat.plain VALUES (1, 1)");
    exec_ok(db.get(), "INSERT INTO wf_cat.events VALUES (5)");  // through the parent: lands in events_1
    exec_ok(db.get(), "INSERT INTO wf_cat.child VALUES (1)");
    exec_ok(db.get(), "INSERT INTO wf_cat.\"Quoted\" VALUES (1)");
    const auto target = current_lsn(db.get());
    REQUIRE(poll_until([&] { return f.recorder().decoded() >= target; }, 10s));

    // Every decoded commit's tables, as the cache would look them up.
    std::vector<rt::RelationId> changed;
    for (const auto* name : {"plain", "events_1", "child", "Quoted"}) {
        const auto c = f.recorder().commit_of_in("wf_cat", name);
        REQUIRE_MESSAGE(c.has_value(), "no commit reported for wf_cat." << name);
        for (const auto& t : c->tables)
            changed.push_back(ids.id_of(t.schema, t.name));
    }
    const auto reads = [](const auto& r) { return std::get<std::vector<rt::RelationId>>(r).front(); };
    for (const auto* r : {&plain, &leaf, &child, &quoted})
        CHECK(std::find(changed.begin(), changed.end(), reads(*r)) != changed.end());
    f.stop_and_wait();
    exec_ok(db.get(), "DROP SCHEMA wf_cat CASCADE");
}
