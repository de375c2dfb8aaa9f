"""The netns suite's lookup-service cases (daemon mode): the fd-passing lookup through the
example proxy and by hand, a peer not on the allow list, expired flows, and the
`nfq-redirect` CLI (list, stats, events, version, and its errors).
"""

import datetime
import json
import os
import re
import subprocess
import time

from harness.endpoints import format_endpoint
from harness.checks import TestFailure, expect, expect_equal
from stage import HERE, PYTHON
from harness.processes import in_namespace, run_command
from harness.redirectors import EXAMPLE_PORT, EXAMPLE_PROXY_PORT, UDP_PORT, UDP_RELAY_PORT, UDP_TIMEOUT
from harness.topology import REMOTE_V4, REMOTE_V6, ROUTER_CLIENT_SIDE_V4, ROUTER_CLIENT_SIDE_V6

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def remote(v6):
    return REMOTE_V6 if v6 else REMOTE_V4


def router_address(v6):
    return ROUTER_CLIENT_SIDE_V6 if v6 else ROUTER_CLIENT_SIDE_V4


def ask(env, *arguments, as_nobody=False):
    """ask.py in R; as uid 65534 its world-readable copy, from a directory that uid may enter."""
    if as_nobody:
        argv = [*NOBODY, PYTHON, env.unprivileged("ask.py"), env.redirect.socket_path, *arguments]
        return run_command(argv, ns=env.topology.router, cwd=env.unprivileged_dir).strip()
    argv = [PYTHON, os.path.join(HERE, "ask.py"), env.redirect.socket_path, *arguments]
    return run_command(argv, ns=env.topology.router).strip()


def cli(env, *arguments, as_nobody=False, socket_path=None):
    """Runs `nfq-redirect ARGS --socket ...` in R; returns (exit status, stdout, stderr)."""
    binary = env.unprivileged("nfq-redirect") if as_nobody else os.path.join(os.path.dirname(env.redirect.binary), "nfq-redirect")
    argv = (NOBODY if as_nobody else []) + [binary, *arguments, "--socket", socket_path or env.redirect.socket_path]
    done = subprocess.run(in_namespace(env.topology.router, argv), capture_output=True, text=True, timeout=15,
                          cwd=env.unprivileged_dir if as_nobody else None)
    return done.returncode, done.stdout, done.stderr


# --- LOOKUPFD ------------------------------------------------------------------------------------

def example_proxy_lookupfd(v6):
    """The example proxy asks with LOOKUPFD (its accepted socket passed) and relays to S."""
    def test(env):
        target = format_endpoint(remote(v6), EXAMPLE_PORT)
        answer = env.client("tcp-id", target)
        expect(answer["reply"].startswith(f"SERVER {target} PEER "), f"SERVER {target} PEER ...", answer["reply"])
        expect_equal("example-proxy log line", f"client {answer['local']} wanted {target} (via LOOKUPFD)",
                     env.proxy_line("example-proxy", answer["local"]))
    return test


def example_proxy_self_connect(env):
    """Dialling the example proxy's port directly: LOOKUPFD says NOTREDIRECTED, nothing is relayed
    (the proxy closes the connection; the client may see a reset)."""
    refusals = lambda: env.proxies["example-proxy"].log().count(" not relayed: ERR NOTREDIRECTED")
    before, relayed = refusals(), env.wanted_count("example-proxy")
    run_command([PYTHON, os.path.join(HERE, "client.py"), "tcp-id",
                 format_endpoint(ROUTER_CLIENT_SIDE_V4, EXAMPLE_PROXY_PORT)], ns=env.topology.client, check=False)
    deadline = time.monotonic() + 3
    while refusals() == before and time.monotonic() < deadline:
        time.sleep(0.05)
    expect_equal("example-proxy lines 'not relayed: ERR NOTREDIRECTED' added", 1, refusals() - before)
    expect_equal("connections the example proxy relayed meanwhile", 0, env.wanted_count("example-proxy") - relayed)


def udp_lookupfd(v6):
    """A connected UDP socket (the relay's address, the client's endpoint) passed with LOOKUPFD."""
    def test(env):
        target = format_endpoint(remote(v6), UDP_PORT)
        exchanged = env.client("udp-echo", target, "lookupfd")
        local = format_endpoint(router_address(v6), UDP_RELAY_PORT)
        expect_equal("LOOKUPFD answer for the UDP flow", f"OK {remote(v6)} {UDP_PORT}",
                     ask(env, "udp-fd", local, exchanged["local"]))
    return test


# --- access, expiry ------------------------------------------------------------------------------

def denied_peer(env):
    """allow_users = ["root"]: uid 65534 may connect (mode 0666) but every request is refused."""
    expect_equal("LOOKUP as uid 65534", "ERR DENIED",
                 ask(env, "line", f"LOOKUP tcp 192.0.2.99 1 {ROUTER_CLIENT_SIDE_V4} 8080", as_nobody=True))
    expect_equal("VERSION as uid 65534", "ERR DENIED", ask(env, "line", "VERSION", as_nobody=True))
    status, out, err = cli(env, "list", as_nobody=True)
    expect(status == 1 and "access denied" in err and out == "",
           "`nfq-redirect list` as uid 65534: status 1, 'access denied' on stderr", (status, out, err))
    expect(ask(env, "line", "VERSION").startswith("OK nfq-redirect "), "root still served", "refused")


def expired_flow(env):
    """A UDP flow answers OK, and ERR EXPIRED once its timeout has passed."""
    target = format_endpoint(REMOTE_V4, UDP_PORT)
    exchanged = env.client("udp-echo", target, "expiry")
    client_ip, client_port = exchanged["local"].rsplit(":", 1)
    request = f"LOOKUP udp {client_ip} {client_port} {ROUTER_CLIENT_SIDE_V4} {UDP_RELAY_PORT}"
    expect_equal("answer while the flow lives", f"OK {REMOTE_V4} {UDP_PORT}", ask(env, "line", request))
    time.sleep(UDP_TIMEOUT + 1.5)
    expect_equal("answer after its timeout", "ERR EXPIRED", ask(env, "line", request))


# --- the CLI -------------------------------------------------------------------------------------

def cli_list_and_stats(env):
    target = format_endpoint(REMOTE_V4, 80)
    connection = env.client("tcp-id", target)
    status, table, err = cli(env, "list")
    expect(status == 0, "`nfq-redirect list` exits 0", (status, err))
    lines = table.splitlines()
    row = [line.split() for line in lines if f" {connection['local']} " in line]
    expect(lines[0].split()[:5] == ["PROTO", "STATE", "EXPIRES", "CLIENT", "ORIGINAL"]
           and len(row) == 1 and row[0][0] == "tcp" and row[0][3:5] == [connection["local"], target]
           and row[0][5].startswith(f"{ROUTER_CLIENT_SIDE_V4}:"),
           f"a table with a row: tcp <state> <s> {connection['local']} {target} {ROUTER_CLIENT_SIDE_V4}:8080 ...",
           table[-600:])
    expect(table.rstrip().splitlines()[-1].endswith(" flows") or table.rstrip().endswith(" flow"),
           "a closing 'N flows' line", table[-200:])

    status, text, err = cli(env, "list", "--json")
    flows = json.loads(text)
    client_ip, client_port = connection["local"].rsplit(":", 1)
    mine = [flow for flow in flows if flow["client"] == {"ip": client_ip, "port": int(client_port)}]
    expect(status == 0 and len(mine) == 1 and mine[0]["original"] == {"ip": REMOTE_V4, "port": 80}
           and mine[0]["proto"] == "tcp", "the flow in `list --json` with its original destination",
           mine or text[-300:])

    status, stats, err = cli(env, "stats")
    expect(status == 0 and any(line.startswith("nfqr_lookup_requests_total ") for line in stats.splitlines()),
           "`nfq-redirect stats` shows nfqr_lookup_requests_total", stats[-400:] + err)
    status, stats_json, err = cli(env, "stats", "--json")
    document = json.loads(stats_json)
    metrics = document.get("metrics", []) if isinstance(document, dict) else []
    lookups = [metric for metric in metrics if metric.get("name") == "nfqr_lookups_total"]
    expect(status == 0 and metrics and all("{" not in metric["name"] and isinstance(metric.get("labels"), dict)
                                           for metric in metrics)
           and lookups and all(set(metric["labels"]) == {"answer"} for metric in lookups),
           "`stats --json`: one object, each series {name, labels, value}, labels as fields", stats_json[:600])
    status, version, err = cli(env, "version")
    expect(status == 0 and version.startswith("OK nfq-redirect "), "`nfq-redirect version`", version + err)


def cli_events(env):
    """`nfq-redirect events --json` shows a new flow as it is made."""
    binary = os.path.join(os.path.dirname(env.redirect.binary), "nfq-redirect")
    follower = env.programs.start("events", env.topology.router,
                                  [binary, "events", "--json", "--socket", env.redirect.socket_path])
    try:
        time.sleep(0.3)
        connected_at = time.time()
        connection = env.client("tcp-id", format_endpoint(REMOTE_V6, 443))
        client_ip, client_port = connection["local"].rsplit(":", 1)
        client = {"ip": client_ip.strip("[]"), "port": int(client_port)}

        def new_event_seen(text):
            for line in text.splitlines():
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if event.get("event") == "new" and event.get("client") == client:
                    seen.append(event)
                    return event["original"] == {"ip": REMOTE_V6, "port": 443}
            return False
        seen = []
        follower.wait_for_log(new_event_seen, 5, f"a 'new' event for {connection['local']}")
        seen_at = time.time()
        # Its wall-clock time: RFC 3339, UTC, within a second of the host's clock.
        stamp = seen[-1].get("timestamp", "")
        expect(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", stamp) is not None,
               "the event's timestamp is RFC 3339 UTC with microseconds", seen[-1])
        when = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
        expect(connected_at - 1 <= when.timestamp() <= seen_at + 1,
               "the event's wall-clock time is within a second of the host's clock between connecting and seeing it",
               (stamp, connected_at, seen_at))
        expect(isinstance(seen[-1].get("time"), int), "the table's monotonic `time` is kept", seen[-1])
        return f"timestamp {stamp}: {when.timestamp() - connected_at:+.3f} s from connecting"
    finally:
        follower.stop()


def cli_errors(env):
    """Clear errors and status 1 when no daemon listens there."""
    missing = os.path.join(os.path.dirname(env.redirect.socket_path), "no-daemon.sock")
    for command in (["list"], ["stats", "--json"], ["events"], ["lookup", "tcp", "192.0.2.2", "1", "192.0.2.1", "2"]):
        status, out, err = cli(env, *command, socket_path=missing)
        expect(status == 1 and f"nfq-redirectd is not running (nothing listens on {missing})" in err
               and "Usage" not in err, f"`nfq-redirect {' '.join(command)}` without a daemon: status 1, "
               "'nfq-redirectd is not running', no usage text", (status, err))


DAEMON = ("daemon",)
CASES = [
    ("lookup: example proxy (LOOKUPFD) relays ipv4 remote:81", example_proxy_lookupfd(False), 30, DAEMON),
    ("lookup: example proxy (LOOKUPFD) relays ipv6 remote:81", example_proxy_lookupfd(True), 30, DAEMON),
    ("lookup: dialling the example proxy directly -> LOOKUPFD ERR NOTREDIRECTED", example_proxy_self_connect, 30, DAEMON),
    ("lookup: LOOKUPFD with a connected UDP socket (ipv4)", udp_lookupfd(False), 30, DAEMON),
    ("lookup: LOOKUPFD with a connected UDP socket (ipv6)", udp_lookupfd(True), 30, DAEMON),
    ("lookup: a peer not on the allow list -> ERR DENIED (socket and CLI)", denied_peer, 30, DAEMON),
    ("lookup: a UDP flow past its timeout -> ERR EXPIRED", expired_flow, 30, DAEMON),
    ("cli: nfq-redirect list (table, --json), stats (text, --json), version", cli_list_and_stats, 30, DAEMON),
    ("cli: nfq-redirect events --json shows a new flow", cli_events, 30, DAEMON),
    ("cli: clear errors when the daemon is not running", cli_errors, 30, DAEMON),
]
