#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
#![expect(
    clippy::disallowed_methods,
    reason = "tests start the tools they check against (git) directly; only the product's own spawns must go through its builders"
)]
//! The integration tests of cascade-git: the real webhook deliveries in
//! `shared/webhooks` (signed, verified, normalised, matched), real git repositories in
//! temp dirs (`file://` remotes), and the status API contract against a local HTTP
//! server that records every request.

mod clone;
mod status;
mod webhooks;
