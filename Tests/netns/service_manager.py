"""A fake service manager: what systemd does for systemd/nfq-redirect.service.in, without systemd.

PID 1 here is not systemd, and booting one in a namespace is not safe on the host, so the
service suite emulates the parts of the manager the unit relies on:

- Type=notify + NotifyAccess=main: a NOTIFY_SOCKET datagram socket (SO_PASSCRED); messages from
  any process but the main one are ignored (their descriptors closed), as systemd does.
- FileDescriptorStoreMax=: FDSTORE=1 + FDNAME= keeps the SCM_RIGHTS descriptors (one that is
  already stored is not stored twice; above the limit they are closed); FDSTOREREMOVE=1 + FDNAME=
  closes those of that name; a stored descriptor that polls POLLHUP/POLLERR is closed; the store
  is emptied when the service stops for good (a clean exit, or stop()), kept across restarts.
  Each start gets them at descriptors 3, 4, ... with LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID.
- WatchdogSec=: WATCHDOG_USEC/WATCHDOG_PID set; when no WATCHDOG=1 arrives for that long after
  READY=1, the main process gets WatchdogSignal (SIGABRT, systemd's default) and SIGCONT (as
  systemd's kill_and_sigcont does, so a stopped process receives it); still alive after
  TimeoutAbortSec, it gets SIGKILL.
- Restart=on-failure with RestartSec=: a non-zero exit, a signal other than SIGHUP/SIGINT/
  SIGTERM/SIGPIPE, or a watchdog kill starts the service again after RestartSec.

NotifySocket, the receiving end of sd_notify alone (each message with its sender's pid, its
descriptors and its arrival time), is the manager's building block; the sd_notify case of the
service suite reads the daemon's messages with it directly.

Run as a program (`service_manager.py exec FDS -- argv...`) it is the tiny wrapper between fork
and the daemon: it moves the inherited descriptors FDS to 3, 4, ..., sets LISTEN_PID to its own
pid (which exec keeps) and execs argv.
"""

import array
import fcntl
import os
import resource
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

from harness.processes import Program, in_namespace

SO_PASSCRED = 16
SCM_CREDENTIALS = 2
CLEAN_SIGNALS = {signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE}
WRAPPER = os.path.abspath(__file__)


class ManagedProgram(Program):
    """One start of the service: a Program (log file, stop) whose child inherits `fds`."""

    def __init__(self, name, ns, argv, log_path, fds, environment):
        self.name = name
        self.log_path = log_path
        wrapper = [sys.executable, WRAPPER, "exec", ",".join(str(fd) for fd in fds), "--", *argv]
        with open(log_path, "wb") as log:
            self.popen = subprocess.Popen(in_namespace(ns, wrapper), stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True, pass_fds=fds,
                                          env={**os.environ, **environment})
        self.pid = self.popen.pid


class NotifySocket:
    """systemd's side of sd_notify: a datagram socket (SO_PASSCRED) at `path`; `messages` holds
    every message received, as (monotonic arrival time, sender pid, text)."""

    def __init__(self, path):
        self.path = path
        if os.path.exists(path):
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_PASSCRED, 1)
        self.messages = []

    def readable(self, timeout):
        return bool(select.select([self.sock], [], [], timeout)[0])

    def receive(self):
        """One message (blocks until there is one): (pid, text, fields, fds); the caller owns fds."""
        fd_size = array.array("i").itemsize
        data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(64 * fd_size) + socket.CMSG_SPACE(12))
        fds, pid = [], 0
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                passed = array.array("i")
                passed.frombytes(payload[:len(payload) - len(payload) % fd_size])
                fds += list(passed)
            elif level == socket.SOL_SOCKET and kind == SCM_CREDENTIALS:
                pid = struct.unpack("iII", payload[:12])[0]
        text = data.decode(errors="replace")
        self.messages.append((time.monotonic(), pid, text))
        return pid, text, dict(line.split("=", 1) for line in text.split("\n") if "=" in line), fds

    def collect(self, seconds):
        """Receives for `seconds`, closing any descriptors passed (only the text is kept)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0 and self.readable(left):
            for fd in self.receive()[3]:
                os.close(fd)
        return self.messages

    def since(self, moment):
        return [text for at, _, text in self.messages if at >= moment]

    def close(self):
        self.sock.close()
        if os.path.exists(self.path):
            os.unlink(self.path)


def failed(status):
    """Restart=on-failure: a non-zero exit or an unclean signal."""
    return status != 0 and -status not in CLEAN_SIGNALS


class FakeServiceManager:
    def __init__(self, env, argv, name, watchdog_sec=None, timeout_abort_sec=2.0, restart_sec=0.2,
                 fd_store_max=16, started_hook=None):
        self.env = env
        self.argv = argv
        self.name = name
        self.watchdog_sec = watchdog_sec
        self.timeout_abort_sec = timeout_abort_sec
        self.restart_sec = restart_sec
        self.fd_store_max = fd_store_max
        self.started_hook = started_hook
        self.notify_path = os.path.join(env.run_dir, f"{name}.notify")
        self.notify = NotifySocket(self.notify_path)
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.store = []        # [name, fd]
        self.events = []       # (monotonic time, pid, text)
        self.starts = []       # ManagedProgram per start
        self.ready = {}        # pid -> monotonic time of READY=1
        self.exits = {}        # pid -> exit status (negative: signal)
        self.last_ping = None
        self.abort_deadline = None
        self.stopping = False
        self.state = "inactive"
        self.thread = None
        self.restart_at = None

    # --- the test's side ---------------------------------------------------------------------

    def start(self, timeout=30.0):
        with self.lock:
            self.state = "activating"
            self.spawn_locked()
        self.thread = threading.Thread(target=self.loop, daemon=True, name=f"manager-{self.name}")
        self.thread.start()
        return self.wait_ready(self.main.pid, timeout)

    @property
    def main(self):
        return self.starts[-1] if self.starts else None

    def wait_for(self, predicate, timeout, what):
        deadline = time.monotonic() + timeout
        with self.lock:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    log = self.main.log_tail() if self.main else ""
                    raise TimeoutError(f"{self.name}: no {what} within {timeout} s; events {self.events[-12:]}; "
                                       f"last start's log:\n{log}")
                self.changed.wait(min(left, 0.1))

    def wait_ready(self, pid, timeout=30.0):
        self.wait_for(lambda: pid in self.ready, timeout, f"READY=1 from {pid}")
        return self.main

    def wait_next_start(self, after_pid, timeout=30.0):
        """Waits for the start after `after_pid` to be READY; returns that program."""
        self.wait_for(lambda: self.main.pid != after_pid and self.main.pid in self.ready, timeout,
                      f"a restart after {after_pid}")
        return self.main

    def stored_names(self):
        with self.lock:
            return sorted(name for name, _ in self.store)

    def replace(self, name, fd):
        """Puts (a duplicate of) `fd` in the store under `name`, closing what was stored there:
        a descriptor a broken or hostile manager might pass."""
        with self.lock:
            for entry in [entry for entry in self.store if entry[0] == name]:
                os.close(entry[1])
                self.store.remove(entry)
            self.store.insert(0, [name, os.dup(fd)])
            self.log(f"test replaced stored {name}")

    def log(self, what, pid=0):
        self.events.append((time.monotonic(), pid, what))
        self.changed.notify_all()

    def stop(self, timeout=15.0):
        """`systemctl stop`: SIGTERM, SIGKILL after `timeout`, then the store is emptied."""
        with self.lock:
            self.stopping = True
            self.state = "deactivating"
            main = self.main
        if main and main.running():
            main.popen.send_signal(signal.SIGTERM)
            try:
                main.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                main.popen.kill()
        if self.thread:
            self.thread.join(10)
        with self.lock:
            self.release_store_locked("stopped")
            self.state = "inactive"
        return main.popen.wait(5) if main else None

    def close(self):
        """Teardown, failure included: no process, descriptor or socket file left."""
        if self.thread and self.thread.is_alive():
            self.stop()
        for program in self.starts:
            if program.running():
                program.popen.kill()
                program.popen.wait(5)
        with self.lock:
            self.release_store_locked("closed")
        self.notify.close()

    # --- the manager ---------------------------------------------------------------------------

    def spawn_locked(self):
        fds = [fd for _, fd in self.store]
        environment = {"NOTIFY_SOCKET": self.notify_path, "LISTEN_FDS_NAMES_": ":".join(n for n, _ in self.store)}
        if self.watchdog_sec:
            environment["WATCHDOG_USEC"] = str(int(self.watchdog_sec * 1e6))
        name = f"{self.name}-{len(self.starts) + 1}"
        program = ManagedProgram(name, self.env.topology.router, self.argv,
                                 os.path.join(self.env.programs.log_dir, f"{name}.log"), fds, environment)
        self.env.programs.started.append(program)   # the suite's teardown stops it too
        self.starts.append(program)
        self.last_ping = None
        self.abort_deadline = None
        self.restart_at = None
        self.log(f"started with {len(fds)} stored descriptors ({', '.join(n for n, _ in self.store)})", program.pid)
        if self.started_hook:
            self.started_hook(program)

    def release_store_locked(self, why):
        for name, fd in self.store:
            os.close(fd)
        if self.store:
            self.log(f"store emptied ({why}): {len(self.store)} descriptors closed")
        self.store = []

    def loop(self):
        while True:
            with self.lock:
                if self.stopping and (self.main is None or not self.main.running()):
                    if self.main and self.main.pid not in self.exits:
                        self.exits[self.main.pid] = self.main.popen.wait()
                        self.log(f"exited with status {self.exits[self.main.pid]}", self.main.pid)
                    return
            readable = self.notify.readable(0.02)
            with self.lock:
                if readable:
                    self.receive_locked()
                self.check_store_locked()
                self.check_main_locked()
                self.check_watchdog_locked()

    def receive_locked(self):
        pid, text, fields, fds = self.notify.receive()
        main = self.main
        if main is None or pid != main.pid:       # NotifyAccess=main
            for fd in fds:
                os.close(fd)
            self.log(f"ignored a message from pid {pid}: {text!r}", pid)
            return
        if fields.get("READY") == "1" and pid not in self.ready:
            self.ready[pid] = time.monotonic()
            self.last_ping = time.monotonic()
            self.state = "active"
            self.log("READY=1", pid)
        if fields.get("WATCHDOG") == "1":
            self.last_ping = time.monotonic()
        if fields.get("FDSTOREREMOVE") == "1":
            name = fields.get("FDNAME", "stored")
            for stored in [entry for entry in self.store if entry[0] == name]:
                os.close(stored[1])
                self.store.remove(stored)
            self.log(f"FDSTOREREMOVE {name}", pid)
            for fd in fds:
                os.close(fd)
            return
        if fields.get("FDSTORE") == "1":
            name = fields.get("FDNAME", "stored")
            for fd in fds:
                identity = os.fstat(fd)
                duplicate = any((os.fstat(held).st_dev, os.fstat(held).st_ino) == (identity.st_dev, identity.st_ino)
                                for _, held in self.store)
                if duplicate or len(self.store) >= self.fd_store_max:
                    os.close(fd)
                    if not duplicate:
                        self.log(f"FDSTORE {name} refused: store full ({self.fd_store_max})", pid)
                    continue
                self.store.append([name, fd])
                self.log(f"FDSTORE {name}", pid)
            return
        for fd in fds:       # descriptors with any other message are not kept
            os.close(fd)
        if fields and "WATCHDOG" not in fields and "READY" not in fields:
            self.log(text.replace("\n", " "), pid)

    def check_store_locked(self):
        if not self.store:
            return
        poller = select.poll()
        for _, fd in self.store:
            poller.register(fd, select.POLLERR | select.POLLHUP)
        broken = {fd for fd, events in poller.poll(0) if events & (select.POLLERR | select.POLLHUP | select.POLLNVAL)}
        for entry in [entry for entry in self.store if entry[1] in broken]:
            os.close(entry[1])
            self.store.remove(entry)
            self.log(f"stored {entry[0]} closed: POLLERR/POLLHUP")

    def check_main_locked(self):
        main = self.main
        if main is None or main.pid in self.exits:
            if self.restart_at is not None and time.monotonic() >= self.restart_at and not self.stopping:
                self.spawn_locked()
            return
        status = main.popen.poll()
        if status is None:
            return
        self.exits[main.pid] = status
        self.log(f"exited with status {status}", main.pid)
        if self.stopping:
            return
        if failed(status):
            self.state = "activating (auto-restart)"
            self.restart_at = time.monotonic() + self.restart_sec
        else:
            self.state = "inactive"
            self.release_store_locked("exited cleanly, not restarted")

    def check_watchdog_locked(self):
        main = self.main
        if not self.watchdog_sec or main is None or main.pid in self.exits or main.pid not in self.ready:
            return
        now = time.monotonic()
        if self.abort_deadline is None and self.last_ping is not None and now - self.last_ping > self.watchdog_sec:
            self.log(f"watchdog timeout ({now - self.last_ping:.1f} s without WATCHDOG=1): SIGABRT + SIGCONT", main.pid)
            os.kill(main.pid, signal.SIGABRT)
            os.kill(main.pid, signal.SIGCONT)
            self.abort_deadline = now + self.timeout_abort_sec
        elif self.abort_deadline is not None and now > self.abort_deadline:
            self.log("still alive after TimeoutAbortSec: SIGKILL", main.pid)
            os.kill(main.pid, signal.SIGKILL)
            self.abort_deadline = float("inf")


def exec_with_descriptors(argv):
    """The wrapper: `exec FDS -- program...` (see the module's docstring)."""
    sources = [int(fd) for fd in argv[0].split(",") if fd]
    assert argv[1] == "--"
    names = os.environ.pop("LISTEN_FDS_NAMES_", "")
    moved = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 1000) for fd in sources]
    for fd in sources:
        os.close(fd)
    for index, fd in enumerate(moved):
        os.dup2(fd, 3 + index, inheritable=True)
        os.close(fd)
    if sources:
        os.environ.update(LISTEN_FDS=str(len(sources)), LISTEN_FDNAMES=names, LISTEN_PID=str(os.getpid()))
    if "WATCHDOG_USEC" in os.environ:
        os.environ["WATCHDOG_PID"] = str(os.getpid())
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))   # a watchdog SIGABRT leaves no core file
    os.execvp(argv[2], argv[2:])


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "exec":
        exec_with_descriptors(sys.argv[2:])
    sys.exit("usage: service_manager.py exec FDS -- program [args...]")
