#!/usr/bin/python3
"""The preload library's refusal notice reaches syslog when stderr is /dev/null.

    python3 -m harness.netns mounts -- syslog_notice.py LIB PROXY LOOKUP_SOCKET

Run by run.sh as root in the harness's private mount namespace: /dev/log is pointed at a datagram
socket of this script's (a tmpfs over the missing part of the path /dev/log leads to, or a
bind mount over an existing socket), visible to nothing outside the namespace. The stand-in
proxy (fallback_notice) asks 3 times as `nobody`, with stderr /dev/null, against a lookup
socket that refuses it (mode 0600, root's). Exactly one datagram must arrive: priority
daemon.warning, tag nfq-redirect-preload[pid], the EACCES notice. Prints "RESULT <passed>
<failed>".
"""

import os
import socket
import subprocess
import sys
import tempfile


def point_dev_log_at(directory):
    """Binds a datagram socket where /dev/log leads, inside this mount namespace."""
    target = os.path.realpath("/dev/log")
    if os.path.exists(target):
        ours = os.path.join(directory, "log.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        listener.bind(ours)
        os.chmod(ours, 0o666)   # as /dev/log: anyone may log
        subprocess.run(["mount", "--bind", ours, target], check=True)
        return listener
    missing = os.path.dirname(target)
    existing = missing
    while not os.path.isdir(existing):
        existing = os.path.dirname(existing)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "nfqr-preload-test", existing], check=True)
    os.makedirs(missing, exist_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(target)
    os.chmod(target, 0o666)
    return listener


def main():
    library, proxy, lookup_socket = sys.argv[1:4]
    passed = failed = 0

    def check(what, ok, detail=""):
        nonlocal passed, failed
        if ok:
            passed += 1
        else:
            failed += 1
            print(f"    failed: {what}: {detail}")

    with tempfile.TemporaryDirectory(prefix="nfqr-preload-syslog.") as directory:
        os.chmod(directory, 0o755)
        listener = point_dev_log_at(directory)
        listener.settimeout(5.0)
        with open(os.devnull, "w") as null:
            status = subprocess.run(
                ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                 "env", f"LD_PRELOAD={library}", f"NFQ_REDIRECT_SOCKET={lookup_socket}", proxy, "3"],
                stdout=null, stderr=null).returncode
        check("the stand-in proxy ran", status == 0, f"status {status}")
        messages = []
        try:
            while True:
                messages.append(listener.recv(4096).decode("utf-8", "replace"))
                listener.settimeout(0.5)   # any duplicate would follow at once
        except socket.timeout:
            pass
        check("one syslog message for 3 refused calls", len(messages) == 1, messages)
        if messages:
            check("daemon.warning, tag nfq-redirect-preload[pid], the EACCES notice",
                  messages[0].startswith("<28>nfq-redirect-preload[")
                  and f"socket {lookup_socket} refused the connection: EACCES" in messages[0],
                  messages[0][:200])
    print(f"syslog notice: {passed} passed, {failed} failed")
    print(f"RESULT {passed} {failed}")


if __name__ == "__main__":
    main()
