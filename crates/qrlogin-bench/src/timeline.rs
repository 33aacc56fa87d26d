//! A run's timeline: what happened in each second, and memory samples.
//!
//! A soak's totals hide *when* things went wrong: 500 errors in the two
//! seconds of a Redis restart are expected, the same 500 spread over ten
//! minutes are a defect. So every outcome is also counted in the bucket of
//! the second (since the run's start) it happened in, and the instances'
//! resident memory is sampled every few seconds, to show whether it stays
//! flat. Each worker keeps its own [`Timeline`] (no locks on the hot path);
//! they are merged at the end.

use serde::Serialize;
use std::collections::BTreeMap;

/// One second of the run.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Second {
    /// Seconds since the run's start (this bucket is `[t, t + 1)`).
    pub t: u64,
    /// Logins started (created or tried to) in this second.
    pub started: u64,
    /// Logins completed (redeemed) in this second.
    pub completed: u64,
    /// Steps that failed for good, by `step: kind` (e.g. `approve: http
    /// 503 store_unavailable` once the retries ran out, `wake: timeout`).
    pub errors: BTreeMap<String, u64>,
    /// 503 answers that were retried, by step: the store was unavailable
    /// and the step was sent again after a pause.
    pub retried_503: BTreeMap<String, u64>,
    /// Retried steps that found their work already done (the first
    /// attempt's answer was lost, not its effect), by step.
    pub found_done: BTreeMap<String, u64>,
    /// SSE streams the server ended before the login's final event (it does
    /// so when the store fails while the stream waits; the browser then
    /// reconnects, as an `EventSource` does).
    pub sse_ended_early: u64,
}

impl Second {
    fn is_empty(&self) -> bool {
        self.started == 0
            && self.completed == 0
            && self.errors.is_empty()
            && self.retried_503.is_empty()
            && self.found_done.is_empty()
            && self.sse_ended_early == 0
    }

    /// Adds `o`'s counts to this one's (`t` is kept).
    pub fn add(&mut self, o: &Second) {
        self.started += o.started;
        self.completed += o.completed;
        self.sse_ended_early += o.sse_ended_early;
        for (dst, src) in [
            (&mut self.errors, &o.errors),
            (&mut self.retried_503, &o.retried_503),
            (&mut self.found_done, &o.found_done),
        ] {
            for (k, v) in src {
                *dst.entry(k.clone()).or_insert(0) += v;
            }
        }
    }
}

/// Per-second buckets, indexed by second since the start.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    seconds: Vec<Second>,
}

impl Timeline {
    /// The bucket of second `t`, created (with the empty ones before it)
    /// when first touched.
    pub fn at(&mut self, t: u64) -> &mut Second {
        let i = t as usize;
        while self.seconds.len() <= i {
            let t = self.seconds.len() as u64;
            self.seconds.push(Second {
                t,
                ..Second::default()
            });
        }
        &mut self.seconds[i]
    }

    pub fn merge(&mut self, o: &Timeline) {
        for s in &o.seconds {
            if !s.is_empty() {
                self.at(s.t).add(s);
            }
        }
    }

    /// Every second from 0 to the last one touched, in order (quiet
    /// seconds included, so the list is a regular series).
    pub fn into_seconds(self) -> Vec<Second> {
        self.seconds
    }
}

/// One memory sample: seconds since the start and each instance's
/// resident set, in the order of the run's `--server-pid`s (`None` when
/// `/proc` could not be read, e.g. the process is gone).
#[derive(Debug, Clone, Serialize)]
pub struct RssSample {
    pub t_s: f64,
    pub rss_kb: Vec<Option<u64>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_by_second_and_keeps_gaps() {
        let mut a = Timeline::default();
        a.at(0).completed += 2;
        a.at(2)
            .errors
            .insert("approve: http 503 store_unavailable".into(), 1);
        let mut b = Timeline::default();
        b.at(2).completed += 1;
        *b.at(2)
            .errors
            .entry("approve: http 503 store_unavailable".into())
            .or_insert(0) += 2;
        b.at(3).retried_503.insert("scan".into(), 4);
        a.merge(&b);
        let s = a.into_seconds();
        assert_eq!(s.len(), 4);
        assert_eq!(s.iter().map(|x| x.t).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
        assert_eq!(s[0].completed, 2);
        assert!(s[1].is_empty());
        assert_eq!(s[2].completed, 1);
        assert_eq!(s[2].errors["approve: http 503 store_unavailable"], 3);
        assert_eq!(s[3].retried_503["scan"], 4);
    }
}
