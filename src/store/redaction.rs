//! What the store tells the world about its errors, with credentials taken out: sqlx errors can
//! quote a connection string.

/// sqlx errors can quote a connection string; strip anything that looks like a password: each
/// `://user:password@` becomes `://user:***@` (the user is kept, it tells which credentials
/// failed). Plain string scanning: a regex engine here cost the release build about 28 s of
/// compile time (docs/BENCHMARKS.md, "Release build").
pub fn redact(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        let (head, after) = rest.split_at(i + 3);
        out.push_str(head);
        rest = after;
        let user_end = after
            .find(|c: char| matches!(c, ':' | '/' | '@') || c.is_whitespace())
            .unwrap_or(after.len());
        let Some(secret) = after[user_end..].strip_prefix(':') else {
            continue;
        };
        let secret_end = secret
            .find(|c: char| c == '@' || c.is_whitespace())
            .unwrap_or(secret.len());
        if user_end == 0 || secret_end == 0 || !secret[secret_end..].starts_with('@') {
            continue;
        }
        out.push_str(&after[..user_end]);
        out.push_str(":***@");
        rest = &secret[secret_end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_in_urls() {
        assert_eq!(
            redact("error connecting to postgres://bob:hunter2@db:5432/x"),
            "error connecting to postgres://bob:***@db:5432/x"
        );
        assert_eq!(redact("no url here"), "no url here");
        let table = [
            ("a://u:p@h b://v:q@i", "a://u:***@h b://v:***@i"),
            ("x://:p@h", "x://:p@h"),
            ("x://u:@h", "x://u:@h"),
            ("x://u:p q@h", "x://u:p q@h"),
            ("x://u/p:q@h", "x://u/p:q@h"),
            ("x://u:p", "x://u:p"),
            ("x://u:p@", "x://u:***@"),
            ("x://u:p:r@h", "x://u:***@h"),
            ("x:///u:p@h", "x:///u:p@h"),
            ("://é:ü@ß", "://é:***@ß"),
            ("x://u:p\u{2003}q@h", "x://u:p\u{2003}q@h"),
            ("", ""),
        ];
        for (input, want) in table {
            assert_eq!(redact(input), want, "{input:?}");
        }
    }

    /// The scanner against the regular expression it replaced, on strings built from the
    /// characters the pattern cares about.
    #[test]
    fn redaction_matches_the_regex_it_replaced() {
        let re = regex::Regex::new(r"://([^:/@\s]+):[^@\s]+@").expect("pattern");
        let alphabet = [":", "/", "@", " ", "a", "é", "\u{2003}", "://"];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let mut s = String::new();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut x = seed;
            for _ in 0..(x % 14) {
                x = x.rotate_left(5) ^ 0x5851_f42d_4c95_7f2d;
                s.push_str(alphabet[(x % alphabet.len() as u64) as usize]);
            }
            assert_eq!(redact(&s), re.replace_all(&s, "://$1:***@"), "{s:?}");
        }
    }
}
