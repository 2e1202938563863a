//! The CloudEvent envelope of one record, read in a single pass by the scanner.
//!
//! [`envelope`] validates the whole record as JSON and picks out the envelope attributes and,
//! when `data` is an object, the few `data` fields the decoder may need, all as borrowed slices.
//! A `data` given as a JSON string is only validated here; it is unescaped and scanned by
//! [`Envelope::with_data`] when the event type calls for it (inbound messages, test events), so
//! the 53% of records that are delivery receipts never pay for it.
//!
//! Duplicate keys: the last one wins (as with `serde_json::Value`), at the top level and in `data`.
//! Escaped keys are decoded before matching, so `"\u0074ype"` is `type`.

use std::borrow::Cow;

use super::scan::{JStr, ScanError, Scanner, Val};

/// The CloudEvent attributes of one record, borrowed from it (owned only where unescaped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// `id`: a non-empty string.
    pub id: Cow<'a, str>,
    /// `type`: a non-empty string.
    pub ty: Cow<'a, str>,
    /// `source`: a non-empty string.
    pub source: Cow<'a, str>,
    /// `dataschema`, when it is a string.
    pub dataschema: Option<Cow<'a, str>>,
    /// `time`, unparsed, when it is a string.
    pub time: Option<Cow<'a, str>>,
    /// `datacontenttype`, when it is a string.
    pub datacontenttype: Option<Cow<'a, str>>,
    data: RawData<'a>,
}

/// The `data` member as first seen: an object (its fields are in the [`Fields`] filled by
/// [`scan`]), or a string to decode later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RawData<'a> {
    Missing,
    Object,
    Str(JStr<'a>),
    Other(&'static str),
}

/// The `data` fields the decoder reads; each is the last occurrence of its key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Fields<'a> {
    pub(crate) account_sid: Option<Val<'a>>,
    pub(crate) from: Option<Val<'a>>,
    pub(crate) to: Option<Val<'a>>,
    pub(crate) timestamp: Option<Val<'a>>,
    pub(crate) body: Option<Val<'a>>,
    pub(crate) message_sid: Option<Val<'a>>,
    pub(crate) messaging_service_sid: Option<Val<'a>>,
    pub(crate) opt_out_type: Option<Val<'a>>,
    pub(crate) test_id: Option<Val<'a>>,
    /// The reassigned-number event's snake_case fields.
    pub(crate) account_sid_snake: Option<Val<'a>>,
    pub(crate) from_number: Option<Val<'a>>,
    pub(crate) to_number: Option<Val<'a>>,
    pub(crate) consent_operation: Option<Val<'a>>,
    pub(crate) messaging_service_sid_snake: Option<Val<'a>>,
}

/// Scans the members of a `data` object into `f` (filled in place: it is large and this is the
/// hot path), keeping the ones in [`Fields`].
fn data_object<'a>(s: &mut Scanner<'a>, depth: usize, f: &mut Fields<'a>) -> Result<(), ScanError> {
    *f = Fields::default();
    s.object(depth, |s, key, d| {
        let slot = match key {
            "accountSid" => &mut f.account_sid,
            "from" => &mut f.from,
            "to" => &mut f.to,
            "timestamp" => &mut f.timestamp,
            "body" => &mut f.body,
            "messageSid" => &mut f.message_sid,
            "messagingServiceSid" => &mut f.messaging_service_sid,
            "optOutType" => &mut f.opt_out_type,
            "test_id" => &mut f.test_id,
            "account_sid" => &mut f.account_sid_snake,
            "from_number" => &mut f.from_number,
            "to_number" => &mut f.to_number,
            "consent_operation" => &mut f.consent_operation,
            "messaging_service_sid" => &mut f.messaging_service_sid_snake,
            _ => return s.value(d).map(drop),
        };
        *slot = Some(s.value(d)?);
        Ok(())
    })
}

/// Reads and validates one record's envelope.
///
/// Errors are dead-letter reasons starting with `not JSON:` or `not a CloudEvent:`. The whole
/// record must be JSON (see the scanner's module docs for exactly what is checked); `id`, `type`,
/// `source` and `specversion` must be non-empty strings and `specversion` must be `"1.0"`.
/// Optional attributes of the wrong JSON type read as absent rather than being rejected.
pub fn envelope(bytes: &[u8]) -> Result<Envelope<'_>, String> {
    scan(bytes, &mut Fields::default())
}

/// [`envelope`], also filling `fields` when `data` is an object.
pub(crate) fn scan<'a>(bytes: &'a [u8], fields: &mut Fields<'a>) -> Result<Envelope<'a>, String> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| format!("not JSON: invalid UTF-8 at byte {}", e.valid_up_to()))?;
    let mut s = Scanner::new(text);
    match s.peek_value() {
        Some(b'{') => {}
        None => return Err("not JSON: empty record".to_owned()),
        Some(_) => {
            // Tell "valid JSON but not an object" from garbage, for a clearer reason.
            return Err(match s.value(0).and_then(|_| s.finish()) {
                Ok(()) => "not JSON: top level is not an object".to_owned(),
                Err(e) => format!("not JSON: {e}"),
            });
        }
    }
    let mut top: [Option<Val<'_>>; 7] = [None; 7];
    let mut data = RawData::Missing;
    let scanned = s.object(0, |s, key, d| {
        let slot = match key {
            "id" => 0,
            "type" => 1,
            "source" => 2,
            "specversion" => 3,
            "dataschema" => 4,
            "time" => 5,
            "datacontenttype" => 6,
            "data" => {
                data = match s.peek_value() {
                    Some(b'{') => {
                        data_object(s, d, fields)?;
                        RawData::Object
                    }
                    _ => match s.value(d)? {
                        Val::Str(j) => RawData::Str(j),
                        other => RawData::Other(other.kind()),
                    },
                };
                return Ok(());
            }
            _ => return s.value(d).map(drop),
        };
        top[slot] = Some(s.value(d)?);
        Ok(())
    });
    scanned
        .and_then(|()| s.finish())
        .map_err(|e| format!("not JSON: {e}"))?;
    let [
        id,
        ty,
        source,
        specversion,
        dataschema,
        time,
        datacontenttype,
    ] = top;
    let id = required("id", id)?;
    let ty = required("type", ty)?;
    let source = required("source", source)?;
    let specversion = required("specversion", specversion)?;
    if specversion != "1.0" {
        return Err(format!(
            "not a CloudEvent: unsupported specversion {:?}",
            clip(&specversion)
        ));
    }
    Ok(Envelope {
        id,
        ty,
        source,
        dataschema: optional(dataschema),
        time: optional(time),
        datacontenttype: optional(datacontenttype),
        data,
    })
}

/// A required attribute: present, a string, not empty.
fn required<'a>(name: &str, v: Option<Val<'a>>) -> Result<Cow<'a, str>, String> {
    match v {
        None | Some(Val::Null) => Err(format!("not a CloudEvent: missing `{name}`")),
        Some(Val::Str(j)) => match j.decode() {
            Some(s) if s.is_empty() => Err(format!("not a CloudEvent: empty `{name}`")),
            Some(s) => Ok(s),
            None => Err(format!("not a CloudEvent: undecodable `{name}`")),
        },
        Some(other) => Err(format!(
            "not a CloudEvent: `{name}` is {}, not a string",
            other.kind()
        )),
    }
}

/// An optional attribute: its text when it is a string, else absent.
fn optional(v: Option<Val<'_>>) -> Option<Cow<'_, str>> {
    match v {
        Some(Val::Str(j)) => j.decode(),
        _ => None,
    }
}

/// Shortens input-derived text quoted in a dead-letter reason.
pub(crate) fn clip(s: &str) -> &str {
    match s.char_indices().nth(40) {
        Some((i, _)) => s.get(..i).unwrap_or(s),
        None => s,
    }
}

impl Envelope<'_> {
    /// Runs `f` on the `data` fields: `fields` as filled by [`scan`] when `data` is an object,
    /// else those of the decoded `data` string.
    ///
    /// Errors are dead-letter reasons starting with `no usable data:`: `data` is missing, null,
    /// not an object, or a string that does not hold exactly one JSON object.
    pub(crate) fn with_data<R>(
        &self,
        fields: &Fields<'_>,
        f: impl FnOnce(&Fields<'_>) -> R,
    ) -> Result<R, String> {
        match self.data {
            RawData::Missing => Err("no usable data: `data` is missing".to_owned()),
            RawData::Object => Ok(f(fields)),
            RawData::Other(kind) => Err(format!("no usable data: `data` is {kind}")),
            RawData::Str(j) => {
                let inner = j
                    .decode()
                    .ok_or_else(|| "no usable data: undecodable `data` string".to_owned())?;
                let mut s = Scanner::new(&inner);
                if s.peek_value() != Some(b'{') {
                    return Err("no usable data: `data` string is not a JSON object".to_owned());
                }
                let mut inner_fields = Fields::default();
                data_object(&mut s, 0, &mut inner_fields)
                    .and_then(|()| s.finish())
                    .map_err(|e| format!("no usable data: `data` string is not JSON: {e}"))?;
                Ok(f(&inner_fields))
            }
        }
    }
}
