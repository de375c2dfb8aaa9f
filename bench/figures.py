"""What the bench reports: each row, its unit, and the issue's goal for it.

A goal is on the ratio nfq-redirect / kernel (higher is better for rates), except for the
flow-table rows, whose ratio is the daemon's per-packet cost at that size over its cost at
the smallest size (the table should not make packets dearer: flat within 20 %).

The kernel-nat side ("knat": the daemon with --datapath kernel-nat, which sees only each flow's
first packet) has goals of its own on kernel-nat / kernel (`knat_goal`), from issue 14.
"""

import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Goal:
    bound: float
    at_least: bool   # ratio >= bound passes; else ratio <= bound passes

    def text(self):
        return f"{'>=' if self.at_least else '<='} {self.bound:g}"

    def met(self, ratio):
        return ratio >= self.bound if self.at_least else ratio <= self.bound


@dataclass(frozen=True)
class Row:
    key: str
    title: str
    unit: str
    scale: float = 1.0          # shown value = value / scale
    decimals: int = 0
    goal: Goal | None = None
    daemon_only: bool = False
    versus: str | None = None   # ratio against another row of the daemon (flow table rows)
    knat_goal: Goal | None = None   # the goal on kernel-nat / kernel
    knat_per: str | None = None     # CPU rows: what kernel-nat's figure is divided by


def flow_rows(sizes):
    base = sizes[0]
    rows = []
    for size in sizes:
        rows.append(Row(f"flows_{size}", f"daemon CPU/packet, {short_count(size)} flows", "ns/pkt",
                        decimals=0, daemon_only=True,
                        versus=None if size == base else f"flows_{base}",
                        goal=None if size == base else Goal(1.2, at_least=False),
                        knat_per=LOAD_PACKET))
    return rows


HANDLED_PACKET = "packet that reached its queue (the design: each flow's first packet)"
LOAD_PACKET = "datagram of the load delivered (the kernel carries a flow's later packets)"


def rows_for(flow_sizes):
    bulk, knat_bulk = Goal(0.5, True), Goal(0.95, True)
    return [
        Row("bulk_v4_1", "bulk TCP IPv4, 1 stream", "Gbit/s", decimals=2, goal=bulk, knat_goal=knat_bulk),
        Row("bulk_v4_4", "bulk TCP IPv4, 4 streams", "Gbit/s", decimals=2, goal=bulk, knat_goal=knat_bulk),
        Row("bulk_v6_1", "bulk TCP IPv6, 1 stream", "Gbit/s", decimals=2, goal=bulk, knat_goal=knat_bulk),
        Row("bulk_v6_4", "bulk TCP IPv6, 4 streams", "Gbit/s", decimals=2, goal=bulk, knat_goal=knat_bulk),
        Row("conn_rate", "new TCP connections", "conn/s", goal=Goal(0.8, True), knat_goal=Goal(0.85, True)),
        Row("conn_cpu", "  daemon CPU per connection", "us", decimals=1, daemon_only=True),
        Row("rr_rate", "req/resp, 1 keep-alive conn", "req/s", goal=Goal(0.7, True), knat_goal=Goal(0.95, True)),
        Row("rr_latency", "  mean latency (lower is better)", "us", decimals=1),
        Row("udp_v4", "UDP delivered, IPv4", "kpkt/s", scale=1e3, decimals=0, goal=Goal(0.5, True),
            knat_goal=Goal(0.9, True)),
        Row("udp_v6", "UDP delivered, IPv6", "kpkt/s", scale=1e3, decimals=0, goal=Goal(0.5, True),
            knat_goal=Goal(0.9, True)),
        Row("daemon_ns", "daemon CPU/packet, 1000 flows", "ns/pkt", daemon_only=True, knat_per=HANDLED_PACKET),
        Row("load_ns", "  per packet of the load", "ns/pkt", daemon_only=True, knat_per=LOAD_PACKET),
        *flow_rows(flow_sizes),
    ]


def short_count(n):
    for unit, size in (("M", 1_000_000), ("k", 1_000)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


def median(samples):
    return statistics.median(samples) if samples else None


ROW_GOAL = object()   # evaluate()'s default: the row's goal for the userspace daemon


def evaluate(row, kernel, daemon, daemon_medians, goal=ROW_GOAL):
    """(ratio, verdict) for a row given its medians; verdict is PASS, FAIL or None (no goal/data).
    `daemon` and `daemon_medians` are one daemon side's (the userspace daemon's, or kernel-nat's
    with `goal` = row.knat_goal, None for no goal); by default the row's goal."""
    goal = row.goal if goal is ROW_GOAL else goal
    if row.versus:
        base = daemon_medians.get(row.versus)
        ratio = daemon / base if daemon is not None and base else None
    elif row.daemon_only:
        ratio = None
    else:
        ratio = daemon / kernel if daemon is not None and kernel else None
    if goal is None or ratio is None:
        return ratio, None
    return ratio, "PASS" if goal.met(ratio) else "FAIL"
