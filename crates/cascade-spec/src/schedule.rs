//! Cron lines and time zones of `on.schedule`.

use croner::parser::{CronParser, Seconds};

/// A cron line `on.schedule` cannot use.
#[derive(Debug, thiserror::Error)]
pub enum CronError {
    /// A seconds (or year) field: croner would read six fields differently.
    #[error("expected 5 fields, found {found}")]
    Fields { found: usize },
    /// croner's message (lowercased, as every message here is); the cause is that text.
    #[error("{}", lowercase_first(&.0.to_string()))]
    Invalid(croner::errors::CronError),
}

/// Checks a 5-field cron line or a nickname (`@daily`); croner's message on failure.
pub fn check_cron(line: &str) -> Result<croner::Cron, CronError> {
    let found = line.split_whitespace().count();
    if found > 5 {
        return Err(CronError::Fields { found });
    }
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .build()
        .parse(line)
        .map_err(CronError::Invalid)
}

/// The first tick of a schedule strictly after `after`, in its time zone (UTC when
/// none): daylight saving time as croner resolves it. `None` for an invalid line or zone.
pub fn next_tick(
    cron: &str,
    timezone: Option<&str>,
    after: jiff::Timestamp,
) -> Option<jiff::Timestamp> {
    let cron = check_cron(cron).ok()?;
    let tz = match timezone {
        Some(name) => jiff::tz::TimeZone::get(name).ok()?,
        None => jiff::tz::TimeZone::UTC,
    };
    cron.find_next_occurrence(&after.to_zoned(tz), false)
        .ok()
        .map(|z| z.timestamp())
}

/// Whether an IANA time zone name is known.
pub fn check_timezone(name: &str) -> bool {
    jiff::tz::TimeZone::get(name).is_ok()
}

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |c| {
        c.to_lowercase().collect::<String>() + chars.as_str().trim_end_matches('.')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_follow_the_time_zone() {
        let t = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        assert_eq!(
            next_tick("0 3 * * *", None, t("2026-01-01T03:00:00Z")),
            Some(t("2026-01-02T03:00:00Z")),
            "strictly after"
        );
        assert_eq!(
            next_tick(
                "0 3 * * *",
                Some("Europe/Berlin"),
                t("2026-01-01T00:00:00Z")
            ),
            Some(t("2026-01-01T02:00:00Z")),
            "03:00 in Berlin is 02:00 UTC in winter"
        );
        assert_eq!(
            next_tick(
                "0 3 * * *",
                Some("Europe/Berlin"),
                t("2026-07-01T00:00:00Z")
            ),
            Some(t("2026-07-01T01:00:00Z")),
            "and 01:00 UTC in summer"
        );
        assert_eq!(
            next_tick("0 3 * * *", Some("Mars/Base"), t("2026-01-01T00:00:00Z")),
            None
        );
    }

    #[test]
    fn accepts_five_fields_and_nicknames() {
        assert!(check_cron("0 3 * * *").is_ok());
        assert!(check_cron("*/15 9-17 * * MON-FRI").is_ok());
        assert!(check_cron("@daily").is_ok());
        assert!(check_cron("@hourly").is_ok());
    }

    #[test]
    fn rejects_bad_lines() {
        assert!(check_cron("0 3 * *").is_err());
        assert!(check_cron("61 * * * *").is_err());
        assert!(check_cron("0 0 3 * * *").is_err());
        assert!(check_cron("@sometimes").is_err());
    }

    #[test]
    fn refusals_say_what_was_expected_in_lowercase_without_a_final_period() {
        let six = check_cron("0 0 3 * * *").unwrap_err();
        assert!(matches!(six, CronError::Fields { found: 6 }), "{six:?}");
        assert_eq!(six.to_string(), "expected 5 fields, found 6");
        let bad = check_cron("61 * * * *").unwrap_err();
        assert!(matches!(bad, CronError::Invalid(_)), "{bad:?}");
        let text = bad.to_string();
        assert!(text.starts_with(char::is_lowercase), "{text}");
        assert!(!text.ends_with('.'), "{text}");
        assert!(
            std::error::Error::source(&bad).is_none(),
            "the cause is in the text only"
        );
    }

    #[test]
    fn time_zones() {
        assert!(check_timezone("UTC"));
        assert!(check_timezone("Europe/Berlin"));
        assert!(!check_timezone("Mars/Olympus"));
    }
}
