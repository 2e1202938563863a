//! `com.twilio.messaging.reassigned-number.detected`: Twilio's Compliance Toolkit found that a
//! number changed hands since the sender last verified it, and opted it out.
//!
//! The event (schema `DemandGrowth.ReassignedPhoneNumberDetectedEvent/1`, Twilio's example at
//! <https://www.twilio.com/docs/events/event-types/messaging/compliance-toolkit>) has
//! snake_case `data` fields and no Messaging Service or message SID:
//!
//! | `data` field | opt event |
//! |---|---|
//! | `consent_operation` = `opt-out-created` | a STOP, detection `reassigned`; any other value (or none) is a dead letter, since no other value is documented |
//! | `account_sid` | account |
//! | `to_number` | subscriber: the number that changed hands, which the check runs on before a send to it |
//! | `from_number` | sender; also the scope, unless `data` names a `messaging_service_sid` |
//! | `timestamp` | occurred at, as for every Twilio event |
//!
//! The direction of `from_number`/`to_number` is inferred from the check (it runs on outbound
//! messages: from the sender, to the subscriber); Twilio's page shows the fields without
//! describing them. The event has no message SID, so its CloudEvent `id` is its identity.

use super::envelope::{Envelope, Fields, clip};
use super::scan::Val;
use super::{
    Detection, OptEvent, OptOutType, Outcome, TimeSource, identity, occurred_at, required, text,
};

/// The only `consent_operation` Twilio documents: the number was opted out.
pub const OPT_OUT_CREATED: &str = "opt-out-created";

/// Decodes a reassigned-number event's `data`.
pub(super) fn decode(env: &Envelope<'_>, d: &Fields<'_>, version: Option<u32>) -> Outcome {
    match opt_out(env, d, version) {
        Ok(e) => Outcome::Opt(e),
        Err(reason) => Outcome::Dead(reason),
    }
}

fn opt_out(env: &Envelope<'_>, d: &Fields<'_>, version: Option<u32>) -> Result<OptEvent, String> {
    match d.consent_operation {
        Some(Val::Str(j)) => match j.decode() {
            Some(op) if op == OPT_OUT_CREATED => {}
            Some(op) => {
                return Err(format!(
                    "unknown consent_operation: {:?} (only {OPT_OUT_CREATED:?} is documented)",
                    clip(&op)
                ));
            }
            None => return Err("unknown consent_operation: undecodable".to_owned()),
        },
        None | Some(Val::Null) => {
            return Err("unknown consent_operation: `data.consent_operation` is absent".to_owned());
        }
        Some(other) => return Err(format!("unknown consent_operation: {}", other.kind())),
    }
    let account_sid = required("account_sid", d.account_sid_snake)?;
    let subscriber = required("to_number", d.to_number)?;
    let sender = required("from_number", d.from_number)?;
    let timestamp = required("timestamp", d.timestamp)?;
    let occurred_at = occurred_at(&timestamp)?;
    let messaging_service_sid = text(d.messaging_service_sid_snake).map(String::from);
    identity("id", &env.id)?;
    identity("data.account_sid", &account_sid)?;
    identity("data.to_number", &subscriber)?;
    identity("data.from_number", &sender)?;
    if let Some(sid) = &messaging_service_sid {
        identity("data.messaging_service_sid", sid)?;
    }
    Ok(OptEvent {
        event_id: env.id.clone().into_owned(),
        opt_out_type: OptOutType::Stop,
        inferred: false,
        detection: Detection::Reassigned,
        rule: None,
        account_sid,
        messaging_service_sid,
        sender,
        subscriber,
        body: None,
        message_sid: None,
        occurred_at,
        time_source: TimeSource::Twilio,
        schema_version: version,
    })
}
