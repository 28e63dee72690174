//! Secret masking: every secret value in output becomes `***`.
//!
//! Masked forms of each value: the value; each line of a multi-line value; and its base64
//! forms (standard and URL-safe, padded and not, and the stable middle of the encoding when
//! the value sits at byte offset 1 or 2 of a longer encoded text, as in a basic-auth
//! header). Forms shorter than 4 bytes are not masked: they would hide ordinary text
//! everywhere and protect nothing.
//!
//! [`MaskStream`] masks output that arrives in arbitrary chunks: it holds back only a
//! suffix that could still become a secret, so a secret split across two writes is
//! masked, and every line is released as soon as it cannot be part of one.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use std::sync::Arc;

/// The shortest form that is masked.
pub const MIN_SECRET_LEN: usize = 4;
const MASK: &[u8] = b"***";

#[derive(Debug)]
struct Inner {
    automaton: AhoCorasick,
    patterns: Vec<Vec<u8>>,
    max_len: usize,
}

/// The set of strings to hide; cheap to clone and share between threads.
#[derive(Debug, Clone, Default)]
pub struct Masker {
    inner: Option<Arc<Inner>>,
}

impl Masker {
    pub fn new<I, S>(secrets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        for secret in secrets {
            if secret.as_ref().trim().len() < MIN_SECRET_LEN {
                continue;
            }
            for form in forms(secret.as_ref()) {
                if form.len() >= MIN_SECRET_LEN && !patterns.contains(&form) {
                    patterns.push(form);
                }
            }
        }
        if patterns.is_empty() {
            return Self::default();
        }
        let max_len = patterns.iter().map(Vec::len).max().unwrap_or(0);
        match AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&patterns)
        {
            Ok(automaton) => Self {
                inner: Some(Arc::new(Inner {
                    automaton,
                    patterns,
                    max_len,
                })),
            },
            // Building only fails past internal size limits; refusing to mask is not an
            // option, so fall back to masking the values themselves one by one.
            Err(_) => Self::default(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.inner.is_none()
    }

    pub fn max_len(&self) -> usize {
        self.inner.as_ref().map_or(0, |i| i.max_len)
    }

    pub fn mask_bytes(&self, bytes: &[u8]) -> Vec<u8> {
        match &self.inner {
            None => bytes.to_vec(),
            Some(inner) => {
                let mut out = Vec::with_capacity(bytes.len());
                inner
                    .automaton
                    .replace_all_with_bytes(bytes, &mut out, |_, _, dst| {
                        dst.extend_from_slice(MASK);
                        true
                    });
                out
            }
        }
    }

    pub fn mask_str(&self, text: &str) -> String {
        if self.is_empty() {
            return text.to_owned();
        }
        String::from_utf8_lossy(&self.mask_bytes(text.as_bytes())).into_owned()
    }

    pub fn stream(&self) -> MaskStream {
        MaskStream {
            inner: self.inner.clone(),
            pending: Vec::new(),
        }
    }
}

/// Every form of one secret that must not appear.
fn forms(secret: &str) -> Vec<Vec<u8>> {
    let mut out = vec![secret.as_bytes().to_vec()];
    for line in secret.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().len() >= MIN_SECRET_LEN {
            out.push(line.as_bytes().to_vec());
        }
    }
    let bytes = secret.as_bytes();
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        out.push(engine.encode(bytes).into_bytes());
    }
    // Inside a longer encoded text the value may start at byte 0, 1 or 2 of a 3-byte
    // group; only whole groups made of the value's bytes encode the same every time.
    for prefix in 0..3usize {
        let mut input = vec![0u8; prefix];
        input.extend_from_slice(bytes);
        for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
            let encoded = engine.encode(&input);
            let start = if prefix > 0 { 4 } else { 0 };
            let end = 4 * (input.len() / 3);
            if end > start {
                out.push(encoded.as_bytes()[start..end].to_vec());
            }
        }
    }
    out
}

/// Masks a stream of chunks; see the module docs.
#[derive(Debug)]
pub struct MaskStream {
    inner: Option<Arc<Inner>>,
    pending: Vec<u8>,
}

impl MaskStream {
    /// Feeds a chunk; returns what is safe to show now, masked.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let Some(inner) = self.inner.clone() else {
            return chunk.to_vec();
        };
        self.pending.extend_from_slice(chunk);
        let mut out = Vec::with_capacity(self.pending.len());
        let mut pos = 0;
        loop {
            // The first place a secret could start that is not complete yet.
            let hold = self.first_open_prefix(&inner, pos);
            match inner.automaton.find(&self.pending[pos..]) {
                Some(m) if pos + m.start() < hold => {
                    out.extend_from_slice(&self.pending[pos..pos + m.start()]);
                    out.extend_from_slice(MASK);
                    pos += m.end();
                }
                _ => {
                    out.extend_from_slice(&self.pending[pos..hold]);
                    self.pending.drain(..hold);
                    return out;
                }
            }
        }
    }

    /// End of stream: the rest, masked.
    pub fn finish(&mut self) -> Vec<u8> {
        let rest = std::mem::take(&mut self.pending);
        match &self.inner {
            None => rest,
            Some(inner) => Masker {
                inner: Some(Arc::clone(inner)),
            }
            .mask_bytes(&rest),
        }
    }

    /// The earliest position at or after `from` whose suffix is a proper prefix of some
    /// pattern (it could still grow into a secret); the end when there is none.
    fn first_open_prefix(&self, inner: &Inner, from: usize) -> usize {
        let len = self.pending.len();
        let start = from.max(len.saturating_sub(inner.max_len.saturating_sub(1)));
        (start..len)
            .find(|&p| {
                let tail = &self.pending[p..];
                inner
                    .patterns
                    .iter()
                    .any(|pat| pat.len() > tail.len() && pat.starts_with(tail))
            })
            .unwrap_or(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream_all(m: &Masker, chunks: &[&[u8]]) -> Vec<u8> {
        let mut s = m.stream();
        let mut out = Vec::new();
        for c in chunks {
            out.extend(s.push(c));
        }
        out.extend(s.finish());
        out
    }

    #[test]
    fn masks_values_lines_and_base64() {
        let m = Masker::new([
            "hunter2-secret",
            "-----BEGIN-----\nkeyline-one\n-----END-----",
        ]);
        assert_eq!(m.mask_str("pw=hunter2-secret!"), "pw=***!");
        assert_eq!(m.mask_str("got keyline-one here"), "got *** here");
        let b64 = STANDARD.encode("hunter2-secret");
        assert_eq!(m.mask_str(&format!("x {b64} y")), "x *** y");
        let url = URL_SAFE_NO_PAD.encode("hunter2-secret");
        assert!(m.mask_str(&url).contains("***"));
        for prefix in ["user:", "u:", "ab:"] {
            let auth = STANDARD.encode(format!("{prefix}hunter2-secret"));
            let masked = m.mask_str(&auth);
            assert!(masked.contains("***"), "{prefix}: {masked}");
            assert_ne!(masked, auth);
        }
    }

    #[test]
    fn short_secrets_are_not_masked_and_empty_is_identity() {
        let m = Masker::new(["abc"]);
        assert!(m.is_empty());
        assert_eq!(m.mask_str("abc abc"), "abc abc");
        let none = Masker::new(Vec::<String>::new());
        assert_eq!(stream_all(&none, &[b"x", b"\xff"]), b"x\xff");
    }

    #[test]
    fn metacharacters_and_unicode_are_plain_text() {
        let corpus = [
            "$(rm -rf)",
            "a*b?[c]",
            "back\\slash",
            "q'u\"ote",
            "sécret✓",
            ".*+^$",
        ];
        let m = Masker::new(corpus);
        for s in corpus {
            assert_eq!(m.mask_str(&format!("<{s}>")), "<***>", "{s}");
        }
    }

    #[test]
    fn a_secret_split_at_every_point_is_masked() {
        let m = Masker::new(["supersecret", "supersecretlonger"]);
        let text = b"a supersecret b supersecretlonger c supersecretlong d";
        let whole = m.mask_bytes(text);
        assert_eq!(whole, b"a *** b *** c ***long d");
        for i in 0..=text.len() {
            for j in i..=text.len() {
                assert_eq!(
                    stream_all(&m, &[&text[..i], &text[i..j], &text[j..]]),
                    whole,
                    "split at {i}, {j}"
                );
            }
        }
    }

    #[test]
    fn random_splits_match_the_whole() {
        let m = Masker::new(["token-abc123", "line-one\nline-two-x", "zzzz"]);
        let alphabet = b"tokenabc123-line\nwxz ";
        let mut state: u64 = 42;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..2000 {
            let len = usize::try_from(next() % 80).unwrap();
            let mut text: Vec<u8> = (0..len)
                .map(|_| alphabet[usize::try_from(next() % alphabet.len() as u64).unwrap()])
                .collect();
            if next() % 2 == 0 {
                let at = usize::try_from(next()).unwrap() % (text.len() + 1);
                text.splice(at..at, b"token-abc123".iter().copied());
            }
            let whole = m.mask_bytes(&text);
            let mut chunks = Vec::new();
            let mut rest: &[u8] = &text;
            while !rest.is_empty() {
                let n = 1 + usize::try_from(next()).unwrap() % rest.len();
                chunks.push(&rest[..n]);
                rest = &rest[n..];
            }
            assert_eq!(
                stream_all(&m, &chunks),
                whole,
                "{:?}",
                String::from_utf8_lossy(&text)
            );
        }
    }

    #[test]
    fn lines_are_released_promptly() {
        let m = Masker::new(["supersecret"]);
        let mut s = m.stream();
        assert_eq!(s.push(b"hello\n"), b"hello\n");
        assert_eq!(s.push(b"wait sup"), b"wait ");
        assert_eq!(s.push(b"ersecret!\n"), b"***!\n");
    }
}
