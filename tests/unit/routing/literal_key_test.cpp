// literal_free_key(): values vanish, everything that can change routing stays.
#include <doctest/doctest.h>

#include "routing/literal_key.h"

using pgswitch::routing::literal_free_key;

namespace {
std::string key(std::string_view s)
{
    return literal_free_key(s).substr(1);  // drop the marker byte
}
}  // namespace

TEST_CASE("numbers and strings become '?'")
{
    CHECK(key("SELECT abalance FROM a WHERE aid = 48213") == "SELECT abalance FROM a WHERE aid = ?");
    CHECK(key("SELECT 1.5e-3, .5, 'it''s', E'a\\'b', $$x$$, $tag$ y $tag$") == "SELECT ?, .?, ?, E?, ?, ?");
    CHECK(key("SELECT 1") == key("SELECT 999"));
}

TEST_CASE("identifiers, parameters, keywords and comments are kept")
{
    CHECK(key("SELECT t1.c2 FROM t1 WHERE x = $1") == "SELECT t1.c2 FROM t1 WHERE x = $1");
    CHECK(key("SELECT \"col 1\" FROM \"T\"") == "SELECT \"col 1\" FROM \"T\"");
    CHECK(key("SELECT set_config('a', 'b', false)") == "SELECT set_config(?, ?, false)");
    CHECK(key("/* pgswitch:replica */ SELECT 1 -- 5\n") == "/* pgswitch:replica */ SELECT ? -- 5\n");
    CHECK(key("/* a /* nested */ b */ SELECT 2") == "/* a /* nested */ b */ SELECT ?");
}

TEST_CASE("the key never equals an exact text, and odd input ends safely")
{
    CHECK(literal_free_key("SELECT 1").front() == '\x01');
    CHECK(key("SELECT 'unterminated") == "SELECT ?");
    CHECK(key("SELECT $abc") == "SELECT $abc");
    CHECK(key("") == "");
}
