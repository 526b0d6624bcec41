// The WAL follower's pure decision: which failures to start decoding are
// permanent.
#include <doctest/doctest.h>

#include "proxy/wal_follower.h"

namespace px = pgswitch::proxy;

TEST_CASE("classify_follow_error: what reconnecting cannot fix is permanent, the reason keeps the SQLSTATE")
{
    const auto wal = px::classify_follow_error("55000", "logical decoding requires wal_level >= logical");
    CHECK(wal.permanent);
    CHECK(wal.reason == "logical decoding requires wal_level >= logical (SQLSTATE 55000)");
    CHECK(px::classify_follow_error("42501", "must be superuser or replication role to start walsender").permanent);
    CHECK(px::classify_follow_error("53400", "all replication slots are in use").permanent);
    CHECK(px::classify_follow_error("28000", "no pg_hba.conf entry").permanent);
    CHECK(px::classify_follow_error("28P01", "password authentication failed").permanent);
    CHECK(px::classify_follow_error("58P01", "could not access file \"test_decoding\"").permanent);
    const auto restart = px::classify_follow_error("57P01", "terminating connection due to administrator command");
    CHECK_FALSE(restart.permanent);
    CHECK_FALSE(px::classify_follow_error("", "connection refused").permanent);
    CHECK(px::classify_follow_error("", "connection refused").reason == "connection refused");
}
