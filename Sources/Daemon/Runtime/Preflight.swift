import Glibc

/// Checks made before the daemon changes anything on the host.
enum Preflight {
    /// CAP_NET_ADMIN (bit 12) in the effective set: needed to bind NFQUEUE and change rules.
    static func requireNetAdmin() throws(StartupError) {
        guard let line = procStatusLine("CapEff:"), let mask = UInt64(line, radix: 16) else {
            throw StartupError("cannot read capabilities from /proc/self/status")
        }
        guard mask & (1 << 12) != 0 else {
            throw StartupError("CAP_NET_ADMIN is required (run as root, or with AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW under systemd)")
        }
    }

    private static func procStatusLine(_ key: String) -> String? {
        guard let file = fopen("/proc/self/status", "re") else { return nil }
        defer { fclose(file) }
        var line: UnsafeMutablePointer<CChar>?
        var capacity = 0
        defer { free(line) }
        while getline(&line, &capacity, file) > 0, let line {
            let text = String(cString: line)
            if text.hasPrefix(key) {
                return text.dropFirst(key.count).trimmingPrefix(while: { $0 == " " || $0 == "\t" })
                    .split(separator: "\n").first.map(String.init)
            }
        }
        return nil
    }

    /// Resolves user and group names (or numbers) from the config to ids.
    static func resolveAccess(_ lookup: DaemonConfiguration.Lookup) throws(StartupError) -> (LookupAccessPolicy, gid_t?) {
        var uids = Set<uid_t>()
        for name in lookup.allowUsers {
            if let id = uid_t(name) {
                uids.insert(id)
                continue
            }
            guard let entry = getpwnam(name) else { throw StartupError("lookup.allow_users: no user named '\(name)'") }
            uids.insert(entry.pointee.pw_uid)
        }
        var gids = Set<gid_t>()
        for name in lookup.allowGroups {
            guard let id = groupID(name) else { throw StartupError("lookup.allow_groups: no group named '\(name)'") }
            gids.insert(id)
        }
        var socketGroup: gid_t?
        if let name = lookup.socketGroup {
            guard let id = groupID(name) else { throw StartupError("lookup.group: \(missingGroup(name))") }
            socketGroup = id
        }
        return (LookupAccessPolicy(allowAll: lookup.allowAll, uids: uids, gids: gids), socketGroup)
    }

    /// The one line for a socket group the host lacks: the package and `make install` create
    /// `nfq-redirect`, so its absence means an install that could not (a DESTDIR, not root).
    static func missingGroup(_ name: String) -> String {
        "no group named '\(name)' on this host (create it: groupadd --system \(name); or remove [lookup] group to leave the socket in root's group)"
    }

    private static func groupID(_ name: String) -> gid_t? {
        if let id = gid_t(name) { return id }
        return getgrnam(name)?.pointee.gr_gid
    }

    /// The boot this clock belongs to: saved flow times are only valid within one boot.
    static func bootID() -> UInt128 {
        guard let file = fopen("/proc/sys/kernel/random/boot_id", "re") else { return 0 }
        defer { fclose(file) }
        var buffer = [CChar](repeating: 0, count: 64)
        guard fgets(&buffer, 64, file) != nil else { return 0 }
        let hex = String(cString: buffer).filter(\.isHexDigit)
        return UInt128(hex, radix: 16) ?? 0
    }
}

extension DaemonConfiguration {
    /// The users and groups `[lookup]` names must exist on this host. Checked with the rest of
    /// the configuration (`--check-config`, the unit's ExecStartPre, the start itself), so a
    /// missing one is one line and exit status 2, before the host is touched, and the unit does
    /// not restart it; not in `validate`, which `nfq-redirect rules --remove` also runs and must
    /// pass on a host that lost the group.
    public func checkLookupNames(source: String) throws(ConfigurationError) {
        do {
            _ = try Preflight.resolveAccess(lookup)
        } catch {
            // "lookup.group: no group named ..." -> field and problem.
            let parts = error.description.split(separator: ":", maxSplits: 1).map { String($0.trimmingPrefix(" ")) }
            let field = parts.count == 2 ? parts[0] : "lookup"
            throw ConfigurationError(location: source, field: field, problem: parts.last ?? error.description)
        }
    }
}
