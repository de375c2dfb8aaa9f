"""Makes the netns suite's modules (topology, processes, endpoints, ...) importable.

This suite reuses that suite's namespaces, process handling and reporting rather than
copying them; every script here imports this module before any of them.
"""

import os
import sys

NETNS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "netns")
if NETNS_DIR not in sys.path:
    sys.path.append(NETNS_DIR)
