"""Counters read around a sample: the daemon's CPU time, the packets it handled, its flows,
the UDP datagrams that reached the listener in R, and how busy the machine's CPUs were.

Where the daemon's own statistics are missing, the kernel's view is used instead and the
source is recorded with the figure, so a reader knows which count a ns/packet divides by.
"""

import json
import os
import re

from harness.processes import CommandFailed, run_command

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid):
    """utime + stime of the whole process (every thread, live or ended) from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    # After the command name: state is field 3, utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_cpu_ticks():
    """The machine's CPU time so far, all CPUs together, from /proc/stat's first line:
    (user, nice, system, idle, iowait, irq, softirq, steal) in clock ticks."""
    with open("/proc/stat") as stat:
        return tuple(int(field) for field in stat.readline().split()[1:9])


def cpu_shares(before, after):
    """Percent of all CPUs' time between two machine_cpu_ticks() readings: busy (not idle or
    iowait), user (with nice) and kernel (system, irq, softirq), which is where NFQUEUE's
    copies and the packets' own path are counted."""
    user, nice, system, idle, iowait, irq, softirq, steal = (b - a for a, b in zip(before, after))
    total = user + nice + system + idle + iowait + irq + softirq + steal
    if total <= 0:
        return None
    return {"busy": round(100 * (total - idle - iowait) / total, 1),
            "user": round(100 * (user + nice) / total, 1),
            "kernel": round(100 * (system + irq + softirq) / total, 1)}


def daemon_statistics(control, socket_path):
    """`nfq-redirect stats --json` as a dict, or None when it is not available."""
    try:
        text = run_command([control, "stats", "--socket", socket_path, "--json"], timeout=10)
        document = json.loads(text)
    except (CommandFailed, OSError, ValueError):
        return None
    if not isinstance(document, dict):
        return None
    # {"metrics": [{"name", "labels", "value"}, ...]}: series without labels as plain keys.
    for metric in document.get("metrics", []):
        if isinstance(metric, dict) and not metric.get("labels") and "value" in metric:
            document.setdefault(metric["name"], metric["value"])
    return document


def find_number(document, names):
    """The first number under one of `names`, at the top level or one object deep.

    `flows` may also be an object holding `count` (e.g. {"flows": {"count": 12}})."""
    if not isinstance(document, dict):
        return None
    places = [document] + [value for value in document.values() if isinstance(value, dict)]
    for name in names:
        for place in places:
            value = place.get(name)
            if isinstance(value, dict):
                value = value.get("count")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return value
    return None


PACKET_KEYS = ("nfqr_packets_total", "packets", "packets_total")
FLOW_KEYS = ("nfqr_flows", "flows", "flow_count")   # nfq-redirect stats --json: nfqr_flows


def queue_id_sequences(ns):
    """Sum over the queues in `ns` of the last packet id the kernel gave out (one per packet queued)."""
    text = run_command(["cat", "/proc/net/netfilter/nfnetlink_queue"], ns=ns, check=False)
    total = 0
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 8 and fields[7].isdigit():
            total += int(fields[7])
    return total if text.strip() else None


def nfqueue_rule_packets(ns):
    """Packets counted by every NFQUEUE rule in `ns` (iptables and ip6tables)."""
    total, found = 0, False
    for save in ("iptables-save", "ip6tables-save"):
        for line in run_command([save, "-c"], ns=ns, check=False).splitlines():
            match = re.match(r"\[(\d+):\d+\] -A .* -j NFQUEUE", line)
            if match:
                total += int(match.group(1))
                found = True
    return total if found else None


class PacketCount:
    """The number of packets the daemon handled, from the best source available."""

    def __init__(self, ns, control, socket_path):
        self.ns = ns
        self.control = control
        self.socket_path = socket_path

    def read(self):
        """(source, value); the same source must be used for both ends of a sample."""
        readings = {"nfq-redirect stats": find_number(daemon_statistics(self.control, self.socket_path), PACKET_KEYS),
                    "nfnetlink_queue id_sequence": queue_id_sequences(self.ns),
                    "NFQUEUE rule counters": nfqueue_rule_packets(self.ns)}
        return {source: value for source, value in readings.items() if value is not None}

    @staticmethod
    def difference(before, after):
        for source in before:
            if source in after:
                return source, after[source] - before[source]
        return None, None


def flows_tracked(control, socket_path):
    return find_number(daemon_statistics(control, socket_path), FLOW_KEYS)


def udp_delivered(ns):
    """Datagrams that reached a UDP socket in `ns` (read by it, or dropped for a full buffer)."""
    total = 0
    snmp = run_command(["cat", "/proc/net/snmp"], ns=ns).splitlines()
    udp = [line.split()[1:] for line in snmp if line.startswith("Udp:")]
    if len(udp) == 2:
        counters = dict(zip(udp[0], udp[1]))
        total += int(counters.get("InDatagrams", 0)) + int(counters.get("RcvbufErrors", 0))
    for line in run_command(["cat", "/proc/net/snmp6"], ns=ns).splitlines():
        name, _, value = line.partition(" ")
        if name in ("Udp6InDatagrams", "Udp6RcvbufErrors"):
            total += int(value.strip())
    return total
