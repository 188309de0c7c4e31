//! Parsers for setting values that have no richer type of their own.

/// `-e KEY=VALUE`.
pub(super) fn parse_raw_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() && !key.contains('\0') && !value.contains('\0') => {
            Ok((key.to_string(), value.to_string()))
        }
        _ => Err(format!("'{text}' is not KEY=VALUE")),
    }
}

/// `--header-map drop|refuse|dangerous`.
pub(super) fn parse_header_map(text: &str) -> Result<crate::http::UnderscoreHeaders, String> {
    use crate::http::UnderscoreHeaders;
    match text.to_ascii_lowercase().as_str() {
        "drop" => Ok(UnderscoreHeaders::Drop),
        "refuse" => Ok(UnderscoreHeaders::Refuse),
        "dangerous" => Ok(UnderscoreHeaders::Keep),
        _ => Err(format!("'{text}' is not one of drop, refuse, dangerous")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::UnderscoreHeaders;

    #[test]
    fn raw_env_is_key_equals_value() {
        assert_eq!(parse_raw_env("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert_eq!(parse_raw_env("A="), Ok(("A".into(), String::new())));
        assert!(parse_raw_env("=x").is_err());
        assert!(parse_raw_env("A").is_err());
    }

    #[test]
    fn header_map_takes_gunicorns_words() {
        assert_eq!(parse_header_map("drop"), Ok(UnderscoreHeaders::Drop));
        assert_eq!(parse_header_map("Refuse"), Ok(UnderscoreHeaders::Refuse));
        assert_eq!(parse_header_map("dangerous"), Ok(UnderscoreHeaders::Keep));
        assert!(parse_header_map("sometimes").is_err());
    }
}
