//! Splitting `RGUNICORN_CMD_ARGS` into words the way a POSIX shell splits a
//! command line: whitespace separates words; `'...'` keeps everything
//! literally; `"..."` keeps whitespace, and a backslash in it escapes only
//! `"`, `\`, `$`, `` ` `` and newline; elsewhere a backslash keeps the next
//! character literally. No expansion of any kind.

/// Why a string could not be split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    /// A `'` or `"` is never closed.
    #[error("unterminated {0} quote")]
    UnterminatedQuote(char),
    /// The string ends in a lone backslash.
    #[error("ends with a lone backslash")]
    TrailingBackslash,
}

/// Splits `line` into words.
pub fn split(line: &str) -> Result<Vec<String>, SplitError> {
    let mut words = Vec::new();
    let mut word = String::new();
    // A word exists once any character (or an empty quoted string) is seen.
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(SplitError::UnterminatedQuote('\'')),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(SplitError::UnterminatedQuote('"')),
                        },
                        Some(c) => word.push(c),
                        None => return Err(SplitError::UnterminatedQuote('"')),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(c) => {
                    in_word = true;
                    word.push(c);
                }
                None => return Err(SplitError::TrailingBackslash),
            },
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_a_shell() {
        let cases: &[(&str, &[&str])] = &[
            ("", &[]),
            ("   ", &[]),
            ("-w 3", &["-w", "3"]),
            ("  -w\t3 \n --bind=:1 ", &["-w", "3", "--bind=:1"]),
            ("--name 'my app'", &["--name", "my app"]),
            ("--name \"my app\"", &["--name", "my app"]),
            ("--name my\\ app", &["--name", "my app"]),
            ("a''b", &["ab"]),
            ("''", &[""]),
            ("\"\" x", &["", "x"]),
            ("'a\\b'", &["a\\b"]),
            ("\"a\\\"b\"", &["a\"b"]),
            ("\"a\\nb\"", &["a\\nb"]),
            ("\"a\\\\b\"", &["a\\b"]),
            ("\"it's\"", &["it's"]),
            ("'say \"hi\"'", &["say \"hi\""]),
            (
                "--access-logformat='%(h)s %(r)s'",
                &["--access-logformat=%(h)s %(r)s"],
            ),
            ("a\\\nb", &["ab"]),
        ];
        for (line, expected) in cases {
            assert_eq!(split(line).unwrap(), *expected, "{line:?}");
        }
    }

    #[test]
    fn unbalanced_input_is_an_error() {
        let cases = [
            ("'open", SplitError::UnterminatedQuote('\'')),
            ("\"open", SplitError::UnterminatedQuote('"')),
            ("\"open\\", SplitError::UnterminatedQuote('"')),
            ("end\\", SplitError::TrailingBackslash),
        ];
        for (line, expected) in cases {
            assert_eq!(split(line), Err(expected), "{line:?}");
        }
    }
}
