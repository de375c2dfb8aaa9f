"""Commands and background programs, run in a network namespace, always with a time limit."""

import os
import signal
import subprocess
import time


class CommandFailed(Exception):
    pass


def in_namespace(ns, argv):
    return ["ip", "netns", "exec", ns, *argv] if ns else list(argv)


def in_private_mounts(script, name):
    """An argv prefix: a private mount namespace in which the shell `script` changes what it
    needs (the host's mounts are untouched), then runs the command that follows with
    `exec "$@"`; `name` is the script's $0, shown in errors."""
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, name]


def run_command(argv, ns=None, input=None, timeout=15, check=True, cwd=None):
    """Runs to completion (killed after `timeout` s); returns stdout. Raises CommandFailed."""
    full = in_namespace(ns, argv)
    try:
        done = subprocess.run(full, input=input, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired:
        raise CommandFailed(f"`{' '.join(full)}` did not finish within {timeout} s") from None
    if check and done.returncode != 0:
        raise CommandFailed(f"`{' '.join(full)}` exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


class Program:
    """A background program whose stdout and stderr go to one log file."""

    def __init__(self, name, ns, argv, log_path):
        self.name = name
        self.log_path = log_path
        with open(log_path, "wb") as log:
            # `ip netns exec` execs the program itself, so this pid is the program's.
            # Its own session keeps a terminal's Ctrl-C for the runner, which stops it.
            self.popen = subprocess.Popen(in_namespace(ns, argv), stdin=subprocess.DEVNULL,
                                          stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True)
        self.pid = self.popen.pid

    def log(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as log:
                return log.read()
        except OSError:
            return ""

    def log_tail(self, lines=30):
        return "\n".join(self.log().splitlines()[-lines:])

    def running(self):
        return self.popen.poll() is None

    def wait_for_log(self, predicate, timeout, what):
        """Polls the log until `predicate(text)` holds; fails early if the program exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log()
            if predicate(text):
                return text
            if not self.running():
                raise CommandFailed(f"{self.name} exited with status {self.popen.returncode} "
                                    f"before {what}; its output:\n{self.log_tail()}")
            time.sleep(0.05)
        raise CommandFailed(f"{self.name}: no {what} within {timeout} s; its output:\n{self.log_tail()}")

    def stop(self, sig=signal.SIGTERM, timeout=5.0):
        """Signals, waits up to `timeout`, then kills; returns the exit status."""
        if self.running():
            try:
                self.popen.send_signal(sig)
                return self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
        return self.popen.wait(5)


class Programs:
    """Every program the suite starts, so teardown can stop each one by its pid."""

    def __init__(self, log_dir):
        self.log_dir = log_dir
        self.started = []

    def start(self, name, ns, argv):
        program = Program(name, ns, argv, os.path.join(self.log_dir, f"{name}.log"))
        self.started.append(program)
        return program

    def stop_all(self):
        for program in reversed(self.started):
            try:
                program.stop(timeout=3.0)
            except (OSError, subprocess.TimeoutExpired):
                pass

    def pids(self):
        return [program.pid for program in self.started]
