//! Making strings from outside safe to print: a user name from an `Authorization` header, a URL
//! or path from the control API, a target sent by a switch to `ctl`.
//!
//! Written raw, a newline forges a second log line and an escape sequence drives the
//! administrator's terminal; a bidirectional override (U+202E) makes a log line read backwards
//! from where it stands. Control characters (C0, DEL, C1), the Unicode line and paragraph
//! separators and the bidirectional formatting characters are shown escaped instead (`\n`,
//! `\u{1b}`, `\u{202e}`), the way Rust's `escape_debug` shows them; everything else, non-ASCII
//! letters included, stays as it is.

use std::borrow::Cow;
use std::fmt;

fn unsafe_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') || is_bidi_control(c)
}

/// The characters that change the direction text is shown in (Unicode's Bidi_Control): the
/// Arabic letter mark, the left-to-right and right-to-left marks, embeddings, overrides and
/// isolates.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with its control characters escaped (borrowed when there are none).
pub(crate) fn printable(s: &str) -> Cow<'_, str> {
    if !s.contains(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if unsafe_char(c) {
            // `escape_debug` leaves some of these as they are (it escapes only what it deems
            // unprintable); `\u{…}` then, in the same notation.
            let debug = c.escape_debug();
            if debug.len() > 1 {
                out.extend(debug);
            } else {
                out.extend(c.escape_unicode());
            }
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

    #[test]
    fn bidirectional_controls_are_escaped() {
        assert_eq!(
            printable("user\u{202e}gpj.exe \u{2066}x\u{2069} \u{200f}\u{061c}"),
            "user\\u{202e}gpj.exe \\u{2066}x\\u{2069} \\u{200f}\\u{61c}"
        );
        // Right-to-left letters themselves are text, not controls.
        assert_eq!(printable("שלום مرحبا"), "שלום مرحبا");
    }
}
