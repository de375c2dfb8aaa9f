"""The one test harness of nfq-redirect: everything that needs network namespaces uses it.

Found by one mechanism: the make fragments export PYTHONPATH=<repo>/Tests, so every suite,
the benchmarks and `make demo` import `harness.<module>`; bash entry points call its
command-line tools (`python3 -m harness.netns run ...`, `python3 -m harness.report ...`); the
Swift root tests (Tests/KernelTests/NetworkNamespace.swift) call `harness.netns create/delete`.

    topology      the namespaces and addresses, described once (shapes: full, three, pair, single)
    processes     commands and background programs in a namespace, always with a time limit
    endpoints     text forms of socket endpoints (`192.0.2.2:40000`, `[2001:db8:1::2]:40000`)
    origdst       the three ways to ask for an original destination (lookup socket, kernel)
    redirectors   the redirect plan and the two redirectors (nfq-redirectd, the kernel's REDIRECT)
    checks        TestFailure, expect, expect_equal
    report        the one reporter: PASS/FAIL/SKIP lines and the summary line of every suite
    cleanup       the run marker and the "nothing left behind" check
    unprivileged  world-readable copies of what runs as uid 65534
    suite         the loop of a namespace suite: set up, run the cases, tear down, check
    netns         command line: namespaces of a shape around a command, removed afterwards;
                  or made (create) and removed (delete) for a caller in another language
"""
