//! Reads a `GetRecords` answer body (JSON, AWS JSON 1.1) straight into a [`Batch`]: base64 data
//! decoded into one buffer, sequence numbers and partition keys into one string, no value
//! built for what the engine does not use (`ChildShards`, timestamps, encryption type are
//! skipped).
//!
//! It reads the shape Kinesis and its emulators send. Anything else (an escaped character in
//! a string the engine keeps, a field of an unexpected type, invalid base64) is declined with
//! a [`Declined`] and the SDK's own deserializer reads the answer instead: this reader may be
//! narrower than the SDK, never different.

use base64_simd::STANDARD as BASE64;

use crate::records::{Batch, Entry};

/// Why the fast reader left an answer to the SDK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declined {
    /// Byte offset in the body.
    pub at: usize,
    /// What was expected there.
    pub reason: &'static str,
}

/// Nesting this deep in a skipped value is declined rather than followed.
const MAX_DEPTH: usize = 64;

/// Reads one `GetRecords` answer body.
pub fn parse(body: &[u8]) -> Result<Batch, Declined> {
    if body.len() > u32::MAX as usize {
        return Err(Declined {
            at: 0,
            reason: "a body under 4 GiB",
        });
    }
    let mut p = Parser { b: body, i: 0 };
    // Base64 never decodes to more than 3/4 of the body it sits in: one allocation, no
    // regrowth and no zeroing, for the whole answer's data.
    let mut batch = Batch {
        data: Vec::with_capacity(body.len() / 4 * 3 + 3),
        ..Batch::default()
    };
    // Sequence numbers and keys: about 6% of a Twilio-sized answer, grown if need be.
    let mut text = Vec::with_capacity(body.len() / 16);
    let mut records_seen = false;
    p.members(|p, key| {
        match key {
            // A second `Records` would be read differently by the SDK (the last wins).
            b"Records" if records_seen => return Err(p.declined("one `Records`")),
            b"Records" => {
                records_seen = true;
                p.records(&mut batch.entries, &mut batch.data, &mut text)?
            }
            b"NextShardIterator" => {
                batch.next_shard_iterator = if p.null() {
                    None
                } else {
                    Some(p.utf8_string()?.to_string())
                }
            }
            b"MillisBehindLatest" => {
                batch.millis_behind_latest = if p.null() { None } else { Some(p.integer()?) }
            }
            _ => p.skip_value(0)?,
        }
        Ok(())
    })?;
    p.ws();
    if p.i != p.b.len() {
        return Err(p.declined("the end of the body"));
    }
    // Give back the slack of the estimate (the JSON around the data): shrinking reallocates
    // in place, and the batch is held until its commit.
    batch.data.shrink_to_fit();
    text.shrink_to_fit();
    batch.text = String::from_utf8(text).map_err(|e| Declined {
        at: e.utf8_error().valid_up_to(),
        reason: "UTF-8 text",
    })?;
    Ok(batch)
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn declined(&self, reason: &'static str) -> Declined {
        Declined { at: self.i, reason }
    }

    fn ws(&mut self) {
        while let Some(c) = self.b.get(self.i) {
            if !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                break;
            }
            self.i += 1;
        }
    }

    /// Skips whitespace, then takes `c` if it is next.
    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), Declined> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.declined(match c {
                b'{' => "`{`",
                b'}' => "`}` or `,`",
                b':' => "`:`",
                b'[' => "`[`",
                b']' => "`]` or `,`",
                _ => "a delimiter",
            }))
        }
    }

    fn null(&mut self) -> bool {
        self.ws();
        if self.b[self.i..].starts_with(b"null") {
            self.i += 4;
            true
        } else {
            false
        }
    }

    /// A string without escapes, as its raw bytes (without the quotes).
    fn string(&mut self) -> Result<&'a [u8], Declined> {
        if !self.eat(b'"') {
            return Err(self.declined("a string"));
        }
        let start = self.i;
        match memchr::memchr2(b'"', b'\\', &self.b[start..]) {
            Some(n) if self.b[start + n] == b'"' => {
                self.i = start + n + 1;
                Ok(&self.b[start..start + n])
            }
            Some(n) => Err(Declined {
                at: start + n,
                reason: "a string without escapes",
            }),
            None => Err(self.declined("the end of a string")),
        }
    }

    fn utf8_string(&mut self) -> Result<&'a str, Declined> {
        let at = self.i;
        std::str::from_utf8(self.string()?).map_err(|_| Declined {
            at,
            reason: "UTF-8 text",
        })
    }

    fn integer(&mut self) -> Result<i64, Declined> {
        self.ws();
        let start = self.i;
        while self
            .b
            .get(self.i)
            .is_some_and(|c| c.is_ascii_digit() || *c == b'-')
        {
            self.i += 1;
        }
        std::str::from_utf8(&self.b[start..self.i])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(Declined {
                at: start,
                reason: "an integer",
            })
    }

    /// An object whose keys have no escapes (those the engine reads): `member` reads each
    /// value, given its key.
    fn members(
        &mut self,
        mut member: impl FnMut(&mut Self, &'a [u8]) -> Result<(), Declined>,
    ) -> Result<(), Declined> {
        self.expect(b'{')?;
        if self.eat(b'}') {
            return Ok(());
        }
        loop {
            let key = self.string()?;
            self.expect(b':')?;
            member(self, key)?;
            if !self.eat(b',') {
                return self.expect(b'}');
            }
        }
    }

    /// The `Records` array, each record's data decoded onto the end of `data`.
    fn records(
        &mut self,
        entries: &mut Vec<Entry>,
        data: &mut Vec<u8>,
        text: &mut Vec<u8>,
    ) -> Result<(), Declined> {
        self.expect(b'[')?;
        if self.eat(b']') {
            return Ok(());
        }
        loop {
            let (mut seq, mut pk, mut blob) = (None, None, None);
            self.members(|p, key| {
                match key {
                    b"SequenceNumber" => seq = Some(p.string()?),
                    b"PartitionKey" => pk = Some(p.string()?),
                    b"Data" => blob = Some((p.i, p.string()?)),
                    _ => p.skip_value(0)?,
                }
                Ok(())
            })?;
            let (Some(seq), Some((at, blob))) = (seq, blob) else {
                return Err(self.declined("a record with SequenceNumber and Data"));
            };
            let seq_start = text.len() as u32;
            text.extend_from_slice(seq);
            let pk_start = text.len() as u32;
            text.extend_from_slice(pk.unwrap_or_default());
            let data_start = data.len() as u32;
            BASE64.decode_append(blob, data).map_err(|_| Declined {
                at,
                reason: "base64 data",
            })?;
            entries.push(Entry {
                seq_start,
                pk_start,
                end: text.len() as u32,
                data_start,
                data_end: data.len() as u32,
            });
            if !self.eat(b',') {
                self.expect(b']')?;
                return Ok(());
            }
        }
    }

    /// Skips one value of any type.
    fn skip_value(&mut self, depth: usize) -> Result<(), Declined> {
        if depth > MAX_DEPTH {
            return Err(self.declined("shallower nesting"));
        }
        self.ws();
        match self.b.get(self.i) {
            Some(b'"') => {
                self.i += 1;
                loop {
                    // `get`: an escape as the body's last byte leaves `i` past its end.
                    let rest = self.b.get(self.i..).unwrap_or_default();
                    let Some(n) = memchr::memchr2(b'"', b'\\', rest) else {
                        return Err(self.declined("the end of a string"));
                    };
                    self.i += n + 1;
                    if self.b[self.i - 1] == b'"' {
                        return Ok(());
                    }
                    self.i += 1; // the escaped character
                }
            }
            Some(open @ (b'{' | b'[')) => {
                let close = if *open == b'{' { b'}' } else { b']' };
                self.i += 1;
                if self.eat(close) {
                    return Ok(());
                }
                loop {
                    if close == b'}' {
                        self.string_any()?;
                        self.expect(b':')?;
                    }
                    self.skip_value(depth + 1)?;
                    if !self.eat(b',') {
                        return self.expect(close);
                    }
                }
            }
            Some(c) if c.is_ascii_alphanumeric() || *c == b'-' => {
                while self
                    .b
                    .get(self.i)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'+' | b'.'))
                {
                    self.i += 1;
                }
                Ok(())
            }
            _ => Err(self.declined("a value")),
        }
    }

    /// Skips a string that may hold escapes (an object key in a skipped value).
    fn string_any(&mut self) -> Result<(), Declined> {
        self.ws();
        if self.b.get(self.i) != Some(&b'"') {
            return Err(self.declined("a string"));
        }
        self.skip_value(0)
    }
}

#[cfg(test)]
#[path = "json_tests.rs"]
mod tests;
