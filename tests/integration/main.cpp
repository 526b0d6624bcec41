// doctest's main for the end-to-end binary (integration_e2e).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
