#!/bin/sh
# Regenerates tests/data/release-0.1.0.tar.gz, the previous release's package that the
# mixed-releases tests run beside this one, from the release's tag (the bytes are reproducible:
# git archive dates every entry with the commit, gzip -n stores no name or time).
set -eu
cd "$(git rev-parse --show-toplevel)"
git archive --format=tar v0.1.0 operator/stateful_route | gzip -9n > tests/data/release-0.1.0.tar.gz
