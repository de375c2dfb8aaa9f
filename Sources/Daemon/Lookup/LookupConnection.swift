import Glibc
import RedirectCore

/// One client of the lookup socket: its buffers, who it is, and what it has subscribed to.
/// Buffers are bounded so a slow or hostile client costs a fixed amount of memory.
final class LookupConnection {
    let fd: Int32
    let peer: PeerCredentials?
    let allowed: Bool
    var input: [UInt8] = []
    var output: [UInt8] = []
    var outputOffset = 0
    /// Descriptors that arrived with SCM_RIGHTS, waiting for their LOOKUPFD line.
    var passedDescriptors: [Int32] = []
    /// Set after an overlong line: bytes are discarded up to the next newline.
    var discardingLine = false
    var subscribedEvents: LookupRequest.OutputFormat?
    /// LIST answers are written in chunks as the client reads, not all at once.
    var pendingLines: ArraySlice<String> = []
    var lastActivity: Int
    /// Set at the client's end-of-file (or when it must go): answer what is queued, then close.
    var closeAfterFlush = false
    /// The epoll interest set last registered for this connection.
    var watchedEvents: UInt32

    /// Most bytes of unsent answers held for one client before it counts as too slow.
    static let outputLimit = 1 << 20

    init(fd: Int32, peer: PeerCredentials?, allowed: Bool, now: Int, watchedEvents: UInt32) {
        self.fd = fd
        self.peer = peer
        self.allowed = allowed
        self.lastActivity = now
        self.watchedEvents = watchedEvents
        input.reserveCapacity(1024)
    }

    var hasPendingOutput: Bool { outputOffset < output.count || !pendingLines.isEmpty }

    func queue(_ line: String) {
        output.append(contentsOf: line.utf8)
    }

    func queue(_ answer: LookupAnswer) {
        answer.append(to: &output)
    }

    /// Moves queued LIST lines into the output buffer, a chunk at a time.
    func refillFromPendingLines() {
        while !pendingLines.isEmpty && output.count - outputOffset < 64 * 1024 {
            output.append(contentsOf: pendingLines.removeFirst().utf8)
            output.append(UInt8(ascii: "\n"))
        }
    }

    func closeAll() {
        for descriptor in passedDescriptors { close(descriptor) }
        passedDescriptors.removeAll()
        close(fd)
    }
}
