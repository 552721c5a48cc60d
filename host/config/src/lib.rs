//! The configuration vocabulary every layer shares: YAML values with their source positions
//! ([`yaml::Spanned`], [`yaml::Node`]), durations, and [`SpecIssue`], the error a component's
//! config reports at a line and column. It is the bottom crate: it depends on no other weir crate.

pub mod settings;
pub mod yaml;

use yaml::Location;

/// A problem found in a pipeline file, at a position when known.
#[derive(Debug, Clone)]
pub struct SpecIssue {
    /// 1-based line and column, when known.
    pub at: Option<(u64, u64)>,
    /// The reason.
    pub message: String,
}

impl SpecIssue {
    /// An issue at a YAML location.
    pub fn at(location: &Location, message: impl Into<String>) -> Self {
        let at = (location.line() > 0).then(|| (location.line(), location.column()));
        Self { at, message: message.into() }
    }

    /// An issue without a position of its own (the component's position is used).
    pub fn new(message: impl Into<String>) -> Self {
        Self { at: None, message: message.into() }
    }

    /// Falls back to `at` when the issue has no position of its own.
    pub fn or_at(mut self, at: (u64, u64)) -> Self {
        self.at = self.at.or(Some(at));
        self
    }
}
