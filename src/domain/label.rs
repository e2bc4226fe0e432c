//! Values that are safe to show: metric label values and char-safe prefixes ("parse, don't validate").

use std::fmt;

use serde::{Deserialize, Serialize};

/// A value safe to put in a Prometheus label: short, printable, from a bounded set (names from config
/// or DigitalOcean app names), never an id or URL.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LabelValue(String);

impl LabelValue {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > 64 {
            return Err(format!("{s:?} must be 1 to 64 characters"));
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
        {
            return Err(format!(
                "{s:?} may only contain letters, digits and - _ . : (it becomes a metric label)"
            ));
        }
        Ok(Self(s.to_string()))
    }

    /// For names coming from DigitalOcean, which are already restricted but are mapped defensively.
    pub fn sanitize(s: &str) -> Self {
        let mut out: String = s
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':') {
                    c
                } else {
                    '_'
                }
            })
            .take(64)
            .collect();
        if out.is_empty() {
            out.push('_');
        }
        Self(out)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LabelValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The first `n` characters of `s` (a short commit, an id): never cuts a character in two, so an
/// unexpected non-ASCII value cannot panic a renderer. Pure.
pub fn prefix(s: &str, n: usize) -> &str {
    s.char_indices().nth(n).map_or(s, |(i, _)| &s[..i])
}

/// Table and column names go into catalog queries as bound values, but are also checked so a
/// config typo is caught at load time.
pub fn validate_identifier(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a plain SQL identifier (letters, digits, _)"
        ))
    }
}

#[cfg(test)]
mod prefix_tests {
    #[test]
    fn prefixes_never_split_a_character() {
        for (s, n, want) in [
            ("9a4df0b8e1", 7, "9a4df0b"),
            ("abc", 7, "abc"),
            ("ééééééééé", 7, "ééééééé"),
            ("", 3, ""),
        ] {
            assert_eq!(super::prefix(s, n), want);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_bounded() {
        for (input, ok) in [
            ("api", true),
            ("api-live", true),
            ("a.b:c_d", true),
            ("", false),
            ("has space", false),
            ("{evil}", false),
            (&"x".repeat(65), false),
        ] {
            assert_eq!(LabelValue::parse(input).is_ok(), ok, "{input:?}");
        }
        assert_eq!(LabelValue::sanitize("we ird/name").as_str(), "we_ird_name");
        assert_eq!(LabelValue::sanitize("").as_str(), "_");
    }
}
