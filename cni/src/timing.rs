//! Where an invocation's time goes, step by step, so a slow ADD or DEL shows its step in the log
//! (and `cargo xtask bench` can print the breakdown beside the medians) without a debug trace.
//!
//! The plugin runs one command per process on one thread (namespace work runs on helper threads
//! but returns before the next step), so the recorder is thread-local: [`begin`] starts it,
//! [`mark`] closes the step that ran since the previous mark, [`summary`] renders them for the
//! final `done` log line. Steps that repeat (a retry) add up under one name, in first-seen order.
//! Tests that run many invocations on parallel threads each get their own recorder.

use std::cell::RefCell;
use std::fmt;
use std::time::{Duration, Instant};

struct Recorder {
    start: Instant,
    last: Instant,
    steps: Vec<(&'static str, Duration)>,
}

thread_local! {
    static RECORDER: RefCell<Option<Recorder>> = const { RefCell::new(None) };
}

/// Starts timing an invocation (dropping whatever an earlier one on this thread recorded).
pub fn begin() {
    let now = Instant::now();
    RECORDER.with(|r| *r.borrow_mut() = Some(Recorder { start: now, last: now, steps: Vec::new() }));
}

/// Attributes the time since the previous mark (or [`begin`]) to `step`.
pub fn mark(step: &'static str) {
    let now = Instant::now();
    RECORDER.with(|r| {
        if let Some(rec) = r.borrow_mut().as_mut() {
            let spent = now - rec.last;
            rec.last = now;
            match rec.steps.iter_mut().find(|(name, _)| *name == step) {
                Some((_, total)) => *total += spent,
                None => rec.steps.push((step, spent)),
            }
        }
    });
}

/// The steps so far and the time since [`begin`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Since [`begin`].
    pub total: Duration,
    /// Each step's time, in the order the steps first ran.
    pub steps: Vec<(&'static str, Duration)>,
}

/// What has been recorded on this thread (empty if nothing was begun).
pub fn summary() -> Summary {
    RECORDER.with(|r| {
        r.borrow()
            .as_ref()
            .map(|rec| Summary { total: rec.start.elapsed(), steps: rec.steps.clone() })
            .unwrap_or_default()
    })
}

impl fmt::Display for Summary {
    /// `config=0.31 profile=0.12 ...` in milliseconds: one log field, parsed by the benchmark.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, d)) in self.steps.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{name}={:.2}", d.as_secs_f64() * 1e3)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_add_up_in_first_seen_order() {
        begin();
        mark("config");
        std::thread::sleep(Duration::from_millis(2));
        mark("move");
        mark("config");
        let s = summary();
        assert_eq!(s.steps.iter().map(|(n, _)| *n).collect::<Vec<_>>(), ["config", "move"]);
        assert!(s.steps[1].1 >= Duration::from_millis(2), "{s:?}");
        assert!(s.total >= s.steps.iter().map(|(_, d)| *d).sum());
        let text = s.to_string();
        assert!(text.starts_with("config=") && text.contains(" move="), "{text}");
        // Another thread has its own recorder.
        std::thread::spawn(|| assert_eq!(summary(), Summary::default())).join().unwrap();
    }
}
