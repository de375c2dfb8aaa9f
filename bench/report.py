"""The results as a table for people and a JSON document for docs and tools."""

import json

from figures import evaluate, median


def summarise(rows, samples, cpu_busy):
    """Medians, ratios and verdicts per row. `samples[row.key][mode]` is a list of values,
    `cpu_busy[row.key][mode]` the percent of all CPUs busy during each of those samples."""
    medians = {mode: {row.key: median(samples.get(row.key, {}).get(mode, [])) for row in rows}
               for mode in ("kernel", "daemon", "floor", "nohook", "knat")}
    summary = []
    for row in rows:
        kernel, daemon = medians["kernel"][row.key], medians["daemon"][row.key]
        ratio, verdict = evaluate(row, kernel, daemon, medians["daemon"])
        floor = None if row.daemon_only else medians["floor"][row.key]
        nohook = medians["nohook"][row.key]
        knat = medians["knat"][row.key]
        knat_ratio, knat_verdict = evaluate(row, kernel, knat, medians["knat"], goal=row.knat_goal)
        summary.append({
            "key": row.key, "figure": row.title.strip(), "unit": row.unit,
            "kernel": None if row.daemon_only else kernel,
            "daemon": daemon,
            "kernel_samples": samples.get(row.key, {}).get("kernel", []),
            "daemon_samples": samples.get(row.key, {}).get("daemon", []),
            "floor": floor,
            "floor_samples": samples.get(row.key, {}).get("floor", []),
            "floor_ratio": floor / kernel if floor is not None and kernel else None,
            "nohook": nohook,
            "nohook_samples": samples.get(row.key, {}).get("nohook", []),
            "hook_ratio": daemon / nohook if daemon is not None and nohook else None,
            "ratio": ratio,
            "ratio_of": f"{row.versus} (daemon)" if row.versus else (None if row.daemon_only else "nfq/kernel"),
            "goal": row.goal.text() if row.goal else None,
            "verdict": verdict,
            "cpu_busy_percent": {mode: median(busy) for mode, busy in cpu_busy.get(row.key, {}).items()},
            # Kernel-nat (the daemon with --datapath kernel-nat), its ratio, goal and verdict.
            "knat": knat,
            "knat_samples": samples.get(row.key, {}).get("knat", []),
            "knat_ratio": knat_ratio,
            "knat_ratio_of": (f"{row.versus} (kernel-nat)" if row.versus
                              else (None if row.daemon_only else "kernel-nat/kernel")),
            "knat_goal": row.knat_goal.text() if row.knat_goal else None,
            "knat_verdict": knat_verdict,
            "knat_per": row.knat_per,
        })
    return summary


def busy_column(busy, modes=("kernel", "daemon")):
    """`97/99%`: median share of all CPUs busy in the kernel's and nfq-redirect's samples (then
    kernel-nat's, and the no-hook daemon's with --nohook). A figure whose CPUs were all busy is
    bounded by CPU time, not by waiting."""
    if not any(mode in busy for mode in modes):
        return "-"
    return "/".join("-" if busy.get(mode) is None else f"{busy[mode]:.0f}" for mode in modes) + "%"


def shown(value, row):
    if value is None:
        return "-"
    return f"{value / row.scale:,.{row.decimals}f}"


def verdict_cells(entry, ratio_key, goal_key, verdict_key, row, has_goal):
    ratio = "-" if entry[ratio_key] is None else f"{entry[ratio_key]:.2f}"
    goal = entry[goal_key] or ""
    if row.versus and goal:
        goal += f" vs {row.versus.removeprefix('flows_')}"
    verdict = entry[verdict_key] or ("n/a" if has_goal else "")
    return ratio, goal, verdict


def table(rows, summary, floor=False, nohook=False, knat=False):
    """With `knat`, four more columns after the daemon's: kernel-nat (the daemon with
    --datapath kernel-nat), knat/kernel, its goal and verdict; the CPU column gains kernel-nat's
    figure (`kn`). With `floor`, two more columns: the NFQUEUE floor (bench/nfqfloor.c) and
    floor / kernel. With `nohook`, two more: the daemon with --no-getsockopt-hook and
    nfq-redirect / that (the hook's cost: 1.00 is none), and the CPU column gains the no-hook
    daemon's figure (`h`)."""
    busy_modes = ("kernel", "daemon") + (("knat",) if knat else ()) + (("nohook",) if nohook else ())
    letters = {"kernel": "k", "daemon": "n", "knat": "kn", "nohook": "h"}
    header = ("figure", "unit", "kernel", "nfq-redirect", "ratio", "goal", "verdict")
    if knat:
        header += ("kernel-nat", "knat/kernel", "knat goal", "knat verdict")
    header += ("CPUs busy " + "/".join(letters[mode] for mode in busy_modes),)
    if nohook:
        header += ("no hook", "hook/no hook")
    if floor:
        header += ("NFQUEUE floor", "floor/kernel")
    lines = []
    for row, entry in zip(rows, summary):
        line = (row.title, row.unit, shown(entry["kernel"], row), shown(entry["daemon"], row),
                *verdict_cells(entry, "ratio", "goal", "verdict", row, row.goal))
        if knat:
            line += (shown(entry["knat"], row),
                     *verdict_cells(entry, "knat_ratio", "knat_goal", "knat_verdict", row, row.knat_goal))
        line += (busy_column(entry["cpu_busy_percent"], busy_modes),)
        if nohook:
            line += (shown(entry["nohook"], row),
                     "-" if entry["hook_ratio"] is None else f"{entry['hook_ratio']:.2f}")
        if floor:
            line += (shown(entry["floor"], row),
                     "-" if entry["floor_ratio"] is None else f"{entry['floor_ratio']:.2f}")
        lines.append(line)
    widths = [max(len(str(line[i])) for line in [header, *lines]) for i in range(len(header))]

    def render(cells):
        return "  ".join(str(cell).ljust(width) if i < 2 else str(cell).rjust(width)
                         for i, (cell, width) in enumerate(zip(cells, widths))).rstrip()

    rule = "  ".join("-" * width for width in widths)
    legend = []
    if knat:
        per = {}
        for row in rows:
            if row.knat_per:
                per.setdefault(row.knat_per, []).append(f"'{row.title.strip()}'")
        legend = [f"kernel-nat's CPU/packet: per {what} in {', '.join(titles)}" for what, titles in per.items()]
    return "\n".join([render(header), rule, *map(render, lines), *legend])


def write_json(path, document):
    with open(path, "w") as out:
        json.dump(document, out, indent=2)
        out.write("\n")
