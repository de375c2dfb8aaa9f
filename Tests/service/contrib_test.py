#!/usr/bin/python3
"""contrib/: the Prometheus alert rules and the Grafana dashboard shipped for nfq-redirectd.

- `promtool check rules` on contrib/prometheus/alerts.yml, and `promtool test rules` on
  alerts_test.yml (each alert fires on sample series shaped like the daemon's, and not before);
- the dashboard is valid JSON with the shape Grafana imports (unique panel ids, every panel
  with a query, the datasource and instance variables it uses);
- every nfqr_* name in either file is a metric family the daemon exports: the families its
  source registers (report.counter/gauge/histogram in Sources/Daemon; a histogram also gives
  _bucket, _sum, _count). The service suite checks the same names against a running daemon's
  /metrics.

Usage: contrib_test.py (promtool comes with Debian's prometheus package, `make deps`).
A PASS or FAIL line per check; make runs it under the harness's reporter (Tests/harness/report.py),
whose summary line ends the output. The exit status is non-zero on any failure.
"""

import json
import os
import re
import shutil
import subprocess
import sys

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
ALERTS = os.path.join(REPO, "contrib", "prometheus", "alerts.yml")
ALERT_TESTS = os.path.join(REPO, "contrib", "prometheus", "alerts_test.yml")
DASHBOARD = os.path.join(REPO, "contrib", "grafana", "nfq-redirect.json")
NAME = re.compile(r"\bnfqr_[a-z0-9_]+")


def exported_families():
    """{family: kind} as the daemon's source registers them."""
    families = {}
    registered = re.compile(r'\.(counter|gauge|histogram)\(\s*"(nfqr_[a-z0-9_]+)"')
    for folder, _, files in os.walk(os.path.join(REPO, "Sources", "Daemon")):
        for name in files:
            if name.endswith(".swift"):
                with open(os.path.join(folder, name)) as source:
                    for kind, family in registered.findall(source.read()):
                        families[family] = kind
    return families


def series_names(families):
    """Every name a scrape can carry for these families."""
    names = set()
    for family, kind in families.items():
        names.add(family)
        if kind == "histogram":
            names.update(family + suffix for suffix in ("_bucket", "_sum", "_count"))
    return names


def names_used():
    """{name: [file, ...]} of the nfqr_* names in the alert rules and dashboard queries."""
    used = {}
    with open(ALERTS) as alerts:
        for name in NAME.findall(alerts.read()):
            used.setdefault(name, set()).add("alerts.yml")
    with open(DASHBOARD) as dashboard:
        for panel in json.load(dashboard)["panels"]:
            for target in panel.get("targets", []):
                for name in NAME.findall(target["expr"]):
                    used.setdefault(name, set()).add("nfq-redirect.json")
    return used


def promtool(*arguments):
    tool = shutil.which("promtool")
    if not tool:
        raise AssertionError("promtool not found: install Debian's prometheus package (make deps)")
    done = subprocess.run([tool, *arguments], capture_output=True, text=True, cwd=os.path.dirname(ALERTS))
    if done.returncode != 0:
        raise AssertionError(f"promtool {' '.join(arguments)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return done.stdout.strip().splitlines()[-1]


def dashboard_shape():
    with open(DASHBOARD) as file:
        dashboard = json.load(file)
    assert dashboard.get("uid") and dashboard.get("title"), "dashboard uid and title"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), f"panel ids not unique: {ids}"
    variables = {variable["name"] for variable in dashboard["templating"]["list"]}
    queries = 0
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, f"panel {panel['title']!r} wider than the grid"
        if panel["type"] == "row":
            continue
        assert panel.get("targets"), f"panel {panel['title']!r} has no query"
        assert panel["datasource"]["uid"] == "${datasource}", f"panel {panel['title']!r}: datasource"
        for target in panel["targets"]:
            queries += 1
            for variable in re.findall(r"\$([a-z]\w*)", target["expr"]):
                assert variable in variables or variable.startswith("__"), \
                    f"panel {panel['title']!r} uses ${variable}, not a dashboard variable"
    return f"{len(ids)} panels, {queries} queries, variables {sorted(variables)}"


def names_exported():
    families = exported_families()
    assert len(families) > 30, f"only {len(families)} families found in Sources/Daemon"
    known = series_names(families)
    used = names_used()
    unknown = {name: sorted(files) for name, files in used.items() if name not in known}
    assert not unknown, f"names the daemon does not export: {unknown}"
    return f"{len(used)} names used, all among the {len(families)} families the daemon exports"


def main():
    checks = [
        ("promtool check rules contrib/prometheus/alerts.yml", lambda: promtool("check", "rules", ALERTS)),
        ("promtool test rules: every alert fires on sample series, none early",
         lambda: promtool("test", "rules", ALERT_TESTS)),
        ("the Grafana dashboard is JSON of the shape Grafana imports", dashboard_shape),
        ("every nfqr_* name in alerts and dashboard is a metric the daemon exports", names_exported),
    ]
    passed = failed = 0
    for name, check in checks:
        try:
            note = check()
        except (AssertionError, OSError, ValueError, KeyError) as error:
            failed += 1
            print(f"FAIL  {name}\n      " + str(error).replace("\n", "\n      "))
        else:
            passed += 1
            print(f"PASS  {name}  [{note}]")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
