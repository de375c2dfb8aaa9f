"""The tests of the proxies suite, built per proxy. Each takes the Stage; a failure raises
TestFailure. A test may return a short note that the runner prints after PASS.
"""

import glob
import os
import re
import signal
import socket
import struct

from harness.endpoints import format_endpoint
from harness.checks import expect, expect_equal
from proxies import check_body
from harness.topology import REMOTE_V4, REMOTE_V6, ROUTER_SERVER_SIDE_V4, ROUTER_SERVER_SIDE_V6

SO_ORIGINAL_DST = 0x50  # = IP6T_SO_ORIGINAL_DST; strace prints it as 0x50 at SOL_IP and SOL_IPV6


def family_name(v6):
    return "IPv6" if v6 else "IPv4"


def remote(v6, port):
    return format_endpoint(REMOTE_V6 if v6 else REMOTE_V4, port)


def router(v6):
    """The address R's upstream connections come from, as the origin in S sees them."""
    return ROUTER_SERVER_SIDE_V6 if v6 else ROUTER_SERVER_SIDE_V4


def expect_relayed(stage, proxy, answer, v6):
    """The origin answered at the original destination, reached from R, through `proxy`."""
    target = answer["target"]
    expect("error" not in answer, f"an answer from {target}", answer.get("error"))
    expect_equal(f"HTTP status from {target}", 200, answer["status"])
    check_body(proxy, answer["body"], target, router(v6))
    proxy.evidence(stage, answer["local"], target)


# --- relaying -----------------------------------------------------------------------------------

def relays(proxy, v6, kernel_port=False):
    def test(stage):
        port = proxy.block.kernel_only if kernel_port else proxy.block.redirected[0]
        expect_relayed(stage, proxy, stage.fetch("get", remote(v6, port)), v6)
    return test


def concurrent(proxy):
    def test(stage):
        targets = [remote(v6, port) for v6 in proxy.block.families for port in proxy.block.redirected]
        results = stage.fetch("get-many", ",".join(targets))["results"]
        for answer in results:
            expect_relayed(stage, proxy, answer, answer["target"].startswith("["))
        return f"{len(results)} connections open at once, each to its own destination"
    return test


TRANSFERS, TRANSFER_BYTES = 60, 1 << 20


def transfers(proxy):
    """Many connections at once through the proxy, each uploading and downloading 1 MiB,
    every byte checked by SHA-256 at both ends."""
    def test(stage):
        targets = [remote(v6, port) for v6 in proxy.block.families for port in proxy.block.redirected]
        chosen = [targets[index % len(targets)] for index in range(TRANSFERS)]
        results = stage.fetch("transfer-many", ",".join(chosen), size=TRANSFER_BYTES, timeout=180)["results"]
        failures = [result for result in results if "error" in result]
        expect_equal(f"transfers through {proxy.name} that failed", [], failures)
        return f"{len(results)} concurrent connections, {sum(r['bytes'] for r in results) >> 20} MiB up and down, hashes equal"
    return test


def preload_presence(proxy):
    def test(stage):
        with open(f"/proc/{proxy.program.pid}/maps", encoding="utf-8", errors="replace") as maps:
            loaded = "libnfq-redirect-preload.so" in maps.read()
        expect_equal(f"libnfq-redirect-preload.so mapped in {proxy.name} (pid {proxy.program.pid})",
                     stage.mode == "preload", loaded)
    return test


# --- what the proxy really calls (strace) ------------------------------------------------------

STRACE_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')
STRACE_ORIGINAL_DST = re.compile(
    r'getsockopt\(\d+, SOL_IPV?6?, ' + f"{SO_ORIGINAL_DST:#x}" + r'[^,]*, "((?:[^"\\]|\\.)*)"[^=]*= 0')
ESCAPES = {"n": 10, "r": 13, "t": 9, "v": 11, "f": 12, "\\": 92, '"': 34}


def strace_bytes(text):
    """The bytes of a string as strace -x prints it (\\xNN, \\n, octal, plain characters)."""
    out = bytearray()
    i = 0
    while i < len(text):
        if text[i] != "\\" or i + 1 == len(text):
            out += text[i].encode()
            i += 1
        elif text[i + 1] == "x":
            out.append(int(text[i + 2:i + 4], 16))
            i += 4
        elif text[i + 1] in ESCAPES:
            out.append(ESCAPES[text[i + 1]])
            i += 2
        else:
            digits = re.match(r"[0-7]{1,3}", text[i + 1:]).group(0)
            out.append(int(digits, 8))
            i += 1 + len(digits)
    return bytes(out)


def sockaddr_endpoint(raw):
    """`ip:port` of a sockaddr_in / sockaddr_in6 as the kernel wrote it."""
    family, = struct.unpack_from("=H", raw)
    port, = struct.unpack_from("!H", raw, 2)
    if family == socket.AF_INET and len(raw) >= 8:
        return format_endpoint(socket.inet_ntop(socket.AF_INET, raw[4:8]), port)
    if family == socket.AF_INET6 and len(raw) >= 24:
        return format_endpoint(socket.inet_ntop(socket.AF_INET6, raw[8:24]), port)
    return f"(family {family})"


def original_dst_answers(trace):
    """Every successful getsockopt(SO_ORIGINAL_DST) in the trace, as the endpoints it returned."""
    return [sockaddr_endpoint(strace_bytes(match.group(1))) for match in STRACE_ORIGINAL_DST.finditer(trace)]


def lookup_requests(trace):
    return [line for text in STRACE_STRING.findall(trace)
            for line in strace_bytes(text).decode("utf-8", "replace").splitlines() if line.startswith("LOOKUP ")]


def traced(stage, proxy, fetches):
    """Runs `fetches` (a list of targets) while strace follows every thread of the proxy."""
    prefix = os.path.join(stage.run_dir, f"strace-{proxy.name}")
    # -ff: one file per thread, so no call is split across "unfinished"/"resumed" lines.
    strace = stage.programs.start(f"strace-{proxy.name}", None, [
        "strace", "-f", "-ff", "-x", "-s", "512", "-o", prefix,
        "-e", "trace=getsockopt,connect,write,writev,send,sendto,sendmsg", "-p", str(proxy.program.pid)])
    strace.wait_for_log(lambda text: "attached" in text, 10, "attach message")
    try:
        answers = [stage.fetch("get", target) for target in fetches]
    finally:
        strace.stop(signal.SIGINT, timeout=5.0)
    trace = ""
    for path in sorted(glob.glob(f"{prefix}.*")):
        with open(path, encoding="utf-8", errors="replace") as file:
            trace += file.read()
    return answers, trace


def asks_original_destination(proxy, v6):
    """strace proves where the proxy learns the original destination.

    Kernel mode, and daemon mode (the getsockopt hook): the proxy's own
    getsockopt(SO_ORIGINAL_DST) returns it for both flows, with nothing preloaded. Preload
    mode: the preload library sends the daemon a LOOKUP for the daemon's flow, and for the
    kernel's flow the real getsockopt(SO_ORIGINAL_DST) returns it (the fallback).
    """
    def test(stage):
        daemon_target = remote(v6, proxy.block.redirected[-1])
        kernel_target = remote(v6, proxy.block.kernel_only)
        answers, trace = traced(stage, proxy, [daemon_target, kernel_target])
        for answer in answers:
            expect_relayed(stage, proxy, answer, v6)
        returned = original_dst_answers(trace)
        expect(kernel_target in returned, f"getsockopt(SO_ORIGINAL_DST) returning {kernel_target}",
               f"returned: {returned}")
        if stage.mode in ("kernel", "daemon"):
            expect(daemon_target in returned, f"getsockopt(SO_ORIGINAL_DST) returning {daemon_target}",
                   f"returned: {returned}")
            return f"getsockopt(SO_ORIGINAL_DST) -> {', '.join(returned)}"
        client = answers[0]["local"]
        client_ip, client_port = client.rsplit(":", 1)
        client_ip = client_ip.strip("[]")
        wanted = re.compile(rf"LOOKUP tcp (::ffff:)?{re.escape(client_ip)} {client_port} ")
        requests = lookup_requests(trace)
        expect(any(wanted.match(line) for line in requests),
               f"a lookup request for client {client} sent by {proxy.name}", f"requests: {requests}")
        return f"lookup for {client}; kernel getsockopt -> {', '.join(returned)}"
    return test


def tests_for(proxy, mode):
    """(name, test, seconds) for one proxy in `mode` (daemon or kernel)."""
    name = proxy.name
    preload = mode == "preload"
    redirector = "the kernel's nat REDIRECT" if mode == "kernel" else "nfq-redirectd"
    tests = [(f"{name}: runs {'with' if preload else 'without'} libnfq-redirect-preload.so loaded",
              preload_presence(proxy), 10)]
    for v6 in proxy.block.families:
        family = family_name(v6)
        tests.append((f"{name}: {family} connection redirected by {redirector} reaches its original "
                      "destination", relays(proxy, v6), 30))
        tests.append((f"{name}: {family} connection redirected by the kernel's nat REDIRECT (port "
                      f"{proxy.block.kernel_only}){', same proxy process (preload falls back to the kernel)' if preload else ''} "
                      "reaches its original destination", relays(proxy, v6, kernel_port=True), 30))
    families = " and ".join(family_name(v6) for v6 in proxy.block.families)
    if proxy.name in ("goproxy", "v2ray"):
        tests.append((f"{name}: {TRANSFERS} concurrent {families} connections, each uploading and downloading "
                      f"{TRANSFER_BYTES >> 20} MiB, hashes verified", transfers(proxy), 200))
    count = len(proxy.block.redirected) * len(proxy.block.families)
    tests.append((f"{name}: {count} concurrent {families} connections to {count} destinations each reach "
                  "their own", concurrent(proxy), 60))
    how = "asks nfq-redirectd for its flows and the kernel for the kernel's" if preload \
        else "calls getsockopt(SO_ORIGINAL_DST) on the accepted socket and gets the original destination"
    for v6 in proxy.block.families:
        tests.append((f"{name}: strace shows it {how} ({family_name(v6)})",
                      asks_original_destination(proxy, v6), 60))
    return tests
