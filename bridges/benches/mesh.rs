//! Bluetooth mesh figures for BENCHMARKS.md: messages per second through
//! the whole stack, one side to the other — access encryption (application
//! key), lower transport, network encryption and obfuscation, then the
//! replay check, deobfuscation and both decryptions at the receiver:
//! - `light_set`: a Light Lightness Set (unsegmented, one Network PDU);
//! - `appkey_add`: a Config AppKey Add with the device key (segmented,
//!   two Network PDUs and an acknowledgment).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use itc_bridges::mesh::access::Message;
use itc_bridges::mesh::stack::{KeyUse, Stack};

fn pair() -> (Stack, Stack) {
    let net = [0x11; 16];
    let mut client = Stack::new(net, 9, 0x0001);
    let mut node = Stack::new(net, 9, 0x0100);
    for stack in [&mut client, &mut node] {
        stack.add_device_key(0x0100, [0x22; 16]);
        stack.add_app_key(0, [0x33; 16]);
    }
    (client, node)
}

fn round_trips(c: &mut Criterion) {
    let mut group = c.benchmark_group("mesh");
    group.throughput(Throughput::Elements(1));
    let set = Message::LightnessSet {
        lightness: 0x8000,
        tid: 1,
        transition: None,
        ack: false,
    }
    .encode();
    let (mut client, mut node) = pair();
    group.bench_function("light_set", |b| {
        b.iter(|| {
            let pdus = client
                .send(0x0100, KeyUse::App(0), &set)
                .unwrap_or_default();
            for pdu in pdus {
                assert!(node.receive(&pdu, 0).delivered.is_some());
            }
        })
    });
    let add = Message::AppKeyAdd {
        net_index: 0,
        app_index: 0,
        key: [0x33; 16],
    }
    .encode();
    let (mut client, mut node) = pair();
    group.bench_function("appkey_add", |b| {
        b.iter(|| {
            let pdus = client
                .send(0x0100, KeyUse::Device, &add)
                .unwrap_or_default();
            let mut delivered = false;
            for pdu in pdus {
                let received = node.receive(&pdu, 0);
                delivered |= received.delivered.is_some();
                for ack in received.send {
                    client.receive(&ack, 0);
                }
            }
            assert!(delivered);
        })
    });
    group.finish();
}

criterion_group!(benches, round_trips);
criterion_main!(benches);
