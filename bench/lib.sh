# Shared by the benches' scripts (source it after `cd` to the repository): the checks a
# bench makes before it builds anything, each failing with one line that names the
# script and what to do.

# Stops unless run as root ($1 says why root is needed) and unless every command of the
# other arguments, given as COMMAND:PACKAGE, is there.
bench_needs_root() {
    [ "$(id -u)" = 0 ] || { echo "$0: run me as root ($1)" >&2; exit 1; }
    shift
    local need
    for need in "$@"; do bench_needs "${need%%:*}" "${need#*:}"; done
}

# Stops unless command $1 is there; $2 is the Debian package that has it.
bench_needs() {
    command -v "$1" >/dev/null || { echo "$0: needs $1 (apt-get install $2)" >&2; exit 1; }
}

# Sets WEFT to the weft binary to measure: WEFT as given, else the release build, built
# now (with CARGO_TARGET_DIR, default target).
bench_weft() {
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
    if [ -z "${WEFT:-}" ]; then
        cargo build -q --release -p weft
        WEFT="$CARGO_TARGET_DIR/release/weft"
    fi
}
