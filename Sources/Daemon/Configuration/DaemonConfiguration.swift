import Kernel
import RedirectCore

/// Everything the daemon needs to run, after the config file and the flags are merged and
/// validated. Built once at start and again on reload; never changed in place.
public struct DaemonConfiguration: Equatable, Sendable {
    public struct Queues: Equatable, Sendable {
        /// First NFQUEUE number. Original-direction packets use `first ..< first+count`,
        /// replies `first+count ..< first+2*count`.
        public var first: UInt16 = 0
        /// Queues (and datapath threads) per direction.
        public var count: UInt16 = 1
        /// Packets the kernel holds for us before it drops (or, fail-open, accepts unmodified).
        public var maxLength: UInt32 = 4096
        /// Netlink receive buffer per queue socket, in bytes.
        public var receiveBufferBytes: Int = 8 << 20
        /// When the daemon is not there or its queue is full, let packets pass unredirected
        /// (`--queue-bypass`, NFQA_CFG_F_FAIL_OPEN) instead of holding them.
        public var failOpen: Bool = false
        /// Ask the kernel for whole GSO packets (fewer trips to userspace; full checksums).
        /// On by default: bulk TCP through the daemon is about 3-4x faster with it, because one
        /// trip carries up to 64 KiB instead of one MTU (docs/performance.md, "GSO").
        public var gso: Bool = true
        /// How a datapath thread with nothing to read waits: keeps asking for packets for a
        /// fixed number of microseconds before it sleeps (0: off), or adaptively (only while
        /// packets keep arriving, within a CPU budget). Cuts the latency of lone packets
        /// (request/response) at the price of CPU time while traffic flows
        /// (docs/performance.md, "Busy polling").
        public var polling: QueuePolling = .adaptive
        /// The fixed polling time (0 when adaptive or off); setting it chooses fixed polling.
        public var busyPollMicroseconds: Int {
            get { if case .fixed(let microseconds) = polling { microseconds } else { 0 } }
            set { polling = .fixed(microseconds: newValue) }
        }

        public var originalQueues: ClosedRange<UInt16> { first...(first + count - 1) }
        public var replyQueues: ClosedRange<UInt16> { (first + count)...(first + 2 * count - 1) }
    }

    public struct Lookup: Equatable, Sendable {
        public var socketPath: String = "/run/nfq-redirect/lookup.sock"
        /// File mode of the socket (who may connect at all).
        public var socketMode: UInt16 = 0o660
        /// Group owning the socket file, by name or number (nil: the daemon's group).
        public var socketGroup: String?
        /// Peers (SO_PEERCRED) allowed to ask; empty lists and `allowAll` false mean root only.
        public var allowUsers: [String] = []
        public var allowGroups: [String] = []
        public var allowAll: Bool = true
        public var maxClients: Int = 1024
        /// A client that sends nothing for this long is disconnected.
        public var idleTimeoutSeconds: Int = 300
        /// Microseconds the lookup thread keeps asking for requests before it sleeps (0: off);
        /// pairs with the client's NFQ_REDIRECT_BUSY_POLL_US (docs/lookup-protocol.md).
        public var busyPollMicroseconds: Int = 0
    }

    public struct Exclusions: Equatable, Sendable {
        /// Packets carrying one of these fwmarks (value/mask) are never redirected.
        public var marks: [FirewallMark] = []
        /// Local programs of these uids are never redirected (OUTPUT path only).
        public var uids: [UInt32] = []
    }

    public struct Metrics: Equatable, Sendable {
        /// `host:port` for the Prometheus endpoint (`/metrics`); nil: off.
        public var listen: String?
    }

    /// The kernel answering getsockopt(SO_ORIGINAL_DST) itself (a cgroup/getsockopt BPF program).
    public struct GetsockoptHook: Equatable, Sendable {
        /// On by default; where the host cannot load it the daemon says why once and runs
        /// without (the lookup socket and the preload library still answer).
        public var enabled: Bool = true
        /// The cgroup v2 directory to attach to; nil: the hierarchy's root (every process).
        public var cgroup: String?
    }

    /// `[datapath]`: who rewrites the packets of a redirected flow.
    public struct Datapath: Equatable, Sendable {
        public enum Mode: String, CaseIterable, Sendable {
            /// Every packet of a redirected flow goes through the daemon, which rewrites it.
            case userspace
            /// Only a flow's first packet goes through the daemon; the kernel's NAT rewrites
            /// the flow on the mark the daemon's verdict sets (docs/performance.md, "Choosing a mode").
            case kernelNAT = "kernel-nat"
        }
        public var mode: Mode = .userspace
        /// Kernel-nat mode: the packet and conntrack mark bits the daemon uses, one value per
        /// redirect port (`KernelNATMarks`).
        public var markMask: UInt32 = KernelNATMarks.defaultMask
        /// Kernel-nat mode: seconds between full reads of the daemon's conntrack entries,
        /// which refresh flows the kernel keeps without telling (UDP) and drop ones whose end
        /// was not heard.
        public var resyncSeconds: Int = 30
        public static let resyncLimit = 1...3600
    }

    public var queues = Queues()
    public var datapath = Datapath()
    public var getsockopt = GetsockoptHook()
    public var lookup = Lookup()
    public var redirects: [RedirectRule] = []
    public var exclusions = Exclusions()
    public var tableLimit: Int = 262_144
    public var timeouts = FlowTimeouts()
    /// Where the flow table is saved on exit and restored from on start (nil: not kept).
    public var stateFile: String? = "/var/lib/nfq-redirect/flows.state"
    /// Where the live flow table is kept: a file on tmpfs mapped shared, so the flows outlive
    /// a crash of the process (see docs/reliability.md).
    public var liveTable: LiveTable = .besideLookupSocket
    public var logLevel: String = "info"
    public var metrics = Metrics()
    /// Keep our iptables rules when exiting so a restart loses nothing (see docs/operations.md).
    public var keepRulesOnExit: Bool = false
    /// `[rules]`: installed and kept in place by the daemon, or loaded by the operator.
    public var ruleManagement = RuleManagement()

    public init() {}

    public enum LiveTable: Hashable, Sendable {
        /// `flows.table` in the lookup socket's directory (the runtime directory).
        case besideLookupSocket
        case path(String)
        case off
    }

    /// The live table's file, or nil when the table lives in private memory only.
    public var liveTablePath: String? {
        switch liveTable {
        case .off: return nil
        case .path(let path): return path
        case .besideLookupSocket:
            let socket = lookup.socketPath
            guard let slash = socket.lastIndex(of: "/") else { return "flows.table" }
            return String(socket[..<slash]) + "/flows.table"
        }
    }
}
