// The doctest runner of fleet-sim's unit tests (pure pieces only, no sockets).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
