//! The HTTP server in process, over real HTTP:
//! - `api`: the `/v1` query API on both backends, checked against `schemas/openapi.json`;
//! - `auth`: bearer tokens, open probes, refusing a public address without a token;
//! - `memory`: 1 MiB rows under 32 worst-case requests stay under a memory ceiling;
//! - `exports`: exports nobody reads hold a slot each and are closed after 30 s;
//! - `limits`: the connection cap, the header deadline, the in-flight cap (`busy`), the
//!   response time limit and `store_unavailable`, each at its boundary;
//! - `probes`: `--health-addr`: a flood on the API port, a held read pool, and the probes;
//! - `bounds`: parameter sizes, and client mistakes as 400 on both backends.
//! - `console`: the web console: pages on both backends, hostile bodies shown as text,
//!   security headers, the login cookie's flags, CSRF refusals, logout; the daily rollup;
//! - `console_health`: the health page's outbox per delivery target; the dead-letter retry
//!   where the process only reads;
//! - `console_browser`: the console in headless Chromium (WebDriver): keyboard, 375 px,
//!   no console error, hostile bodies inert, screenshots.
//! - `webhooks`: Twilio's webhooks, signed by Twilio's own helper library: signatures,
//!   tampering, account-bound tokens, Basic credentials;
//! - `webhook_input`: bad input, retries and duplicates on the webhooks;
//! - `deliver_consent`: the Consent API push against a fake that enforces Twilio's limits;
//! - `deliver_notify`: signed webhooks out, checked by the Standard Webhooks library.

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod api;
mod auth;
mod bounds;
mod console;
mod console_browser;
mod console_health;
mod deliver_consent;
mod deliver_notify;
mod exports;
mod limits;
mod memory;
mod probes;
mod webhook_input;
mod webhooks;
