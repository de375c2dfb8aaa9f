import Benchmark
import RedirectCore

/// The datapath's per-packet work and the flow table's operations, each measured per
/// operation (1000 per iteration), with malloc counts: everything here must allocate nothing.
///
/// `make microbench` checks the p90 malloc count of one iteration against Thresholds/: 16,
/// which is the framework's own cost per measured iteration (the same 16 whether an iteration
/// runs 1 or 1000 operations). One malloc per operation would make it 1016.
let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .cpuTotal, .mallocCountTotal, .throughput],
        timeUnits: .nanoseconds,
        warmupIterations: 3,
        scalingFactor: .kilo,
        maxDuration: .seconds(2),
        maxIterations: 1000,
        thresholds: [.mallocCountTotal: .init(absolute: [.p90: 0])])

    for family in AddressFamily.allCases {
        let name = family == .ipv4 ? "v4" : "v6"
        Benchmark("parse+rewrite TCP \(name)") { benchmark in
            let client = Endpoint(family == .ipv4 ? IPAddress("192.0.2.10")! : IPAddress("2001:db8::10")!, 40_000)
            let server = Endpoint(family == .ipv4 ? IPAddress("198.51.100.1")! : IPAddress("2001:db8:1::1")!, 80)
            let proxy = Endpoint(family == .ipv4 ? EngineFixture.routerV4 : EngineFixture.routerV6, 8080)
            let packet = BenchmarkPacket(proto: .tcp, source: client, destination: server, payloadLength: 100)
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations {
                packet.restore()
                do {
                    var parsed = try ParsedPacket.parse(packet.bytes)
                    try parsed.rewriteDestination(to: proxy, in: packet.bytes, checksumNotReady: false)
                    blackHole(parsed)
                } catch {
                    benchmark.error("parse+rewrite failed: \(error)")
                }
            }
        }

        nonisolated(unsafe) var fixture: EngineFixture?
        let setup: Benchmark.BenchmarkSetupHook = {
            fixture = EngineFixture(family: family, table: try FlowTable(configuration: FlowTableConfiguration(limit: 65_536)))
        }
        let teardown: Benchmark.BenchmarkTeardownHook = { fixture = nil }
        Benchmark(
            "engine original TCP \(name)",
            closure: { benchmark in
                for _ in benchmark.scaledIterations { blackHole(fixture!.processOriginal()) }
            }, setup: setup, teardown: teardown)
        Benchmark(
            "engine reply TCP \(name)",
            closure: { benchmark in
                for _ in benchmark.scaledIterations { blackHole(fixture!.processReply()) }
            }, setup: setup, teardown: teardown)
    }

    // A GSO packet with NFQA_SKB_CSUMNOTREADY needs its L4 checksum computed over the whole
    // segment: this is that cost for the largest one the kernel hands over (64 KiB).
    nonisolated(unsafe) var segment = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    Benchmark(
        "full checksum 64 KiB (GSO)",
        configuration: .init(
            setup: {
                segment = .allocate(byteCount: 65_496, alignment: 16)
                segment.initializeMemory(as: UInt8.self, repeating: 0xa5)
            },
            teardown: { segment.deallocate() })
    ) { benchmark in
        for _ in benchmark.scaledIterations { blackHole(InternetChecksum.sum(UnsafeRawBufferPointer(segment))) }
    }

    for size in [10_000, 100_000, 1_000_000] {
        let label = size >= 1_000_000 ? "\(size / 1_000_000)M" : "\(size / 1000)k"
        nonisolated(unsafe) var population: PopulatedTable?
        nonisolated(unsafe) var traffic: PopulationPacket?
        let setup: Benchmark.BenchmarkSetupHook = {
            population = try PopulatedTable(size: size)
            traffic = PopulationPacket(population: population!)
        }
        let teardown: Benchmark.BenchmarkTeardownHook = {
            traffic = nil
            population = nil
        }
        let perFlow = Benchmark.Configuration(setup: setup, teardown: teardown)
        let batch = 1000

        Benchmark("engine original TCP v4 at \(label) flows", configuration: perFlow) { benchmark in
            for _ in benchmark.scaledIterations { blackHole(traffic!.processRandomFlow(among: size)) }
        }
        // What the daemon bench measures: 1000 busy flows while the rest of the table sits idle.
        Benchmark("engine original TCP v4, 1k busy of \(label) flows", configuration: perFlow) { benchmark in
            for _ in benchmark.scaledIterations { blackHole(traffic!.processRandomFlow(among: 1000)) }
        }
        Benchmark("table lookup at \(label) flows", configuration: perFlow) { benchmark in
            let table = population!.table
            for _ in benchmark.scaledIterations {
                let client = PopulatedTable.client(population!.randomIndex(below: size))
                blackHole(table.lookup(proto: .tcp, client: client, local: PopulatedTable.proxy, now: population!.now))
            }
        }
        Benchmark("table insert at \(label) flows", configuration: perFlow) { benchmark in
            population!.createUDPFlows(batch)
            benchmark.stopMeasurement()
            population!.expireUDPFlows(batch)
        }
        Benchmark("table expire at \(label) flows", configuration: perFlow) { benchmark in
            population!.createUDPFlows(batch)
            benchmark.startMeasurement()
            population!.expireUDPFlows(batch)
        }
    }
}
