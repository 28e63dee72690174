//! Request bodies in bounded memory (DESIGN §8: bodies are capped before they are
//! buffered, and concurrent large bodies are bounded in memory).
//!
//! Two rules, in this order:
//! - a body whose `Content-Length` is over its route's cap is refused (`413`) before a
//!   byte of it is read; a body without one (chunked) is counted as it streams and
//!   refused the moment it passes the cap, so the cap holds whatever the client claims;
//! - a body that may be large (a `Content-Length` over [`SMALL_BODY_BYTES`], or none)
//!   is read only while holding one of [`MAX_LARGE_BODIES`] permits. A request that
//!   finds them all taken waits for one up to [`LARGE_BODY_WAIT`], holding its
//!   connection but none of its body, then gets `503` (forges send a failed delivery
//!   again). So at most `MAX_LARGE_BODIES × cap` bytes of large bodies are in memory at
//!   once, however many arrive.
//!
//! The webhook gateway reads its bodies through [`read_capped`]; the API's routes keep
//! axum's `DefaultBodyLimit` (which stops a streamed body at the cap) behind
//! [`refuse_oversized`], which answers from the header alone.

use crate::error::ApiError;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::HeaderMap;
use axum::http::header::CONTENT_LENGTH;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Bodies up to this size (by their `Content-Length`) are read without a permit: every
/// ordinary webhook and submission is smaller.
pub const SMALL_BODY_BYTES: usize = 64 * 1024;

/// Large bodies read at the same time, at most, in the whole process.
pub const MAX_LARGE_BODIES: usize = 4;

/// How long a large body waits for a permit before it is refused with `503`.
pub const LARGE_BODY_WAIT: Duration = Duration::from_secs(10);

/// The permits for large bodies (one process serves one router).
static LARGE_BODIES: Semaphore = Semaphore::const_new(MAX_LARGE_BODIES);

/// The declared length: `None` when absent (a chunked body); a value that is not a
/// number counts as too large, since hyper would refuse it anyway.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH).map(|v| {
        v.to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(u64::MAX)
    })
}

/// `413` when the declared length is over `cap`.
///
/// # Errors
///
/// [`ApiError::TooLarge`] when it is.
pub fn check_length(headers: &HeaderMap, cap: usize) -> Result<Option<u64>, ApiError> {
    let declared = content_length(headers);
    match declared {
        Some(n) if n > u64::try_from(cap).unwrap_or(u64::MAX) => {
            Err(ApiError::TooLarge { limit: cap })
        }
        _ => Ok(declared),
    }
}

/// Reads a whole body of at most `cap` bytes under the rules of this module.
///
/// # Errors
///
/// `413` from the header or once the stream passes `cap`; `503` when no permit for a
/// large body came in time; `400` when the client broke off mid-body.
pub async fn read_capped(headers: &HeaderMap, body: Body, cap: usize) -> Result<Bytes, ApiError> {
    let declared = check_length(headers, cap)?;
    let small = declared.is_some_and(|n| n <= SMALL_BODY_BYTES as u64);
    let _permit = if small {
        None
    } else {
        match tokio::time::timeout(LARGE_BODY_WAIT, LARGE_BODIES.acquire()).await {
            Ok(Ok(permit)) => Some(permit),
            _ => return Err(ApiError::Busy),
        }
    };
    // The declared length is at most `cap` here; reserving it once avoids the doubling
    // that would briefly hold twice the body.
    let mut buffer = Vec::with_capacity(declared.map_or(0, |n| usize::try_from(n).unwrap_or(cap)));
    let mut stream = body.into_data_stream();
    // A body trickled in byte by byte would hold its permit (and memory) for ever.
    let deadline = tokio::time::Instant::now() + BODY_DEADLINE;
    loop {
        let Ok(next) = tokio::time::timeout_at(deadline, stream.next()).await else {
            return Err(ApiError::SlowBody {
                seconds: BODY_DEADLINE.as_secs(),
            });
        };
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|e| ApiError::Field {
            field: "body",
            message: format!("the body could not be read ({e})"),
        })?;
        if buffer.len() + chunk.len() > cap {
            return Err(ApiError::TooLarge { limit: cap });
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buffer))
}

/// How long a whole body may take to arrive.
pub const BODY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// Middleware for `/api/*`: a body declared larger than [`crate::MAX_BODY_BYTES`] is
/// refused with `413` before it is read (the route's `DefaultBodyLimit` still stops a
/// chunked one as it streams). Other paths (`/hooks/*` has its own cap) pass.
pub async fn refuse_oversized(request: Request, next: Next) -> Response {
    if request.uri().path().starts_with("/api/")
        && let Err(e) = check_length(request.headers(), crate::MAX_BODY_BYTES)
    {
        return e.into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn declared(n: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_LENGTH, HeaderValue::from_str(n).unwrap());
        h
    }

    #[tokio::test]
    async fn a_declared_length_over_the_cap_is_refused_before_reading() {
        // A body that would fail if it were read: the header alone decides.
        let body = Body::from_stream(futures::stream::once(async {
            Err::<Bytes, std::io::Error>(std::io::Error::other("must not be read"))
        }));
        let refused = read_capped(&declared("101"), body, 100).await;
        assert!(matches!(refused, Err(ApiError::TooLarge { limit: 100 })));
        assert!(matches!(
            check_length(&declared("not a number"), 100),
            Err(ApiError::TooLarge { .. })
        ));
        assert_eq!(check_length(&declared("100"), 100).unwrap(), Some(100));
        assert_eq!(check_length(&HeaderMap::new(), 100).unwrap(), None);
    }

    #[tokio::test]
    async fn a_chunked_body_is_stopped_as_it_passes_the_cap() {
        let chunks = (0..10).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 30])));
        let body = Body::from_stream(futures::stream::iter(chunks));
        let refused = read_capped(&HeaderMap::new(), body, 100).await;
        assert!(matches!(refused, Err(ApiError::TooLarge { limit: 100 })));
        let chunks = (0..3).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 30])));
        let body = Body::from_stream(futures::stream::iter(chunks));
        assert_eq!(
            read_capped(&HeaderMap::new(), body, 100)
                .await
                .unwrap()
                .len(),
            90
        );
    }

    #[tokio::test(start_paused = true)]
    async fn large_bodies_wait_for_a_permit_and_small_ones_do_not() {
        let held: Vec<_> = (0..MAX_LARGE_BODIES)
            .map(|_| LARGE_BODIES.try_acquire().unwrap())
            .collect();
        // A small body is read at once.
        let small = read_capped(&declared("5"), Body::from("hello"), 100).await;
        assert_eq!(small.unwrap(), "hello");
        // A large one waits, then is refused (the clock is paused: no real wait).
        let big = "x".repeat(SMALL_BODY_BYTES + 1);
        let refused = read_capped(
            &declared(&big.len().to_string()),
            Body::from(big.clone()),
            1 << 20,
        )
        .await;
        assert!(matches!(refused, Err(ApiError::Busy)));
        // With a permit back, it goes through.
        drop(held);
        let read = read_capped(&declared(&big.len().to_string()), Body::from(big), 1 << 20).await;
        assert_eq!(read.unwrap().len(), SMALL_BODY_BYTES + 1);
    }
}
