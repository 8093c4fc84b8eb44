//! Zigbee figures for BENCHMARKS.md:
//! - `znp_parser`: the streaming ZNP parser over a realistic byte stream
//!   (AF_INCOMING_MSG reports with ZCL payloads), in 4 KiB reads: MB/s;
//! - `driver_commands`: light commands through the real driver, over a
//!   real PTY, to the simulated stick, each awaited until its
//!   AF_DATA_CONFIRM: commands/s, one at a time and 16 in flight.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use itc_bridges::light::{LightCommand, LightState};
use itc_bridges::zigbee::driver::{self, DriverConfig};
use itc_bridges::zigbee::mt::{IncomingMsg, Indication};
use itc_bridges::zigbee::network::NetEvent;
use itc_bridges::zigbee::sim_port::SimPort;
use itc_bridges::zigbee::zcl::{self, FrameType, Global};
use itc_bridges::zigbee::znp::Parser;

fn report_stream(frames: usize) -> Vec<u8> {
    let state = LightState::default();
    let mut out = Vec::new();
    for i in 0..frames {
        let (cluster, records) = zcl::report_for(&state)[i % 3].clone();
        let zcl = zcl::Frame::from_device(
            FrameType::Global,
            i as u8,
            zcl::global::REPORT_ATTRIBUTES,
            Global::ReportAttributes(records).encode(),
        )
        .encode();
        let message = IncomingMsg {
            group: 0,
            cluster,
            src: 0x1000 + (i % 50) as u16,
            src_endpoint: 1,
            dst_endpoint: 1,
            was_broadcast: false,
            link_quality: 150,
            security: false,
            timestamp: i as u32,
            seq: 0,
            data: zcl,
        };
        out.extend(Indication::Incoming(message).frame().encode().unwrap());
    }
    out
}

fn parser(c: &mut Criterion) {
    let stream = report_stream(10_000);
    let mut group = c.benchmark_group("znp_parser");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function("reports_4k_reads", |b| {
        b.iter(|| {
            let mut parser = Parser::new();
            let mut frames = 0usize;
            for chunk in stream.chunks(4_096) {
                parser.handle_bytes(chunk);
                while parser.poll_frame().is_some() {
                    frames += 1;
                }
            }
            assert_eq!(frames, 10_000);
        })
    });
    group.finish();
}

fn driver_commands(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (stick, zigbee, bulbs) = runtime.block_on(async {
        let stick = SimPort::start(dir.path().join("ttyZNP"), 8, 1);
        let (zigbee, _task) = driver::spawn(DriverConfig::new(stick.path()));
        let mut events = zigbee.events();
        zigbee.wait_up().await;
        zigbee.permit_join(60).await.unwrap();
        let mut bulbs = Vec::new();
        while bulbs.len() < 8 {
            if let Ok(NetEvent::Joined { ieee, .. }) = events.recv().await {
                bulbs.push(ieee);
            }
        }
        (stick, zigbee, bulbs)
    });
    let mut group = c.benchmark_group("driver_commands");
    group.measurement_time(Duration::from_secs(5));
    for in_flight in [1usize, 16] {
        group.throughput(Throughput::Elements(in_flight as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(in_flight),
            &in_flight,
            |b, &n| {
                b.iter_custom(|iters| {
                    runtime.block_on(async {
                        let started = Instant::now();
                        for round in 0..iters {
                            let sends = (0..n).map(|k| {
                                let zigbee = zigbee.clone();
                                let ieee = bulbs[k % bulbs.len()];
                                let level = 1 + ((round as usize + k) % 250) as u8;
                                tokio::spawn(async move {
                                    zigbee
                                        .send(
                                            ieee,
                                            LightCommand {
                                                brightness: Some(level),
                                                ..Default::default()
                                            },
                                        )
                                        .await
                                })
                            });
                            for send in sends.collect::<Vec<_>>() {
                                send.await.unwrap().unwrap();
                            }
                        }
                        started.elapsed()
                    })
                })
            },
        );
    }
    group.finish();
    drop(stick);
}

criterion_group!(benches, parser, driver_commands);
criterion_main!(benches);
