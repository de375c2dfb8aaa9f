"""The recipes of docs/recipes.md, executed (suite.py --mode recipes).

Every fenced block under a `<!-- recipe NAME: FILE -->` marker is read from the page itself;
one test per recipe starts nfq-redirectd in R with the recipe's `[[redirect]]` (its lookup
socket, state file and queue the run's own), starts the proxy with the recipe's
configuration or command, and fetches http://<remote>:<first port of the recipe>/ from C:
the HTTP origin in S must answer at that original destination, reached from R (through the
proxy, not directly). Then proxy and daemon stop (the daemon removes its rules) and the next
recipe starts from a clean router.

What a test changes in a recipe, and why, is said next to each recipe in the page: paths
into the run directory, foreground instead of daemon mode (so the test keeps the process),
a preamble of pid file and log paths for squid and of timeouts for haproxy.
"""

import os
import re
import shutil
import time

from harness.checks import TestFailure, expect, expect_equal
from harness.endpoints import format_endpoint, parse_endpoint
from harness.processes import CommandFailed, run_command
from harness.redirectors import DaemonRedirect
from harness.topology import (CLIENT_V4, CLIENT_V6, REMOTE_V4, REMOTE_V6, ROUTER_SERVER_SIDE_V4,
                              ROUTER_SERVER_SIDE_V6)
from plan import PROXY_GROUP
from proxies import squid_test_settings
from stage import Stage

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
RECIPES_PAGE = os.path.join(REPO, "docs", "recipes.md")
PYTHON = "/usr/bin/python3"
DEFAULT_SOCKET = "/run/nfq-redirect/lookup.sock"
MARKER = re.compile(r"<!-- recipe (\w+): (\S+) -->\n```[a-z]*\n(.*?)\n```", re.DOTALL)
SOCKS_ENDPOINT = "127.0.0.1:1080"   # the redsocks recipe's upstream


def read_recipes(path=RECIPES_PAGE):
    """{recipe: {file: text}} from the marked blocks of docs/recipes.md."""
    with open(path, encoding="utf-8") as page:
        text = page.read()
    recipes = {}
    for name, file, body in MARKER.findall(text):
        recipes.setdefault(name, {})[file] = body + "\n"
    return recipes


def first_port(toml):
    """The first port of the recipe's first `ports = "..."`."""
    match = re.search(r'^ports = "(\d+)', toml, re.MULTILINE)
    if not match:
        raise TestFailure(f"no ports = \"...\" in the recipe's redirect:\n{toml}")
    return int(match.group(1))


def replace(text, old, new):
    """`text` with `old` replaced; the recipe must contain `old` (else the page changed)."""
    if old not in text:
        raise TestFailure(f"the recipe no longer contains {old!r}; update Tests/proxies/recipes.py:\n{text}")
    return text.replace(old, new)


class RecipeDaemon(DaemonRedirect):
    """nfq-redirectd with a recipe's [[redirect]] tables as its config file."""

    name = "recipe"

    def __init__(self, bin_dir, run_dir, queue, log_level, ready_timeout, recipe, toml):
        super().__init__(bin_dir, run_dir, queue, log_level, ready_timeout)
        self.socket_path = os.path.join(run_dir, f"{recipe}.sock")
        self.state_file = os.path.join(run_dir, f"{recipe}.state")
        self.config_path = os.path.join(run_dir, f"{recipe}.toml")
        with open(self.config_path, "w", encoding="utf-8") as config:
            # Anyone may connect and ask: the lookup recipe's proxy asks as root anyway.
            config.write('[lookup]\nmode = "0666"\n\n' + toml)

    def argv(self, extra=()):
        return [self.binary, *extra, "--config", self.config_path, "--queue", str(self.queue),
                "--socket", self.socket_path, "--state-file", self.state_file] + \
            (["--log-level", self.log_level] if self.log_level else [])


# --- the proxies, started from their recipe ------------------------------------------------------

def start_squid(stage, files, daemon, preload=None):
    directory = os.path.join(stage.run_dir, "squid")
    os.makedirs(directory, 0o750, exist_ok=True)
    shutil.chown(directory, PROXY_GROUP, PROXY_GROUP)
    preamble = f"""http_port 127.0.0.1:3128
cache deny all
visible_hostname nfqr-recipes
cache_effective_user {PROXY_GROUP}
pid_filename {directory}/squid.pid
cache_log {directory}/cache.log
access_log stdio:{directory}/access.log
{squid_test_settings(directory)}"""
    config = stage.write_file("recipe-squid.conf", preamble + files["squid.conf"])
    environment = [] if preload is None else ["env", f"LD_PRELOAD={preload[0]}", f"NFQ_REDIRECT_SOCKET={preload[1]}"]
    return stage.programs.start("squid", stage.topology.router, [*environment, "squid", "-N", "-f", config]), 3129


def start_haproxy(stage, files, daemon):
    preamble = "defaults\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n"
    config = stage.write_file("recipe-haproxy.cfg", preamble + files["haproxy.cfg"])
    return stage.programs.start("haproxy", stage.topology.router, ["haproxy", "-db", "-f", config]), 12346


def start_redsocks(stage, files, daemon):
    socks = stage.programs.start("socks5", stage.topology.router,
                                 [PYTHON, os.path.join(HERE, "socks5.py"), "--listen", SOCKS_ENDPOINT])
    socks.wait_for_log(lambda text: "ready" in text, 10, "ready line")
    text = replace(files["redsocks.conf"], "daemon = on;", "daemon = off;")
    text = replace(text, 'log = "syslog:daemon";', "log = stderr;")
    config = stage.write_file("recipe-redsocks.conf", text)
    return stage.programs.start("redsocks", stage.topology.router, ["redsocks", "-c", config]), 12345


def start_mitmproxy(stage, files, daemon):
    confdir = os.path.join(stage.run_dir, "mitmproxy")
    os.makedirs(confdir, exist_ok=True)
    command = replace(files["run"].strip(), "confdir=/var/lib/mitmproxy", f"confdir={confdir}")
    argv = command.split()
    return stage.programs.start("mitmdump", stage.topology.router, argv), 8080


def start_v2ray(stage, files, daemon):
    config = stage.write_file("recipe-v2ray.json", files["config.json"])
    return stage.programs.start("v2ray", stage.topology.router, ["v2ray", "-config", config]), 12349


def start_lookup(stage, files, daemon):
    command = replace(files["run"].strip(), DEFAULT_SOCKET, daemon.socket_path)
    command = replace(command, "examples/transparent_proxy.py", os.path.join(REPO, "examples", "transparent_proxy.py"))
    return stage.programs.start("transparent_proxy", stage.topology.router, command.split()), 8081


def ask_by_hand(stage, files, daemon, answer):
    """The recipe's socat line, with the client port of the connection just relayed."""
    client_ip, client_port = parse_endpoint(answer["local"])
    command = replace(files["ask"].strip(), DEFAULT_SOCKET, daemon.socket_path)
    command = replace(command, "192.0.2.2 40000", f"{client_ip} {client_port}")
    reply = run_command(["sh", "-c", command], ns=stage.topology.router, timeout=10).strip()
    expect_equal(f"the recipe's socat lookup for {answer['local']}", f"OK {REMOTE_V4} 9000", reply)
    program = replace(files["python"], DEFAULT_SOCKET, daemon.socket_path)
    program = replace(program, "192.0.2.2 40000", f"{client_ip} {client_port}")
    printed = run_command([PYTHON, "-c", program], ns=stage.topology.router, timeout=10).strip()
    expect_equal(f"the recipe's Python lookup for {answer['local']}", f"OK {REMOTE_V4} 9000", printed)
    return f"socat and Python: {reply}"


# name -> (start, families, extra check after the fetch)
RECIPES = {
    "squid": (start_squid, (False, True), None),
    "haproxy": (start_haproxy, (False,), None),
    "redsocks": (start_redsocks, (False,), None),
    "mitmproxy": (start_mitmproxy, (False, True), None),
    "v2ray": (start_v2ray, (False,), None),
    "lookup": (start_lookup, (False,), ask_by_hand),
}


def recipe_test(name):
    start, families, after = RECIPES[name]

    def test(stage):
        recipes = read_recipes()
        expect(name in recipes, f"a recipe marked `<!-- recipe {name}: ... -->` in docs/recipes.md",
               sorted(recipes))
        files = recipes[name]
        toml = files["nfq-redirect.toml"]
        port = first_port(toml)
        daemon = RecipeDaemon(stage.bin_dir, stage.run_dir, stage.queue, stage.log_level, stage.ready_timeout,
                              name, toml)
        proxy = None
        notes = []
        try:
            daemon.start(stage.programs, stage.topology.router, name=f"nfq-redirectd-{name}")
            proxy, listen_port = start(stage, files, daemon)
            stage.wait_listening(proxy, listen_port, timeout=60.0)
            for v6 in families:
                target = format_endpoint(REMOTE_V6 if v6 else REMOTE_V4, port)
                answer = stage.fetch("get", target)
                expect_equal(f"HTTP status from {target} through {name}", 200, answer.get("status"))
                words = answer["body"].split(" ")
                router = ROUTER_SERVER_SIDE_V6 if v6 else ROUTER_SERVER_SIDE_V4
                peer = parse_endpoint(words[3])[0] if len(words) > 3 and ":" in words[3] else None
                expect(words[:3] == ["SERVER", target, "PEER"] and peer == router,
                       f"the origin reached at {target}, from R ({router}): through {name}", answer["body"])
                notes.append(f"{'IPv6' if v6 else 'IPv4'} {target}")
                if after:
                    notes.append(after(stage, files, daemon, answer))
        finally:
            if proxy is not None:
                proxy.stop()
            if daemon.program is not None:
                status = daemon.program.stop()
                if status != 0:
                    raise CommandFailed(f"nfq-redirectd ({name}) ended with status {status}: "
                                        f"{daemon.program.log_tail()}")
        return ", ".join(notes)
    return test


def refused_preload_says_why(stage):
    """The fallback the recipes warn about: squid with the preload library, its user `proxy`
    refused by the lookup socket (mode 0600, root's), the getsockopt hook off. The library
    must say so exactly once in squid's output however many connections squid asks about,
    naming the socket and the fix."""
    files = read_recipes()["squid"]
    daemon = RecipeDaemon(stage.bin_dir, stage.run_dir, stage.queue, stage.log_level, stage.ready_timeout,
                          "refused", files["nfq-redirect.toml"])
    with open(daemon.config_path, "w", encoding="utf-8") as config:
        config.write('[lookup]\nmode = "0600"\n\n' + files["nfq-redirect.toml"])
    library = os.path.join(stage.run_dir, "libnfq-redirect-preload.so")
    shutil.copy(os.path.join(stage.bin_dir, "libnfq-redirect-preload.so"), library)
    os.chmod(library, 0o644)
    squid = None
    try:
        daemon.start(stage.programs, stage.topology.router, name="nfq-redirectd-refused",
                     argv=daemon.argv(extra=["--no-getsockopt-hook"]))
        squid, port = start_squid(stage, files, daemon, preload=(library, daemon.socket_path))
        stage.wait_listening(squid, port, timeout=60.0)
        # Three connections at once. squid, told its own address, cannot relay them: their
        # answers are not awaited, only the notice, and then 2 s more for any repetition.
        target = format_endpoint(REMOTE_V4, first_port(files["nfq-redirect.toml"]))
        fetching = stage.programs.start("fetch-refused", stage.topology.client,
                                        [PYTHON, os.path.join(HERE, "fetch.py"), "get-many", ",".join([target] * 3)])
        notice = "refused the connection: EACCES"
        try:
            squid.wait_for_log(lambda text: notice in text, 20, f"a line saying '{notice}'")
            time.sleep(2.0)
        finally:
            fetching.stop()
        lines = [line for line in squid.log().splitlines() if notice in line]
        expect_equal(f"lines in squid's output saying '{notice}' after 3 connections", 1, len(lines))
        expect(daemon.socket_path in lines[0] and "usermod -aG" in lines[0],
               "the line names the socket and the fix", lines[0])
        return lines[0][:120] + "..."
    finally:
        if squid is not None:
            squid.stop()
        if daemon.program is not None:
            daemon.program.stop()


def recipe_cases():
    return [(f"recipe {name} (docs/recipes.md): a client's connection reaches its original destination "
             "through the proxy", recipe_test(name), 120) for name in RECIPES] + [
        ("preload: squid as `proxy`, refused by the lookup socket (EACCES), says why exactly once",
         refused_preload_says_why, 120)]


class RecipeStage(Stage):
    """The proxies suite's stage without a standing redirector: each recipe test starts its own
    daemon and proxy. The origin in S listens on every recipe's first port."""

    def __init__(self, tag, bin_dir, queue, log_level, ready_timeout):
        super().__init__(tag, "kernel", bin_dir, queue, log_level, ready_timeout)
        self.mode = "recipes"
        self.bin_dir, self.queue, self.log_level, self.ready_timeout = bin_dir, queue, log_level, ready_timeout
        self.redirect = NoStandingRedirect()
        self.proxies = []

    def origin_ports(self):
        """Every recipe's first port."""
        return sorted({first_port(files["nfq-redirect.toml"]) for files in read_recipes().values()
                       if "nfq-redirect.toml" in files})

    def set_up(self):
        self.start_origin()


class NoStandingRedirect:
    name = "per-recipe nfq-redirectd"
    preload = None
    socket_path = None

    def stop(self):
        return 0
