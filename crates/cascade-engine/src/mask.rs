//! Secret masking of process output: every occurrence of a secret becomes `***`.
//!
//! This module owns two things: which byte strings count as "a secret" (the forms derived
//! from each secret value) and how to hide them, both in a complete text ([`Masker`]) and
//! in output that arrives in arbitrary chunks ([`MaskStream`]).
//!
//! Forms masked for each secret value (and for its whitespace-trimmed form, since a value
//! read from a file usually carries a trailing newline that the printed value lacks):
//! - the value itself;
//! - each line of a multi-line value, trimmed of surrounding whitespace (so a re-indented
//!   key or a CRLF line still matches);
//! - its base64 encodings, standard and URL-safe, padded and unpadded;
//! - the stable part of its base64 encoding when it is embedded in a longer encoded text at
//!   each of the three byte alignments (as in a basic-auth header `user:secret`): the
//!   characters that depend only on the value, not on the bytes around it;
//! - its hex encoding, lowercase and uppercase (as `xxd -p`, `od`, `sha`-style dumps and
//!   debug printers show bytes);
//! - its percent-encodings, as URLs and forms carry it: every byte outside the kept set
//!   written `%XX`, with uppercase and with lowercase hex digits, a space as `%20` or `+`,
//!   for the three kept sets encoders use (RFC 3986's unreserved `A-Za-z0-9-._~`,
//!   JavaScript's `encodeURIComponent`, which also keeps `!'()*`, and HTML forms, which
//!   keep `*-._`).
//!
//! A form whose length is under [`MIN_SECRET_LEN`] bytes (ignoring surrounding whitespace)
//! is not masked: such strings occur everywhere, so masking them would garble ordinary
//! output while protecting almost nothing.
//!
//! Matching is leftmost-longest over bytes, so overlapping or adjacent secrets each become
//! one `***` and output need not be UTF-8.

use aho_corasick::{AhoCorasick, Input, MatchKind};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

/// Forms shorter than this many bytes (after trimming whitespace) are not masked.
pub const MIN_SECRET_LEN: usize = 4;

/// What every secret occurrence is replaced with.
const MASK: &[u8] = b"***";

/// The set of strings to hide, built once per run.
///
/// Cloning is cheap (an `Arc`), and the masker is `Send + Sync`. The default masker is
/// empty and passes everything through.
#[derive(Clone, Default)]
pub struct Masker {
    /// `None` for the empty masker, so it costs one branch per call.
    inner: Option<Arc<Inner>>,
}

enum Inner {
    Patterns {
        /// Finds the secrets, leftmost-longest.
        automaton: AhoCorasick,
        /// Tells a stream which pending suffix could still grow into a secret.
        prefixes: PrefixAutomaton,
        patterns: usize,
        max_len: usize,
    },
    /// The automata could not be built (only for absurdly large secret sets). Failing
    /// closed: every non-empty output becomes a single `***`, so nothing can leak.
    RedactAll,
}

impl fmt::Debug for Masker {
    // Never prints a pattern: a Debug dump must not be the leak.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.inner.as_deref() {
            None => f.write_str("Masker { empty }"),
            Some(Inner::Patterns {
                patterns, max_len, ..
            }) => f
                .debug_struct("Masker")
                .field("patterns", patterns)
                .field("max_len", max_len)
                .finish_non_exhaustive(),
            Some(Inner::RedactAll) => f.write_str("Masker { redact_all }"),
        }
    }
}

impl Masker {
    /// Builds a masker for `secrets`, the raw secret values.
    ///
    /// Values shorter than [`MIN_SECRET_LEN`] bytes once surrounding whitespace is trimmed
    /// are not masked (see the module docs for why and for the forms that are). No secrets
    /// give a masker that passes text through untouched.
    pub fn new<I, S>(secrets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut forms = BTreeSet::new();
        for secret in secrets {
            add_forms(secret.as_ref(), &mut forms);
        }
        Self::from_patterns(&forms.into_iter().collect::<Vec<_>>())
    }

    /// Builds from the exact byte strings to mask (all non-empty, deduplicated).
    fn from_patterns(patterns: &[Vec<u8>]) -> Self {
        if patterns.is_empty() {
            return Self::default();
        }
        let max_len = patterns.iter().map(Vec::len).max().unwrap_or(0);
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(patterns);
        let inner = match (automaton, PrefixAutomaton::new(patterns)) {
            (Ok(automaton), Some(prefixes)) => Inner::Patterns {
                automaton,
                prefixes,
                patterns: patterns.len(),
                max_len,
            },
            _ => Inner::RedactAll,
        };
        Self {
            inner: Some(Arc::new(inner)),
        }
    }

    /// True when nothing is masked.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.inner.is_none()
    }

    /// Longest pattern length in bytes (0 when empty or redacting everything).
    #[must_use]
    pub fn max_len(&self) -> usize {
        match self.inner.as_deref() {
            Some(Inner::Patterns { max_len, .. }) => *max_len,
            _ => 0,
        }
    }

    /// Masks a complete text (e.g. a stored output value or an error message).
    #[must_use]
    pub fn mask_str(&self, text: &str) -> String {
        if self.inner.is_none() {
            return text.to_owned();
        }
        // Every pattern is valid UTF-8 and matches on char boundaries, so this never
        // falls back to the lossy path; the fallback only keeps this panic-free.
        match String::from_utf8(self.mask_bytes(text.as_bytes())) {
            Ok(masked) => masked,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }

    /// Masks a complete byte string.
    #[must_use]
    pub fn mask_bytes(&self, bytes: &[u8]) -> Vec<u8> {
        match self.inner.as_deref() {
            None => bytes.to_vec(),
            Some(Inner::RedactAll) if bytes.is_empty() => Vec::new(),
            Some(Inner::RedactAll) => MASK.to_vec(),
            Some(Inner::Patterns { automaton, .. }) => {
                let mut out = Vec::with_capacity(bytes.len());
                let mut last = 0;
                for m in automaton.find_iter(bytes) {
                    out.extend_from_slice(&bytes[last..m.start()]);
                    out.extend_from_slice(MASK);
                    last = m.end();
                }
                out.extend_from_slice(&bytes[last..]);
                out
            }
        }
    }

    /// A masking stream for one output channel; owns a handle to this masker, so it can
    /// move into another thread or task.
    #[must_use]
    pub fn stream(&self) -> MaskStream {
        MaskStream {
            masker: self.clone(),
            pending: Vec::new(),
            state: ROOT,
            redacted: false,
        }
    }
}

/// Masks a byte stream that arrives in arbitrary chunks.
///
/// A secret split across two writes (`"sup"` then `"ersecret"`) is still masked: the
/// stream holds back only the longest suffix that is a proper prefix of some
/// masked form (so at most `max_len - 1` bytes) and releases everything before it. For
/// any split of an input into chunks, the concatenated outputs of [`push`](Self::push)
/// and [`finish`](Self::finish) equal [`Masker::mask_bytes`] of the whole input.
pub struct MaskStream {
    masker: Masker,
    /// Bytes received but not yet released: always a proper prefix of some pattern.
    pending: Vec<u8>,
    /// State of the prefix automaton after every byte pushed since the stream began.
    state: u32,
    /// In redact-all mode: whether the one `***` was already emitted.
    redacted: bool,
}

impl fmt::Debug for MaskStream {
    // The pending bytes may be the start of a secret: show only how many there are.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaskStream")
            .field("masker", &self.masker)
            .field("pending_bytes", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl MaskStream {
    /// Feeds a chunk; returns the bytes that are safe to emit now, already masked.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        match self.masker.inner.as_deref() {
            None => chunk.to_vec(),
            Some(Inner::RedactAll) => {
                if chunk.is_empty() || self.redacted {
                    Vec::new()
                } else {
                    self.redacted = true;
                    MASK.to_vec()
                }
            }
            Some(Inner::Patterns {
                automaton,
                prefixes,
                ..
            }) => {
                for &byte in chunk {
                    self.state = prefixes.next(self.state, byte);
                }
                self.pending.extend_from_slice(chunk);
                let mut out = Vec::with_capacity(self.pending.len());
                let released = release(automaton, prefixes, self.state, &self.pending, &mut out);
                self.pending.drain(..released);
                out
            }
        }
    }

    /// Ends the stream: returns the held-back rest, masked. A later `push` starts a new,
    /// independent stream.
    pub fn finish(&mut self) -> Vec<u8> {
        let rest = std::mem::take(&mut self.pending);
        self.state = ROOT;
        self.redacted = false;
        match self.masker.inner.as_deref() {
            // Redact-all already emitted its `***` on the first non-empty push.
            Some(Inner::RedactAll) => Vec::new(),
            _ => self.masker.mask_bytes(&rest),
        }
    }
}

/// Masks the decided part of `buf` into `out` and returns how many bytes of `buf` it
/// consumed; the rest must be held back.
///
/// Why this equals whole-input masking: a position `p` is *open* when `buf[p..]` is a
/// proper prefix of some pattern, i.e. more input could complete a match starting at `p`.
/// A match starting before the first open position lies wholly inside `buf`, and so does
/// every rival that the leftmost-longest rule compares it with, so it is final. Once the
/// search reaches an open position with no match started before it, the whole-input search
/// would resume from there too, so the stream keeps `buf[open..]` and restarts from it.
fn release(
    automaton: &AhoCorasick,
    prefixes: &PrefixAutomaton,
    state: u32,
    buf: &[u8],
    out: &mut Vec<u8>,
) -> usize {
    let mut pos = 0;
    loop {
        let hold = buf.len() - prefixes.open_suffix_len(state, buf.len() - pos);
        if hold == pos {
            // All of the rest could still become a secret: nothing to release, and no
            // need to rescan it (this keeps byte-at-a-time writes linear).
            return pos;
        }
        match automaton.find(Input::new(buf).span(pos..buf.len())) {
            Some(m) if m.start() < hold => {
                out.extend_from_slice(&buf[pos..m.start()]);
                out.extend_from_slice(MASK);
                pos = m.end();
            }
            _ => {
                out.extend_from_slice(&buf[pos..hold]);
                return hold;
            }
        }
    }
}

/// Adds the masked forms of one secret value to `forms`.
fn add_forms(secret: &str, forms: &mut BTreeSet<Vec<u8>>) {
    let trimmed = secret.trim();
    if trimmed.len() < MIN_SECRET_LEN {
        return;
    }
    for value in [secret, trimmed] {
        forms.insert(value.as_bytes().to_vec());
        for line in value.split('\n') {
            // Trimming also drops the `\r` of CRLF lines.
            let line = line.trim();
            if line.len() >= MIN_SECRET_LEN {
                forms.insert(line.as_bytes().to_vec());
            }
        }
        add_base64_forms(value.as_bytes(), forms);
        add_hex_forms(value.as_bytes(), forms);
        add_percent_forms(value.as_bytes(), forms);
    }
}

/// Adds the lowercase and uppercase hex encodings of `value`.
fn add_hex_forms(value: &[u8], forms: &mut BTreeSet<Vec<u8>>) {
    for digits in [HEX_LOWER, HEX_UPPER] {
        forms.insert(
            value
                .iter()
                .flat_map(|&b| [digits[usize::from(b >> 4)], digits[usize::from(b & 0xf)]])
                .collect(),
        );
    }
}

const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";
const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// The sets of bytes that percent-encoders found in practice write as themselves,
/// besides ASCII letters and digits: RFC 3986's unreserved set (`curl
/// --data-urlencode`, Python's `quote(safe="")` and `urlencode`), JavaScript's
/// `encodeURIComponent`, and HTML forms (`application/x-www-form-urlencoded`). Each is
/// masked with a space written `%20` and written `+`.
const PERCENT_KEPT: [&[u8]; 3] = [b"-._~", b"-._~!'()*", b"*-._"];

/// Adds the percent-encodings of `value` (see the module docs), with uppercase and with
/// lowercase hex digits. A value with nothing to encode adds nothing new.
fn add_percent_forms(value: &[u8], forms: &mut BTreeSet<Vec<u8>>) {
    for kept in PERCENT_KEPT {
        for (digits, space_as_plus) in [
            (HEX_UPPER, false),
            (HEX_LOWER, false),
            (HEX_UPPER, true),
            (HEX_LOWER, true),
        ] {
            let mut encoded = Vec::with_capacity(value.len() * 3);
            for &b in value {
                if b.is_ascii_alphanumeric() || kept.contains(&b) {
                    encoded.push(b);
                } else if b == b' ' && space_as_plus {
                    encoded.push(b'+');
                } else {
                    encoded.extend_from_slice(&[
                        b'%',
                        digits[usize::from(b >> 4)],
                        digits[usize::from(b & 0xf)],
                    ]);
                }
            }
            forms.insert(encoded);
        }
    }
}

/// Adds the base64 forms of `value`: the whole encoding (padded and not) in both
/// alphabets, and for each alignment the stable middle of an embedded encoding.
fn add_base64_forms(value: &[u8], forms: &mut BTreeSet<Vec<u8>>) {
    for engine in [&STANDARD, &URL_SAFE] {
        let padded = engine.encode(value);
        forms.insert(padded.trim_end_matches('=').as_bytes().to_vec());
        forms.insert(padded.into_bytes());
        for offset in 0..3 {
            // The prefix bytes' values do not matter: the characters kept below are
            // exactly those whose 6 bits all come from `value`.
            let mut shifted = vec![0u8; offset];
            shifted.extend_from_slice(value);
            let encoded = engine.encode(&shifted);
            // First character wholly after the prefix bits; last wholly before the end.
            let start = (8 * offset).div_ceil(6);
            let end = 8 * (offset + value.len()) / 6;
            if let Some(middle) = encoded.get(start..end)
                && middle.len() >= MIN_SECRET_LEN
            {
                forms.insert(middle.as_bytes().to_vec());
            }
        }
    }
}

/// The trie state for the empty string.
const ROOT: u32 = 0;

/// An Aho-Corasick automaton (standard semantics, with depths) over the patterns, used
/// only to answer: which suffixes of the text seen so far could still grow into a pattern?
///
/// `aho_corasick` does not expose trie depths, so the stream keeps this small one of its
/// own. Its state after a text is the longest suffix of the text that is a prefix of some
/// pattern; the failure chain from it lists every such suffix, longest first.
struct PrefixAutomaton {
    nodes: Vec<Node>,
    /// Children of every node, each node's run sorted by byte.
    edges: Vec<(u8, u32)>,
}

struct Node {
    fail: u32,
    depth: u32,
    first_edge: u32,
    edge_count: u32,
}

impl PrefixAutomaton {
    /// `None` when the trie would not fit `u32` indices.
    fn new(patterns: &[Vec<u8>]) -> Option<Self> {
        // Build the trie with per-node child lists, then flatten them.
        let mut children: Vec<Vec<(u8, u32)>> = vec![Vec::new()];
        let mut depth: Vec<u32> = vec![0];
        for pattern in patterns {
            let mut node = ROOT;
            for (i, &byte) in pattern.iter().enumerate() {
                let list = children.get_mut(ix(node))?;
                node = match list.binary_search_by_key(&byte, |&(b, _)| b) {
                    Ok(found) => list.get(found)?.1,
                    Err(slot) => {
                        let new = u32::try_from(depth.len()).ok()?;
                        list.insert(slot, (byte, new));
                        children.push(Vec::new());
                        depth.push(u32::try_from(i + 1).ok()?);
                        new
                    }
                };
            }
        }
        let mut edges = Vec::new();
        let mut nodes = Vec::with_capacity(children.len());
        for (list, &depth) in children.iter().zip(&depth) {
            nodes.push(Node {
                fail: ROOT,
                depth,
                first_edge: u32::try_from(edges.len()).ok()?,
                edge_count: u32::try_from(list.len()).ok()?,
            });
            edges.extend_from_slice(list);
        }
        drop(children);
        let mut automaton = Self { nodes, edges };
        automaton.link_failures();
        Some(automaton)
    }

    /// Sets failure links breadth-first: a node's link is the state for its longest proper
    /// suffix that is in the trie, found from its parent's link.
    fn link_failures(&mut self) {
        let mut queue = std::collections::VecDeque::new();
        for &(_, child) in self.children(ROOT) {
            queue.push_back(child);
        }
        while let Some(node) = queue.pop_front() {
            let fail = self.fail(node);
            let kids: Vec<(u8, u32)> = self.children(node).to_vec();
            for (byte, child) in kids {
                let link = self.next(fail, byte);
                if let Some(n) = self.nodes.get_mut(ix(child)) {
                    n.fail = link;
                }
                queue.push_back(child);
            }
        }
    }

    fn children(&self, node: u32) -> &[(u8, u32)] {
        self.nodes
            .get(ix(node))
            .and_then(|n| {
                self.edges
                    .get(ix(n.first_edge)..ix(n.first_edge) + ix(n.edge_count))
            })
            .unwrap_or(&[])
    }

    fn fail(&self, node: u32) -> u32 {
        self.nodes.get(ix(node)).map_or(ROOT, |n| n.fail)
    }

    fn depth(&self, node: u32) -> u32 {
        self.nodes.get(ix(node)).map_or(0, |n| n.depth)
    }

    /// The state after reading `byte` in `state`.
    fn next(&self, mut state: u32, byte: u8) -> u32 {
        loop {
            let kids = self.children(state);
            if let Ok(i) = kids.binary_search_by_key(&byte, |&(b, _)| b)
                && let Some(&(_, child)) = kids.get(i)
            {
                return child;
            }
            if state == ROOT {
                return ROOT;
            }
            state = self.fail(state);
        }
    }

    /// Length of the longest suffix of the text, at most `limit` bytes, that is a proper
    /// prefix of some pattern (0 if none): the bytes a stream must hold back.
    fn open_suffix_len(&self, mut state: u32, limit: usize) -> usize {
        loop {
            let depth = ix(self.depth(state));
            if depth <= limit && !self.children(state).is_empty() {
                return depth;
            }
            if state == ROOT {
                return 0;
            }
            state = self.fail(state);
        }
    }
}

/// A `u32` index as `usize` (lossless on every target this runs on).
fn ix(i: u32) -> usize {
    usize::try_from(i).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(secrets: &[&str], text: &str) -> String {
        Masker::new(secrets).mask_str(text)
    }

    fn stream_all(masker: &Masker, chunks: &[&[u8]]) -> Vec<u8> {
        let mut stream = masker.stream();
        let mut out = Vec::new();
        for chunk in chunks {
            out.extend(stream.push(chunk));
        }
        out.extend(stream.finish());
        out
    }

    /// Leftmost-longest by brute force: the reference for the automaton.
    fn naive_mask(patterns: &[Vec<u8>], input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < input.len() {
            let rest = &input[i..];
            let longest = patterns
                .iter()
                .filter(|p| !p.is_empty() && rest.starts_with(p))
                .map(Vec::len)
                .max();
            if let Some(len) = longest {
                out.extend_from_slice(MASK);
                i += len;
            } else {
                out.push(input[i]);
                i += 1;
            }
        }
        out
    }

    fn forms_of(secrets: &[&str]) -> Vec<Vec<u8>> {
        let mut forms = BTreeSet::new();
        for s in secrets {
            add_forms(s, &mut forms);
        }
        forms.into_iter().collect()
    }

    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            usize::try_from(self.next() % n as u64).unwrap()
        }
    }

    #[test]
    fn masks_a_plain_secret() {
        assert_eq!(mask(&["hunter22"], "pw=hunter22!"), "pw=***!");
    }

    #[test]
    fn masks_every_occurrence() {
        assert_eq!(mask(&["s3cr3t"], "s3cr3t and s3cr3t"), "*** and ***");
    }

    #[test]
    fn empty_masker_is_identity() {
        let m = Masker::new(Vec::<String>::new());
        assert!(m.is_empty());
        assert_eq!(m.max_len(), 0);
        assert_eq!(m.mask_str("anything ***"), "anything ***");
        assert_eq!(m.mask_bytes(b"\xff\x00x"), b"\xff\x00x");
        assert_eq!(stream_all(&m, &[b"ab", b"", b"cd"]), b"abcd");
        assert!(Masker::default().is_empty());
    }

    #[test]
    fn short_secrets_are_not_masked() {
        let m = Masker::new(["abc", "  ab  ", "", "\n\n\nxy\n"]);
        assert!(m.is_empty());
        assert_eq!(m.mask_str("abc ab xy"), "abc ab xy");
        // Four bytes is enough.
        assert_eq!(mask(&["abcd"], "xabcdx"), "x***x");
    }

    #[test]
    fn trailing_newline_in_value_does_not_defeat_masking() {
        assert_eq!(mask(&["token123\n"], "got token123."), "got ***.");
    }

    #[test]
    fn multi_line_secret_lines_are_masked_individually() {
        let key =
            "-----BEGIN KEY-----\r\nAAAAbbbbCCCC\r\n  ddddEEEE\r\nxy\r\n-----END KEY-----\r\n";
        let m = Masker::new([key]);
        assert_eq!(m.mask_str("line: AAAAbbbbCCCC"), "line: ***");
        // Re-indented and without the `\r`.
        assert_eq!(m.mask_str("    ddddEEEE\n"), "    ***\n");
        assert_eq!(m.mask_str("-----END KEY-----"), "***");
        // The short line is not masked on its own.
        assert_eq!(m.mask_str("xy"), "xy");
        // The whole value is one `***`, not one per line.
        assert_eq!(m.mask_str(&format!("[{key}]")), "[***]");
    }

    #[test]
    fn base64_whole_forms_are_masked() {
        // Chosen so that the encodings contain `+` / `/` and need padding.
        let secret = "\u{3fe}\u{3ff}sec>?!";
        let m = Masker::new([secret]);
        for engine in [
            &base64::engine::general_purpose::STANDARD,
            &base64::engine::general_purpose::STANDARD_NO_PAD,
            &base64::engine::general_purpose::URL_SAFE,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ] {
            let encoded = engine.encode(secret);
            assert_eq!(m.mask_str(&format!("v={encoded};")), "v=***;", "{encoded}");
        }
        let std = STANDARD.encode(secret);
        let url = URL_SAFE.encode(secret);
        assert_ne!(std, url, "the test needs alphabet-specific characters");
        assert!(std.ends_with('='));
    }

    #[test]
    fn base64_of_basic_auth_header_is_masked() {
        let secret = "p4ssw0rd-xyz";
        let header = STANDARD.encode(format!("user:{secret}"));
        let masked = mask(&[secret], &format!("Authorization: Basic {header}"));
        assert_ne!(masked, format!("Authorization: Basic {header}"));
        assert!(masked.contains("***"), "{masked}");
        // The characters that depend only on the secret are gone.
        let stable = &STANDARD.encode(format!("xx{secret}"))[3..(8 * (2 + secret.len())) / 6];
        assert!(!masked.contains(stable));
    }

    #[test]
    fn base64_at_every_alignment_is_masked() {
        let secret = "Zq9!kLm#2@xY";
        let m = Masker::new([secret]);
        for engine in [&STANDARD, &URL_SAFE] {
            for prefix_len in 0..7 {
                for suffix_len in 0..4 {
                    let mut raw = vec![b'P'; prefix_len];
                    raw.extend_from_slice(secret.as_bytes());
                    raw.extend(std::iter::repeat_n(b'S', suffix_len));
                    let encoded = engine.encode(&raw);
                    let masked = m.mask_str(&encoded);
                    assert!(
                        masked.contains("***"),
                        "{prefix_len}/{suffix_len}: {masked}"
                    );
                    // What is left is only the prefix's and suffix's own characters plus
                    // at most one mixed character on each side of the secret.
                    let left = masked.replace("***", "");
                    assert!(
                        left.len() <= encoded.len() - 4 * secret.len() / 3 + 2,
                        "{prefix_len}/{suffix_len}: {masked}"
                    );
                }
            }
        }
    }

    #[test]
    fn hex_forms_are_masked_in_either_case() {
        let secret = "Hex-Secret/42";
        let m = Masker::new([secret]);
        let lower: String = secret
            .bytes()
            .flat_map(|b| {
                [
                    HEX_LOWER[usize::from(b >> 4)],
                    HEX_LOWER[usize::from(b & 0xf)],
                ]
            })
            .map(char::from)
            .collect();
        let upper = lower.to_uppercase();
        assert_ne!(lower, upper);
        assert_eq!(m.mask_str(&format!("dump {lower}\n")), "dump ***\n");
        assert_eq!(m.mask_str(&format!("DUMP={upper};")), "DUMP=***;");
        // The trimmed value's encoding is masked too (no trailing `0a`).
        let m = Masker::new([format!("{secret}\n")]);
        assert_eq!(m.mask_str(&lower), "***");
        // Streaming a hex dump split anywhere still masks it.
        let text = format!("x{upper}y");
        for i in 0..=text.len() {
            let (a, b) = text.as_bytes().split_at(i);
            assert_eq!(stream_all(&m, &[a, b]), b"x***y", "split {i}");
        }
    }

    #[test]
    fn percent_encoded_forms_are_masked() {
        let secret = "p@ss w0rd/&~!*'";
        let m = Masker::new([secret]);
        for encoded in [
            // RFC 3986, both cases of hex digit.
            "p%40ss%20w0rd%2F%26~%21%2A%27",
            "p%40ss%20w0rd%2f%26~%21%2a%27",
            // encodeURIComponent keeps `!*'`.
            "p%40ss%20w0rd%2F%26~!*'",
            "p%40ss%20w0rd%2f%26~!*'",
            // A form: `+` for the space, `~` encoded, `*` kept.
            "p%40ss+w0rd%2F%26%7E%21*%27",
            "p%40ss+w0rd%2f%26%7e%21*%27",
        ] {
            assert_eq!(
                m.mask_str(&format!("https://h/?pw={encoded}&x=1")),
                "https://h/?pw=***&x=1",
                "{encoded}"
            );
        }
        // Python's `urlencode`: RFC 3986's kept set, `+` for the space.
        assert_eq!(m.mask_str("pw=p%40ss+w0rd%2F%26~%21%2A%27"), "pw=***");
    }

    #[test]
    fn short_values_add_no_encoded_forms() {
        // `ab` hex-encodes to `6162`, four characters: still not masked, as the value
        // itself is not.
        let m = Masker::new(["ab", "a b"]);
        assert!(m.is_empty());
        assert_eq!(m.mask_str("6162 a%20b a+b"), "6162 a%20b a+b");
    }

    #[test]
    fn metacharacters_and_unicode_are_literal() {
        let corpus = [
            "$(rm -rf /)",
            "a*b*c*d",
            "back\\slash\\",
            "quo\"te's`x`",
            "line1\nline2-long",
            "пароль-секрет",
            "🔑🔑key",
            "[a-z]+.*?",
            "%s%n%x",
        ];
        let m = Masker::new(corpus);
        for secret in corpus {
            let masked = m.mask_str(&format!("<{secret}>"));
            assert_eq!(masked, "<***>", "{secret:?}");
        }
        // A regex-looking secret does not act as a regex.
        assert_eq!(m.mask_str("abc"), "abc");
        assert_eq!(m.mask_str("axbxcxd"), "axbxcxd");
    }

    #[test]
    fn non_utf8_bytes_pass_through() {
        let m = Masker::new(["secret-value"]);
        let input = b"\xff\xfe secret-value \x80\x00";
        assert_eq!(m.mask_bytes(input), b"\xff\xfe *** \x80\x00");
        assert_eq!(
            stream_all(&m, &[&input[..5], &input[5..]]),
            m.mask_bytes(input)
        );
    }

    #[test]
    fn overlapping_and_adjacent_secrets() {
        let m = Masker::new(["abcdef", "defghi", "abcdefgh"]);
        // Leftmost wins, then longest.
        assert_eq!(m.mask_str("abcdefghi"), "***i");
        assert_eq!(m.mask_str("xdefghiabcdef"), "x******");
        assert_eq!(m.mask_str("abcdefabcdef"), "******");
    }

    #[test]
    fn leftmost_longest_matches_brute_force() {
        let secrets = ["aaaa", "aaab", "abab", "ababab", "baaa", "abba\nbbab"];
        let m = Masker::new(secrets);
        let forms = forms_of(&secrets);
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for _ in 0..2000 {
            let len = rng.below(40);
            let input: Vec<u8> = (0..len).map(|_| b"ab\n"[rng.below(3)]).collect();
            assert_eq!(
                m.mask_bytes(&input),
                naive_mask(&forms, &input),
                "{input:?}"
            );
        }
    }

    #[test]
    fn stream_masks_a_secret_split_across_writes() {
        let m = Masker::new(["supersecret"]);
        let mut s = m.stream();
        assert_eq!(s.push(b"log sup"), b"log ");
        assert_eq!(s.push(b"ersecret done\n"), b"*** done\n");
        assert_eq!(s.finish(), b"");
    }

    #[test]
    fn stream_releases_lines_promptly() {
        let m = Masker::new(["supersecret"]);
        let mut s = m.stream();
        // Nothing here could start a secret, so everything goes out at once.
        assert_eq!(s.push(b"hello\n"), b"hello\n");
        assert_eq!(s.push(b"no secret here"), b"no secret here");
        // Only the proper prefix `supe` is held, not the last max_len - 1 bytes.
        assert_eq!(s.push(b"x\nsupe"), b"x\n");
        assert_eq!(s.push(b"\n"), b"supe\n");
        assert_eq!(s.finish(), b"");
    }

    #[test]
    fn stream_finish_releases_an_unfinished_prefix() {
        let m = Masker::new(["supersecret"]);
        let mut s = m.stream();
        assert_eq!(s.push(b"supersecre"), b"");
        assert_eq!(s.finish(), b"supersecre");
        // A new stream after finish is independent.
        assert_eq!(s.push(b"t"), b"t");
        assert_eq!(s.finish(), b"");
    }

    #[test]
    fn stream_waits_for_a_longer_secret_that_would_win() {
        // `bcd` inside `abcdefgh`: the longer, earlier match must win even though `bcd`
        // is complete first.
        let m = Masker::from_patterns(&[b"bcdx".to_vec(), b"abcdxefgh".to_vec()]);
        let mut s = m.stream();
        assert_eq!(s.push(b"abcdxef"), b"");
        assert_eq!(s.push(b"gh!"), b"***!");
        let mut s = m.stream();
        assert_eq!(s.push(b"abcdxef"), b"");
        assert_eq!(s.push(b"!"), b"a***ef!");
    }

    #[test]
    fn stream_equals_whole_at_every_split_point() {
        let secrets = [
            "supersecret",
            "secret-two",
            "two-three",
            "\u{e9}t\u{e9}-pw\nline-2",
        ];
        let m = Masker::new(secrets);
        let inputs: [&[u8]; 5] = [
            b"a supersecret and secret-two-three; supersupersecret\n",
            b"secret-twosecret-two two-three-three supersecre",
            "\u{e9}t\u{e9}-pw\nline-2 line-2\n\u{e9}t\u{e9}-pw".as_bytes(),
            b"\xffsuper\xfesecret\x00supersecret",
            b"",
        ];
        for input in inputs {
            let whole = m.mask_bytes(input);
            for i in 0..=input.len() {
                assert_eq!(
                    stream_all(&m, &[&input[..i], &input[i..]]),
                    whole,
                    "split {i}"
                );
                for j in i..=input.len() {
                    let chunks = [&input[..i], &input[i..j], &input[j..]];
                    assert_eq!(stream_all(&m, &chunks), whole, "split {i},{j}");
                }
            }
        }
    }

    #[test]
    fn stream_equals_whole_for_random_splits() {
        let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
        for case in 0..2000 {
            // Secrets over a tiny alphabet, so they overlap and share prefixes often.
            let secrets: Vec<String> = (0..=rng.below(4))
                .map(|_| {
                    (0..4 + rng.below(6))
                        .map(|_| char::from(b"ab\nc"[rng.below(4)]))
                        .collect()
                })
                .collect();
            let m = Masker::new(&secrets);
            let forms = forms_of(&secrets.iter().map(String::as_str).collect::<Vec<_>>());
            // Input: pieces of secrets, whole secrets and noise, including non-UTF-8.
            let mut input = Vec::new();
            for _ in 0..rng.below(12) {
                let kind = rng.below(4);
                if kind == 3 || forms.is_empty() {
                    input.push(b"ab\nc\xff"[rng.below(5)]);
                    continue;
                }
                let form = &forms[rng.below(forms.len())];
                match kind {
                    0 => input.extend_from_slice(form),
                    1 => input.extend_from_slice(&form[..rng.below(form.len())]),
                    _ => input.extend_from_slice(&form[rng.below(form.len())..]),
                }
            }
            let whole = m.mask_bytes(&input);
            assert_eq!(whole, naive_mask(&forms, &input), "case {case}");
            let mut stream = m.stream();
            let mut out = Vec::new();
            let mut rest = &input[..];
            while !rest.is_empty() {
                let (chunk, tail) = rest.split_at(rng.below(rest.len() + 1));
                out.extend(stream.push(chunk));
                rest = tail;
                // Held back: at most max_len - 1 bytes, and only a proper prefix of a form.
                let held = &stream.pending;
                assert!(held.len() < m.max_len().max(1), "case {case}");
                assert!(
                    held.is_empty()
                        || forms
                            .iter()
                            .any(|f| f.len() > held.len() && f.starts_with(held)),
                    "case {case}: held {held:?}"
                );
            }
            out.extend(stream.finish());
            assert_eq!(out, whole, "case {case}: {secrets:?} {input:?}");
        }
    }

    #[test]
    fn masker_and_stream_are_shareable() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Masker>();
        assert_send_sync::<MaskStream>();
        let m = Masker::new(["thread-secret"]);
        let handle = std::thread::spawn({
            let m = m.clone();
            move || m.mask_str("a thread-secret")
        });
        assert_eq!(handle.join().unwrap(), "a ***");
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let m = Masker::new(["debug-secret"]);
        let mut s = m.stream();
        let _ = s.push(b"debug-sec");
        let shown = format!("{m:?} {s:?}");
        assert!(!shown.contains("debug"), "{shown}");
        assert!(shown.contains("pending_bytes: 9"), "{shown}");
    }

    #[test]
    fn redact_all_mode_is_consistent() {
        let m = Masker {
            inner: Some(Arc::new(Inner::RedactAll)),
        };
        assert!(!m.is_empty());
        assert_eq!(m.mask_bytes(b""), b"");
        assert_eq!(m.mask_str("anything"), "***");
        assert_eq!(stream_all(&m, &[b"", b"ab", b"cd"]), m.mask_bytes(b"abcd"));
        assert_eq!(stream_all(&m, &[b""]), m.mask_bytes(b""));
    }
}
