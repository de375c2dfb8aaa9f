"""The robustness tests of the netns suite (`run.sh --suite robust`): hostile packets, a SYN
flood and queue overflow, through the real queued path. Same harness as cases.py."""

import json
import os
import shutil
import signal
import subprocess
import time

from harness.endpoints import format_endpoint
from harness.checks import TestFailure, expect, expect_equal
from stage import HERE, PYTHON
from hostile import BLIND_RESET, CORPUS, COPIES, FORGED_ERRORS, SWALLOWED_V6
from harness.processes import in_namespace, run_command
from harness.redirectors import kernel_nat
from harness.topology import CLIENT_V4, REMOTE_V4, REMOTE_V6

FLOOD_SYNS = int(os.environ.get("NFQR_FLOOD_SYNS", "1000000"))
FLOOD_TABLE_LIMIT = 65536
BURST = 3000


# --- what the daemon and R's kernel count --------------------------------------------------------

def daemon_stats(env):
    """`stats --json` as {series: value}, a series named as in the text form without quotes
    (`nfqr_drops_total{reason=table_full}`); histograms as `<name>_count`."""
    document = json.loads(run_command([env.redirect.cli, "stats", "--json", "--socket", env.redirect.socket_path],
                                      ns=env.topology.router))
    flat = {}
    for metric in document["metrics"]:
        labels = ",".join(f"{key}={value}" for key, value in metric["labels"].items())
        series = metric["name"] + (f"{{{labels}}}" if labels else "")
        if metric["type"] == "histogram":
            flat[f"{series}_count"] = metric["count"]
        else:
            flat[series] = metric["value"]
    return flat


def daemon_flows(env):
    text = run_command([env.redirect.cli, "list", "--json", "--socket", env.redirect.socket_path],
                       ns=env.topology.router, timeout=30)
    return json.loads(text)   # one JSON array of flow objects


def kernel_snmp(ns):
    """/proc/net/snmp and snmp6 of `ns` as {"Ip.InHdrErrors": n, "Ip6.Ip6InHdrErrors": n, ...}."""
    counters = {}
    lines = run_command(["cat", "/proc/net/snmp"], ns=ns).splitlines()
    for names, values in zip(lines[::2], lines[1::2]):
        group = names.split(":")[0]
        counters.update({f"{group}.{name}": int(value)
                         for name, value in zip(names.split()[1:], values.split()[1:])})
    for line in run_command(["cat", "/proc/net/snmp6"], ns=ns).splitlines():
        name, value = line.split()
        counters[f"Ip6.{name}" if name.startswith("Ip6") else name] = int(value)
    return counters


def kernel_queues(ns):
    """Sum over R's queues of /proc/net/netfilter/nfnetlink_queue: queue_dropped, user_dropped."""
    text = run_command(["cat", "/proc/net/netfilter/nfnetlink_queue"], ns=ns)
    fields = [line.split() for line in text.splitlines() if line.strip()]
    return {"queue_dropped": sum(int(f[5]) for f in fields), "user_dropped": sum(int(f[6]) for f in fields)}


def link_drops(env):
    """Packets the client-side veth pair dropped (a full backlog on R's side shows as C's tx_dropped)."""
    def read(ns, link, counter):
        return int(run_command(["cat", f"/sys/class/net/{link}/statistics/{counter}"], ns=ns))
    return (read(env.topology.client, env.topology.client_link, "tx_dropped")
            + read(env.topology.router, env.topology.router_client_link, "rx_dropped"))


def conntrack_stat(ns, *names):
    """The sum of conntrack's per-CPU counters `names` in `ns` (/proc/net/stat/nf_conntrack, hex,
    one row per CPU): `invalid` (packets it found INVALID), `drop` and `insert_failed` (new
    entries it could not make, e.g. its table full)."""
    lines = run_command(["cat", "/proc/net/stat/nf_conntrack"], ns=ns).splitlines()
    columns = [lines[0].split().index(name) for name in names]
    return sum(int(line.split()[column], 16) for line in lines[1:] if line.strip() for column in columns)


def jump_packets(ns, table, target):
    """Kernel-nat mode: packets that took the jumps from `table`'s PREROUTING to `target`, both
    families (the jump rules' counters; the jumps stay across the daemon's restarts)."""
    total_packets = 0
    for tool in ("iptables", "ip6tables"):
        listing = run_command([tool, "-w", "-t", table, "-L", "PREROUTING", "-v", "-x", "-n"], ns=ns, check=False)
        for line in listing.splitlines():
            words = line.split()
            if len(words) > 2 and words[2] == target:
                total_packets += int(words[0])
    return total_packets


def syns_and_queueing_jumps(ns):
    """Kernel-nat mode: SYNs that met the raw events jump (before conntrack), and packets that
    entered the queueing chain (after it: ctstate NEW and no daemon mark on the entry)."""
    return (jump_packets(ns, "raw", "NFQR-EV-PREROUTING"), jump_packets(ns, "mangle", "NFQR-NEW-PREROUTING"))


def conntrack_invalid(ns):
    return conntrack_stat(ns, "invalid")


# Kernel-nat mode: only first packets reach the daemon, the kernel judges the rest as it does
# for -j REDIRECT: conntrack finds them INVALID, or they go on unNATed (forwarded).
# A first packet is marked, not rewritten; an ICMP error about a flow is translated by the
# kernel's NAT and delivered to the proxy's socket.
KERNEL_NAT_PLACES = ["conntrack:invalid", "snmp:Ip.ForwDatagrams", "snmp:Ip6.Ip6OutForwDatagrams",
                     "nfqr_verdicts_total{verdict=mark}", "snmp:Icmp.InDestUnreachs", "snmp:Icmp6InDestUnreachs",
                     "snmp:Icmp6InPktTooBigs"]


def counters(env):
    merged = {f"snmp:{key}": value for key, value in kernel_snmp(env.topology.router).items()}
    merged["conntrack:invalid"] = conntrack_invalid(env.topology.router)
    merged[SWALLOWED_V6] = (merged["snmp:Ip6.Ip6InReceives"] - merged["snmp:Ip6.Ip6OutForwDatagrams"]
                            - merged["snmp:Ip6.Ip6InDelivers"] - merged["snmp:Ip6.Ip6InHdrErrors"]
                            - merged["snmp:Ip6.Ip6InTruncatedPkts"] - merged["snmp:Ip6.Ip6InAddrErrors"])
    merged.update(daemon_stats(env))
    return merged


def total(counts, prefix):
    return sum(value for key, value in counts.items() if key.startswith(prefix))


def daemon_rss_kib(env):
    with open(f"/proc/{env.redirect.program.pid}/status") as status:
        return int(next(line.split()[1] for line in status if line.startswith("VmRSS:")))


def restart_daemon(env, *extra_args):
    env.redirect.stop()
    env.redirect.extra_args = list(extra_args)
    env.redirect.start(env.programs, env.topology.router)


def write_config(env, name, text):
    path = os.path.join(env.run_dir, name)
    with open(path, "w") as config:
        config.write(text)
    return path


# --- an established flow that must carry data through it all -------------------------------------

class SteadyFlow:
    """client.py tcp-steady in C: one redirected upload at a steady pace, checked by sha256."""

    def __init__(self, env, seconds):
        self.env = env
        self.target = format_endpoint(REMOTE_V4, 80)
        self.program = env.programs.start(f"steady-{time.monotonic_ns()}", env.topology.client, [
            PYTHON, os.path.join(HERE, "client.py"), "tcp-steady", self.target, str(seconds)])
        self.port = self._local_port()

    def _local_port(self):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            out = run_command(["ss", "-Htn", "state", "established", "dst", REMOTE_V4], ns=self.env.topology.client)
            ports = [line.split()[-2].rsplit(":", 1)[1] for line in out.splitlines() if line.strip()]
            if ports:
                return int(ports[0])
            time.sleep(0.05)
        raise TestFailure(f"steady flow to {self.target} never established; its log: {self.program.log_tail()}")

    def check(self, timeout):
        try:
            self.program.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TestFailure(f"steady flow still running after {timeout} s") from None
        answer = json.loads(self.program.log() or "{}")
        if "error" in answer:
            raise TestFailure(f"steady flow failed: {answer['error']}")
        expect_equal("steady flow: server's sha256", f"SHA256 {answer['sha256']}", answer["answer"])
        return answer


# --- hostile packets ------------------------------------------------------------------------------

def router_mac(env):
    out = run_command(["cat", f"/sys/class/net/{env.topology.router_client_link}/address"], ns=env.topology.router)
    return out.strip()


def hostile_packets(env):
    steady = SteadyFlow(env, seconds=30)
    sender = subprocess.Popen(
        in_namespace(env.topology.client, [PYTHON, os.path.join(HERE, "hostile.py"),
                                           env.topology.client_link, router_mac(env)]),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    accounted, problems = [], []
    try:
        def send(line):
            sender.stdin.write(line + "\n")
            sender.stdin.flush()
            reply = sender.stdout.readline().split()
            expect(reply[:2] == ["sent", line.split()[0]], f"sent {line}", repr(reply))
            return int(reply[2])

        # The forged resets of the established flow come first, so the rest runs on a flow they hit.
        for name, (_, places) in CORPUS.items():
            if kernel_nat():
                places = places + KERNEL_NAT_PLACES
            before = counters(env)
            sent = send(f"{name} {steady.port}" if name in (BLIND_RESET, *FORGED_ERRORS) else name)
            deadline = time.monotonic() + 3
            while True:
                after = counters(env)
                deltas = {place: total(after, place) - total(before, place) for place in places}
                counted = [place for place, delta in deltas.items() if delta >= sent]
                if counted or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            if counted:
                accounted.append("kernel" if counted[0].startswith("snmp:") else "daemon")
            else:
                problems.append(f"{name}: {sent} sent, counted nowhere of {deltas}")
            if name in (BLIND_RESET, *FORGED_ERRORS):   # checked at once: the upload ends (and closes) later on
                states = [flow["state"].lower() for flow in daemon_flows(env)
                          if flow["proto"] == "tcp" and flow["client"]["port"] == steady.port]
                expect_equal(f"state of the flow hit by {name}", ["established"], states)
    finally:
        sender.stdin.close()
        sender.wait(10)
    expect(env.redirect.program.running(), "nfq-redirectd still running", "it exited")
    expect_equal("hostile categories not accounted for", [], problems)
    answer = steady.check(timeout=60)
    # The daemon still redirects: a new connection is proxied.
    reply = env.client("tcp-id", format_endpoint(REMOTE_V4, 80))["reply"]
    expect(reply.startswith("SERVER "), "a new redirected connection", reply)
    return (f"{len(accounted)} categories x {COPIES} packets: {accounted.count('daemon')} counted by the daemon, "
            f"{accounted.count('kernel')} by R's kernel; steady flow {answer['sent'] >> 20} MiB intact")


# --- SYN flood ------------------------------------------------------------------------------------

def syn_flood(env):
    sender = os.path.join(env.run_dir, "synflood")
    compiler = shutil.which("cc") or shutil.which("clang")   # clang ships with the Swift toolchain
    run_command([compiler, "-O2", "-o", sender, os.path.join(HERE, "synflood.c")], timeout=60)
    restart_daemon(env, "--table-limit", str(FLOOD_TABLE_LIMIT))
    steady = SteadyFlow(env, seconds=15)
    time.sleep(1)
    before, queues_before = daemon_stats(env), kernel_queues(env.topology.router)
    rss_before, link_drops_before = daemon_rss_kib(env), link_drops(env)
    conntrack_drops_before = conntrack_stat(env.topology.router, "drop", "insert_failed")
    jumps_before = syns_and_queueing_jumps(env.topology.router) if kernel_nat() else (0, 0)
    flood = env.programs.start("synflood", env.topology.client,
                               [sender, REMOTE_V4, "80", str(FLOOD_SYNS)])
    peak_flows = 0
    while flood.running():
        peak_flows = max(peak_flows, daemon_stats(env).get("nfqr_flows", 0))
        time.sleep(0.2)
    result = json.loads(flood.log())
    # Right after the flood: a new legitimate connection is redirected and answered.
    started = time.monotonic()
    reply = env.client("tcp-id", format_endpoint(REMOTE_V4, 443), timeout=20)["reply"]
    first_connection = time.monotonic() - started
    expect(reply.startswith("SERVER "), "a new redirected connection after the flood", reply)
    time.sleep(1)   # the daemon drains what the kernel still holds
    after, queues_after = daemon_stats(env), kernel_queues(env.topology.router)
    rss_after = daemon_rss_kib(env)
    peak_flows = max(peak_flows, after["nfqr_flows"])
    answer = steady.check(timeout=120)

    def delta(key):
        return total(after, key) - total(before, key)
    evicted = delta("nfqr_flows_destroyed_total{reason=evicted}")
    created = delta("nfqr_flows_created_total")
    refused = delta("nfqr_flows_refused_total{reason=table_full}")
    seen = delta("nfqr_packets_total")
    kernel_dropped = sum(queues_after[k] - queues_before[k] for k in queues_after)
    lost_on_link = link_drops(env) - link_drops_before
    expect(peak_flows <= FLOOD_TABLE_LIMIT, f"flows <= {FLOOD_TABLE_LIMIT}", peak_flows)
    expect(env.redirect.program.running(), "nfq-redirectd still running", "it exited")
    # Early drop: every flow created beyond the limit evicted an unassured one; none was refused.
    # Kernel-nat mode: the kernel's conntrack is full too, and its own early drop ends flows
    # (their destroy events, or a resync that no longer finds them, take them out of the table).
    ended_by_kernel = (delta("nfqr_conntrack_flows_total{result=removed}")
                       + delta("nfqr_conntrack_flows_total{result=removed_unheard}")) if kernel_nat() else 0
    expect(evicted + ended_by_kernel >= created - FLOOD_TABLE_LIMIT,
           f"evictions{' + flows the kernel ended' if kernel_nat() else ''} >= flows created - limit ({created} created)",
           f"{evicted} + {ended_by_kernel}" if kernel_nat() else evicted)
    expect_equal("new flows refused for a full table", 0, refused)
    expect(rss_after - rss_before < 256 * 1024, "RSS growth < 256 MiB", f"{rss_before} -> {rss_after} KiB")
    # Kernel-nat mode: the SYN meets conntrack first, which drops it when its own table is full.
    # A SYN repeating a flow the daemon already handed over goes straight through the kernel's NAT:
    # it met the raw chain's SYN jump, was not dropped by conntrack, and never took the queueing
    # chain's jump (its entry carries the daemon's mark).
    conntrack_drops = conntrack_stat(env.topology.router, "drop", "insert_failed") - conntrack_drops_before if kernel_nat() else 0
    carried = 0
    if kernel_nat():
        jumps_after = syns_and_queueing_jumps(env.topology.router)
        syns, queueing = (after - before for after, before in zip(jumps_after, jumps_before))
        carried = max(0, syns - queueing - conntrack_drops)
    expect(seen + kernel_dropped + lost_on_link + conntrack_drops + carried >= result["sent"],
           f"every SYN seen by the daemon or counted by the kernel ({result['sent']} sent)",
           f"{seen} seen + {kernel_dropped} queue drops + {lost_on_link} veth drops"
           + (f" + {conntrack_drops} conntrack drops + {carried} carried by the kernel's NAT" if kernel_nat() else ""))
    return (f"{result['sent']} SYNs at {result['rate']:.0f}/s; daemon saw {seen} packets, kernel queue drops "
            f"{kernel_dropped}, veth drops {lost_on_link}; flows created {created}, peak {peak_flows}, evicted {evicted}"
            f"{f', ended by the kernel {ended_by_kernel}; conntrack drops {conntrack_drops}, carried by its NAT {carried}' if kernel_nat() else ''}; RSS {rss_before >> 10} -> {rss_after >> 10} MiB; "
            f"first new connection {first_connection:.2f} s; steady {answer['seconds']} s")


# --- queue overflow and ENOBUFS -------------------------------------------------------------------

def udp_burst(env, count):
    """`count` datagrams to the redirected UDP port, sent while the daemon is stopped (SIGSTOP),
    so the kernel's queue or our socket's receive buffer overflows deterministically."""
    script = ("import socket,sys\n"
              "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
              f"[s.sendto(b'burst',('{REMOTE_V4}',53)) for _ in range({count})]\n")
    daemon = env.redirect.program.popen
    daemon.send_signal(signal.SIGSTOP)
    try:
        run_command([PYTHON, "-c", script], ns=env.topology.client, timeout=30)
        time.sleep(0.3)
    finally:
        daemon.send_signal(signal.SIGCONT)
    time.sleep(1.0)


def unredirected_counter(env, action):
    """An iptables counter in S for datagrams that arrive straight from the client (not relayed)."""
    rule = ["INPUT", "-s", CLIENT_V4, "-p", "udp", "--dport", "53"]
    if action == "add":
        run_command(["iptables", "-I", *rule], ns=env.topology.server)
        return 0
    out = run_command(["iptables", "-nvxL", "INPUT"], ns=env.topology.server)
    packets = next(int(line.split()[0]) for line in out.splitlines() if CLIENT_V4 in line)
    run_command(["iptables", "-D", *rule], ns=env.topology.server)
    return packets


def overflow_case(env, fail_open, max_length, receive_buffer):
    config = write_config(env, "overflow.toml", f"[queue]\nmax_length = {max_length}\n"
                          f"receive_buffer = {receive_buffer}\nfail_open = {'true' if fail_open else 'false'}\n")
    restart_daemon(env, "--config", config)
    before, queues_before = daemon_stats(env), kernel_queues(env.topology.router)
    unredirected_counter(env, "add")
    udp_burst(env, BURST)
    passed = unredirected_counter(env, "read")
    after, queues_after = daemon_stats(env), kernel_queues(env.topology.router)
    seen = total(after, "nfqr_packets_total") - total(before, "nfqr_packets_total")
    relayed_replies = total(after, "nfqr_rewrites_total{direction=reply}") - total(before, "nfqr_rewrites_total{direction=reply}")
    # The burst's sender closes its socket while relayed answers still arrive: its port
    # unreachables about them are queued too (related traffic), and are no datagram of the burst.
    icmp_errors = total(after, "nfqr_icmp_errors_total") - total(before, "nfqr_icmp_errors_total")
    return {"seen": seen - relayed_replies - icmp_errors, "passed": passed,
            "queue_dropped": queues_after["queue_dropped"] - queues_before["queue_dropped"],
            "user_dropped": queues_after["user_dropped"] - queues_before["user_dropped"],
            "enobufs": total(after, "nfqr_queue_enobufs_total") - total(before, "nfqr_queue_enobufs_total"),
            "exposed_queue_dropped": total(after, "nfqr_kernel_queue_dropped_total"),
            "exposed_user_dropped": total(after, "nfqr_kernel_user_dropped_total"),
            "kernel_queue_dropped": queues_after["queue_dropped"], "kernel_user_dropped": queues_after["user_dropped"]}


def queue_overflow(env):
    notes = []
    # Fail-closed, queue full: what did not fit is dropped and counted by the kernel, exposed by us.
    full = overflow_case(env, fail_open=False, max_length=64, receive_buffer=8 << 20)
    expect_equal("fail-closed full queue: passed unredirected", 0, full["passed"])
    expect(full["queue_dropped"] > 0, "queue_dropped > 0", full)
    expect_equal("fail-closed full queue: seen + queue_dropped + user_dropped",
                 BURST, full["seen"] + full["queue_dropped"] + full["user_dropped"])
    expect_equal("queue_dropped exposed by nfq-redirect stats", full["kernel_queue_dropped"], full["exposed_queue_dropped"])
    notes.append(f"fail-closed maxlen 64: seen {full['seen']}, queue_dropped {full['queue_dropped']}")
    # Fail-closed, receive buffer full: lost messages counted (kernel user_dropped, our ENOBUFS).
    buffer = overflow_case(env, fail_open=False, max_length=1_000_000, receive_buffer=65536)
    expect_equal("fail-closed full buffer: passed unredirected", 0, buffer["passed"])
    expect(buffer["user_dropped"] > 0 and buffer["enobufs"] > 0, "user_dropped > 0 and ENOBUFS counted", buffer)
    expect_equal("fail-closed full buffer: seen + user_dropped + queue_dropped",
                 BURST, buffer["seen"] + buffer["user_dropped"] + buffer["queue_dropped"])
    expect_equal("user_dropped exposed by nfq-redirect stats", buffer["kernel_user_dropped"], buffer["exposed_user_dropped"])
    notes.append(f"fail-closed rcvbuf 64 KiB: seen {buffer['seen']}, user_dropped {buffer['user_dropped']}, "
                 f"ENOBUFS {buffer['enobufs']}")
    # Fail-open: what did not fit passes unredirected (the server sees it straight from the client).
    open_ = overflow_case(env, fail_open=True, max_length=64, receive_buffer=8 << 20)
    expect_equal("fail-open: seen + passed unredirected", BURST, open_["seen"] + open_["passed"])
    expect(open_["passed"] > 0, "some datagrams passed unredirected", open_)
    notes.append(f"fail-open maxlen 64: seen {open_['seen']}, passed unredirected {open_['passed']}")
    restart_daemon(env)
    return "; ".join(notes)


ROBUST_CASES = [
    ("hostile packets: every category counted, the daemon survives, an established flow carries on",
     hostile_packets, 180, ("daemon",)),
    ("queue overflow and ENOBUFS: fail-closed drops are counted, fail-open passes unredirected",
     queue_overflow, 120, ("daemon",)),
    (f"SYN flood: {FLOOD_SYNS} spoofed SYNs, table at its limit, early drop, flow and new connections fine",
     syn_flood, 300, ("daemon",)),
]


# --- soak -----------------------------------------------------------------------------------------

SOAK_SECONDS = int(os.environ.get("NFQR_SOAK_SECONDS", "1800"))
SOAK_SAMPLE_SECONDS = 10


def soak(env):
    """Traffic and churn for SOAK_SECONDS: rounds of 50 simultaneous short connections over both
    families, a UDP exchange and a 8 MiB upload, sampling the daemon's RSS and flow count."""
    targets = f"{format_endpoint(REMOTE_V4, 80)},{format_endpoint(REMOTE_V6, 443)}"
    samples, failures, rounds, connections = [], [], 0, 0
    started = time.monotonic()
    next_sample = started
    while time.monotonic() - started < SOAK_SECONDS:
        many = env.client("tcp-many", targets, 50, 65536, timeout=120)
        connections += many["connections"]
        if many["succeeded"] != many["connections"]:
            failures.append(many)
        env.client("udp-echo", format_endpoint(REMOTE_V4, 53), f"soak-{rounds}")
        up = env.client("tcp-sink", format_endpoint(REMOTE_V6, 80), 8 << 20, timeout=120)
        if up["answer"] != f"SHA256 {up['sha256']}":
            failures.append(up)
        rounds += 1
        now = time.monotonic()
        if now >= next_sample:
            sample = (round(now - started), daemon_rss_kib(env), daemon_stats(env)["nfqr_flows"])
            samples.append(sample)
            print(f"      soak t={sample[0]} s  rss={sample[1]} KiB  flows={sample[2]}", flush=True)
            next_sample += SOAK_SAMPLE_SECONDS
    expect_equal("failed transfers during the soak", [], failures[:3])
    expect(env.redirect.program.running(), "nfq-redirectd still running", "it exited")
    # Flat memory: after the first fifth (the table and allocator warm up), RSS grows < 4 MiB.
    settled = [rss for t, rss, _ in samples if t >= SOAK_SECONDS / 5] or [samples[-1][1]]
    expect(max(settled) - settled[0] < 4096, "RSS flat after warm-up (growth < 4 MiB)",
           f"{settled[0]} -> {max(settled)} KiB")
    return (f"{round(time.monotonic() - started)} s, {rounds} rounds, {connections} connections + "
            f"{rounds * 8} MiB uploaded; RSS first {samples[0][1]} KiB, after warm-up {settled[0]} KiB, "
            f"max {max(settled)} KiB, last {samples[-1][1]} KiB")


SOAK_CASES = [("soak: traffic and churn with flat memory", soak, SOAK_SECONDS + 300, ("daemon",))]
