"""World-readable copies of what a test runs as uid 65534.

The checkout may sit in a directory only root can enter (a clone in a `mktemp -d`, a home
directory of mode 0700), where that uid could neither read a script nor run a binary. So the
scripts, the harness package they import and the binaries are copied into `<run_dir>/unprivileged`
(mode 0755, files 0644 / 0755), removed with the run directory. A script there finds the copied
package first: its own folder heads Python's search path.
"""

import os
import shutil

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def stage_unprivileged(run_dir, scripts=(), binaries=()):
    """Copies `scripts` (paths), the harness package and `binaries`; returns the folder."""
    folder = os.path.join(run_dir, "unprivileged")
    os.mkdir(folder)
    os.chmod(folder, 0o755)
    package = os.path.join(folder, "harness")
    os.mkdir(package)
    os.chmod(package, 0o755)
    copies = [(path, folder, 0o644) for path in scripts]
    copies += [(os.path.join(PACKAGE_DIR, name), package, 0o644)
               for name in sorted(os.listdir(PACKAGE_DIR)) if name.endswith(".py")]
    copies += [(path, folder, 0o755) for path in binaries]
    for source, target, mode in copies:
        shutil.copy(source, target)
        os.chmod(os.path.join(target, os.path.basename(source)), mode)
    return folder
