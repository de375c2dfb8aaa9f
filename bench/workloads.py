"""One sample of each figure, run with one redirector active in R.

Each function takes the bench (its stage, listeners, tools and options), the active mode and
the variant, and returns (values, details): `values` maps row keys (figures.py) to numbers,
`details` is what the JSON keeps about the sample (raw counts, sources, errors seen).
"""

import json
import time

from accounting import PacketCount, flows_tracked, process_cpu_seconds, udp_delivered
from harness.checks import parse_json_answer
from harness.endpoints import format_endpoint
from modes import BULK_PORT, HTTP_PORT, UDP_PORT
from peers import WRK_SCRIPT
from harness.processes import run_command
from stage import REMOTE_V4, REMOTE_V6

REMOTE = {"v4": REMOTE_V4, "v6": REMOTE_V6}
LOAD_SOURCE_BASE = "192.0.2.100"   # udpblast spread: flow i from 192.0.2.(100 + i/60000)
LOAD_FLOWS = 1000                  # the fixed load cycles over the first 1000 flows


DAEMON_SIDES = ("daemon", "nohook", "knat")   # the sides where nfq-redirectd runs


class SampleFailed(Exception):
    pass


class SampleSkipped(Exception):
    """A sample that does not apply to this side (not a failure): the reason is noted."""


def bulk_tcp(bench, mode, variant):
    """iperf3 goodput (what the receiver got) from C to a redirected remote address."""
    family, streams = variant
    server = bench.listeners.iperf3_server()
    seconds = bench.options.seconds
    try:
        output = run_command(["iperf3", "--client", REMOTE[family], "--port", str(BULK_PORT),
                              "--time", str(seconds), "--parallel", str(streams), "--json",
                              "--connect-timeout", "3000"],
                             ns=bench.stage.client, timeout=seconds + 30, check=False)
    finally:
        server.stop(timeout=5.0)   # the next sample's server needs the port
    report = parse_json_answer(output, "iperf3", SampleFailed)
    received = report["end"]["sum_received"]
    retransmits = report["end"].get("sum_sent", {}).get("retransmits")
    gbits = received["bits_per_second"] / 1e9
    return ({f"bulk_{family}_{streams}": gbits},
            {"bytes": received["bytes"], "seconds": received["seconds"], "retransmits": retransmits})


def run_wrk(bench, connections, close):
    seconds = bench.options.seconds
    # wrk takes whole seconds only ("3.0s" is refused).
    argv = ["wrk", "--threads", "1", "--connections", str(connections), "--duration", f"{max(1, round(seconds))}s",
            "--timeout", "2s", "--script", WRK_SCRIPT]
    if close:
        argv += ["--header", "Connection: close"]
    argv.append(f"http://{format_endpoint(REMOTE_V4, HTTP_PORT)}/")
    output = run_command(argv, ns=bench.stage.client, timeout=seconds + 30, check=False)
    lines = [line for line in output.splitlines() if line.startswith("WRK-JSON ")]
    if not lines:
        raise SampleFailed(f"wrk printed no summary: {output[-300:]!r}")
    report = json.loads(lines[-1].partition(" ")[2])
    if report["requests"] == 0:
        raise SampleFailed(f"wrk completed no request (errors {report['errors']})")
    return report


def new_connections(bench, mode, variant):
    """wrk with `Connection: close`: one TCP connection per request, so requests/s = connections/s.
    With a redirecting process (the daemon, with or without its getsockopt hook, or in
    kernel-nat mode, where it sees each connection's first packet only), also its CPU time per
    connection: what a flow's start and end cost it, less sensitive to a busy machine
    than the rate."""
    pid = mode.pid
    cpu_before = process_cpu_seconds(pid) if pid else None
    report = run_wrk(bench, bench.options.connections, close=True)
    rate = report["requests"] / (report["duration_us"] / 1e6)
    values = {"conn_rate": rate}
    details = {"requests": report["requests"], "errors": report["errors"], "latency_mean_us": report["latency_mean_us"]}
    if pid and mode.name in DAEMON_SIDES:
        cpu = process_cpu_seconds(pid) - cpu_before
        values["conn_cpu"] = cpu / report["requests"] * 1e6
        details["daemon_cpu_seconds"] = cpu
    return values, details


def request_response(bench, mode, variant):
    """wrk -c1 -t1 keep-alive: one request in flight on one connection, so the rate is 1/latency."""
    report = run_wrk(bench, 1, close=False)
    rate = report["requests"] / (report["duration_us"] / 1e6)
    return ({"rr_rate": rate, "rr_latency": report["latency_mean_us"]},
            {"requests": report["requests"], "errors": report["errors"],
             "latency_p50_us": report["latency_p50_us"], "latency_p99_us": report["latency_p99_us"]})


def settle():
    """Lets the last datagrams in flight reach their socket before counting."""
    time.sleep(0.3)


def udp_rate(bench, mode, family):
    """Small datagrams as fast as one sender goes; the figure is what reached the listener."""
    before = udp_delivered(bench.stage.router)
    sent = run_udpblast(bench, ["send", "--to", REMOTE[family], "--port", str(UDP_PORT),
                                "--seconds", str(bench.options.seconds)])
    settle()
    delivered = udp_delivered(bench.stage.router) - before
    return ({f"udp_{family}": delivered / sent["seconds"]},
            {"sent": sent["sent"], "delivered": delivered, "seconds": sent["seconds"]})


def run_udpblast(bench, arguments, timeout_extra=30):
    seconds = bench.options.seconds
    output = run_command([bench.udpblast, *arguments], ns=bench.stage.client,
                         timeout=seconds + timeout_extra, check=False)
    try:
        return json.loads(output.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise SampleFailed(f"udpblast {arguments[0]} printed no result: {output[-300:]!r}") from None


def daemon_cpu_per_packet(bench, mode, prefill):
    """The daemon's CPU time per packet under a fixed UDP load (`mode` is the daemon side
    measured: its own process, control tool and lookup socket).

    Two divisors: the packets it handled (every datagram of the load in the userspace mode;
    only each flow's first packet in kernel-nat mode) and the datagrams of the load that reached
    the listener (which the kernel alone carried after each flow's first packet in kernel-nat
    mode). Row "daemon_ns" is per packet handled, row "load_ns" per packet of the load; the
    userspace daemon gets the same number in both, up to packets it did not deliver.

    With `prefill` > 0 the table first gets that many idle UDP flows (one datagram each from a
    distinct source), and the row is the per-packet cost at that table size: per packet handled
    for the userspace daemon (as before), per packet of the load in kernel-nat mode (the load's
    flows are among the pre-filled ones, so by design the daemon handles none of its packets).

    Kernel-nat: when more packets than the load's flows reached the queue, a note says so (the
    mode's queue rule let later packets of a flow through, not only its first)."""
    daemon = mode
    knat = mode.name == "knat"
    details = {}
    if prefill:
        if knat:
            limit = mode.conntrack_limit()
            if limit is not None and prefill + LOAD_FLOWS > limit:
                raise SampleSkipped(f"kernel-nat: {prefill} flows exceed the kernel's conntrack limit in R "
                                    f"(nf_conntrack_max {limit}), which would evict them")
        details.update(fill_table(bench, daemon, prefill))
    count = PacketCount(bench.stage.router, daemon.control, daemon.socket_path)
    packets_before = count.read()
    delivered_before = udp_delivered(bench.stage.router)
    cpu_before = process_cpu_seconds(daemon.pid)
    load = run_udpblast(bench, ["spread", "--source-base", LOAD_SOURCE_BASE, "--to", REMOTE_V4,
                                "--port", str(UDP_PORT), "--flows", str(LOAD_FLOWS),
                                "--rate", str(bench.options.load_rate), "--seconds", str(bench.options.seconds)])
    settle()
    cpu = process_cpu_seconds(daemon.pid) - cpu_before
    delivered = udp_delivered(bench.stage.router) - delivered_before
    source, handled = PacketCount.difference(packets_before, count.read())
    if handled is None or (not handled and not knat):
        raise SampleFailed(f"no count of the packets the daemon handled (sources seen: {list(packets_before)})")
    if delivered <= 0:
        raise SampleFailed(f"the load delivered no datagram ({load['sent']} sent)")
    if prefill:
        details["flows_after_load"] = flows_tracked(daemon.control, daemon.socket_path)
    if knat and handled > 2 * LOAD_FLOWS:
        details["later_packets_queued"] = True
        bench.note(f"kernel-nat: the daemon's queue got more than each flow's first packet of the UDP load "
                   f"(packets handled per datagram delivered in the JSON): one-way UDP stays ctstate NEW "
                   f"in conntrack until a reply, so a NEW-only queue rule takes all of its packets")
    per_handled = cpu / handled * 1e9 if handled else None
    per_load = cpu / delivered * 1e9
    details.update({"packets": handled, "packet_count_source": source, "cpu_seconds": cpu,
                    "sent": load["sent"], "delivered": delivered,
                    "ns_per_packet_handled": per_handled, "ns_per_packet_of_load": per_load})
    if prefill:
        return {f"flows_{prefill}": per_load if knat else per_handled}, details
    values = {"load_ns": per_load}
    if per_handled is not None:
        values["daemon_ns"] = per_handled
    return values, details


def fill_table(bench, daemon, flows):
    """Sends one datagram from each of `flows` distinct sources; returns what `daemon` tracks."""
    before = udp_delivered(bench.stage.router)
    started = time.monotonic()
    run_udpblast(bench, ["spread", "--source-base", LOAD_SOURCE_BASE, "--to", REMOTE_V4,
                         "--port", str(UDP_PORT), "--flows", str(flows), "--rate", str(bench.options.prefill_rate)],
                 timeout_extra=flows / bench.options.prefill_rate + 30)
    settle()
    delivered = udp_delivered(bench.stage.router) - before
    tracked = flows_tracked(daemon.control, daemon.socket_path)
    details = {"prefill_seconds": round(time.monotonic() - started, 2), "prefill_delivered": delivered,
               "flows_tracked": tracked, "flows_count_source": "nfq-redirect stats" if tracked is not None
               else "datagrams delivered (the daemon reports no flow count)"}
    known = tracked if tracked is not None else delivered
    if known < 0.95 * flows:
        raise SampleFailed(f"table pre-fill reached {known} of {flows} flows ({details['flows_count_source']}); "
                           f"if the daemon drops at this rate, try a lower --prefill-rate")
    return details
