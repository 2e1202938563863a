//! The HTTP server in process, over real HTTP:
//! - `api`: the `/v1` query API on both backends, checked against `schemas/openapi.json`;
//! - `auth`: bearer tokens, open probes, refusing a public address without a token.

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod api;
mod auth;
