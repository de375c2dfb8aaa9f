import CSystemCalls
import Glibc

/// Who is on the other end of a Unix socket (SO_PEERCRED), and the groups they belong to.
struct PeerCredentials: Equatable {
    var pid: pid_t
    var uid: uid_t
    var gid: gid_t
    /// Supplementary groups, read from /proc/<pid>/status at accept time.
    var groups: [gid_t]

    static func of(socket fd: Int32) -> PeerCredentials? {
        var pid: pid_t = 0
        var uid: uid_t = 0
        var gid: gid_t = 0
        guard nfqr_peer_credentials(fd, &pid, &uid, &gid) == 0 else { return nil }
        return PeerCredentials(pid: pid, uid: uid, gid: gid, groups: supplementaryGroups(of: pid))
    }

    private static func supplementaryGroups(of pid: pid_t) -> [gid_t] {
        guard let file = fopen("/proc/\(pid)/status", "re") else { return [] }
        defer { fclose(file) }
        var line: UnsafeMutablePointer<CChar>?
        var capacity = 0
        defer { free(line) }
        while getline(&line, &capacity, file) > 0, let line {
            let text = String(cString: line)
            if text.hasPrefix("Groups:") {
                return text.dropFirst(7).split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).compactMap { gid_t($0) }
            }
        }
        return []
    }
}

/// Who may ask the lookup service, resolved from names to ids when the daemon starts.
struct LookupAccessPolicy: Equatable {
    var allowAll: Bool
    var uids: Set<uid_t>
    var gids: Set<gid_t>

    func allows(_ peer: PeerCredentials) -> Bool {
        allowAll || peer.uid == 0 || uids.contains(peer.uid) || gids.contains(peer.gid)
            || peer.groups.contains(where: gids.contains)
    }
}
