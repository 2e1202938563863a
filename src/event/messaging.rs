//! The Messaging webhook: Twilio's inbound-message request to a Messaging Service's (or a
//! number's) webhook URL, a form with `MessageSid`, `AccountSid`, `From`, `To`, `Body`,
//! `MessagingServiceSid` and, when Advanced Opt-Out is on, `OptOutType`
//! (<https://www.twilio.com/docs/messaging/guides/webhook-request>).
//!
//! The same rules as an inbound-message event, with two differences: the form has no schema
//! version, so a missing `OptOutType` may only mean Advanced Opt-Out is off and keyword
//! inference follows `infer_keywords` alone; and it has no event time, so the time it was
//! received stands in (marked [`TimeSource::Received`], and replaced by Twilio's time when
//! another path brings the same message). The `MessageSid` is both its event id and its
//! identity.

use chrono::{DateTime, Utc};

use super::envelope::clip;
use super::form::{self, Form};
use super::{
    DecodeOptions, Detection, OptEvent, OptOutType, Outcome, Skip, TimeSource, body_detection,
    identity, sanitize,
};

/// Classifies one Messaging webhook body received at `received_at`; never panics.
pub fn classify_messaging_form(
    body: &[u8],
    received_at: DateTime<Utc>,
    opts: DecodeOptions,
) -> Outcome {
    let form = form::parse(body);
    if let Some(reason) = form.malformed {
        return Outcome::Dead(format!("not a form: {reason}"));
    }
    // A status callback pointed at this URL by mistake is no inbound message.
    let status = form.get("SmsStatus").or(form.get("MessageStatus"));
    if status.is_some_and(|s| !s.eq_ignore_ascii_case("received")) {
        return Outcome::Skip(Skip::OtherType);
    }
    let (opt_out_type, detection, rule) = match form.get("OptOutType") {
        Some(t) => match OptOutType::parse(t) {
            Some(t) => (t, Detection::Twilio, None),
            None => return Outcome::Dead(format!("unknown optOutType: {:?}", clip(t))),
        },
        None => match body_detection(form.get("Body"), opts.infer_keywords, opts) {
            Some(found) => found,
            None => return Outcome::Skip(Skip::NotOptKeyword),
        },
    };
    match opt_event(&form, received_at) {
        Ok(e) => Outcome::Opt(OptEvent {
            opt_out_type,
            inferred: detection.is_inferred(),
            detection,
            rule,
            ..e
        }),
        Err(reason) => Outcome::Dead(reason),
    }
}

fn opt_event(form: &Form, received_at: DateTime<Utc>) -> Result<OptEvent, String> {
    let required = |name: &str| match form.get(name) {
        Some(v) if !v.is_empty() => Ok(v.to_owned()),
        _ => Err(format!("missing field: `{name}` is absent or empty")),
    };
    let message_sid = required("MessageSid").or_else(|e| required("SmsSid").map_err(|_| e))?;
    let account_sid = required("AccountSid")?;
    let subscriber = required("From")?;
    let sender = required("To")?;
    let messaging_service_sid = form
        .get("MessagingServiceSid")
        .filter(|s| !s.is_empty())
        .map(String::from);
    identity("MessageSid", &message_sid)?;
    identity("AccountSid", &account_sid)?;
    identity("From", &subscriber)?;
    identity("To", &sender)?;
    if let Some(sid) = &messaging_service_sid {
        identity("MessagingServiceSid", sid)?;
    }
    Ok(OptEvent {
        event_id: message_sid.clone(),
        opt_out_type: OptOutType::Stop,
        inferred: false,
        detection: Detection::Twilio,
        rule: None,
        account_sid,
        messaging_service_sid,
        sender,
        subscriber,
        body: form.get("Body").map(sanitize),
        message_sid: Some(message_sid),
        occurred_at: received_at,
        time_source: TimeSource::Received,
        schema_version: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Revocations;

    const OFF: DecodeOptions = DecodeOptions {
        infer_keywords: false,
        revocations: Revocations::Builtin,
    };
    const ON: DecodeOptions = DecodeOptions {
        infer_keywords: true,
        revocations: Revocations::Builtin,
    };
    const BASE: &str = "MessageSid=SM5b1e0c7d2a9f4e3b8c6d1a2f0e9b7c4d&SmsSid=SM5b1e0c7d2a9f4e3b8c6d1a2f0e9b7c4d\
        &AccountSid=AC1&From=%2B15551230001&To=%2B15559870002&NumMedia=0&SmsStatus=received";

    fn at() -> DateTime<Utc> {
        "2026-03-01T12:00:05Z".parse().unwrap()
    }

    fn classify(extra: &str, opts: DecodeOptions) -> Outcome {
        classify_messaging_form(format!("{BASE}{extra}").as_bytes(), at(), opts)
    }

    #[test]
    fn opt_out_type_is_twilio_s_flag_with_the_receive_time() {
        let Outcome::Opt(e) = classify("&Body=Stop&OptOutType=STOP&MessagingServiceSid=MG1", OFF)
        else {
            panic!()
        };
        assert_eq!(e.event_id, "SM5b1e0c7d2a9f4e3b8c6d1a2f0e9b7c4d");
        assert_eq!(e.identity(), e.event_id);
        assert_eq!(
            (e.opt_out_type, e.detection),
            (OptOutType::Stop, Detection::Twilio)
        );
        assert_eq!((e.occurred_at, e.time_source), (at(), TimeSource::Received));
        assert_eq!(
            (e.subscriber.as_str(), e.sender.as_str()),
            ("+15551230001", "+15559870002")
        );
        assert_eq!((e.scope(), e.body.as_deref()), ("MG1", Some("Stop")));
        assert!(!e.inferred && e.schema_version.is_none());
        let Outcome::Opt(e) = classify("&Body=yes&OptOutType=start", OFF) else {
            panic!()
        };
        assert_eq!(
            (e.opt_out_type, e.scope()),
            (OptOutType::Start, "+15559870002")
        );
    }

    #[test]
    fn without_opt_out_type_inference_follows_the_flag_alone() {
        let plain = DecodeOptions {
            infer_keywords: false,
            revocations: Revocations::Off,
        };
        assert_eq!(
            classify("&Body=STOP", plain),
            Outcome::Skip(Skip::NotOptKeyword)
        );
        let Outcome::Opt(e) = classify("&Body=+stop+", ON) else {
            panic!()
        };
        assert_eq!((e.detection, e.inferred), (Detection::Keyword, true));
        // Phrases, as on every path: a bare STOP Twilio did not flag is the FCC word.
        let Outcome::Opt(e) = classify("&Body=STOP", OFF) else {
            panic!()
        };
        assert_eq!(
            (e.detection, e.opt_out_type),
            (Detection::Phrase, OptOutType::Stop)
        );
        let Outcome::Opt(e) = classify("&Body=please+stop+texting+me", OFF) else {
            panic!()
        };
        assert_eq!(
            (e.detection, e.opt_out_type),
            (Detection::Phrase, OptOutType::Stop)
        );
        assert!(e.rule.is_some());
        assert_eq!(
            classify("&Body=hello", ON),
            Outcome::Skip(Skip::NotOptKeyword)
        );
    }

    #[test]
    fn what_cannot_be_stored_or_trusted_is_a_dead_letter() {
        let dead = |o: Outcome| match o {
            Outcome::Dead(r) => r,
            other => panic!("{other:?}"),
        };
        assert!(dead(classify("&OptOutType=UNSUBSCRIBE", OFF)).starts_with("unknown optOutType: "));
        let r = dead(classify_messaging_form(
            b"AccountSid=AC1&From=%2B1&To=%2B2&OptOutType=STOP",
            at(),
            OFF,
        ));
        assert!(r.starts_with("missing field: `MessageSid`"), "{r}");
        let r = dead(classify_messaging_form(
            b"Body=100%&OptOutType=STOP",
            at(),
            OFF,
        ));
        assert!(r.starts_with("not a form: "), "{r}");
        let long = "x".repeat(600);
        let r = dead(classify(
            &format!("&OptOutType=STOP&MessagingServiceSid={long}"),
            OFF,
        ));
        assert!(r.starts_with("unstorable field: "), "{r}");
    }

    #[test]
    fn status_callbacks_are_skipped() {
        let body = "MessageSid=SM1&AccountSid=AC1&From=%2B1&To=%2B2&MessageStatus=delivered&SmsStatus=delivered";
        assert_eq!(
            classify_messaging_form(body.as_bytes(), at(), ON),
            Outcome::Skip(Skip::OtherType)
        );
    }
}
