//! How decisions are remembered: a refusal once the request has proved it comes from the
//! hardware (an activated secret, a fresh report) is an audit record; one before that is
//! counted and summarized, since what it showed (an EK certificate, a genuine report) may
//! be public or replayed.

use std::net::IpAddr;

use super::{Broker, Caller};
use crate::audit::{Action, AuditEvent, Outcome};
use crate::refusal::{Code, Refusal};

impl Broker {
    /// An audit event for a decision about `caller`, with the policy digest in force.
    pub(crate) fn event(
        &self,
        action: Action,
        outcome: Outcome,
        code: &str,
        reason: impl Into<String>,
        caller: Option<&Caller>,
    ) -> AuditEvent {
        let mut event = AuditEvent::new(self.now(), action, outcome, code, reason);
        event.policy_digest = Some(self.policy().digest().to_owned());
        if let Some(caller) = caller {
            event.peer = Some(caller.address.to_string());
            event.evidence_digest = Some(hex::encode(caller.body_digest));
        }
        event
    }

    /// Writes the summary of the refusals counted since the last one (see [`crate::tally::RefusalTally`]).
    pub(crate) fn summarize_refusals(&self) {
        let now = self.now();
        let since = self.tally_since.swap(now, std::sync::atomic::Ordering::Relaxed);
        if let Some(mut event) = self.tally.summary(now, since) {
            event.policy_digest = Some(self.policy().digest().to_owned());
            if let Err(e) = self.store.audit(event) {
                tracing::error!("audit summary of refusals lost: {e}");
            }
        }
    }

    /// Counts a refusal of a request that proved no identity (nothing is stored now).
    pub(crate) fn tally_refusal(&self, action: Action, refusal: &Refusal, source: Option<IpAddr>) {
        self.metrics.refused(action, refusal.code);
        if refusal.code != Code::RateLimited {
            self.tally.count(source, action, refusal.code);
        }
    }

    /// Runs a step before the request has proved it comes from the hardware (see the module
    /// documentation). Its refusal is only counted ([`Broker::tally_refusal`]), so floods
    /// built from public or replayed evidence cannot fill the audit log.
    pub(crate) fn anonymous<T>(
        &self,
        action: Action,
        caller: &Caller,
        step: impl FnOnce() -> Result<T, Refusal>,
    ) -> Result<T, Refusal> {
        step().inspect_err(|refusal| self.tally_refusal(action, refusal, Some(caller.address)))
    }

    /// Runs a decision about hardware the request has proved it comes from (`hardware_id`);
    /// its refusal is recorded with that identity.
    pub(crate) fn about<T>(
        &self,
        action: Action,
        caller: &Caller,
        hardware_id: &str,
        decide: impl FnOnce() -> Result<T, Refusal>,
    ) -> Result<T, Refusal> {
        decide().inspect_err(|refusal| self.audit_refusal(action, refusal, Some(caller), Some(hardware_id)))
    }

    /// Records a refusal; a store failure here is logged, not turned into another error.
    pub(crate) fn audit_refusal(
        &self,
        action: Action,
        refusal: &Refusal,
        caller: Option<&Caller>,
        hardware_id: Option<&str>,
    ) {
        let mut event = self.event(action, Outcome::Refused, refusal.code.as_str(), &refusal.reason, caller);
        event.hardware_id = hardware_id.map(str::to_owned);
        self.record_refusal(action, refusal, event);
    }

    /// Records `event`, the audit record of `refusal`; a store failure here is logged.
    pub(crate) fn record_refusal(&self, action: Action, refusal: &Refusal, event: AuditEvent) {
        self.metrics.refused(action, refusal.code);
        if let Err(e) = self.store.audit(event) {
            tracing::error!("audit record of a refusal lost: {e}");
        }
    }
}
