//! Making strings from outside safe to print: a user name from an `Authorization` header, a URL
//! or path from the control API, a target sent by a switch to `ctl`.
//!
//! Written raw, a newline forges a second log line and an escape sequence drives the
//! administrator's terminal. Control characters (C0, DEL, C1) and the Unicode line and
//! paragraph separators are shown escaped instead (`\n`, `\u{1b}`), the way Rust's
//! `escape_debug` shows them; everything else, non-ASCII letters included, stays as it is.

use std::borrow::Cow;
use std::fmt;

fn unsafe_char(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

/// `s` with its control characters escaped (borrowed when there are none).
pub(crate) fn printable(s: &str) -> Cow<'_, str> {
    if !s.contains(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Displays a string with its control characters escaped: `tracing::warn!(user = %Esc(u), …)`.
pub(crate) struct Esc<'a>(pub(crate) &'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&printable(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert!(matches!(printable("ws://192.0.2.1/"), Cow::Borrowed(_)));
        assert_eq!(printable("ünïcode ok"), "ünïcode ok");
        assert_eq!(
            printable("eve\nINFO forged\u{1b}[2J\r\u{7f}\u{85}\u{2028}"),
            "eve\\nINFO forged\\u{1b}[2J\\r\\u{7f}\\u{85}\\u{2028}"
        );
        assert_eq!(Esc("a\tb").to_string(), "a\\tb");
    }
}
