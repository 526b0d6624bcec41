// Bulk data through pgswitch: COPY in and out, and one 50 MB value.
#include "harness.h"

#include <doctest/doctest.h>
#include <openssl/evp.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <unistd.h>

using namespace e2e;

namespace {
std::string md5_hex(const std::string& in)
{
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_Digest(in.data(), in.size(), out, &len, EVP_md5(), nullptr);
    static const char* d = "0123456789abcdef";
    std::string s;
    for (unsigned i = 0; i < len; ++i) {
        s += d[out[i] >> 4];
        s += d[out[i] & 15];
    }
    return s;
}

// Row i of the COPY data set: "i\tlabel-i-<pad>\n".
std::string copy_row(int i)
{
    return std::to_string(i) + "\tlabel-" + std::to_string(i) + "-" + std::string(size_t(i % 17), 'x') + "\n";
}
}  // namespace

TEST_CASE("COPY FROM STDIN and COPY TO STDOUT of 100,000 rows")
{
    constexpr int kRows = 100000;
    Proxy& px = shared_proxy();
    Conn c = px.connect_app();
    exec_ok(c.get(), "DROP TABLE IF EXISTS e2e_copy");
    exec_ok(c.get(), "CREATE TABLE e2e_copy (id int, label text)");

    // COPY in: chunks of ~64 KB, as a real loader would send.
    exec_ok(c.get(), "COPY e2e_copy FROM STDIN", PGRES_COPY_IN);
    std::string chunk;
    std::string all;  // the whole stream, for the client-side checksum
    for (int i = 1; i <= kRows; ++i) {
        chunk += copy_row(i);
        if (chunk.size() > 65536 || i == kRows) {
            REQUIRE_MESSAGE(PQputCopyData(c.get(), chunk.data(), static_cast<int>(chunk.size())) == 1, errmsg(c.get()));
            all += chunk;
            chunk.clear();
        }
    }
    REQUIRE(PQputCopyEnd(c.get(), nullptr) == 1);
    {
        Result r(PQgetResult(c.get()));
        REQUIRE_MESSAGE(PQresultStatus(r.get()) == PGRES_COMMAND_OK, errmsg(c.get()));
        CHECK(std::string(PQcmdStatus(r.get())) == "COPY " + std::to_string(kRows));
        while (Result extra{PQgetResult(c.get())})
            FAIL("unexpected extra result");
    }
    CHECK(query_value(c.get(), "SELECT count(*) || ':' || sum(id) FROM e2e_copy") ==
          std::to_string(kRows) + ":" + std::to_string(int64_t(kRows) * (kRows + 1) / 2));

    // COPY out: read every row back; the stream is byte-identical to what went in.
    exec_ok(c.get(), "COPY (SELECT id, label FROM e2e_copy ORDER BY id) TO STDOUT", PGRES_COPY_OUT);
    std::string out;
    int rows = 0;
    for (;;) {
        char* buf = nullptr;
        const int n = PQgetCopyData(c.get(), &buf, 0);
        if (n == -1)
            break;
        if (n < 0)
            FAIL("PQgetCopyData: " << errmsg(c.get()));
        out.append(buf, size_t(n));
        PQfreemem(buf);
        ++rows;
    }
    {
        Result r(PQgetResult(c.get()));
        REQUIRE_MESSAGE(PQresultStatus(r.get()) == PGRES_COMMAND_OK, errmsg(c.get()));
        CHECK(std::string(PQcmdStatus(r.get())) == "COPY " + std::to_string(kRows));
        while (Result extra{PQgetResult(c.get())})
            FAIL("unexpected extra result");
    }
    CHECK(rows == kRows);
    CHECK(out.size() == all.size());
    CHECK(md5_hex(out) == md5_hex(all));

    // A COPY that the server rejects mid-stream leaves the session usable.
    exec_ok(c.get(), "COPY e2e_copy FROM STDIN", PGRES_COPY_IN);
    const std::string bad = "1\tok\nnot-a-number\toops\n";
    REQUIRE(PQputCopyData(c.get(), bad.data(), int(bad.size())) == 1);
    REQUIRE(PQputCopyEnd(c.get(), nullptr) == 1);
    {
        Result r(PQgetResult(c.get()));
        CHECK(PQresultStatus(r.get()) == PGRES_FATAL_ERROR);
        CHECK(sqlstate(r.get()) == "22P02");
        while (Result extra{PQgetResult(c.get())}) {
        }
    }
    // And a client-side abort (CopyFail).
    exec_ok(c.get(), "COPY e2e_copy FROM STDIN", PGRES_COPY_IN);
    REQUIRE(PQputCopyData(c.get(), "5\tfive\n", 7) == 1);
    REQUIRE(PQputCopyEnd(c.get(), "e2e aborts the copy") == 1);
    {
        Result r(PQgetResult(c.get()));
        CHECK(PQresultStatus(r.get()) == PGRES_FATAL_ERROR);
        CHECK(std::string(PQresultErrorMessage(r.get())).find("e2e aborts the copy") != std::string::npos);
        while (Result extra{PQgetResult(c.get())}) {
        }
    }
    CHECK(query_value(c.get(), "SELECT count(*) FROM e2e_copy") == std::to_string(kRows));

    // psql \copy through pgswitch, in and out.
    const ClusterEnv& env = cluster();
    std::string file_rows;
    for (int i = 1; i <= 1000; ++i)
        file_rows += copy_row(i);
    const std::string in_path = write_temp_file("copy-in.tsv", file_rows);
    const std::string out_path = in_path + ".out";
    const std::vector<std::string> penv = {"PGPASSWORD=" + env.get("APP_PASSWORD"), "PGSSLMODE=disable",
                                           "PGCONNECT_TIMEOUT=5"};
    auto psql = [&](const std::string& cmd) {
        return run_command({"psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p",
                            std::to_string(px.port()), "-U", env.get("APP_USER"), "-d", env.get("APP_DB"), "-c", cmd},
                           penv, 60s);
    };
    exec_ok(c.get(), "TRUNCATE e2e_copy");
    CommandResult in = psql("\\copy e2e_copy from '" + in_path + "'");
    INFO("psql \\copy from: " << in.output);
    CHECK(in.exit_code == 0);
    CHECK(query_value(c.get(), "SELECT count(*) || ':' || sum(id) FROM e2e_copy") == "1000:500500");
    CommandResult outc = psql("\\copy (SELECT * FROM e2e_copy ORDER BY id) to '" + out_path + "'");
    INFO("psql \\copy to: " << outc.output);
    CHECK(outc.exit_code == 0);
    std::ifstream f(out_path, std::ios::binary);
    const std::string round((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    CHECK(round == file_rows);
    ::unlink(in_path.c_str());
    ::unlink(out_path.c_str());

    exec_ok(c.get(), "DROP TABLE e2e_copy");
}

TEST_CASE("a 50 MB text value round trips intact")
{
    constexpr size_t kSize = 50u * 1024u * 1024u;
    Proxy& px = shared_proxy();
    Conn c = px.connect_app();
    exec_ok(c.get(), "DROP TABLE IF EXISTS e2e_big");
    exec_ok(c.get(), "CREATE TABLE e2e_big (id int PRIMARY KEY, v text)");
    // Compression would hide a truncated or mangled relay less well; store as-is.
    exec_ok(c.get(), "ALTER TABLE e2e_big ALTER COLUMN v SET STORAGE EXTERNAL");

    std::string value(kSize, '\0');
    std::mt19937_64 rng(20240607);
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:-_";
    for (size_t i = 0; i < kSize; i += 8) {
        uint64_t r = rng();
        for (size_t k = 0; k < 8 && i + k < kSize; ++k, r >>= 8)
            value[i + k] = alphabet[(r & 0xff) % (sizeof alphabet - 1)];
    }
    const std::string want_md5 = md5_hex(value);

    const char* vals[1] = {value.c_str()};
    const int lens[1] = {static_cast<int>(value.size())};
    Result ins(PQexecParams(c.get(), "INSERT INTO e2e_big VALUES (1, $1)", 1, nullptr, vals, lens, nullptr, 0));
    REQUIRE_MESSAGE(PQresultStatus(ins.get()) == PGRES_COMMAND_OK, errmsg(c.get()));

    Result meta = exec_ok(c.get(), "SELECT length(v), md5(v) FROM e2e_big WHERE id = 1", PGRES_TUPLES_OK);
    REQUIRE(PQntuples(meta.get()) == 1);
    CHECK(std::string(PQgetvalue(meta.get(), 0, 0)) == std::to_string(kSize));
    CHECK(std::string(PQgetvalue(meta.get(), 0, 1)) == want_md5);

    Result back = exec_ok(c.get(), "SELECT v FROM e2e_big WHERE id = 1", PGRES_TUPLES_OK);
    REQUIRE(PQntuples(back.get()) == 1);
    REQUIRE(size_t(PQgetlength(back.get(), 0, 0)) == kSize);
    CHECK(std::memcmp(PQgetvalue(back.get(), 0, 0), value.data(), kSize) == 0);

    // The session (and the proxy) still work afterwards.
    CHECK(query_value(c.get(), "SELECT 1") == "1");
    exec_ok(c.get(), "DROP TABLE e2e_big");
}
