"""What a run leaves behind: the marker every started process carries, and the final check."""

import os

from harness.checks import expect, expect_equal
from harness.processes import run_command
from harness.redirectors import ruleset
from harness.topology import existing_namespaces

RUN_MARKER = "NFQR_NETNS_RUN"  # in the environment of every process a suite starts

NOTHING_LEFT_BEHIND = "nothing left behind: namespaces, veths, processes, run dir, host rules"


def processes_marked(tag):
    """Pids (other than ours) whose environment carries this run's marker."""
    needle = f"{RUN_MARKER}={tag}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as environ:
                if needle in environ.read().split(b"\0"):
                    found.append(int(entry))
        except OSError:
            pass
    return found


def host_links():
    return run_command(["ip", "-o", "link", "show"])


def nothing_left_behind(stage, host_rules_before):
    """`stage` has .topology, .programs, .tag and .run_dir (a suite's stage after tear-down)."""
    namespaces = [ns for ns in stage.topology.namespaces if ns in existing_namespaces()]
    expect_equal("namespaces of this run still present", [], namespaces)
    listing = host_links()
    links = [link for link in stage.topology.links if f" {link}@" in listing or f" {link}:" in listing]
    expect_equal("veth links of this run in the host namespace", [], links)
    alive = [pid for pid in stage.programs.pids() if os.path.exists(f"/proc/{pid}")]
    expect_equal("started programs still running", [], alive)
    expect_equal("processes carrying this run's marker", [], processes_marked(stage.tag))
    expect(not os.path.exists(stage.run_dir), f"{stage.run_dir} removed", "it still exists")
    expect_equal("host iptables/ip6tables rules changed", [],
                 sorted(set(ruleset()) ^ set(host_rules_before)))
