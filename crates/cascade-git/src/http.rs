//! The one HTTP client builder of the workspace (`clippy.toml` forbids
//! `reqwest::Client::new` and `reqwest::Client::builder` elsewhere). Every client it makes:
//! - uses rustls with ring, installed as the process's provider if none is (reqwest's
//!   `rustls-no-provider` would otherwise panic at `build()`);
//! - says who it is: `User-Agent: cascade/<version>`;
//! - follows no redirect: a token in a header would travel with it to wherever the
//!   answer points, and neither a forge's status API, a callback receiver nor the
//!   server's own API has a reason to redirect;
//! - gives up on connecting after 10 s and on the whole request after its `timeout`.

use crate::error::HttpError;
use std::time::Duration;

/// `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("cascade/", env!("CARGO_PKG_VERSION"));

/// How long connecting may take at most.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A client's settings; [`HttpClient::build`] makes it.
#[derive(Debug, Clone)]
pub struct HttpClient {
    timeout: Duration,
    /// `None`: the system's trust roots; `Some`: only these (none for plain HTTP).
    roots: Option<Vec<reqwest::Certificate>>,
}

impl HttpClient {
    /// A client whose requests end after `timeout`, trusting the system's roots.
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            roots: None,
        }
    }

    /// Trusts only `roots` (a private CA), or nothing at all when empty (a client that
    /// speaks only plain HTTP, which then skips loading the system's roots).
    #[must_use]
    pub fn trust_only(mut self, roots: Vec<reqwest::Certificate>) -> Self {
        self.roots = Some(roots);
        self
    }

    /// The client.
    pub fn build(self) -> Result<reqwest::Client, HttpError> {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            // Another thread may install one at the same moment: either will do.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        #[expect(
            clippy::disallowed_methods,
            reason = "the one place clients are built: redirects, timeouts, user agent and the provider set alike"
        )]
        let builder = reqwest::Client::builder();
        let mut builder = builder
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(self.timeout);
        if let Some(roots) = self.roots {
            builder = builder.tls_certs_only(roots);
        }
        builder.build().map_err(HttpError::Build)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A one-request HTTP server on loopback that answers `answer` and hands back the
    /// request it read.
    fn serve_once(answer: &'static str) -> (String, std::thread::JoinHandle<String>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let thread = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut chunk = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut chunk).unwrap();
                assert!(n > 0, "the client closed before its request ended");
                request.extend_from_slice(&chunk[..n]);
            }
            stream.write_all(answer.as_bytes()).unwrap();
            String::from_utf8(request).unwrap()
        });
        (url, thread)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn names_itself_and_follows_no_redirect() {
        let (url, server) = serve_once(
            "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:9/elsewhere\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        let client = HttpClient::new(Duration::from_secs(5))
            .trust_only(Vec::new())
            .build()
            .unwrap();
        let answer = client.get(&url).send().await.unwrap();
        assert_eq!(answer.status(), 302, "the redirect was followed");
        let request = server.join().unwrap().to_ascii_lowercase();
        assert!(
            request.contains(&format!(
                "user-agent: {}\r\n",
                USER_AGENT.to_ascii_lowercase()
            )),
            "{request}"
        );
        assert!(USER_AGENT.starts_with("cascade/"), "{USER_AGENT}");
    }
}
