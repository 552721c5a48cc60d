//! Which windows a timestamp falls in: tumbling, hopping and cumulating windows are aligned to
//! the epoch (as in Flink), so every subtask and every run agrees on their bounds; session
//! windows depend on the rows around them and are handled by `session`.

use std::time::Duration;

/// A window's bounds in milliseconds: `start` inclusive, `end` exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bounds {
    /// First millisecond in the window.
    pub start: i64,
    /// First millisecond after it.
    pub end: i64,
}

/// The window kinds of the `window` step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// Fixed, non-overlapping windows of `size`.
    Tumble {
        /// Window length in ms.
        size: i64,
    },
    /// Windows of `size` starting every `slide`; a row is in `size / slide` of them.
    Hop {
        /// Window length in ms.
        size: i64,
        /// Distance between window starts in ms.
        slide: i64,
    },
    /// Windows that grow by `step` from the start of each `max`-long period (a running
    /// total per day, reported every hour).
    Cumulate {
        /// Growth in ms.
        step: i64,
        /// Longest window in ms.
        max: i64,
    },
    /// Per key, rows closer than `gap` form one window.
    Session {
        /// Largest gap inside a session, in ms.
        gap: i64,
    },
}

/// A duration in whole milliseconds, at least 1.
pub fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX).max(1)
}

impl WindowKind {
    /// Appends the windows containing `time` (aligned kinds; nothing for sessions).
    pub fn windows_of(&self, time: i64, out: &mut Vec<Bounds>) {
        match *self {
            Self::Tumble { size } => {
                let start = time - time.rem_euclid(size);
                out.push(Bounds { start, end: start + size });
            }
            Self::Hop { size, slide } => {
                let mut start = time - time.rem_euclid(slide);
                while start > time - size {
                    out.push(Bounds { start, end: start + size });
                    start -= slide;
                }
            }
            Self::Cumulate { step, max } => {
                let start = time - time.rem_euclid(max);
                let mut end = start + (time - start) / step * step + step;
                while end <= start + max {
                    out.push(Bounds { start, end });
                    end += step;
                }
            }
            Self::Session { .. } => {}
        }
    }

    /// The latest window end any row at `time` can contribute to (for sessions: `time + gap`).
    pub fn last_end(&self, time: i64) -> i64 {
        match *self {
            Self::Tumble { size } => time - time.rem_euclid(size) + size,
            Self::Hop { size, slide } => time - time.rem_euclid(slide) + size,
            Self::Cumulate { max, .. } => time - time.rem_euclid(max) + max,
            Self::Session { gap } => time + gap,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(kind: WindowKind, time: i64) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        kind.windows_of(time, &mut out);
        out.into_iter().map(|b| (b.start, b.end)).collect()
    }

    #[test]
    fn aligned_windows_contain_their_rows() {
        assert_eq!(windows(WindowKind::Tumble { size: 10 }, 25), vec![(20, 30)]);
        assert_eq!(windows(WindowKind::Tumble { size: 10 }, -1), vec![(-10, 0)]);
        assert_eq!(
            windows(WindowKind::Hop { size: 10, slide: 2 }, 25),
            vec![(24, 34), (22, 32), (20, 30), (18, 28), (16, 26)]
        );
        assert_eq!(windows(WindowKind::Hop { size: 10, slide: 2 }, 24).len(), 5);
        assert_eq!(windows(WindowKind::Cumulate { step: 10, max: 30 }, 15), vec![(0, 20), (0, 30)]);
        assert_eq!(windows(WindowKind::Cumulate { step: 10, max: 30 }, 29), vec![(0, 30)]);
        assert_eq!(windows(WindowKind::Cumulate { step: 10, max: 30 }, 30), vec![(30, 40), (30, 50), (30, 60)]);
        for time in -50..50 {
            for kind in [
                WindowKind::Tumble { size: 7 },
                WindowKind::Hop { size: 9, slide: 3 },
                WindowKind::Hop { size: 10, slide: 4 },
                WindowKind::Cumulate { step: 5, max: 20 },
            ] {
                for (start, end) in windows(kind, time) {
                    assert!(start <= time && time < end, "{kind:?} put {time} in [{start}, {end})");
                    assert!(end <= kind.last_end(time));
                }
            }
        }
    }
}
