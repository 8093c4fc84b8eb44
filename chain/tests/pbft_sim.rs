//! PBFT under the deterministic simulator: many seeds, each a different mix
//! of loss, duplication, delay, partitions, crashes (power cuts) with
//! restarts from storage, and one Byzantine replica. Every run must stay
//! safe and commit again after the heal.
//!
//! `ITC_SIM_SEEDS=n` runs n seeds per cluster size (default 500 for each of
//! n = 4 and n = 7, so 1,000 runs); `ITC_SIM_SEED=s` replays one seed with a trace.

use itc_chain::sim::{run_seed, trace_seed, Report, SimError};

fn seeds() -> Vec<u64> {
    if let Ok(seed) = std::env::var("ITC_SIM_SEED") {
        return vec![seed.parse().expect("ITC_SIM_SEED is a number")];
    }

    let count = std::env::var("ITC_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500u64);
    (0..count).collect()
}

/// Runs the seeds on two threads; returns every failure.
fn run_all(nodes: usize) -> (Vec<Report>, Vec<SimError>) {
    let seeds = seeds();
    if let [seed] = seeds[..] {
        // One seed: a replay, traced.
        return match trace_seed(seed, nodes) {
            Ok(report) => (vec![report], Vec::new()),
            Err(error) => (Vec::new(), vec![error]),
        };
    }
    let (a, b) = seeds.split_at(seeds.len() / 2);
    let results: Vec<Result<Report, SimError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = [a, b]
            .into_iter()
            .map(|part| {
                scope.spawn(move || part.iter().map(|s| run_seed(*s, nodes)).collect::<Vec<_>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a simulation thread panicked"))
            .collect()
    });
    let mut reports = Vec::new();
    let mut failures = Vec::new();
    for result in results {
        match result {
            Ok(report) => reports.push(report),
            Err(error) => failures.push(error),
        }
    }
    (reports, failures)
}

fn check(nodes: usize) {
    let (reports, failures) = run_all(nodes);
    for failure in &failures {
        eprintln!("FAILED (replay with ITC_SIM_SEED=<seed>): {failure}");
    }
    let worst = reports.iter().filter_map(|r| r.recovered_after_ms).max();
    let heights: u64 = reports.iter().map(|r| r.max_height).sum();
    let detected = reports.iter().filter(|r| r.equivocations_seen > 0);
    let reported = detected.clone().filter(|r| r.evidence_on_chain > 0).count();
    let detected = detected.count();
    let lost: usize = reports.iter().map(|r| r.blocks_lost).sum();
    let losing = reports.iter().filter(|r| r.blocks_lost > 0).count();
    let rejoined = reports.iter().filter(|r| r.stable_past_window > 0).count();
    let pipelined = reports.iter().filter(|r| r.pipelined > 0).count();
    eprintln!(
        "n = {nodes}: {} runs passed, {} failed; {heights} blocks committed in all; \
         power cuts took {lost} committed blocks from replicas in {losing} runs; \
         slowest recovery after the heal {worst:?} ms; an equivocation was detected in \
         {detected} runs and put on chain in {reported} of them; a replica beyond its \
         log window became stable by checkpoints in {rejoined} runs; a primary proposed \
         above an uncommitted block in {pipelined} runs",
        reports.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{} runs failed", failures.len());
    // Power cuts do take blocks the replicas must commit again.
    if reports.len() >= 100 {
        assert!(
            losing > 0,
            "no power cut lost a block in {} runs",
            reports.len()
        );
    }
    // Replicas cut off for long (one run in eight) come back by blocks and
    // then by checkpoints beyond their old window.
    if reports.len() >= 100 {
        assert!(
            rejoined > 0,
            "no replica became stable past its window in {} runs",
            reports.len()
        );
    }
    // Two in three runs pipeline, and under load their primaries do.
    if reports.len() >= 100 {
        assert!(
            pipelined * 3 >= reports.len(),
            "a primary proposed above an uncommitted block in only {pipelined} of {} runs",
            reports.len()
        );
    }
    // Honest replicas report what they detect (and the simulator fails a
    // run in which one accuses an honest replica); nearly every report
    // commits (a run may end, or a crash erase the report, first).
    if detected >= 20 {
        assert!(
            reported * 10 >= detected * 9,
            "equivocations detected in {detected} runs reached the chain in only {reported}"
        );
    }
}

#[test]
fn four_replicas_stay_safe_and_live() {
    check(4);
}

#[test]
fn seven_replicas_stay_safe_and_live() {
    check(7);
}
