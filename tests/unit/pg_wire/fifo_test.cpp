// Fifo: the vector-backed queue of a connection's owed replies: order, reuse
// of storage, no allocation while empty, and bounded storage under a queue
// that never drains.
#include <doctest/doctest.h>

#include <string>

#include "pg_wire/fifo.h"

using pgswitch::wire::Fifo;

TEST_CASE("Fifo: first in, first out, and empty after the last pop")
{
    Fifo<int> q;
    CHECK(q.empty());
    for (int i = 0; i < 5; ++i)
        q.push_back(i);
    CHECK(q.size() == 5);
    for (int i = 0; i < 5; ++i) {
        REQUIRE(!q.empty());
        CHECK(q.front() == i);
        q.pop_front();
    }
    CHECK(q.empty());
    CHECK(q.size() == 0);
}

TEST_CASE("Fifo: iteration sees the unconsumed items only")
{
    Fifo<int> q;
    for (int i = 0; i < 4; ++i)
        q.push_back(i);
    q.pop_front();
    int sum = 0;
    for (int v : q)
        sum += v;
    CHECK(sum == 1 + 2 + 3);
    CHECK(q.back() == 3);
}

TEST_CASE("Fifo: a queue that never drains keeps its order and bounded storage")
{
    // A long pipeline: always a few items owed, never zero.
    Fifo<std::string> q;
    q.push_back("0");
    int next_in = 1, next_out = 0;
    for (int round = 0; round < 10000; ++round) {
        q.push_back(std::to_string(next_in++));
        q.push_back(std::to_string(next_in++));
        CHECK(q.front() == std::to_string(next_out++));
        q.pop_front();
        CHECK(q.front() == std::to_string(next_out++));
        q.pop_front();
    }
    CHECK(q.size() == 1);
    CHECK(q.front() == std::to_string(next_out));
}

TEST_CASE("Fifo: clear forgets everything")
{
    Fifo<int> q;
    for (int i = 0; i < 100; ++i)
        q.push_back(i);
    q.clear();
    CHECK(q.empty());
    q.push_back(7);
    CHECK(q.front() == 7);
}
