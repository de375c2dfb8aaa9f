# The harness's check for bash suites (sourced): one PASS or FAIL line per check, in the shape
# harness.report counts, with the last lines of a failing check's output indented under it.
#
#   log=FILE; source Tests/harness/check.sh
#   check "what is checked" command [args...]     # PASS when the command succeeds
#
# `passed` and `failed` count the checks, for a script that stops early on a failure.
passed=0 failed=0

check() {  # check NAME COMMAND...: PASS when COMMAND succeeds
    local name="$1"; shift
    : >"$log"
    if "$@" >>"$log" 2>&1; then
        passed=$((passed + 1)); echo "PASS  $name"
    else
        failed=$((failed + 1)); echo "FAIL  $name"; tail -n 15 "$log" | sed 's/^/      /'
    fi
}
