//! The HTTP server in process, over real HTTP:
//! - `api`: the `/v1` query API on both backends, checked against `schemas/openapi.json`;
//! - `auth`: bearer tokens, open probes, refusing a public address without a token;
//! - `webhooks`: Twilio's webhooks, signed by Twilio's own helper library: signatures,
//!   tampering, bad input, retries and duplicates, account-bound tokens, Basic credentials.

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod api;
mod auth;
mod webhooks;
