//! The forge-facing library: everything between a git host and a planned run, except
//! HTTP serving (the server crate hosts the routes and calls these functions).
//!
//! - [`forge`]: which forge sent a delivery (`detect`, case-insensitive `Headers`); `Forge`
//!   itself is `cascade-spec`'s (`cascade.toml` names it), re-exported.
//! - [`signature`]: webhook authentication (HMAC-SHA256, GitLab's token), constant time.
//! - [`delivery`]: a delivery normalised to one `ForgeEvent`, and its `Trigger`; both
//!   serialise (the server stores deliveries as they are).
//! - [`filter`]: does an event start a pipeline (`on:` branches, tags, paths, types)?
//! - [`clone`]: the partial-clone cache, reading `ci.yaml` at a commit, changed paths,
//!   worktrees. Shells out to `git`.
//! - [`status`]: commit statuses posted back to the forge, with retries.
//! - [`changed`]: change detection for `cascade changed` (monorepo packages).
//! - [`http`]: the one HTTP client builder (user agent, no redirects, timeouts, ring).

pub mod changed;
pub mod clone;
pub mod delivery;
pub mod error;
pub mod filter;
pub mod forge;
pub mod http;
pub mod signature;
pub mod status;

pub use changed::{changed_files, changed_packages};
pub use clone::Repos;
pub use delivery::{Delivery, EventKind, ForgeEvent, GitRev, PrAction, PullRequest, Repository};
pub use error::{
    ChangedError, CloneError, DeliveryError, FilterError, HttpError, IntakeError, SignatureError,
    StatusError,
};
pub use filter::{Verdict, evaluate};
pub use forge::{Forge, Headers};
pub use http::HttpClient;
pub use status::{CommitState, Reporter, RetryPolicy, Sent, StatusTarget, http_client};
