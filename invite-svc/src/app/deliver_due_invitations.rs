//! Delivering due invitations: each due SCHEDULED invitation (EMAIL, SMS) sent once
//! (`adapters::scheduler` calls [`Scheduler::send_next`] every tick).
//!
//! Exactly-once as far as a provider allows, and the guarantee precisely:
//! 1. `claim_due` leases one row and counts the attempt in a committed write BEFORE the
//!    provider is called. Replicas never hold the same row (`FOR UPDATE SKIP LOCKED` on
//!    Postgres; BEGIN IMMEDIATE on SQLite), and a leased row is invisible to others until its
//!    lease ends, so two replicas never send one invitation at the same time.
//! 2. The outcome (SENT with its outbox event, or a retry time, or BOUNCED) is committed
//!    right after the provider answers.
//! 3. Each replica sends one message at a time. If it dies between 1 and 2, that one message
//!    is leased but has no outcome; when the lease ends another replica sends it again with
//!    the same Message-ID. So nothing is ever lost, and a crash can duplicate at most the
//!    single message each dead replica had in flight (and only if the provider had already
//!    taken it). The lease (default 2 minutes) is longer than the SMTP time-out (30 s), so a
//!    slow but live sender is not overtaken.

use std::{sync::Arc, time::Duration};

use chrono::{NaiveDate, TimeDelta};

use crate::{
    adapters::sender::{OutgoingEmail, OutgoingSms, Receipt, Senders},
    app::{clock::Clock, consent::ConsentSettings},
    domain::{
        codes, contact,
        delivery::{self, AfterFailure, RetryPolicy, SendFailure},
        party::Flow,
        status::Channel,
        templates::{self, Catalog, Personalisation},
    },
    store::{InvitationRow, Store, StoreResult},
};
use futures::FutureExt;
use referral_common::supervisor::panic_message;
use std::panic::AssertUnwindSafe;

/// A test-only fault: called with each claimed invitation's id before it is sent, so a
/// test can make the sending loop panic and watch it recover. Empty in production.
#[derive(Clone, Default)]
pub struct SendFault(Option<FaultFn>);

type FaultFn = Arc<dyn Fn(&str) + Send + Sync>;

impl SendFault {
    pub fn new(f: impl Fn(&str) + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(f)))
    }

    fn before_send(&self, invitation_id: &str) {
        if let Some(f) = &self.0 {
            f(invitation_id);
        }
    }
}

impl std::fmt::Debug for SendFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "SendFault(set)"
        } else {
            "SendFault(none)"
        })
    }
}

#[derive(Clone, Debug)]
pub struct SchedulerSettings {
    /// How often the loop looks for due invitations.
    pub tick: Duration,
    /// How long a claimed invitation is reserved for the sender that claimed it.
    pub lease: TimeDelta,
    pub retry: RetryPolicy,
    /// Base of the referral links in messages.
    pub public_url: String,
    /// Panicking sends of one invitation before it is parked.
    pub park_after: i64,
    pub fault: SendFault,
    /// Unsubscribe links, and the suppression check before each send.
    pub consent: ConsentSettings,
}

#[derive(Clone)]
pub struct Scheduler<S> {
    store: S,
    senders: Senders,
    catalog: Arc<Catalog>,
    clock: Clock,
    settings: SchedulerSettings,
}

impl<S: Store> Scheduler<S> {
    pub fn new(
        store: S,
        senders: Senders,
        catalog: Arc<Catalog>,
        clock: Clock,
        settings: SchedulerSettings,
    ) -> Self {
        Self {
            store,
            senders,
            catalog,
            clock,
            settings,
        }
    }

    /// How often the driver looks for due invitations.
    pub fn tick(&self) -> Duration {
        self.settings.tick
    }

    /// Sends the longest-due invitation, if any is due; `false` when none is.
    pub async fn send_next(&self) -> StoreResult<bool> {
        let now = self.clock.now();
        let Some(claimed) = self.store.claim_due(now, now + self.settings.lease).await? else {
            return Ok(false);
        };
        let (row, attempt) = (claimed.row, claimed.send_attempts);
        // The last line of the suppression list: an invitation queued before its address was
        // suppressed (and missed by the suppression's own cancellation, e.g. created in a
        // concurrent transaction, or stored before contact lookups) is cancelled, not sent.
        if let Some(to) = self.settings.consent.messaged_by(&row)
            && self.store.is_suppressed(&to.key).await?
        {
            self.store
                .cancel_claimed(&row.id, attempt, crate::domain::suppression::CANCEL_REASON, now)
                .await?;
            tracing::info!(invitation_id = %row.id, "invitation cancelled: recipient suppressed");
            return Ok(true);
        }
        // A panic while sending is a failure of THIS row: counted against it, and the row
        // parked once it has panicked `park_after` times, so one bad row never stops the
        // loop nor blocks the rows behind it.
        let attempt_send = AssertUnwindSafe(async {
            self.settings.fault.before_send(&row.id);
            self.deliver(&row, now).await
        })
        .catch_unwind()
        .await;
        let sent = match attempt_send {
            Ok(sent) => sent,
            Err(panic) => {
                let reason = contact::without_contacts(
                    &format!("send panicked: {}", panic_message(&*panic)),
                    &[&row.recipient_email, &row.recipient_phone],
                );
                let attempts = u32::try_from(attempt).unwrap_or(u32::MAX);
                let retry_at = now + delivery::backoff(&self.settings.retry, attempts);
                let parked = self
                    .store
                    .record_send_panic(&row.id, attempt, &reason, self.settings.park_after, retry_at, now)
                    .await?;
                if parked {
                    metrics::counter!("parked_total", "kind" => "invitation_send").increment(1);
                    tracing::error!(invitation_id = %row.id, attempt, %reason, "invitation parked");
                } else {
                    tracing::error!(invitation_id = %row.id, attempt, %reason, %retry_at, "invitation send panicked; retrying");
                }
                return Ok(true);
            }
        };
        match sent {
            Ok(receipt) => {
                self.store
                    .record_sent(&row.id, attempt, &receipt.provider_message_id, now)
                    .await?;
                tracing::info!(invitation_id = %row.id, channel = %row.channel, attempt, "invitation sent");
            }
            Err(failure) => {
                let attempts = u32::try_from(attempt).unwrap_or(u32::MAX);
                let (error, retry_at) =
                    match delivery::after_failure(&self.settings.retry, attempts, &failure, now) {
                        AfterFailure::RetryAt(at) => (failure_text(&failure), Some(at)),
                        AfterFailure::GiveUp(reason) => (reason, None),
                    };
                // Logged and stored (send error, bounce reason): never the address itself.
                let error = contact::without_contacts(&error, &[&row.recipient_email, &row.recipient_phone]);
                tracing::warn!(invitation_id = %row.id, attempt, error = %error, retry_at = ?retry_at, "invitation not sent");
                self.store
                    .record_send_failure(&row.id, attempt, &error, retry_at, now)
                    .await?;
            }
        }
        Ok(true)
    }

    async fn deliver(
        &self,
        row: &InvitationRow,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Receipt, SendFailure> {
        let rendered = self.render(row)?;
        match Channel::parse(&row.channel) {
            Ok(Channel::Email) => {
                let links = self.settings.consent.links(&row.id);
                let email = OutgoingEmail {
                    invitation_id: row.id.clone(),
                    from: self.senders.from.clone(),
                    to_address: row.recipient_email.clone(),
                    to_name: row.recipient_name.clone(),
                    subject: rendered.subject,
                    text: templates::with_unsubscribe_footer(&rendered.text, &links.url),
                    html: templates::html_body(&rendered.text, &links.url),
                    unsubscribe: Some(links),
                    date: now,
                };
                self.senders.email.send_email(&email).await
            }
            Ok(Channel::Sms) => {
                let sms = OutgoingSms {
                    invitation_id: row.id.clone(),
                    to_phone: row.recipient_phone.clone(),
                    text: rendered.sms,
                    date: now,
                };
                self.senders.sms.send_sms(&sms).await
            }
            _ => Err(SendFailure::Permanent(format!(
                "channel {} is not sent by us",
                row.channel
            ))),
        }
    }

    /// The message of the template and variant recorded at creation; an invitation from
    /// before templates (or whose template left the catalog) gets its flow's default.
    fn render(&self, row: &InvitationRow) -> Result<templates::Rendered, SendFailure> {
        let recorded = self
            .catalog
            .get(&row.template_id)
            .and_then(|t| t.variant(&row.template_variant));
        let variant = match recorded {
            Some(v) => v,
            None => {
                let flow = Flow::parse(&row.flow).map_err(|e| SendFailure::Permanent(e.to_string()))?;
                self.catalog
                    .choose("", flow, row.vendor_type.as_deref())
                    .map_err(|e| SendFailure::Permanent(e.to_string()))?
                    .assign(&row.id)
            }
        };
        let personal = Personalisation {
            recipient_name: row.recipient_name.clone(),
            referrer_name: row.referrer_name.clone(),
            business_name: row.business_name.clone(),
            wedding_date: NaiveDate::parse_from_str(&row.wedding_date, "%Y-%m-%d").ok(),
            link: codes::code_url(&self.settings.public_url, &row.code),
            code: row.code.clone(),
            message: row.message.clone(),
        };
        Ok(templates::render(variant, &personal))
    }
}

fn failure_text(f: &SendFailure) -> String {
    match f {
        SendFailure::Transient(s) | SendFailure::Permanent(s) => s.clone(),
    }
}
