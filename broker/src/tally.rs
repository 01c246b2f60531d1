//! Refusals of requests that proved no identity, counted instead of recorded one by one.
//!
//! Anyone can send a malformed body, an unknown challenge id or a report that does not
//! verify; one audit record each would let a crowd of addresses fill the disk. They are
//! counted per source prefix (IPv4 /24, IPv6 /64), action and code, and written as one
//! bounded audit record per interval. The table itself is bounded: past
//! [`MAX_TALLIED`] distinct keys, further refusals only add to an overflow count.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Mutex;

use ipnet::IpNet;

use crate::audit::{Action, AuditEvent, Outcome};
use crate::refusal::Code;

/// Most (prefix, action, code) keys held between two summaries.
pub(crate) const MAX_TALLIED: usize = 4096;
/// Most keys a summary record names; the rest are added up.
const MAX_NAMED: usize = 8;

/// The counts since the last summary.
#[derive(Debug, Default)]
pub(crate) struct RefusalTally {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    counts: HashMap<(Option<IpNet>, Action, Code), u64>,
    overflow: u64,
}

/// The prefix a source is counted under.
fn prefix(address: IpAddr) -> Option<IpNet> {
    let length = if address.is_ipv4() { 24 } else { 64 };
    IpNet::new(address, length).ok().map(|net| net.trunc())
}

impl RefusalTally {
    /// Counts one refusal from `source` (none: not known, e.g. before the address was read).
    pub(crate) fn count(&self, source: Option<IpAddr>, action: Action, code: Code) {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (source.and_then(prefix), action, code);
        if state.counts.len() >= MAX_TALLIED && !state.counts.contains_key(&key) {
            state.overflow = state.overflow.saturating_add(1);
            return;
        }
        let count = state.counts.entry(key).or_insert(0);
        *count = count.saturating_add(1);
    }

    /// The audit event summing up everything counted since the last call (none when
    /// nothing was), and a fresh start. Its reason is bounded whatever was counted.
    pub(crate) fn summary(&self, now: i64, since: i64) -> Option<AuditEvent> {
        let State { counts, overflow } =
            std::mem::take(&mut *self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        if counts.is_empty() && overflow == 0 {
            return None;
        }
        let mut entries: Vec<_> = counts.into_iter().collect();
        entries.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let total: u64 = entries.iter().map(|(_, n)| *n).sum::<u64>().saturating_add(overflow);
        let rest: u64 = entries.iter().skip(MAX_NAMED).map(|(_, n)| *n).sum::<u64>().saturating_add(overflow);
        let mut reason = format!("{total} refusals of requests that proved no identity since {since}");
        if rest > 0 {
            let _ = write!(reason, " ({rest} of them from sources and codes not named here)");
        }
        reason.push(':');
        for ((net, action, code), count) in entries.iter().take(MAX_NAMED) {
            let net = net.map_or_else(|| "unknown".to_owned(), |n| n.to_string());
            let _ = write!(reason, " {net} {} {} x{count};", action.as_str(), code.as_str());
        }
        Some(AuditEvent::new(now, Action::Request, Outcome::Refused, "refusals_summarized", reason))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn counts_per_prefix_and_bounds_table_and_record() {
        let tally = RefusalTally::default();
        assert!(tally.summary(10, 0).is_none());
        for host in 0..=255u8 {
            tally.count(Some(IpAddr::from([10, 1, 2, host])), Action::Begin, Code::MalformedRequest);
        }
        tally.count(Some("2001:db8::1".parse().unwrap()), Action::Attest, Code::ChallengeUnknown);
        tally.count(Some("2001:db8::ffff:1".parse().unwrap()), Action::Attest, Code::ChallengeUnknown);
        let event = tally.summary(10, 0).unwrap();
        assert!(event.reason.starts_with("258 refusals"), "{}", event.reason);
        assert!(event.reason.contains("10.1.2.0/24 begin malformed_request x256;"), "{}", event.reason);
        assert!(event.reason.contains("2001:db8::/64 attest challenge_unknown x2;"), "{}", event.reason);
        assert!(tally.summary(11, 10).is_none(), "a summary starts the count again");

        // A crowd of prefixes: the table stops at MAX_TALLIED keys, the record at MAX_NAMED.
        for i in 0..u32::try_from(MAX_TALLIED + 100).unwrap() {
            tally.count(Some(IpAddr::from((i << 8).to_be_bytes())), Action::Begin, Code::BodyTooLarge);
        }
        let event = tally.summary(12, 11).unwrap();
        assert!(event.reason.len() < crate::audit::MAX_REASON_CHARS, "{}", event.reason);
        assert!(event.reason.contains(&format!("{} refusals", MAX_TALLIED + 100)), "{}", event.reason);
        assert!(
            event.reason.contains("(4188 of them from sources and codes not named here)"),
            "{}",
            event.reason
        );
    }
}
