"""Command line of the harness for bash entry points:

    python3 -m harness.netns run --tag TAG [--shape single|pair|three|full] -- COMMAND [ARG...]
        Creates the namespaces of the shape (harness/topology.py) and a run directory (mode
        0711), runs COMMAND with them in its environment, then stops every process left in the
        namespaces or carrying the run marker, deletes the namespaces and the run directory:
        on success, failure, Ctrl-C, SIGTERM or SIGHUP alike. COMMAND sees
            NFQR_NS_ROUTER, NFQR_NS_CLIENT, NFQR_NS_SERVER   (those of the shape)
            NFQR_RUN_DIR                                     (removed afterwards)
            NFQR_CLIENT_V4, NFQR_ROUTER_V4, NFQR_SERVER_V4, NFQR_REMOTE_V4 (and _V6)
        The exit status is COMMAND's.

    python3 -m harness.netns guard --tag TAG -- COMMAND [ARG...]
        Runs COMMAND (a Python suite that makes and removes its own namespaces, named TAG-*)
        and afterwards removes whatever of them is left: the safety net for a suite killed hard.

    python3 -m harness.netns create --tag TAG [--shape single|pair|three|full]
        Creates the namespaces of the shape, as `run` does, and prints their names, one a line
        (for a caller in another language that runs its own code in them, e.g. the Swift root
        tests); it must call `delete` with the same TAG afterwards, failure included. If the
        set-up fails half-way, what was made is removed and the exit status is 1.

    python3 -m harness.netns delete --tag TAG
        Stops the processes left in the namespaces TAG-* and deletes those namespaces, as `run`
        does at its end (never the caller's own process).

    python3 -m harness.netns mounts [--script 'SHELL COMMANDS'] -- COMMAND [ARG...]
        Runs COMMAND in a private mount namespace, after SHELL COMMANDS (e.g. a tmpfs over a
        directory to hide it) ran there; the host's mounts are untouched.

    python3 -m harness.netns wait-socket PATH [--pid PID] [--log FILE] [--timeout S]
        Waits until the unix socket PATH accepts a connection (a daemon is ready); fails early,
        showing FILE, if process PID exits.
"""

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from harness.cleanup import RUN_MARKER, processes_marked
from harness.processes import CommandFailed, in_private_mounts, run_command
from harness import topology
from harness.report import STOP_SIGNALS


def namespace_pids(ns):
    return [int(pid) for pid in run_command(["ip", "netns", "pids", ns], check=False).split() if pid.isdigit()]


def stop_pids(pids, timeout=5.0):
    """SIGTERM, up to `timeout` s to exit, then SIGKILL; by pid, nothing else."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{pid}") for pid in pids):
        time.sleep(0.05)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def remove_leftovers(tag, run_dir=None, quiet=False):
    """Stops the processes in namespaces TAG-* and those carrying the marker, deletes the
    namespaces (their links, addresses and rules go with them) and the run directory."""
    ours = [ns for ns in topology.existing_namespaces() if ns.startswith(f"{tag}-")]
    spared = {os.getpid(), os.getppid()}  # `delete`'s caller may still hold a thread in one
    stop_pids(sorted(({pid for ns in ours for pid in namespace_pids(ns)} | set(processes_marked(tag))) - spared))
    for ns in ours:
        run_command(["ip", "netns", "del", ns], check=False)
        if not quiet:
            print(f"harness: removed namespace {ns}", file=sys.stderr)
    if run_dir:
        shutil.rmtree(run_dir, ignore_errors=True)


def run_child(command, env):
    """Runs `command`; a stop signal is passed on to it, and its exit awaited."""
    child = subprocess.Popen(command, env=env)

    def forward(signum, frame):
        try:
            child.send_signal(signum)
        except ProcessLookupError:
            pass
    for stop in STOP_SIGNALS:
        signal.signal(stop, forward)
    status = child.wait()
    return 128 - status if status < 0 else status  # killed by a signal: the shell's convention


def environment(shape_topology, run_dir):
    env = dict(os.environ, NFQR_RUN_DIR=run_dir, **{RUN_MARKER: shape_topology.tag})
    names = {"NFQR_NS_ROUTER": shape_topology.router, "NFQR_NS_CLIENT": shape_topology.client,
             "NFQR_NS_SERVER": shape_topology.server}
    env.update({key: ns for key, ns in names.items() if ns in shape_topology.namespaces})
    for role, prefix in (("CLIENT", "CLIENT"), ("ROUTER", "ROUTER_CLIENT_SIDE"), ("SERVER", "SERVER"),
                         ("REMOTE", "REMOTE")):
        for family in ("V4", "V6"):
            env[f"NFQR_{role}_{family}"] = getattr(topology, f"{prefix}_{family}")
    return env


def create_shape(args):
    """The shape's namespaces, neighbours resolved; None (after saying why) when set-up failed."""
    shape_topology = topology.Topology(args.tag, args.shape)
    try:
        shape_topology.create()
        if args.shape != "single":
            shape_topology.wait_for_neighbours()
    except CommandFailed as error:
        print(f"harness: namespace set-up failed: {error}", file=sys.stderr)
        return None
    return shape_topology


def command_run(args):
    run_dir = tempfile.mkdtemp(prefix=f"{args.tag}.")
    os.chmod(run_dir, 0o711)  # a peer of another uid may reach a socket in it (to be refused)
    for stop in STOP_SIGNALS:  # until the child runs, a stop signal just cleans up
        signal.signal(stop, lambda signum, frame: sys.exit(128 + signum))
    try:
        shape_topology = create_shape(args)
        if shape_topology is None:
            return 1
        return run_child(args.command, environment(shape_topology, run_dir))
    finally:
        for stop in STOP_SIGNALS:
            signal.signal(stop, signal.SIG_IGN)
        remove_leftovers(args.tag, run_dir, quiet=True)


def command_create(args):
    shape_topology = create_shape(args)
    if shape_topology is None:
        remove_leftovers(args.tag, quiet=True)
        return 1
    print("\n".join(shape_topology.namespaces))
    return 0


def command_delete(args):
    remove_leftovers(args.tag, quiet=True)
    return 0


def command_guard(args):
    try:
        return run_child(args.command, dict(os.environ, **{RUN_MARKER: args.tag}))
    finally:
        for stop in STOP_SIGNALS:
            signal.signal(stop, signal.SIG_IGN)
        tmp = os.environ.get("TMPDIR", "/tmp")
        remove_leftovers(args.tag, quiet=False)
        for leftover in os.listdir(tmp):
            if leftover.startswith(f"{args.tag}."):  # the suite's run directory
                shutil.rmtree(os.path.join(tmp, leftover), ignore_errors=True)


def accepts(path):
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(path)
            return True
        except OSError:
            return False


def command_wait_socket(args):
    deadline = time.monotonic() + args.timeout
    while not accepts(args.path):
        gone = args.pid and not os.path.exists(f"/proc/{args.pid}")
        if gone or time.monotonic() > deadline:
            why = "exited" if gone else f"did not open {args.path} within {args.timeout:g} s"
            print(f"harness: the program (pid {args.pid}) {why}" if args.pid else f"harness: {why}",
                  file=sys.stderr)
            if args.log:
                with open(args.log, errors="replace") as log:
                    sys.stderr.write(log.read())
            return 1
        time.sleep(0.05)
    return 0


def command_mounts(args):
    """COMMAND in a private mount namespace, after the shell `--script` changed what it needs
    there (the host's mounts are untouched); the exit status is COMMAND's."""
    script = f'{args.script} && exec "$@"' if args.script else 'exec "$@"'
    argv = [*in_private_mounts(script, "harness-mounts"), *args.command]
    os.execvp(argv[0], argv)


def main(argv):
    parser = argparse.ArgumentParser(prog="python3 -m harness.netns", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="action", required=True)
    run = commands.add_parser("run")
    run.add_argument("--tag", required=True)
    run.add_argument("--shape", choices=topology.SHAPES, default="single")
    run.add_argument("command", nargs="+")
    create = commands.add_parser("create")
    create.add_argument("--tag", required=True)
    create.add_argument("--shape", choices=topology.SHAPES, default="single")
    delete = commands.add_parser("delete")
    delete.add_argument("--tag", required=True)
    guard = commands.add_parser("guard")
    guard.add_argument("--tag", required=True)
    guard.add_argument("command", nargs="+")
    mounts = commands.add_parser("mounts")
    mounts.add_argument("--script", default="", help="shell commands run first, inside the mount namespace")
    mounts.add_argument("command", nargs="+")
    wait = commands.add_parser("wait-socket")
    wait.add_argument("path")
    wait.add_argument("--pid", type=int)
    wait.add_argument("--log")
    wait.add_argument("--timeout", type=float, default=15.0)
    args = parser.parse_args(argv)
    if args.action != "wait-socket" and os.geteuid() != 0:
        print("harness: must be run as root (it creates network namespaces)", file=sys.stderr)
        return 2
    return {"run": command_run, "create": command_create, "delete": command_delete, "guard": command_guard,
            "mounts": command_mounts, "wait-socket": command_wait_socket}[args.action](args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
