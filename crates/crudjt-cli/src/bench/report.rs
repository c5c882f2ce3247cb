//! What `crudjt bench` measured, and the table it prints.

use std::fmt::Write;
use std::time::Duration;

use super::mix::{Mix, Op};

/// Latencies and errors of one connection, then of all merged.
#[derive(Debug, Default)]
pub struct Tally {
    /// Microseconds of each successful call, by op.
    pub latencies: [Vec<u32>; 4],
    /// Failed calls, by op.
    pub errors: [u64; 4],
}

impl Tally {
    /// Adds another connection's tally to this one.
    pub fn merge(&mut self, other: Tally) {
        for (mine, theirs) in self.latencies.iter_mut().zip(other.latencies) {
            mine.extend(theirs);
        }
        for (mine, theirs) in self.errors.iter_mut().zip(other.errors) {
            *mine += theirs;
        }
    }

    /// Failed calls of every op.
    pub fn total_errors(&self) -> u64 {
        self.errors.iter().sum()
    }
}

/// The table: a row per op in the mix, then all ops together.
pub fn table(tally: &mut Tally, elapsed: Duration, mix: &Mix) -> String {
    let seconds = elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
    let mut out = format!(
        "{:<8} {:>10} {:>10} {:>8} {:>8} {:>8} {:>9} {:>8}\n",
        "op", "ops", "ops/s", "errors", "p50 us", "p99 us", "p99.9 us", "max us"
    );
    let mut row = |name: &str, sorted: &[u32], errors: u64| {
        let ops = sorted.len();
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "{name:<8} {ops:>10} {:>10.0} {errors:>8} {:>8} {:>8} {:>9} {:>8}",
            ops as f64 / seconds,
            percentile(sorted, 0.50),
            percentile(sorted, 0.99),
            percentile(sorted, 0.999),
            sorted.last().copied().unwrap_or(0),
        );
    };
    let mut all = Vec::new();
    for op in Op::ALL {
        let latencies = &mut tally.latencies[op.index()];
        latencies.sort_unstable();
        all.extend_from_slice(latencies);
        if mix.weight(op) > 0 {
            row(op.name(), latencies, tally.errors[op.index()]);
        }
    }
    all.sort_unstable();
    row("all", &all, tally.total_errors());
    out
}

/// The nearest-rank percentile of sorted values; 0 for none.
fn percentile(sorted: &[u32], quantile: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    // The rank is at most len, and a Vec's len fits an f64 exactly far
    // beyond any run's length.
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let values: Vec<u32> = (1..=1000).collect();
        assert_eq!(percentile(&values, 0.50), 500);
        assert_eq!(percentile(&values, 0.99), 990);
        assert_eq!(percentile(&values, 0.999), 999);
        assert_eq!(percentile(&[7], 0.999), 7);
        assert_eq!(percentile(&[], 0.5), 0);
    }

    #[test]
    fn table_has_a_row_per_op_in_the_mix_and_a_total() {
        let mut tally = Tally::default();
        tally.latencies[Op::Read.index()] = vec![30, 10, 20];
        let mut other = Tally::default();
        other.latencies[Op::Create.index()] = vec![40];
        other.errors[Op::Create.index()] = 2;
        tally.merge(other);
        let mix = Mix::parse("create=1,read=1").unwrap();
        let text = table(&mut tally, Duration::from_secs(2), &mix);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].contains("ops/s") && lines[0].contains("p99.9 us"));
        let read: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(read, ["read", "3", "2", "0", "20", "30", "30", "30"]);
        let all: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(all, ["all", "4", "2", "2", "20", "40", "40", "40"]);
    }
}
