import Kernel
import RedirectCore
import TOMLKit

/// Reads the TOML config file (config/nfq-redirect.toml documents every key) on top of the
/// defaults. Unknown keys and wrong types are errors that name the field and the line: a
/// typo in a redirect must not silently leave traffic unredirected.
public enum ConfigurationFile {
    public static func apply(_ text: String, path: String, to configuration: inout DaemonConfiguration) throws(ConfigurationError) {
        try TOMLTableHeaderCheck.check(text, path: path)
        let root: TOMLTable
        do {
            root = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ConfigurationError(location: "\(path):\(error.source.begin.line)", field: "", problem: error.description)
        } catch {
            throw ConfigurationError(location: path, field: "", problem: "\(error)")
        }
        var reader = TOMLReader(path: path, lines: TOMLKeyLines(text))
        try reader.read(root, into: &configuration)
    }
}

/// Walks the parsed document with the field names used in error messages.
private struct TOMLReader {
    let path: String
    let lines: TOMLKeyLines

    func error(_ field: String, _ problem: String) -> ConfigurationError {
        let line = lines.line(of: field).map { ":\($0)" } ?? ""
        return ConfigurationError(location: "\(path)\(line)", field: field, problem: problem)
    }

    func checkKeys(_ table: TOMLTable, _ prefix: String, allowed: Set<String>) throws(ConfigurationError) {
        for key in table.keys.sorted() where !allowed.contains(key) {
            throw error(prefix.isEmpty ? key : "\(prefix).\(key)", "unknown key (expected one of: \(allowed.sorted().joined(separator: ", ")))")
        }
    }

    func table(_ parent: TOMLTable, _ key: String, _ field: String) throws(ConfigurationError) -> TOMLTable? {
        guard let value = parent[key] else { return nil }
        guard let table = value.table else { throw error(field, "must be a table") }
        return table
    }

    func int(_ table: TOMLTable, _ key: String, _ field: String, in range: ClosedRange<Int>) throws(ConfigurationError) -> Int? {
        guard let value = table[key] else { return nil }
        guard let number = value.int else { throw error(field, "must be an integer") }
        guard range.contains(number) else { throw error(field, "\(number) is out of range \(range.lowerBound)...\(range.upperBound)") }
        return number
    }

    func bool(_ table: TOMLTable, _ key: String, _ field: String) throws(ConfigurationError) -> Bool? {
        guard let value = table[key] else { return nil }
        guard let flag = value.bool else { throw error(field, "must be true or false") }
        return flag
    }

    func string(_ table: TOMLTable, _ key: String, _ field: String) throws(ConfigurationError) -> String? {
        guard let value = table[key] else { return nil }
        guard let text = value.string else { throw error(field, "must be a string") }
        return text
    }

    /// A list of strings; integers are accepted too (uids, gids) and kept as their text.
    func strings(_ table: TOMLTable, _ key: String, _ field: String) throws(ConfigurationError) -> [String]? {
        guard let value = table[key] else { return nil }
        guard let array = value.array else { throw error(field, "must be a list") }
        var result: [String] = []
        for item in array {
            if let text = item.string {
                result.append(text)
            } else if let number = item.int {
                result.append(String(number))
            } else {
                throw error(field, "must be a list of strings or numbers")
            }
        }
        return result
    }

    mutating func read(_ root: TOMLTable, into c: inout DaemonConfiguration) throws(ConfigurationError) {
        try checkKeys(
            root, "",
            allowed: ["queue", "datapath", "lookup", "redirect", "exclude", "table", "timeouts", "state", "log", "metrics", "rules", "getsockopt"])
        if let queue = try table(root, "queue", "queue") {
            try checkKeys(queue, "queue", allowed: ["first", "count", "max_length", "receive_buffer", "fail_open", "gso", "busy_poll"])
            if let v = try int(queue, "first", "queue.first", in: 0...65000) { c.queues.first = UInt16(v) }
            if let v = try int(queue, "count", "queue.count", in: 1...64) { c.queues.count = UInt16(v) }
            if let v = try int(queue, "max_length", "queue.max_length", in: 16...1_048_576) { c.queues.maxLength = UInt32(v) }
            if let v = try int(queue, "receive_buffer", "queue.receive_buffer", in: 65536...(1 << 30)) { c.queues.receiveBufferBytes = v }
            if let v = try bool(queue, "fail_open", "queue.fail_open") { c.queues.failOpen = v }
            if let v = try bool(queue, "gso", "queue.gso") { c.queues.gso = v }
            if let value = queue["busy_poll"] {
                if value.string == "adaptive" {
                    c.queues.polling = .adaptive
                } else if value.int != nil {
                    if let v = try int(queue, "busy_poll", "queue.busy_poll", in: NetfilterQueueConfiguration.busyPollLimit) {
                        c.queues.polling = .fixed(microseconds: v)
                    }
                } else {
                    throw error("queue.busy_poll", "must be \"adaptive\" or an integer (microseconds)")
                }
            }
        }
        if let lookup = try table(root, "lookup", "lookup") {
            try checkKeys(
                lookup, "lookup",
                allowed: ["socket", "mode", "group", "allow_users", "allow_groups", "allow_all", "max_clients", "idle_timeout", "busy_poll"])
            if let v = try string(lookup, "socket", "lookup.socket") { c.lookup.socketPath = v }
            if let v = try string(lookup, "mode", "lookup.mode") {
                guard let mode = UInt16(v, radix: 8), mode <= 0o777 else {
                    throw error("lookup.mode", "'\(v)' is not an octal file mode like \"0660\"")
                }
                c.lookup.socketMode = mode
            }
            if let v = try string(lookup, "group", "lookup.group") { c.lookup.socketGroup = v }
            if let v = try strings(lookup, "allow_users", "lookup.allow_users") {
                c.lookup.allowUsers = v
                c.lookup.allowAll = false
            }
            if let v = try strings(lookup, "allow_groups", "lookup.allow_groups") {
                c.lookup.allowGroups = v
                c.lookup.allowAll = false
            }
            if let v = try bool(lookup, "allow_all", "lookup.allow_all") { c.lookup.allowAll = v }
            if let v = try int(lookup, "max_clients", "lookup.max_clients", in: 1...100_000) { c.lookup.maxClients = v }
            if let v = try int(lookup, "idle_timeout", "lookup.idle_timeout", in: 1...86400) { c.lookup.idleTimeoutSeconds = v }
            if let v = try int(lookup, "busy_poll", "lookup.busy_poll", in: NetfilterQueueConfiguration.busyPollLimit) {
                c.lookup.busyPollMicroseconds = v
            }
        }
        if let redirects = root["redirect"] {
            guard let array = redirects.array else { throw error("redirect", "must be an array of tables: [[redirect]]") }
            c.redirects = []
            for (index, item) in array.enumerated() {
                guard let entry = item.table else { throw error("redirect[\(index)]", "must be a table") }
                c.redirects.append(try redirectRule(entry, field: "redirect[\(index)]"))
            }
        }
        if let exclude = try table(root, "exclude", "exclude") {
            try checkKeys(exclude, "exclude", allowed: ["marks", "uids"])
            if let marks = try strings(exclude, "marks", "exclude.marks") {
                c.exclusions.marks = []
                for text in marks {
                    guard let mark = FirewallMark(parsing: text) else {
                        throw error("exclude.marks", "'\(text)' is not a mark like \"0x1\" or \"0x100/0xff00\"")
                    }
                    c.exclusions.marks.append(mark)
                }
            }
            if let uids = try strings(exclude, "uids", "exclude.uids") {
                c.exclusions.uids = []
                for text in uids {
                    guard let uid = UInt32(text) else { throw error("exclude.uids", "'\(text)' is not a numeric uid") }
                    c.exclusions.uids.append(uid)
                }
            }
        }
        if let datapath = try table(root, "datapath", "datapath") {
            try checkKeys(datapath, "datapath", allowed: ["mode", "mark_mask", "resync_interval"])
            if let v = try string(datapath, "mode", "datapath.mode") {
                guard let mode = DaemonConfiguration.Datapath.Mode(rawValue: v) else {
                    throw error("datapath.mode", "'\(v)' is not userspace or kernel-nat")
                }
                c.datapath.mode = mode
            }
            if let v = try string(datapath, "mark_mask", "datapath.mark_mask") {
                guard let mark = FirewallMark(parsing: v), mark.mask == 0xffff_ffff, mark.value != 0 else {
                    throw error("datapath.mark_mask", "'\(v)' is not a non-zero mask like 0x0ff00000")
                }
                c.datapath.markMask = mark.value
            }
            if let v = try int(datapath, "resync_interval", "datapath.resync_interval", in: DaemonConfiguration.Datapath.resyncLimit) {
                c.datapath.resyncSeconds = v
            }
        }
        if let flows = try table(root, "table", "table") {
            try checkKeys(flows, "table", allowed: ["limit"])
            if let v = try int(flows, "limit", "table.limit", in: 1024...(64 << 20)) { c.tableLimit = v }
        }
        if let timeouts = try table(root, "timeouts", "timeouts") {
            let keys = FlowTimeouts.configurationKeys
            try checkKeys(timeouts, "timeouts", allowed: Set(keys.map(\.name)))
            for key in keys {
                if let v = try int(timeouts, key.name, "timeouts.\(key.name)", in: 1...(30 * 86400)) {
                    c.timeouts[keyPath: key.path] = UInt32(v)
                }
            }
        }
        if let state = try table(root, "state", "state") {
            try checkKeys(state, "state", allowed: ["file", "table", "keep_rules_on_exit"])
            if let v = try string(state, "file", "state.file") { c.stateFile = v.isEmpty ? nil : v }
            if let v = try string(state, "table", "state.table") {
                guard v.isEmpty || v.hasPrefix("/") else { throw error("state.table", "must be an absolute path (or empty for none)") }
                c.liveTable = v.isEmpty ? .off : .path(v)
            }
            if let v = try bool(state, "keep_rules_on_exit", "state.keep_rules_on_exit") { c.keepRulesOnExit = v }
        }
        if let hook = try table(root, "getsockopt", "getsockopt") {
            try checkKeys(hook, "getsockopt", allowed: ["hook", "cgroup"])
            if let v = try bool(hook, "hook", "getsockopt.hook") { c.getsockopt.enabled = v }
            if let v = try string(hook, "cgroup", "getsockopt.cgroup") {
                guard v.isEmpty || v.hasPrefix("/") else {
                    throw error("getsockopt.cgroup", "must be an absolute path (or empty for the cgroup v2 root)")
                }
                c.getsockopt.cgroup = v.isEmpty ? nil : v
            }
        }
        if let log = try table(root, "log", "log") {
            try checkKeys(log, "log", allowed: ["level"])
            if let v = try string(log, "level", "log.level") { c.logLevel = v }
        }
        if let metrics = try table(root, "metrics", "metrics") {
            try checkKeys(metrics, "metrics", allowed: ["listen"])
            if let v = try string(metrics, "listen", "metrics.listen") { c.metrics.listen = v.isEmpty ? nil : v }
        }
        if let rules = try table(root, "rules", "rules") {
            try checkKeys(rules, "rules", allowed: ["manage", "on_give_up"])
            if let v = try bool(rules, "manage", "rules.manage") { c.ruleManagement.manage = v }
            if let v = try string(rules, "on_give_up", "rules.on_give_up") {
                guard let value = RuleManagement.OnGiveUp(rawValue: v) else { throw error("rules.on_give_up", "'\(v)' is not remove or keep") }
                c.ruleManagement.onGiveUp = value
            }
        }
    }

    func redirectRule(_ entry: TOMLTable, field: String) throws(ConfigurationError) -> RedirectRule {
        try checkKeys(entry, field, allowed: ["proto", "ports", "to_port", "scope", "sources", "destinations", "families"])
        guard let protoName = try string(entry, "proto", "\(field).proto") else { throw error("\(field).proto", "is required (tcp or udp)") }
        guard let proto = TransportProtocol(name: protoName) else {
            throw error("\(field).proto", "unknown protocol '\(protoName)' (use tcp or udp)")
        }
        let portsText: String
        if let number = entry["ports"]?.int {
            portsText = String(number)
        } else if let text = try string(entry, "ports", "\(field).ports") {
            portsText = text
        } else {
            throw error("\(field).ports", "is required (a port, \"80,443\" or \"8000-8100\")")
        }
        let ports: PortSet
        do { ports = try PortSet(parsing: portsText) } catch { throw self.error("\(field).ports", error.description) }
        guard let toPort = try int(entry, "to_port", "\(field).to_port", in: 1...65535) else { throw error("\(field).to_port", "is required") }
        var scope = RedirectRule.Scope.network
        if let text = try string(entry, "scope", "\(field).scope") {
            guard let value = RedirectRule.Scope(rawValue: text) else { throw error("\(field).scope", "'\(text)' is not network or local") }
            scope = value
        }
        var rule = RedirectRule(scope: scope, proto: proto, ports: ports, toPort: UInt16(toPort))
        for (key, path) in [("sources", \RedirectRule.sources), ("destinations", \RedirectRule.destinations)] {
            for text in try strings(entry, key, "\(field).\(key)") ?? [] {
                guard let prefix = CIDR(text) else { throw error("\(field).\(key)", "'\(text)' is not an address or prefix like 192.0.2.0/24") }
                rule[keyPath: path].append(prefix)
            }
        }
        if let families = try strings(entry, "families", "\(field).families") {
            rule.families = []
            for text in families {
                switch text {
                case "ipv4": rule.families.insert(.ipv4)
                case "ipv6": rule.families.insert(.ipv6)
                default: throw error("\(field).families", "'\(text)' is not ipv4 or ipv6")
                }
            }
        }
        return rule
    }
}
