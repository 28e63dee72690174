//! Webhook authentication: is this delivery from the forge that knows our secret?
//!
//! - GitHub: `X-Hub-Signature-256: sha256=<hex>`, the HMAC-SHA256 of the raw body keyed
//!   with the secret.
//! - Gitea: `X-Gitea-Signature: <hex>`, the same HMAC without a prefix. Gitea also sends
//!   GitHub's header; only its own is read, so one forge has one rule.
//! - GitLab: `X-Gitlab-Token: <secret>`, the secret in clear (GitLab drops line breaks
//!   from it, so they are dropped from ours before comparing). There is no body signature.
//!
//! Decisions:
//! - An empty secret refuses every delivery: anyone can compute an HMAC with an empty key.
//! - MACs are compared with [`hmac::Mac::verify_slice`] (constant time). The hex text is
//!   decoded without early exit: every digit is looked at, branch-free, and one flag says
//!   at the end whether any was not hex. Only the length is checked first, and the length
//!   of a hex SHA-256 is public.
//! - Hex digits are accepted in either case. The MAC compared is the bytes, so case
//!   carries no information; GitHub and Gitea send lowercase, a proxy that upper-cases
//!   header values does not break deliveries.
//! - The GitLab token is compared as `HMAC(secret, token)` against `HMAC(secret, secret)`:
//!   two 32-byte tags compared in constant time, so neither the secret's content nor its
//!   length shows in timing.
//! - Errors name the header and what was wrong with its shape; they never contain the
//!   secret, the expected MAC or the value sent.

use crate::error::SignatureError;
use crate::forge::{Forge, Headers};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// GitHub's signature header.
pub const GITHUB_SIGNATURE: &str = "X-Hub-Signature-256";
/// Gitea's signature header.
pub const GITEA_SIGNATURE: &str = "X-Gitea-Signature";
/// GitLab's token header.
pub const GITLAB_TOKEN: &str = "X-Gitlab-Token";

const GITHUB_PREFIX: &str = "sha256=";
/// Hex digits of a SHA-256 MAC.
const HEX_LEN: usize = 64;

/// Checks that a delivery was sent by a forge that knows `secret`. `body` must be the raw
/// bytes as received, before any JSON parsing.
pub fn verify(
    forge: Forge,
    headers: &(impl Headers + ?Sized),
    body: &[u8],
    secret: &[u8],
) -> Result<(), SignatureError> {
    if secret.is_empty() {
        return Err(SignatureError::NoSecret { forge });
    }
    match forge {
        Forge::GitHub => {
            let value = required(headers, GITHUB_SIGNATURE)?;
            let hex = value
                .strip_prefix(GITHUB_PREFIX)
                .ok_or(SignatureError::MissingPrefix {
                    header: GITHUB_SIGNATURE,
                    prefix: GITHUB_PREFIX,
                })?;
            verify_hmac(GITHUB_SIGNATURE, hex, body, secret)
        }
        Forge::Gitea => {
            let hex = required(headers, GITEA_SIGNATURE)?;
            verify_hmac(GITEA_SIGNATURE, hex, body, secret)
        }
        Forge::GitLab => verify_token(headers, secret),
    }
}

/// The lowercase hex HMAC-SHA256 of `body` keyed with `secret`: what GitHub puts after
/// `sha256=` and Gitea sends bare. For tests and for signing forwarded deliveries.
pub fn sign(body: &[u8], secret: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    mac(secret, body)
        .iter()
        .flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 15)]])
        .map(char::from)
        .collect()
}

/// Whether `hex` (64 digits, either case) is the HMAC-SHA256 of `data` under `secret`,
/// compared in constant time: for MACs of our own (the server's job tokens).
pub fn verify_hex(hex: &str, data: &[u8], secret: &[u8]) -> bool {
    verify_hmac("mac", hex, data, secret).is_ok()
}

fn required<'h>(
    headers: &'h (impl Headers + ?Sized),
    header: &'static str,
) -> Result<&'h str, SignatureError> {
    headers
        .header(header)
        .ok_or(SignatureError::MissingHeader { header })
}

fn keyed(secret: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length (long ones are hashed), so this cannot fail; the
    // fallback keeps a panic out of the request path all the same.
    HmacSha256::new_from_slice(secret)
        .unwrap_or_else(|_| HmacSha256::new(&hmac::digest::Key::<HmacSha256>::default()))
}

fn mac(secret: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = keyed(secret);
    m.update(data);
    m.finalize().into_bytes().into()
}

fn verify_hmac(
    header: &'static str,
    hex: &str,
    body: &[u8],
    secret: &[u8],
) -> Result<(), SignatureError> {
    let tag = decode_hex(header, hex)?;
    let mut m = keyed(secret);
    m.update(body);
    m.verify_slice(&tag)
        .map_err(|_| SignatureError::Mismatch { header })
}

fn verify_token(headers: &(impl Headers + ?Sized), secret: &[u8]) -> Result<(), SignatureError> {
    let token = required(headers, GITLAB_TOKEN)?;
    let expected: Vec<u8> = secret
        .iter()
        .copied()
        .filter(|b| !matches!(b, b'\r' | b'\n'))
        .collect();
    if expected.is_empty() {
        return Err(SignatureError::NoSecret {
            forge: Forge::GitLab,
        });
    }
    let tag = mac(&expected, &expected);
    let mut m = keyed(&expected);
    m.update(token.as_bytes());
    m.verify_slice(&tag)
        .map_err(|_| SignatureError::TokenMismatch {
            header: GITLAB_TOKEN,
        })
}

/// Decodes 64 hex digits (either case) to 32 bytes, looking at every digit.
fn decode_hex(header: &'static str, text: &str) -> Result<[u8; 32], SignatureError> {
    let bytes = text.as_bytes();
    if bytes.len() != HEX_LEN {
        return Err(SignatureError::BadLength {
            header,
            expected: HEX_LEN,
            found: text.chars().count(),
        });
    }
    let mut out = [0u8; 32];
    let mut bad = 0u8;
    for (slot, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let (hi, hi_bad) = nibble(pair[0]);
        let (lo, lo_bad) = nibble(pair[1]);
        *slot = (hi << 4) | lo;
        bad |= hi_bad | lo_bad;
    }
    if bad == 0 {
        Ok(out)
    } else {
        Err(SignatureError::NotHex { header })
    }
}

/// One hex digit without branches: its value, and 1 when `c` is not a hex digit.
fn nibble(c: u8) -> (u8, u8) {
    let digit = c.wrapping_sub(b'0');
    let letter = (c | 0x20).wrapping_sub(b'a');
    // 0xff when the difference is below the bound (the subtraction wraps), else 0.
    let is_digit = u16::from(digit).wrapping_sub(10).to_be_bytes()[0];
    let is_letter = u16::from(letter).wrapping_sub(6).to_be_bytes()[0];
    let value = (digit & is_digit) | (letter.wrapping_add(10) & is_letter);
    (value, !(is_digit | is_letter) & 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mac_of_our_own_verifies_in_either_case_and_nothing_else_does() {
        let tag = sign(b"data", b"key");
        assert!(verify_hex(&tag, b"data", b"key"));
        assert!(verify_hex(&tag.to_uppercase(), b"data", b"key"));
        assert!(!verify_hex(&tag, b"other", b"key"));
        assert!(!verify_hex(&tag, b"data", b"other key"));
        assert!(!verify_hex(&tag[1..], b"data", b"key"));
        assert!(!verify_hex(&"z".repeat(64), b"data", b"key"));
    }

    const SECRET: &[u8] = b"It's a Secret to Everybody";
    const PAYLOAD: &[u8] = b"Hello, World!";
    const VECTOR: &str = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    fn github(value: &str) -> Result<(), SignatureError> {
        verify(Forge::GitHub, &[(GITHUB_SIGNATURE, value)], PAYLOAD, SECRET)
    }

    fn gitea(value: &str) -> Result<(), SignatureError> {
        verify(Forge::Gitea, &[(GITEA_SIGNATURE, value)], PAYLOAD, SECRET)
    }

    #[test]
    fn githubs_published_vector() {
        assert_eq!(sign(PAYLOAD, SECRET), VECTOR);
        assert_eq!(github(&format!("sha256={VECTOR}")), Ok(()));
        assert_eq!(gitea(VECTOR), Ok(()));
        // Header names are case-insensitive.
        let lower = [("x-hub-signature-256", format!("sha256={VECTOR}"))];
        assert_eq!(verify(Forge::GitHub, &lower, PAYLOAD, SECRET), Ok(()));
    }

    #[test]
    fn missing_and_empty_headers() {
        let none: [(&str, &str); 0] = [];
        assert_eq!(
            verify(Forge::GitHub, &none, PAYLOAD, SECRET),
            Err(SignatureError::MissingHeader {
                header: GITHUB_SIGNATURE
            })
        );
        assert_eq!(
            verify(Forge::Gitea, &none, PAYLOAD, SECRET),
            Err(SignatureError::MissingHeader {
                header: GITEA_SIGNATURE
            })
        );
        // Gitea's headers on the GitHub hook: the GitHub header is what counts.
        let gitea_only = [(GITEA_SIGNATURE, VECTOR)];
        assert!(matches!(
            verify(Forge::GitHub, &gitea_only, PAYLOAD, SECRET),
            Err(SignatureError::MissingHeader { .. })
        ));
        assert!(matches!(
            github(""),
            Err(SignatureError::MissingPrefix { .. })
        ));
        assert!(matches!(
            github("sha256="),
            Err(SignatureError::BadLength { found: 0, .. })
        ));
        assert!(matches!(
            gitea(""),
            Err(SignatureError::BadLength { found: 0, .. })
        ));
    }

    #[test]
    fn every_truncation_is_refused() {
        for len in 0..HEX_LEN {
            let cut = &VECTOR[..len];
            assert_eq!(
                github(&format!("sha256={cut}")),
                Err(SignatureError::BadLength {
                    header: GITHUB_SIGNATURE,
                    expected: 64,
                    found: len
                }),
                "github, {len} digits"
            );
            assert_eq!(
                gitea(cut),
                Err(SignatureError::BadLength {
                    header: GITEA_SIGNATURE,
                    expected: 64,
                    found: len
                }),
                "gitea, {len} digits"
            );
        }
        // Too long is refused too.
        assert!(matches!(
            gitea(&format!("{VECTOR}0")),
            Err(SignatureError::BadLength { found: 65, .. })
        ));
    }

    #[test]
    fn every_flipped_bit_is_refused() {
        let good = decode_hex("t", VECTOR).unwrap();
        for bit in 0..256 {
            let mut bad = good;
            bad[bit / 8] ^= 1 << (bit % 8);
            let hex: String = bad
                .iter()
                .flat_map(|b| [b >> 4, b & 15])
                .map(|n| char::from_digit(u32::from(n), 16).unwrap())
                .collect();
            assert_eq!(
                github(&format!("sha256={hex}")),
                Err(SignatureError::Mismatch {
                    header: GITHUB_SIGNATURE
                }),
                "bit {bit}"
            );
            assert!(gitea(&hex).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn wrong_secret_wrong_body_and_wrong_prefix() {
        let value = format!("sha256={VECTOR}");
        let h = [(GITHUB_SIGNATURE, value.as_str())];
        assert!(verify(Forge::GitHub, &h, PAYLOAD, b"It's a Secret to Everybody!").is_err());
        assert!(verify(Forge::GitHub, &h, b"Hello, World!\n", SECRET).is_err());
        assert!(verify(Forge::GitHub, &h, b"", SECRET).is_err());
        assert!(matches!(
            github(&format!("sha1={VECTOR}")),
            Err(SignatureError::MissingPrefix { .. })
        ));
        assert!(matches!(
            github(&format!("SHA256={VECTOR}")),
            Err(SignatureError::MissingPrefix { .. })
        ));
        assert!(matches!(
            github(&format!(" sha256={VECTOR}")),
            Err(SignatureError::MissingPrefix { .. })
        ));
    }

    #[test]
    fn non_hex_of_the_right_length_is_refused() {
        for (i, c) in [
            (0, 'g'),
            (63, 'z'),
            (10, ' '),
            (31, '/'),
            (5, ':'),
            (7, '`'),
        ] {
            let mut s: Vec<char> = VECTOR.chars().collect();
            s[i] = c;
            let s: String = s.into_iter().collect();
            assert_eq!(
                gitea(&s),
                Err(SignatureError::NotHex {
                    header: GITEA_SIGNATURE
                }),
                "{c:?} at {i}"
            );
        }
        // A multi-byte character: 64 bytes, fewer characters, still not hex.
        let s = format!("é{}", &VECTOR[2..]);
        assert_eq!(s.len(), 64);
        assert!(gitea(&s).is_err());
    }

    #[test]
    fn uppercase_hex_is_accepted() {
        let upper = VECTOR.to_ascii_uppercase();
        assert_eq!(github(&format!("sha256={upper}")), Ok(()));
        assert_eq!(gitea(&upper), Ok(()));
        let mixed: String = VECTOR
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if i % 2 == 0 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect();
        assert_eq!(gitea(&mixed), Ok(()));
    }

    #[test]
    fn nibble_agrees_with_the_standard_library_for_every_byte() {
        for c in 0..=u8::MAX {
            let (value, bad) = nibble(c);
            match char::from(c).to_digit(16) {
                Some(d) => assert_eq!((u32::from(value), bad), (d, 0), "{c}"),
                None => assert_eq!(bad, 1, "{c}"),
            }
        }
    }

    #[test]
    fn empty_secret_refuses_everything() {
        let empty_mac = sign(PAYLOAD, b"");
        assert_eq!(
            verify(Forge::Gitea, &[(GITEA_SIGNATURE, empty_mac)], PAYLOAD, b""),
            Err(SignatureError::NoSecret {
                forge: Forge::Gitea
            })
        );
        assert!(verify(Forge::GitLab, &[(GITLAB_TOKEN, "")], PAYLOAD, b"").is_err());
        assert!(verify(Forge::GitLab, &[(GITLAB_TOKEN, "")], PAYLOAD, b"\n").is_err());
    }

    #[test]
    fn gitlab_token() {
        let ok = |token: &str, secret: &[u8]| {
            verify(Forge::GitLab, &[("x-gitlab-token", token)], b"{}", secret)
        };
        assert_eq!(ok("s3cret-token", b"s3cret-token"), Ok(()));
        let refused = Err(SignatureError::TokenMismatch {
            header: GITLAB_TOKEN,
        });
        assert_eq!(ok("s3cret-toke", b"s3cret-token"), refused);
        assert_eq!(ok("s3cret-token!", b"s3cret-token"), refused);
        assert_eq!(ok("S3cret-token", b"s3cret-token"), refused);
        assert_eq!(ok("", b"s3cret-token"), refused);
        assert_eq!(ok(" s3cret-token", b"s3cret-token"), refused);
        // GitLab sends the token with its line breaks removed.
        assert_eq!(ok("line1line2", b"line1\nline2\r\n"), Ok(()));
        let none: [(&str, &str); 0] = [];
        assert_eq!(
            verify(Forge::GitLab, &none, b"{}", b"s3cret-token"),
            Err(SignatureError::MissingHeader {
                header: GITLAB_TOKEN
            })
        );
    }

    #[test]
    fn errors_never_echo_the_secret_or_the_signature() {
        let secret = b"hunter2-very-secret";
        let sent = sign(PAYLOAD, b"other");
        let errors = [
            verify(
                Forge::Gitea,
                &[(GITEA_SIGNATURE, sent.as_str())],
                PAYLOAD,
                secret,
            ),
            verify(Forge::GitLab, &[(GITLAB_TOKEN, "hunter2")], PAYLOAD, secret),
            verify(
                Forge::GitHub,
                &[(GITHUB_SIGNATURE, "sha256=zz")],
                PAYLOAD,
                secret,
            ),
        ];
        for e in errors {
            let text = e.unwrap_err().to_string();
            assert!(!text.contains("hunter2"), "{text}");
            assert!(!text.contains(&sent), "{text}");
            assert!(!text.contains(&sign(PAYLOAD, secret)), "{text}");
        }
    }
}
