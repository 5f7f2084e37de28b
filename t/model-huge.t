#!/bin/sh
# t/model.t on arenas of huge pages (rewire(7), "Huge pages").
REWIRE_TEST_PAGE_SIZE=huge exec t/model.t "$@"
