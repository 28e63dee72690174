//! Cron lines and time zones of `on.schedule`.

use croner::parser::{CronParser, Seconds};

/// Checks a 5-field cron line or a nickname (`@daily`); croner's message on failure.
pub fn check_cron(line: &str) -> Result<croner::Cron, String> {
    if line.split_whitespace().count() > 5 {
        return Err(format!(
            "expected 5 fields, found {}",
            line.split_whitespace().count()
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .build()
        .parse(line)
        .map_err(|e| lowercase_first(&e.to_string()))
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
    fn time_zones() {
        assert!(check_timezone("UTC"));
        assert!(check_timezone("Europe/Berlin"));
        assert!(!check_timezone("Mars/Olympus"));
    }
}
