import NIOCore
import NIOHTTP1
import NIOPosix

/// Serves the Prometheus text format on `GET /metrics` (swift-prometheus renders the text;
/// it does not serve it). Anything else gets 404; only GET and HEAD are answered.
public final class MetricsHTTPServer: Sendable {
    private let group: MultiThreadedEventLoopGroup
    private let channel: Channel

    /// Binds `host:port` and serves until `shutdown()`. `render` is called per scrape.
    public init(host: String, port: Int, render: @escaping @Sendable () -> [UInt8]) throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        do {
            channel = try ServerBootstrap(group: group)
                .serverChannelOption(.backlog, value: 64)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { channel in
                    channel.pipeline.configureHTTPServerPipeline().flatMap {
                        channel.pipeline.addHandler(MetricsRequestHandler(render: render))
                    }
                }
                .bind(host: host, port: port)
                .wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw error
        }
        self.group = group
    }

    public var boundPort: Int? { channel.localAddress?.port }

    public func shutdown() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }
}

private final class MetricsRequestHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let render: @Sendable () -> [UInt8]

    init(render: @escaping @Sendable () -> [UInt8]) { self.render = render }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let request) = unwrapInboundIn(data) else { return }
        let path = request.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? request.uri
        var status = HTTPResponseStatus.ok
        var body: [UInt8]
        if request.method != .GET && request.method != .HEAD {
            status = .methodNotAllowed
            body = Array("only GET /metrics\n".utf8)
        } else if path == "/metrics" {
            body = render()
        } else {
            status = .notFound
            body = Array("metrics are at /metrics\n".utf8)
        }
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: status == .ok ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain")
        headers.add(name: "Content-Length", value: String(body.count))
        headers.add(name: "Connection", value: "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: status, headers: headers))), promise: nil)
        if request.method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
        }
        body = []
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in context.close(promise: nil) }
    }
}
