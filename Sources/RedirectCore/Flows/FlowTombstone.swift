/// The memory of a flow that recently left the table, so a late lookup can answer "expired"
/// instead of "not found". Keyed like a lookup: protocol, client, and the local (reply source) end.
struct FlowTombstone {
    var client: IPAddress
    var local: IPAddress
    var clientPort: UInt16
    var localPort: UInt16
    var proto: TransportProtocol
    var reason: FlowEndReason
    var ended: UInt32

    init(of flow: FlowSlot, reason: FlowEndReason, ended: UInt32) {
        client = flow.client
        local = flow.replySource
        clientPort = flow.clientPort
        localPort = flow.replySourcePort
        proto = flow.proto
        self.reason = reason
        self.ended = ended
    }

    func matches(_ proto: TransportProtocol, client: Endpoint, local: Endpoint) -> Bool {
        clientPort == client.port && localPort == local.port && self.proto == proto
            && self.client == client.address && self.local == local.address
    }
}
