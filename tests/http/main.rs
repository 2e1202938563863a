//! The HTTP server in process, over real HTTP:
//! - `api`: the `/v1` query API on both backends, checked against `schemas/openapi.json`;
//! - `auth`: bearer tokens, open probes, refusing a public address without a token;
//! - `webhooks`: Twilio's webhooks, signed by Twilio's own helper library: signatures,
//!   tampering, account-bound tokens, Basic credentials;
//! - `webhook_input`: bad input, retries and duplicates on the webhooks.

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod api;
mod auth;
mod webhook_input;
mod webhooks;
