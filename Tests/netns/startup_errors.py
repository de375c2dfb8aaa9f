#!/usr/bin/python3
"""A daemon that cannot start says why in one line, exits non-zero, and touches nothing.

Each case runs nfq-redirectd inside a throwaway network namespace (so its rules, if it ever
installed any, could only land there) and asserts: a non-zero exit within a few seconds,
exactly one line on stderr naming the problem, the namespace's iptables and ip6tables
rules unchanged, and no lookup socket left behind.

Usage (root): startup_errors.py. Environment: NFQR_BIN_DIR (default <repo>/.build/debug).
A PASS or FAIL line per case; make runs it under the harness's reporter (Tests/harness/report.py),
whose summary line ends the output. The exit status is non-zero on any failure.
"""

import os
import shutil
import subprocess
import sys
import tempfile

from harness.processes import in_private_mounts, run_command
from harness.redirectors import ruleset
from harness.topology import Topology

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BIN_DIR = os.environ.get("NFQR_BIN_DIR", os.path.join(REPO, ".build", "debug"))
DAEMON = os.path.join(BIN_DIR, "nfq-redirectd")
SHIPPED_CONFIG = os.path.join(REPO, "config", "nfq-redirect.toml")
TOPOLOGY = Topology(f"nfqse-{os.getpid()}", shape="single")
NAMESPACE = TOPOLOGY.router
HIDE_SBIN = in_private_mounts('mount -t tmpfs tmpfs /usr/sbin && exec "$@"', "hide-sbin")


def hide_library(name):
    """An argv prefix that runs the daemon with the shared library `name` replaced by an empty
    file, in a private mount namespace (the host's file is untouched)."""
    found = subprocess.run(["ldd", DAEMON], capture_output=True, text=True).stdout
    path = next((line.split("=>")[1].split()[0] for line in found.splitlines()
                 if line.strip().startswith(name) and "=>" in line), f"/lib/x86_64-linux-gnu/{name}")
    return in_private_mounts(f'mount --bind /dev/null {path} && exec "$@"', "hide-library")


def cases(run_dir):
    socket = os.path.join(run_dir, "lookup.sock")
    common = ["--socket", socket, "--no-state"]
    bad_config = os.path.join(run_dir, "bad.toml")
    with open(bad_config, "w") as config:
        config.write('[queue]\nfirst = 0\n\n[[redirect]]\nproto = "tcp"\nports = "80"\nto_prot = 8080\n')
    return [
        # (name, argv prefix, daemon arguments, environment changes, words the line must hold)
        ("an unknown flag", [], ["--redirect", "tcp:80:8080", "--frobnicate"], {}, ["frobnicate"]),
        ("an unknown protocol", [], ["--redirect", "sctp:80:8080"], {}, ["sctp"]),
        ("a port out of range", [], ["--redirect", "tcp:80:70000"], {}, ["70000", "1-65535"]),
        ("a reversed port range", [], ["--redirect", "tcp:90-80:8080"], {}, ["90-80"]),
        ("a malformed mark", [], ["--redirect", "tcp:80:8080", "--exclude-mark", "0xZZ"], {}, ["0xZZ"]),
        ("no redirect at all", [], [], {}, ["redirect"]),
        # The config as shipped: its examples are commented out, so nothing is redirected.
        ("the shipped config (nothing to redirect)", [], ["--config", SHIPPED_CONFIG], {}, ["nothing to redirect"]),
        ("a config key misspelt, with its line", [], ["--config", bad_config], {},
         [f"{bad_config}:7", "to_prot"]),
        ("a missing config file", [], ["--config", os.path.join(run_dir, "absent.toml")], {}, ["absent.toml"]),
        ("no CAP_NET_ADMIN", ["setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin"],
         ["--redirect", "tcp:80:8080"], {}, ["CAP_NET_ADMIN"]),
        # A private mount namespace where /usr/sbin (iptables' home) is empty.
        ("iptables-restore not installed", HIDE_SBIN, ["--redirect", "tcp:80:8080"], {}, ["iptables"]),
        # A private mount namespace where libnetfilter_queue is an empty file: the loader's line.
        ("libnetfilter_queue missing", hide_library("libnetfilter_queue.so.1"), ["--redirect", "tcp:80:8080"], {},
         ["libnetfilter_queue.so.1"]),
    ], common, socket


def run_case(argv_prefix, arguments, environment, common):
    env = dict(os.environ)
    env.update(environment)
    argv = ["ip", "netns", "exec", NAMESPACE, *argv_prefix, DAEMON, *common, *arguments]
    return subprocess.run(argv, capture_output=True, text=True, timeout=20, env=env,
                          stdin=subprocess.DEVNULL)


def check(done, words, socket, rules_before):
    problems = []
    if done.returncode == 0:
        problems.append("exit status 0")
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    if len(lines) != 1:
        problems.append(f"{len(lines)} lines on stderr, wanted 1: {done.stderr!r}")
    text = " ".join(lines)
    missing = [word for word in words if word not in text]
    if missing:
        problems.append(f"stderr {text!r} does not name {missing}")
    if done.stdout.strip():
        problems.append(f"unexpected stdout {done.stdout!r}")
    changed = sorted(set(ruleset(NAMESPACE)) ^ set(rules_before))
    if changed:
        problems.append(f"rules changed: {changed}")
    if os.path.exists(socket):
        problems.append("lookup socket left behind")
    return problems


def main():
    if not os.access(DAEMON, os.X_OK):
        print(f"no executable {DAEMON} (build first, or set NFQR_BIN_DIR)")
        return 2
    run_dir = tempfile.mkdtemp(prefix="nfqse-")
    passed = failed = 0
    try:
        TOPOLOGY.create()
        rules_before = ruleset(NAMESPACE)
        table, common, socket = cases(run_dir)
        for name, prefix, arguments, environment, words in table:
            said = ""
            try:
                done = run_case(prefix, arguments, environment, common)
                said = done.stderr.strip()
                problems = check(done, words, socket, rules_before)
            except subprocess.TimeoutExpired:
                problems = ["did not exit within 20 s"]
            if problems:
                failed += 1
                print(f"FAIL  start with {name}: " + "; ".join(problems))
            else:
                passed += 1
                print(f"PASS  start with {name}: one line, non-zero exit, nothing touched  [{said}]")
    finally:
        TOPOLOGY.destroy()
        shutil.rmtree(run_dir, ignore_errors=True)
    leftover = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    if NAMESPACE in leftover:
        failed += 1
        print(f"FAIL  namespace {NAMESPACE} left behind")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
