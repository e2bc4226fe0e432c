//! Text that reaches a person's terminal. Alert labels, app names, titles and log tails come from
//! outside; printed raw, an `ESC[2J` in a label clears the screen and a newline forges a line.
//! Every text renderer of the CLI passes outside strings through [`clean`].

use std::fmt::Write;

/// Escapes C0/C1 control characters, DEL and the Unicode bidirectional overrides (which can
/// reorder what a reader sees), so the result prints as exactly one visible line. Pure.
pub fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{1b}' => out.push_str("\\e"),
            c if c.is_control() || is_bidi_control(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Like [`clean`], but keeps line breaks: for multi-line text such as a log tail.
pub fn clean_lines(s: &str) -> String {
    s.split('\n')
        .map(|l| clean(l.strip_suffix('\r').unwrap_or(l)))
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_not_obeyed() {
        let table = [
            ("api", "api"),
            ("a\u{1b}[2Jb", "a\\e[2Jb"),
            ("line\nFAKE", "line\\nFAKE"),
            ("cr\rover", "cr\\rover"),
            ("bell\u{7}", "bell\\u{7}"),
            ("del\u{7f}", "del\\u{7f}"),
            ("c1\u{9b}31m", "c1\\u{9b}31m"),
            ("rtl\u{202e}txt", "rtl\\u{202e}txt"),
            ("tab\there", "tab\\there"),
            ("ünïcødé ✓", "ünïcødé ✓"),
        ];
        for (input, want) in table {
            assert_eq!(clean(input), want, "{input:?}");
        }
    }

    #[test]
    fn log_tails_keep_their_lines_but_lose_escapes() {
        assert_eq!(
            clean_lines("one\r\n\u{1b}[31mtwo\nthree"),
            "one\n\\e[31mtwo\nthree"
        );
    }
}
